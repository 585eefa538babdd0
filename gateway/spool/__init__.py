"""The durable queue: every accepted message and its per-recipient state.

States (per recipient, Postfix-style): ``received`` → ``translated`` → ``delivered``, or
``deferred`` (retried with backoff, then ``bounced`` after the lifetime), ``bounced``,
``quarantined`` (an operator looks, then releases or drops) and ``held`` (set aside by an
operator).  See :mod:`gateway.spool.sqlite` for the storage and its guarantees.

The spool's database keeps the trace journal too: :func:`open_journal` gives the
:class:`gateway.journal.Journal` whose store is that database's (SQLite or PostgreSQL).
"""

from __future__ import annotations

from gateway.atrest import Sealer
from gateway.journal import Journal
from gateway.spool.model import (
    DeliverWork,
    Direction,
    QueueEntry,
    RecipientState,
    RetryPolicy,
    State,
    TranslateWork,
)
from gateway.spool.sqlite import SqliteSpool
from gateway.spool.sqlitedb import SqliteJournalStore, journal_path, spool_path

__all__ = [
    "DeliverWork",
    "Direction",
    "QueueEntry",
    "RecipientState",
    "RetryPolicy",
    "SqliteSpool",
    "State",
    "TranslateWork",
    "open_journal",
    "open_spool",
]


def _postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_spool(url: str, *, policy: RetryPolicy | None = None,
               create: bool = True, sealer: Sealer | None = None, migrate: bool = True
               ) -> SqliteSpool:
    """``sqlite:///path`` (or a bare path) or ``postgresql://user:pass@host/db``; with a
    ``sealer``, messages are sealed at rest (:mod:`gateway.atrest`).  ``create=False`` (the
    command line): a spool that does not exist is a :class:`~gateway.errors.ConfigError`,
    never created empty.  ``migrate=False``: the schema is not created or brought up to date
    (a translation worker's connection: the daemon did it)."""
    if _postgres(url):
        from gateway.spool.pg import PgSpool  # psycopg is imported only for PostgreSQL

        return PgSpool(url, policy=policy, create=create, sealer=sealer, migrate=migrate)
    return SqliteSpool(spool_path(url), policy=policy, create=create, sealer=sealer,
                       migrate=migrate)


def open_journal(url: str, *, create: bool = True, migrate: bool = True) -> Journal:
    """The journal in ``sqlite:///path`` (or a bare path) or ``postgresql://…``;
    ``create=False`` as for :func:`open_spool`; ``migrate=False``: its table is not
    created (a worker's connection)."""
    if _postgres(url):
        from gateway.spool.pg import PgJournalStore

        return Journal(PgJournalStore(url, migrate=migrate))
    return Journal(SqliteJournalStore(journal_path(url), create=create, migrate=migrate))
