"""Messages as bytes and as MIME trees: read within bounds, written back, handed between stages."""
