"""The document cases recorded under fixtures/golden/documents/ (what tests/documents/reference,
the frozen implementation, used to be compared on):

- ``documents/messages/<fixture>/``: every HPRIM fixture built the way
  legacy_to_trust._documents builds one message, at two times (UTC and UTC+2 on New Year's
  eve): each CDA (CR-BIO, or level 1 for a document without results), the findings, and the
  IHE XDM package: its entry listing (``xdm.json``) and every entry that is not one of the CDAs
  (README.TXT, INDEX.HTM, METADATA.XML);
- ``documents/variants/<lab>/``: CR-BIO with the lab found by the HPRIM sender code or given
  (complete, sparse, with markup in its name), a versioned CR-BIO (set id, version 3) and a
  level-1 CDA, for the first six documents with results, and their package;
- ``documents/refusals/``: what is refused, and with which exception;
- ``documents/generated/``: a fixed, seeded sample of made-up documents (headers, RES and TEX
  lines with markup, non-ASCII and characters XML cannot carry), in place of the property test
  that compared with the frozen implementation.

A level-1 CDA and a CR-BIO's PDF copy section carry a stand-in rendition (a few bytes starting
``%PDF-``), not pdf.render's: the builder embeds whatever PDF it is given, and the PDF has its
own tests.
"""

from __future__ import annotations

import dataclasses
import io
import random
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache, partial
from typing import Any

from gateway.documents import cda, hprim, xdm
from gateway.documents.codes import CodeTables, load_tables
from gateway.documents.labs import Lab
from gateway.documents.model import Finding, HprimDocument, HprimHeader, LabLine, ResLine, TexLine
from tests.golden import ROOT, Group, dump_json

HPRIM = ROOT / "fixtures" / "hprim"
WHEN = datetime(2024, 4, 3, 10, 30, tzinfo=UTC)
TIMES = {"utc": WHEN, "plus2": datetime(2023, 12, 31, 23, 59, 59,
                                        tzinfo=timezone(timedelta(hours=2)))}
SENDER = xdm.XdmSender(name="Laboratoire d'Analyses Évry", address="labo@evry.test")
SEED = 20
GENERATED = 60


@cache
def tables() -> CodeTables:
    return load_tables()


def rendition(label: str) -> bytes:
    return f"%PDF-1.4\n% stand-in rendition: {label}\n%%EOF\n".encode()


def findings(found: list[Finding]) -> bytes:
    return dump_json([[f.code, f.message, f.line] for f in found])


def refusal(exc: Exception) -> bytes:
    return dump_json({"raised": type(exc).__name__, "message": str(exc)})


def package(data: bytes, inputs: dict[str, bytes], prefix: str) -> dict[str, bytes]:
    """An XDM zip as files: ``<prefix>.json`` lists its entries (name, time, method, size, CRC,
    and where the content is recorded); an entry equal to one of the ``inputs`` (the CDAs that
    went in) points at it, any other is recorded as ``<prefix>/<name>``.  The deflated bytes are
    not recorded: they depend on the zlib at hand."""
    out: dict[str, bytes] = {}
    listing = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            content = z.read(info)
            same = [rel for rel, x in inputs.items() if x == content]
            if same:
                where = same[0]
            else:
                where = f"{prefix}/{info.filename}"
                out[where] = content
            listing.append({"name": info.filename, "date_time": list(info.date_time),
                            "method": info.compress_type, "size": info.file_size,
                            "crc": f"{info.CRC:08x}", "attr": info.external_attr,
                            "content": where})
    out[f"{prefix}.json"] = dump_json({"entries": listing})
    return out


def corpus_files() -> list[str]:
    return [p.stem for p in sorted(HPRIM.glob("*.hpr"))]


def parse(stem: str) -> list[HprimDocument]:
    return hprim.parse((HPRIM / f"{stem}.hpr").read_bytes().decode("utf-8")).documents


def message(docs: list[HprimDocument], label: str, now: datetime,
            key: str = "2.25.1234") -> dict[str, bytes]:
    """What legacy_to_trust._documents does with one message's documents."""
    out: dict[str, bytes] = {}
    xmls: dict[str, bytes] = {}
    found: list[Finding] = []
    for n, doc in enumerate(docs, start=1):
        doc_id = f"{key}.{n}"
        copy = rendition(f"{label} document {n}")
        if doc.results:
            built = cda.build_crbio(doc, tables=tables(), document_id=doc_id, effective_time=now,
                                    pdf_copy=copy)
        else:
            built = cda.build_level1(doc, copy, tables=tables(), document_id=doc_id,
                                     effective_time=now)
        found.extend(built.findings)
        xmls[f"cda-{n}.xml"] = built.xml
    out.update(xmls)
    out["findings.json"] = findings(found)
    zipped = xdm.pack([xdm.XdmDocument(x) for x in xmls.values()], submission_time=now,
                      sender=SENDER)
    out.update(package(zipped, xmls, "xdm"))
    return out


def _message(stem: str) -> Callable[[], dict[str, bytes]]:
    def produce() -> dict[str, bytes]:
        docs = parse(stem)
        return {f"{t}/{rel}": data for t, now in TIMES.items()
                for rel, data in message(docs, stem, now).items()}

    return produce


