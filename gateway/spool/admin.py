"""The operator's side of the spool: what `passerelle queue …` and the gauges read, and the
actions an operator takes on a message (retry, hold, release, delete).

A mixin of :class:`gateway.spool.sqlite.SqliteSpool` (and so of the PostgreSQL spool), whose
connections and transactions it uses; the SQL is the spool's shared dialect.  Nothing here
shows more of a message than ids, sizes, digests, domains and states.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

from gateway.errors import BadInputError
from gateway.journal import Conn
from gateway.spool.model import QueueEntry, RecipientState, State


class QueueAdmin:
    def _tx(self, *, durable: bool = True) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's write transaction

    def _read(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's connection for reads

    def sent_to_legacy(self, message_id: str, trust_sender: str) -> bool:
        """Did this gateway carry a message with that Message-ID from that trust-space sender
        into the legacy network?  (Only then is a bounce from the hub passed back.)"""
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM messages WHERE message_id=? AND direction='to_legacy' AND "
                "lower(mail_from)=lower(?) LIMIT 1", (message_id, trust_sender)).fetchone()
        return row is not None

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
        where = "WHERE queue_id IN (SELECT queue_id FROM recipients WHERE state=?)" if state \
            else ""
        with self._read() as db:
            rows = db.execute(
                "SELECT queue_id, direction, message_id, mail_from, size, digest, received_at "
                f"FROM messages {where} ORDER BY received_at LIMIT ?",
                (state, limit) if state else (limit,)).fetchall()
            return [self._entry(db, *row) for row in rows]

    def entry(self, queue_id: str) -> QueueEntry:
        """One message's row and recipients, without its bytes."""
        with self._read() as db:
            row = db.execute("SELECT queue_id, direction, message_id, mail_from, size, digest, "
                             "received_at FROM messages WHERE queue_id=?", (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            return self._entry(db, *row)

    def find_messages(self, *, message_id: str = "", sender: str = "", recipient: str = "",
               domain: str = "", state: str = "", since: float | None = None,
               until: float | None = None, limit: int = 50, offset: int = 0
               ) -> tuple[Sequence[QueueEntry], int]:
        """Messages matching every given criterion (newest first) and how many match in all:
        ``message_id`` exact (with or without <>), ``sender``/``recipient`` an address
        (case-insensitive), ``domain`` the sender's or a recipient's domain, ``state`` one
        recipient's state, ``since``/``until`` the arrival time.  For the operator console."""
        where: list[str] = []
        args: list[object] = []
        if message_id:
            bare = message_id.strip().strip("<>")
            where.append("m.message_id IN (?, ?)")
            args += [bare, f"<{bare}>"]
        if sender:
            where.append("lower(m.mail_from) = ?")
            args.append(sender.strip().lower())
        rcpt: list[str] = []
        if recipient:
            rcpt.append("lower(r.rcpt) = ?")
            args.append(recipient.strip().lower())
        if state:
            rcpt.append("r.state = ?")
            args.append(state)
        if domain:
            d = "%@" + domain.strip().lower().replace("\\", "").replace("%", "").replace("_", "")
            where.append("(lower(m.mail_from) LIKE ? OR m.queue_id IN (SELECT queue_id FROM "
                         "recipients WHERE lower(rcpt) LIKE ?))")
            args += [d, d]
        if rcpt:
            where.append("m.queue_id IN (SELECT r.queue_id FROM recipients r WHERE "
                         + " AND ".join(rcpt) + ")")
        if since is not None:
            where.append("m.received_at >= ?")
            args.append(since)
        if until is not None:
            where.append("m.received_at < ?")
            args.append(until)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self._read() as db:
            total = int(db.execute(f"SELECT COUNT(*) FROM messages m {clause}",
                                   tuple(args)).fetchone()[0])
            rows = db.execute(
                "SELECT m.queue_id, m.direction, m.message_id, m.mail_from, m.size, m.digest, "
                f"m.received_at FROM messages m {clause} ORDER BY m.received_at DESC, "
                "m.queue_id LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
            return [self._entry(db, *row) for row in rows], total

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
                             "m.digest, m.received_at, b.data FROM messages m JOIN bodies b ON "
                             "b.queue_id = m.queue_id WHERE m.queue_id=?",
                             (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            return self._entry(db, *row[:7]), row[7]

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
