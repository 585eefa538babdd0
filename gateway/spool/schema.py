"""The tables of the spool and the journal, on SQLite and on PostgreSQL, and the migrations.

The two dialects hold the same tables (PostgreSQL's types are wider; its journal table is
made with the spool's, and SQLite's by the journal's store when it opens the file).  The
statements that read and change them are written once, in SQLite's dialect, in
:mod:`gateway.spool.sqlite` and :mod:`gateway.journal`.
"""

SCHEMA_VERSION = 5
# Version 3 keeps a message's bytes in ``bodies``, apart from its row in ``messages``: SQLite
# writes a row again whole on every UPDATE, so each lease of a 25 MB message wrote 50 MB
# into the WAL and read the message into memory.
MOVE_BODIES = ("INSERT INTO bodies (queue_id, data) SELECT queue_id, data FROM messages",
                "ALTER TABLE messages DROP COLUMN data")
# Version 4 stores with each message how the legacy hub authenticated the session it came
# over (``hub_auth``: "certificate", "smtp-auth" or ""): a fact of the SMTP session, which the
# translation needs (a first-generation user's unsigned parts are accepted only then) and
# which the message's content cannot forge.
ADD_HUB_AUTH = "ALTER TABLE messages ADD COLUMN hub_auth TEXT NOT NULL DEFAULT ''"
# Version 5 seals a message's bytes at rest (gateway.atrest): beside each record, the id
# of the key that sealed it ('' for a record stored in clear before, which the spool seals
# when it is given a keyring: ``reseal`` at start and in the daemon).
ADD_KEY_IDS = ("ALTER TABLE bodies ADD COLUMN key_id TEXT NOT NULL DEFAULT ''",
               "ALTER TABLE outputs ADD COLUMN key_id TEXT NOT NULL DEFAULT ''")
SQLITE = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    peer TEXT NOT NULL DEFAULT '',
    hub_auth TEXT NOT NULL DEFAULT '',
    translate_attempts INTEGER NOT NULL DEFAULT 0,
    next_translate REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bodies (
    queue_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL DEFAULT '',
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    output_id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    key_id TEXT NOT NULL DEFAULT '',
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    state TEXT NOT NULL,
    output_id INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    first_deferred REAL,
    warned INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    deliver_to TEXT
);
CREATE INDEX IF NOT EXISTS recipients_work ON recipients(state, next_attempt);
CREATE INDEX IF NOT EXISTS recipients_queue ON recipients(queue_id);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id);
CREATE TABLE IF NOT EXISTS accepted (
    message_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (message_id, digest, rcpt)
);
"""


SQLITE_JOURNAL = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    at TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_message ON journal(message_id);
"""


POSTGRESQL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,
    digest TEXT NOT NULL,
    peer TEXT NOT NULL DEFAULT '',
    hub_auth TEXT NOT NULL DEFAULT '',
    translate_attempts INTEGER NOT NULL DEFAULT 0,
    next_translate DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bodies (
    queue_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL DEFAULT '',
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    output_id BIGSERIAL PRIMARY KEY,
    queue_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    key_id TEXT NOT NULL DEFAULT '',
    data BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS outputs_queue ON outputs(queue_id);
CREATE TABLE IF NOT EXISTS recipients (
    id BIGSERIAL PRIMARY KEY,
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    state TEXT NOT NULL,
    output_id BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0,
    first_deferred DOUBLE PRECISION,
    warned INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    deliver_to TEXT
);
CREATE INDEX IF NOT EXISTS recipients_work ON recipients(state, next_attempt);
CREATE INDEX IF NOT EXISTS recipients_queue ON recipients(queue_id);
CREATE INDEX IF NOT EXISTS recipients_output ON recipients(output_id);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id);
CREATE TABLE IF NOT EXISTS accepted (
    message_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (message_id, digest, rcpt)
);
CREATE TABLE IF NOT EXISTS journal (
    seq BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    at TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_message ON journal(message_id);
"""
