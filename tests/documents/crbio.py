"""The agency's validator for CR-BIO documents, as the tests run it: the CDA schema
(`CDA_extended.xsd`, lxml) and the CR-BIO 2024.01 schematron (compiled through the ISO
skeleton with Saxon-HE), both from fixtures/ans/ (see its PROVENANCE.md).

The same approach as the agency's own runner (fixtures/ans/PROVENANCE.md): three XSLT passes
(include, abstract patterns, SVRL for XSLT 2), then every `svrl:failed-assert` is a failure.
Compiling takes a few seconds: `Validator` is built once per test session
(tests/documents/conftest.py).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

ANS = Path(__file__).resolve().parents[2] / "fixtures" / "ans"
SCH = ANS / "schematrons" / "CI-SIS_BIO-CR-BIO_2024.01.sch"
XSD = ANS / "infrastructure" / "cda" / "CDA_extended.xsd"
_PASSES = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
_FAILED = re.compile(r'<svrl:failed-assert[^>]*location="([^"]*)"[^>]*>\s*'
                     r"<svrl:text>(.*?)</svrl:text>", re.S)


@dataclass(frozen=True)
class Verdict:
    schema_errors: list[str]
    failed_asserts: list[str]

    @property
    def ok(self) -> bool:
        return not self.schema_errors and not self.failed_asserts

    def __str__(self) -> str:
        lines = [f"schema: {e}" for e in self.schema_errors]
        lines += [f"schematron: {e}" for e in self.failed_asserts]
        return "\n".join(lines) or "conformant"


class Validator:
    """Compiles the schematron once; `check(xml)` runs schema and schematron over a CDA."""

    def __init__(self) -> None:
        from saxonche import PySaxonProcessor

        self.schema = etree.XMLSchema(etree.parse(str(XSD)))
        self._proc: Any = PySaxonProcessor(license=False)
        self._dir = Path(tempfile.mkdtemp(prefix="crbio-"))
        # the compiled rules read their value sets at ../jeuxDeValeurs/ from where they sit
        (self._dir / "schematrons").mkdir()
        shutil.copytree(ANS / "jeuxDeValeurs", self._dir / "jeuxDeValeurs")
        xslt = self._proc.new_xslt30_processor()
        src = SCH
        for i, name in enumerate(_PASSES):
            out = self._dir / "schematrons" / f"_c{i}.xsl"
            step = xslt.compile_stylesheet(stylesheet_file=str(ANS / "schematrons" / "moteur"
                                                               / name))
            step.transform_to_file(source_file=str(src), output_file=str(out))
            src = out
        self._rules = xslt.compile_stylesheet(stylesheet_file=str(src))
        self._n = 0

    def check(self, xml: bytes) -> Verdict:
        tree = etree.fromstring(xml).getroottree()
        ok = self.schema.validate(tree)
        schema_errors = [] if ok else [f"{e.message} (line {e.line})"
                                       for e in self.schema.error_log]
        self._n += 1
        doc = self._dir / f"doc{self._n}.xml"
        svrl = self._dir / "out.svrl"
        doc.write_bytes(xml)
        self._rules.transform_to_file(source_file=str(doc), output_file=str(svrl))
        text = svrl.read_text("utf-8")
        doc.unlink()
        fails = [" ".join(t.split()) + " @ " + loc for loc, t in _FAILED.findall(text)]
        return Verdict(schema_errors, fails)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
