"""Hardened XML parsing for documents that come from outside (CDA, ebRIM metadata).

No entity expansion, no DTD loading, no network, a size cap and lxml's default depth/size
limits kept on (huge_tree off); see docs/security.md.
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import DocumentError, UnsafeDocumentError

MAX_BYTES = 20 * 1024 * 1024


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def parse(data: bytes, *, max_bytes: int = MAX_BYTES, what: str = "XML") -> etree._Element:
    """The root element of `data`; UnsafeDocumentError for DTDs/entities or oversize input."""
    if len(data) > max_bytes:
        raise UnsafeDocumentError(f"{what}: {len(data)} bytes, over the {max_bytes}-byte cap")
    # A DOCTYPE is how entity bombs and external entities arrive; documents we accept have none.
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise UnsafeDocumentError(f"{what}: DOCTYPE or ENTITY declarations are refused")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        raise DocumentError(f"{what}: not well-formed XML (line {line})") from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise UnsafeDocumentError(f"{what}: DOCTYPE declarations are refused")
    return root
