"""The text repair as it was before the fast paths (commit a5e8523), frozen: the oracle.

``gateway.text`` must give exactly what this gives — the text, the encodings with their
confidences, every repair — on every input; tests/text/test_fast_paths.py compares them.
Never edit these files to make a test pass.
"""

from tests.text.reference.repair import normalize

__all__ = ["normalize"]
