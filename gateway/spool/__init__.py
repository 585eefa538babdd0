"""The durable queue: every accepted message and its per-recipient state.

States (per recipient, Postfix-style): ``received`` → ``translated`` → ``delivered``, or
``deferred`` (retried with backoff, then ``bounced`` after the lifetime), ``bounced``,
``quarantined`` (an operator looks, then releases or drops) and ``held`` (set aside by an
operator).  See :mod:`gateway.spool.sqlite` for the storage and its guarantees.
"""

from gateway.spool.model import (
    DeliverWork,
    Direction,
    QueueEntry,
    RecipientState,
    RetryPolicy,
    State,
    TranslateWork,
)
from gateway.spool.sqlite import SqliteSpool, open_spool

__all__ = [
    "DeliverWork",
    "Direction",
    "QueueEntry",
    "RecipientState",
    "RetryPolicy",
    "SqliteSpool",
    "State",
    "TranslateWork",
    "open_spool",
]
