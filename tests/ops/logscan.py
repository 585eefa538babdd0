"""Scan log lines for patient data taken from the fixtures: names, NIRs, dates, subjects, words.

Used by the redaction tests now and by the end-to-end log scan once the daemon runs the whole
suite: collect ``forbidden_terms_from_fixtures(FIXTURES)``, run, then ``assert_clean(lines,
terms)`` on every captured line.  Lines are checked raw *and* JSON-decoded (``"LEF\\u00c8VRE"``
must not slip through), case- and accent-insensitively, on word boundaries (so a NIR inside a
hex digest does not count).
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.documents import hprim

ROOT = Path(__file__).resolve().parents[2]

# Words a log line may legitimately hold however long they are (event names, kinds, states).
STOPWORDS = frozenset({
    "certificate", "translation", "translated", "quarantine", "quarantined", "delivered",
    "delivering", "received", "deferred", "bounced", "signature", "encrypted", "decrypted",
    "documents", "exception", "operator", "passerelle", "transient", "configuration",
})  # fmt: skip
BODY_WORD_MIN = 9


def fold(text: str) -> str:
    """Case- and accent-insensitive form (``Élodie`` → ``elodie``, ``Œillet`` → ``oeillet``)."""
    text = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for codec in ("utf-8", "cp1252"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _code_words() -> set[str]:
    """Words that occur in the gateway's own source: not distinctive of a fixture's body."""
    words: set[str] = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        words |= set(re.findall(r"[a-z]+", fold(path.read_text(encoding="utf-8"))))
    return words


_TITLED = re.compile(
    r"\b(?:Mme|Mlle|M\.|Dr|Pr|Docteur|Professeur|Madame|Monsieur)\s+"
    r"((?:[A-ZÀ-ÝŒ][\w'’-]+)(?:\s+[A-ZÀ-ÝŒ][\w'’-]+)?)"
)


def _body_words(text: str, common: set[str]) -> set[str]:
    """Long words not found in our code, and every name that follows a title (Mme, Dr, ...)."""
    out = {word for m in _TITLED.finditer(text) for word in m[1].split() if len(word) >= 3}
    for token in re.findall(r"[^\W\d_]+", text):
        folded = fold(token)
        if len(folded) >= BODY_WORD_MIN and folded not in STOPWORDS and folded not in common:
            out.add(token)
    return out


def _nir_forms(nir: str) -> set[str]:
    compact = re.sub(r"\s", "", nir)
    forms = {nir.strip(), compact}
    if len(compact) >= 13:
        forms.add(compact[:13])
    return {f for f in forms if len(f) >= 13}


def _hprim_terms(text: str, common: set[str]) -> set[str]:
    terms: set[str] = set()
    parsed = hprim.parse(text)
    for doc in parsed.documents:
        h = doc.header
        for value in (h.last_name, h.first_name, h.address1, h.address2, h.city, h.birth_date):
            if value.strip() and not value.strip().isdigit():
                terms.add(value.strip())
        terms |= _nir_forms(h.nir)
        if h.birth is not None:
            terms |= {h.birth.strftime("%d/%m/%Y"), h.birth.isoformat(),
                      h.birth.strftime("%Y%m%d")}  # fmt: skip
        terms |= _body_words(doc.free_text, common)
        for line in doc.lab or ():
            terms |= _body_words(getattr(line, "text", ""), common)
    return terms


def _mail_terms(data: bytes, common: set[str]) -> set[str]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    terms: set[str] = set()
    subject = str(msg.get("Subject", "")).strip()
    if subject:
        terms.add(subject)
        terms |= _body_words(subject, common)
    for header in ("From", "To", "Cc", "Reply-To"):
        for address in getattr(msg.get(header), "addresses", ()):
            if address.display_name:
                terms.add(address.display_name)
            if address.username:
                terms.add(address.username + "@")
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            try:
                terms |= _body_words(str(part.get_content()), common)
            except (LookupError, ValueError):
                continue
    return terms


def forbidden_terms_from_fixtures(fixtures_dir: Path) -> set[str]:
    """Patient names, NIRs, birth dates, addresses, subjects and distinctive body words."""
    common = _code_words()
    terms: set[str] = set()
    for path in sorted(fixtures_dir.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix in (".hpr", ".hprim"):
            terms |= _hprim_terms(_read_text(path), common)
        elif path.suffix in (".eml", ".msg"):
            terms |= _mail_terms(path.read_bytes(), common)
        elif path.suffix == ".expected" or (path.suffix == ".txt" and path.parent.name == "texts"):
            terms |= _body_words(_read_text(path), common)
    return {t for t in terms if len(fold(t).strip()) >= 3}


def _haystacks(line: str) -> Iterator[str]:
    yield line
    try:
        decoded = json.loads(line)
    except ValueError:
        return
    stack = [decoded]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            yield item


def _pattern(term: str) -> re.Pattern[str]:
    folded = re.escape(fold(term)).replace(r"\ ", r"\s*")
    start = r"(?<![0-9a-z])" if fold(term)[:1].isalnum() else ""
    end = r"(?![0-9a-z])" if fold(term)[-1:].isalnum() else ""
    return re.compile(start + folded + end)


def find_leaks(lines: Iterable[str], terms: Iterable[str]) -> list[tuple[int, str]]:
    """(line number, term) for every forbidden term found."""
    patterns = [(t, _pattern(t)) for t in sorted(set(terms))]
    leaks: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        texts = [fold(h) for h in _haystacks(line)]
        for term, pattern in patterns:
            if any(pattern.search(t) for t in texts):
                leaks.append((n, term))
    return leaks


def assert_clean(lines: Iterable[str], terms: Iterable[str]) -> None:
    """Fail naming each line and term that leaked."""
    lines = list(lines)
    leaks = find_leaks(lines, terms)
    if leaks:
        shown = "\n".join(f"  line {n}: {term!r}" for n, term in leaks[:50])
        raise AssertionError(f"{len(leaks)} patient-data leak(s) in the logs:\n{shown}")
