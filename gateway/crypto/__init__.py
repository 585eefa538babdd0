"""crypto: see the module docstrings."""