# --- the lab, the version ---------------------------------------------------------------------

def labs() -> dict[str, Lab | None]:
    """The lab given to the builder: none (found by the HPRIM sender code), the BIOLAB row, the
    same without the optional fields, and one with markup in its name."""
    biolab = tables().labs.lookup("BIOLAB")
    assert biolab is not None
    return {
        "by-sender-code": None,
        "biolab": biolab,
        "biolab-sparse": dataclasses.replace(biolab, biologist_given="", telecom="", street="",
                                             postcode="", city=""),
        "biolab-markup": dataclasses.replace(biolab, name="Laboratoire d'Analyses <Évry> & Cie",
                                             patient_oid="1.2.3.4.5"),
    }


def docs_with_results() -> list[HprimDocument]:
    return [d for stem in corpus_files() for d in parse(stem) if d.results]


def built(prefix: str, call: Callable[[], cda.CdaResult]) -> dict[str, bytes]:
    try:
        result = call()
    except Exception as exc:  # what is refused, and how, is recorded
        return {f"{prefix}.raised.json": refusal(exc)}
    return {f"{prefix}.xml": result.xml, f"{prefix}.findings.json": findings(result.findings)}


def crbio(doc: HprimDocument, prefix: str, **kw: Any) -> dict[str, bytes]:
    kw.setdefault("pdf_copy", rendition(prefix))
    return built(prefix, lambda: cda.build_crbio(doc, tables=tables(), **kw))


def _variant(name: str) -> Callable[[], dict[str, bytes]]:
    def produce() -> dict[str, bytes]:
        kw: dict[str, Any] = {"document_id": "1.2.250.9.7", "effective_time": WHEN,
                              "lab": labs()[name]}
        out: dict[str, bytes] = {}
        xmls: dict[str, bytes] = {}
        for n, doc in enumerate(docs_with_results()[:6], start=1):
            out.update(crbio(doc, f"doc-{n}/crbio", **kw))
            if f"doc-{n}/crbio.xml" in out:
                xmls[f"doc-{n}/crbio.xml"] = out[f"doc-{n}/crbio.xml"]
            out.update(crbio(doc, f"doc-{n}/crbio-v3", set_id="1.2.3", version=3, **kw))
            out.update(built(f"doc-{n}/level1", partial(
                cda.build_level1, doc, rendition("level 1"), tables=tables(), title="Titre",
                **kw)))
        if xmls:
            zipped = xdm.pack([xdm.XdmDocument(x) for x in xmls.values()], submission_time=WHEN,
                              sender=xdm.XdmSender(name="S"))
            out.update(package(zipped, xmls, "xdm"))
        return out

    return produce


def _refusals() -> dict[str, bytes]:
    def outcome(call: Callable[[], Any]) -> dict[str, str]:
        try:
            call()
        except Exception as exc:
            return {"raised": type(exc).__name__, "message": str(exc)}
        return {"raised": "nothing"}

    doc = docs_with_results()[0]
    empty = HprimDocument(HprimHeader(), "texte", [TexLine("x")])
    naive = datetime(2024, 4, 3, 10, 30)
    cases: dict[str, Callable[[], Any]] = {
        "crbio with a naive effective time": lambda: cda.build_crbio(
            doc, tables=tables(), document_id="1", effective_time=naive),
        "crbio of a document without results": lambda: cda.build_crbio(
            empty, tables=tables(), document_id="1", effective_time=WHEN),
        "level1 of something that is not a PDF": lambda: cda.build_level1(
            doc, b"GIF89a", tables=tables(), document_id="1", effective_time=WHEN),
        "crbio of a lab the table does not know": lambda: cda.build_crbio(
            dataclasses.replace(doc, header=dataclasses.replace(doc.header,
                                                                sender_code="NOSUCHLAB")),
            tables=tables(), document_id="1", effective_time=WHEN, pdf_copy=rendition("x")),
    }
    for name, bad in (("no document", []), ("a document that is not a CDA", [b"<x/>"]),
                      ("a document that is not XML", [b"not xml"])):
        cases[f"xdm pack of {name}"] = (lambda b: lambda: xdm.pack(
            [xdm.XdmDocument(x) for x in b], submission_time=WHEN,
            sender=xdm.XdmSender(name="S")))(bad)
    return {"refusals.json": dump_json({name: outcome(call) for name, call in cases.items()})}


# --- seeded sample of made-up documents --------------------------------------------------------

_MARKUP = list("<>&\"' \t]]>éß€–\u00a0")
_UNITS = ["g/l", "mmol/l", "G/L", "%", "", " g/l ", "U/zz", "10 3/µl", "a b"]
_ODD_NUMBERS = ["0", ".5", "+1.2", "12.", "", "< 0.5", "1,2", " 3 ", "-"]


