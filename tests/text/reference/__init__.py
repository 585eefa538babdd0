"""The text repair as it was before the fast paths (commit a5e8523), frozen: the oracle.

``gateway.text`` must give exactly what this gives — the text, the encodings with their
confidences, every repair — on every input; tests/text/test_fast_paths.py compares them.
When results are *meant* to change (a new misreading, a retuned score), change the reference
the same way in the same commit and say so; never edit it to hide a difference a speed-up made.
"""

from tests.text.reference.repair import normalize

__all__ = ["normalize"]
