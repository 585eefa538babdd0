"""The national directory of MSSanté mailboxes: import, search, resolution, export.

The daily public extraction ("Annuaire Santé", MSSanté part) lists every mailbox (~540,000
lines, 31 `|`-separated columns, UTF-8, one header line).  passerelle imports it into an
indexed SQLite table, finds a clinician's mailbox(es) by RPPS, name or address, resolves
RPPS aliases (``rpps-<11 digits>@<gateway domain>``) and exports the legacy users' own
trust-space addresses in the same format for the operator's declaration.
"""