class _Made:
    """Made-up documents, as the property test's strategies made them, from a seeded Random."""

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)
        self.codes = [*sorted(tables().lab_codes)[:25], "LOCAL9", "", " x y ", "GLY "]

    def char(self) -> str:
        if self.rng.random() < 0.4:
            return self.rng.choice(_MARKUP)
        while True:  # any character but a surrogate or a control character
            lo, hi = self.rng.choice([(0x20, 0x7E), (0xA0, 0x2FF), (0x370, 0x52F),
                                      (0x2000, 0x206F), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)])
            c = chr(self.rng.randint(lo, hi))
            if not (0xD800 <= ord(c) <= 0xDFFF or c in "\x7f"):
                return c

    def text(self) -> str:
        return "".join(self.char() for _ in range(self.rng.randint(0, 12)))

    def number(self) -> str:
        if self.rng.random() < 0.3:
            return self.rng.choice(_ODD_NUMBERS)
        return f"{self.rng.randint(-1000000, 100000000) / 1000:.3f}"

    def res(self) -> ResLine:
        r = self.rng
        kind = r.choice(["N", "A", "C", "", "X"])
        return ResLine(
            self.text(), r.choice(self.codes), kind, self.number() if kind == "N" else self.text(),
            r.choice(_UNITS), self.number(), self.number(),
            r.choice(["", "N", "L", "H", "LL", "HH", "Z"]), r.choice(["F", "R", "C", "", "Q"]),
            "" if r.random() < 0.5 else self.number(), r.choice(_UNITS), self.number(),
            self.number(),
        )

    def when(self) -> date | None:
        if self.rng.random() < 0.3:
            return None
        return date(1900, 1, 1) + timedelta(days=self.rng.randint(0, 72683))

    def header(self) -> HprimHeader:
        r = self.rng
        return HprimHeader(
            patient_code=r.choice(["", "P123", "  "]), last_name=self.text(),
            first_name=self.text(), address1=self.text(),
            address2=r.choice(["", "  ", "Bât. B"]),
            postcode_city=r.choice(["", "91000Évry", "75 Paris", "12345"]),
            birth_date="", nir=r.choice(["", "1840775123456 12", "2850599123456 77",
                                         "184072A123456 12", "bad nir", " "]),
            lab_ref=r.choice(["", "REF-1"]), exam_date="",
            sender_code=r.choice(["", "LAB1"]), sender_name=self.text(),
            recipient_code=r.choice(["", "DR9"]), recipient_name=self.text(),
            birth=self.when(), exam=self.when(),
        )

    def document(self) -> tuple[HprimDocument, datetime]:
        r = self.rng
        header = self.header()
        free = r.choice(["", self.text(), "a\nb", "\n", "l1\n\nl3\n"])
        lab: list[LabLine] = [self.res() if r.random() < 2 / 3 else TexLine(self.text())
                              for _ in range(r.randint(1, 6))]
        now = r.choice([WHEN, datetime(2024, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5)))])
        bad = r.choice(["", "", "", "", "", "\x00", "\x0b", "\ufffe"])
        where = r.choice(["last_name", "free", "label", "tex", "unit"])
        if bad and where == "last_name":
            header = dataclasses.replace(header, last_name=header.last_name + bad)
        elif bad and where == "free":
            free += bad
        elif bad:
            lab = [
                TexLine(x.text + bad) if isinstance(x, TexLine) and where == "tex"
                else dataclasses.replace(x, **{where: getattr(x, where) + bad})
                if isinstance(x, ResLine) and where != "tex" else x
                for x in lab
            ]
        return HprimDocument(header, free, lab), now


def generated_documents() -> list[tuple[HprimDocument, datetime]]:
    made = _Made(f"{SEED}-documents")
    return [made.document() for _ in range(GENERATED)]


def _generated() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    lab = labs()["biolab"]
    for n, (doc, now) in enumerate(generated_documents(), start=1):
        prefix = f"{n:03d}"
        out[f"{prefix}/hprim.json"] = dump_json({
            "now": now.isoformat(),
            "header": [f"{f.name}={getattr(doc.header, f.name)!r}"
                       for f in dataclasses.fields(doc.header)],
            "free_text": repr(doc.free_text), "lab": [repr(x) for x in doc.lab or []]})
        made = crbio(doc, f"{prefix}/cda", document_id="1.2.250.9.1", effective_time=now,
                     lab=lab)
        out.update(made)
        if f"{prefix}/cda.xml" in made:
            xml = made[f"{prefix}/cda.xml"]
            xmls = {f"{prefix}/cda.xml": xml,
                    f"{prefix}/cda.xml with id 1.2.250.9.2":
                        xml.replace(b"1.2.250.9.1", b"1.2.250.9.2")}
            zipped = xdm.pack([xdm.XdmDocument(x) for x in xmls.values()], submission_time=now,
                              sender=xdm.XdmSender(name=doc.header.sender_name or "S"))
            out.update(package(zipped, xmls, f"{prefix}/xdm"))
    return out


def groups() -> list[Group]:
    out = [Group(f"documents/messages/{stem}", _message(stem)) for stem in corpus_files()]
    out += [Group(f"documents/variants/{name}", _variant(name)) for name in labs()]
    out.append(Group("documents/refusals", _refusals))
    out.append(Group("documents/generated", _generated))
    return out
