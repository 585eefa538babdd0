"""Hardened XML parsing for documents that come from outside (CDA, ebRIM metadata).

No entity expansion, no DTD loading, no network, a size cap and lxml's default depth/size
limits kept on (huge_tree off); see docs/security.md.
"""

from __future__ import annotations

import re

from lxml import etree

from gateway.errors import DocumentError, UnsafeDocumentError

MAX_BYTES = 20 * 1024 * 1024
_DOCTYPE = re.compile(rb"<!doctype", re.IGNORECASE)
_ENTITY = re.compile(rb"<!entity", re.IGNORECASE)
_FEW = 32


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def _declares(data: bytes) -> bool:
    """``b"<!doctype" in data[:4096].lower() or b"<!entity" in data.lower()``, without a
    lowered copy of the document: the few ``!`` of a document (a comment's, a CDATA's) are
    looked at (found by memchr), and past ``_FEW`` of them the rest is searched by the
    case-insensitive patterns (IGNORECASE on a bytes pattern folds ASCII letters alone, as
    bytes.lower does)."""
    at = data.find(b"!")
    for _ in range(_FEW):
        if at < 0:
            return False
        if at and data[at - 1] == 0x3C:  # "<!"
            word = data[at + 1 : at + 8].lower()
            if word.startswith(b"entity") or (word == b"doctype" and at + 8 <= 4096):
                return True
        at = data.find(b"!", at + 1)
    if at < 0:
        return False
    return bool(_DOCTYPE.search(data, max(0, at - 1), 4096) or _ENTITY.search(data, at - 1))


def parse(data: bytes, *, max_bytes: int = MAX_BYTES, what: str = "XML") -> etree._Element:
    """The root element of `data`; UnsafeDocumentError for DTDs/entities or oversize input."""
    if len(data) > max_bytes:
        raise UnsafeDocumentError(f"{what}: {len(data)} bytes, over the {max_bytes}-byte cap")
    # A DOCTYPE is how entity bombs and external entities arrive; documents we accept have none.
    if _declares(data):
        raise UnsafeDocumentError(f"{what}: DOCTYPE or ENTITY declarations are refused")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        raise DocumentError(f"{what}: not well-formed XML (line {line})") from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise UnsafeDocumentError(f"{what}: DOCTYPE declarations are refused")
    return root
