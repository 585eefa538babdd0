"""CR-BIO, level-1 CDA and XDM packing as they were before the speed-ups (commit b6d87a1),
frozen: the oracle.

``gateway.documents.cda.build_crbio`` / ``build_level1`` and ``gateway.documents.xdm.pack``
must give exactly the bytes these give for the same inputs; tests/documents/test_frozen_bytes.py
compares them.  Copied from gateway/documents/{cda,narrative,ebrim,xdm}.py with the readers
left out and the imports pointed here.  When output is *meant* to change, change the reference
the same way in the same commit and say so; never edit it to hide a difference a speed-up made.
"""
