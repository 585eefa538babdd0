#!/usr/bin/env python3
"""CPU per stage of the documents and text work a message costs in a translation worker.

On the load bench's own messages (bench/loadkit/messages.py): the HPRIM reports of
fixtures/hprim as the laboratory sends them (cp850) and the 20 KB letters in each sender's
charset, legacy → trust; the CR-BIO packages made from the same reports and the 8 KB letters,
trust → legacy.  Each stage is timed alone, with this process's CPU time
(``time.process_time``), as ``gateway.translate`` calls it, over every message of its kind,
best of ``--rounds`` rounds (the machine is shared: the best round is the one least disturbed).
Memo caches of the text repair are left warm, as in a worker that has seen the senders before.

Usage: python bench/documents.py [--rounds 5] [--json] [--profile STAGE]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadkit.messages import hprim_texts, letter_text  # noqa: E402

from gateway.crypto.world import USERS  # noqa: E402
from gateway.directory.addresses import LegacyUser  # noqa: E402
from gateway.documents import cda, hprim, pdf, xdm  # noqa: E402
from gateway.documents.codes import load_tables  # noqa: E402
from gateway.documents.model import HprimFile  # noqa: E402
from gateway.text import normalize  # noqa: E402
from gateway.text.encode import encode_noting  # noqa: E402
from gateway.text.transliterate import transliterate  # noqa: E402
from gateway.translate import legacy_to_trust  # noqa: E402
from gateway.translate.strings import StringRepairs  # noqa: E402

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _user(key: str) -> LegacyUser:
    spec = next(u for u in USERS if u.key == key)
    return LegacyUser(legacy_address=spec.legacy_address, trust_address=spec.trust_address,
                      display_name=spec.display_name, rpps=spec.rpps, legacy_fingerprint="",
                      charset=spec.charset, hprim_code=spec.hprim_code)


def _read_cda(entry: xdm.XdmEntry) -> cda.CdaContent:
    """As trust_to_legacy reads a package's CDA: from the tree the unpacking parsed, where
    this code keeps it."""
    root = getattr(entry, "root", None)
    return cda.read_cda(entry.xml, root=root) if root is not None else cda.read_cda(entry.xml)


def stages() -> dict[str, tuple[int, Callable[[], object]]]:
    """Stage name → (items per call, one call over every item)."""
    tables = load_tables()
    lab_user = _user("biolab")
    lab = tables.labs.for_sender(lab_user.legacy_address)
    writers = [_user(u.key) for u in USERS if u.key != "biolab"]
    reports = [t.encode(lab_user.charset, "replace") for t in hprim_texts()]
    letters = [letter_text(i).encode(writers[(i // 2) % 4].charset, "replace")
               for i in range(0, 16, 2)]
    letter_hints = [writers[(i // 2) % 4].charset for i in range(0, 16, 2)]
    texts = [normalize(r, hint=lab_user.charset).text for r in reports]
    parsed = [hprim.parse(t) for t in texts]
    docs = [hprim.repair_headers(p.documents, StringRepairs(hint=lab_user.charset).text)
            for p in parsed]
    renditions = [[pdf.render(d) for d in ds] for ds in docs]
    ids = [[legacy_to_trust.document_id(f"<b{n}@x>", k) for k in range(1, len(ds) + 1)]
           for n, ds in enumerate(docs)]

    def build_all() -> list[list[cda.CdaResult]]:
        out = []
        for ds, rs, di in zip(docs, renditions, ids, strict=True):
            one = []
            for d, r, i in zip(ds, rs, di, strict=True):
                if d.results:
                    one.append(cda.build_crbio(d, tables=tables, document_id=i,
                                               effective_time=NOW, lab=lab, pdf_copy=r))
                else:
                    one.append(cda.build_level1(d, r, tables=tables, document_id=i,
                                                effective_time=NOW, lab=lab))
            out.append(one)
        return out

    built = build_all()
    sender = xdm.XdmSender(name=lab_user.display_name, address=lab_user.trust_address)

    def pack_all() -> list[bytes]:
        return [xdm.pack([xdm.XdmDocument(b.xml, facts=b.facts) for b in bs],
                         submission_time=NOW, sender=sender) for bs in built]

    packages = pack_all()
    unpacked = [xdm.unpack(p) for p in packages]
    contents = [[_read_cda(e) for e in u.documents] for u in unpacked]
    hprim_out = [hprim.write(HprimFile(documents=[c.document for c in cs], ended=True),
                             newline="\n") for cs in contents]
    trust_letters = [letter_text(i, 8192).replace("\r\n", "\n") for i in range(0, 16, 2)]
    recipients = [USERS[i % len(USERS)].charset for i in range(0, 16, 2)]

    def documents_whole() -> None:
        for r in reports:
            text = normalize(r, hint=lab_user.charset).text
            legacy_to_trust._documents(text, tables=tables, now=NOW, sender=lab_user,
                                       message_id="<bench@biolab>")

    def t2l_letters() -> None:
        for t, c in zip(trust_letters, recipients, strict=True):
            transliterate(t, c)
            encode_noting(t, c)

    def t2l_reports() -> None:
        for t in hprim_out:
            transliterate(t, "cp850")
            encode_noting(t, "cp850")

    n_reports = len(reports)
    return {
        "l→t report: text normalize (cp850)": (n_reports, lambda: [
            normalize(r, hint=lab_user.charset) for r in reports]),
        "l→t report: HPRIM parse": (n_reports, lambda: [hprim.parse(t) for t in texts]),
        "l→t report: header names repair": (n_reports, lambda: [
            hprim.repair_headers(p.documents, StringRepairs(hint=lab_user.charset).text)
            for p in parsed]),
        "l→t report: PDF render": (n_reports, lambda: [[pdf.render(d) for d in ds]
                                                      for ds in docs]),
        "l→t report: CDA build": (n_reports, build_all),
        "l→t report: XDM pack": (n_reports, pack_all),
        "l→t report: normalize + _documents (all)": (n_reports, documents_whole),
        "l→t letter: text normalize (20 KB)": (len(letters), lambda: [
            normalize(b, hint=h) for b, h in zip(letters, letter_hints, strict=True)]),
        "t→l report: XDM unpack": (n_reports, lambda: [xdm.unpack(p) for p in packages]),
        "t→l report: CDA read": (n_reports, lambda: [[_read_cda(e) for e in u.documents]
                                                    for u in unpacked]),
        "t→l report: XDM unpack + CDA read": (n_reports, lambda: [
            [_read_cda(e) for e in xdm.unpack(p).documents] for p in packages]),
        "t→l report: HPRIM write": (n_reports, lambda: [
            hprim.write(HprimFile(documents=[c.document for c in cs], ended=True),
                        newline="\n") for cs in contents]),
        "t→l report: charset (transliterate + encode)": (n_reports, t2l_reports),
        "t→l letter: charset (transliterate + encode, 8 KB)": (len(trust_letters), t2l_letters),
    }


def measure(rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, (items, call) in stages().items():
        call()  # warm
        best = float("inf")
        for _ in range(rounds):
            t0 = time.process_time()
            call()
            best = min(best, time.process_time() - t0)
        out[name] = round(best * 1000 / items, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", metavar="STAGE", help="cProfile one stage (a name's prefix)")
    args = ap.parse_args()
    if args.profile:
        _, call = next(v for k, v in stages().items() if k.startswith(args.profile))
        call()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.rounds):
            call()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    figures = measure(args.rounds)
    if args.json:
        print(json.dumps(figures, indent=1, ensure_ascii=False))
        return 0
    width = max(map(len, figures))
    print(f"{'stage':<{width}}  CPU ms per message")
    for name, ms in figures.items():
        print(f"{name:<{width}}  {ms:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
