"""documents: see the module docstrings."""
