"""Text fidelity: read legacy bytes back into exactly what the author wrote."""

from gateway.text.model import EncodingFound, Repair, TextResult
from gateway.text.repair import normalize

__all__ = ["EncodingFound", "Repair", "TextResult", "normalize"]
