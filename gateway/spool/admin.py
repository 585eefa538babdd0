"""The operator's side of the spool: what `passerelle queue …` and the gauges read, and the
actions an operator takes on a message (retry, hold, release, delete).  Finding messages by
criteria is :meth:`gateway.spool.search.SpoolSearch.search` (the CLI's and the console's).

A mixin of :class:`gateway.spool.sqlite.SqliteSpool` (and so of the PostgreSQL spool), whose
connections and transactions it uses; the SQL is the spool's shared dialect.  Nothing here
shows more of a message than ids, sizes, digests, domains and states.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from gateway.atrest import Unsealable
from gateway.errors import BadInputError
from gateway.journal import Conn
from gateway.spool.model import QueueEntry, RecipientState, State
from gateway.spool.search import QueueFilter, SpoolSearch


class QueueAdmin:
    def _tx(self, *, durable: bool = True) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's write transaction

    def _read(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's connection for reads

    def _plain(self, table: str, record: str, data: bytes | memoryview, key_id: str) -> bytes:
        raise NotImplementedError  # a record's bytes opened (gateway.spool.sealed)

    def sent_to_legacy(self, message_id: str, trust_sender: str) -> bool:
        """Did this gateway carry a message with that Message-ID from that trust-space sender
        into the legacy network?  (Only then is a bounce from the hub passed back.)"""
        return self.carried_to_legacy(message_id, trust_sender) is not None

    def carried_to_legacy(self, message_id: str, trust_sender: str) -> str | None:
        """The queue id of the last message with that Message-ID this gateway carried from
        that trust-space sender into the legacy network (None: it carried none)."""
        with self._read() as db:
            row = db.execute(
                "SELECT queue_id FROM messages WHERE message_id=? AND direction='to_legacy' "
                "AND lower(mail_from)=lower(?) ORDER BY received_at DESC LIMIT 1",
                (message_id, trust_sender)).fetchone()
        return None if row is None else str(row[0])

    def handed_to_legacy(self, message_id: str, trust_sender: str, rcpt: str) -> bool:
        """Did this gateway hand a message with that Message-ID from that trust-space sender
        to ``rcpt`` (the trust-space address it was written to) in the legacy network?  Only
        a report on such a delivery is passed back.  Handed: delivered, or being delivered
        (its delivery lease held: the hub may answer before the delivery is recorded)."""
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM messages m JOIN recipients r ON r.queue_id = m.queue_id "
                "WHERE m.message_id=? AND m.direction='to_legacy' AND "
                "lower(m.mail_from)=lower(?) AND lower(r.rcpt)=lower(?) AND "
                "(r.state='delivered' OR (r.state IN ('translated','deferred') AND "
                "r.lease_owner IS NOT NULL)) LIMIT 1",
                (message_id, trust_sender, rcpt)).fetchone()
        return row is not None

    def counts(self) -> dict[str, int]:
        with self._read() as db:
            return {state: n for state, n in db.execute(
                "SELECT state, COUNT(*) FROM recipients GROUP BY state")}

    def oldest_age(self, now: float) -> float:
        with self._read() as db:
            row = db.execute(
                "SELECT MIN(m.received_at) FROM messages m JOIN recipients r ON r.queue_id = "
                "m.queue_id WHERE r.state IN ('received','translated','deferred')").fetchone()
        return 0.0 if row[0] is None else max(0.0, now - row[0])

    def list(self, *, state: str | None = None, limit: int = 100) -> list[QueueEntry]:
        """The first ``limit`` messages (oldest first), every one or those with a recipient
        in ``state``: the spool's one search with that filter."""
        assert isinstance(self, SpoolSearch)
        return self.search(QueueFilter(state=state, everything=True), limit)[0]

    def entry(self, queue_id: str) -> QueueEntry:
        """One message's row and recipients, without its bytes."""
        with self._read() as db:
            row = db.execute("SELECT queue_id, direction, message_id, mail_from, size, digest, "
                             "received_at FROM messages WHERE queue_id=?", (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            return self._entry(db, *row)

    def _entry(self, db: Conn, qid: str, direction: str, message_id: str,
               mail_from: str, size: int, digest: str, received_at: float) -> QueueEntry:
        rcpts = tuple(RecipientState(r, State(s), a, n, reason) for r, s, a, n, reason in
                      db.execute("SELECT rcpt, state, attempts, next_attempt, reason FROM "
                                 "recipients WHERE queue_id=? ORDER BY id", (qid,)))
        return QueueEntry(qid, direction, message_id, mail_from.rpartition("@")[2], size,
                          digest, received_at, rcpts)

    def show(self, queue_id: str) -> tuple[QueueEntry, bytes]:
        with self._read() as db:
            row = db.execute("SELECT m.queue_id, m.direction, m.message_id, m.mail_from, m.size, "
                             "m.digest, m.received_at, b.data, b.key_id FROM messages m LEFT "
                             "JOIN bodies b ON b.queue_id = m.queue_id WHERE m.queue_id=?",
                             (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            if row[7] is None:
                raise BadInputError(f"the content of message {queue_id} was purged (retention)")
            try:
                data = self._plain("bodies", queue_id, row[7], row[8])
            except Unsealable:
                raise BadInputError(f"message {queue_id}'s stored bytes fail authentication "
                                    "(altered): it is set aside when it is worked on") from None
            return self._entry(db, *row[:7]), data

    def _admin(self, queue_id: str, sql: str, args: tuple[object, ...], allowed: str) -> int:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM messages WHERE queue_id=?",
                          (queue_id,)).fetchone() is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            n = db.execute(sql + f" WHERE queue_id=? AND state IN ({allowed})",
                           (*args, queue_id)).rowcount
        if n == 0:
            raise BadInputError(f"message {queue_id} has no recipient in a state this applies to")
        return int(n)

    def retry(self, queue_id: str, *, now: float) -> int:
        """Deferred recipients are tried again now."""
        return self._admin(queue_id, "UPDATE recipients SET next_attempt=?", (now,),
                           "'deferred'")

    def hold(self, queue_id: str, *, now: float) -> int:
        return self._admin(queue_id, "UPDATE recipients SET state='held', updated_at=?", (now,),
                           "'received','translated','deferred'")

    def release(self, queue_id: str, *, now: float) -> int:
        """Held or quarantined recipients go back to work (translated again from scratch)."""
        with self._read() as db:
            gone = db.execute("SELECT 1 FROM messages m WHERE queue_id=? AND NOT EXISTS "
                              "(SELECT 1 FROM bodies b WHERE b.queue_id = m.queue_id)",
                              (queue_id,)).fetchone()
        if gone is not None:
            raise BadInputError(f"the content of message {queue_id} was purged (retention): "
                                "there is nothing to release")
        with self._tx() as db:
            db.execute("UPDATE messages SET next_translate=0, translate_attempts=0, "
                       "lease_owner=NULL WHERE queue_id=?", (queue_id,))
        return self._admin(queue_id, "UPDATE recipients SET state='received', output_id=NULL, "
                           "next_attempt=?, attempts=0, first_deferred=NULL, warned=0, "
                           "reason='released', lease_owner=NULL", (now,),
                           "'held','quarantined'")

    def delete(self, queue_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM messages WHERE queue_id=?", (queue_id,)).rowcount == 0:
                raise BadInputError(f"no message {queue_id} in the queue")
            db.execute("DELETE FROM bodies WHERE queue_id=?", (queue_id,))
            db.execute("DELETE FROM recipients WHERE queue_id=?", (queue_id,))
            db.execute("DELETE FROM outputs WHERE queue_id=?", (queue_id,))
