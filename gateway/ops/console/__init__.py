"""The operator console: a small server-rendered web application on its own TLS listener.

See docs/console.md.  Pages show ids, domains, sizes, states and digests; a message's content
only after an explicit, journaled "reveal".  Every action (release, drop, reveal) is a POST
with a CSRF token, and is recorded in the journal with the operator's identity.
"""

from gateway.ops.console.app import Console, ConsoleData

__all__ = ["Console", "ConsoleData"]
