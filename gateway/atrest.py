"""Messages sealed at rest: AES-256-GCM over every stored body and translated output.

The spool seals a message's bytes as it writes them and opens them as it reads them, so every
reader through the spool's API (translation, delivery, notices, the queue commands, the
console) sees what it saw before, and the database (its file, its WAL, its backups, a dump of
its tables) holds only ciphertext.

**Format.** A stored value is a run of *sealed pieces*, one per :data:`PIECE` bytes of the
message (a last shorter one; one empty piece for an empty message)::

    "PSL1" | key id (8 ASCII) | nonce (12 random bytes) | AES-256-GCM(piece) with its 16-byte tag

The associated data of piece ``i`` of ``n`` is ``<table>/<record id>/<i>/<n>``: a piece moved
to another record, another place of its record, or a record cut short, fails authentication.
Pieces keep a 25 MB message flowing through in 256 KiB steps, as unsealed bytes did.  The key
id of a record is stored beside it too (column ``key_id``; ``""``: stored before sealing, in
clear), so that a start can tell which keys the spool needs and a rotation which records are
still under an older key.

**Keys.** A *keyring* file (JSON, mode 0600): ``{"current": id, "keys": {id: base64 key}}``
— ``[keys] file`` in the configuration, or the systemd credential ``passerelle-keys``
(``LoadCredential=passerelle-keys:…``, found in ``$CREDENTIALS_DIRECTORY``), never the
configuration file itself.  New records are sealed with the current key; older keys stay to
open what they sealed until a rotation has re-sealed it (``passerelle keys rotate``).
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigError

PIECE = 1 << 18  # plaintext bytes per sealed piece (gateway.spool.payload's piece too)
MAGIC = b"PSL1"
KEY_ID_LEN = 8
NONCE_LEN = 12
TAG_LEN = 16
HEADER = len(MAGIC) + KEY_ID_LEN + NONCE_LEN
OVERHEAD = HEADER + TAG_LEN  # bytes a piece grows by when sealed
SEALED_PIECE = PIECE + OVERHEAD
CREDENTIAL = "passerelle-keys"  # the systemd credential's name (LoadCredential=)


class Unsealable(Exception):
    """A stored record that does not open: altered, cut, moved, or sealed with another key
    under the same id.  Its message is set aside (quarantined), never passed on.  ``why``:
    one word for the log (``altered``, ``cut``, ``unsealed``)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class MissingKey(ConfigError):
    """The spool holds records sealed with a key the keyring does not have (exit 78)."""

    kind = "missing_key"


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes] = field(default_factory=dict)

    @staticmethod
    def new_key_id(taken: Iterable[str] = ()) -> str:
        taken = set(taken)
        while True:
            kid = secrets.token_hex(KEY_ID_LEN // 2)
            if kid not in taken:
                return kid

    @classmethod
    def generate(cls) -> Keyring:
        kid = cls.new_key_id()
        return cls(kid, {kid: AESGCM.generate_key(bit_length=256)})

    def rotated(self) -> Keyring:
        """This keyring with a new key, made current (the old ones kept to open old records)."""
        kid = self.new_key_id(self.keys)
        return Keyring(kid, {**self.keys, kid: AESGCM.generate_key(bit_length=256)})

    def dumps(self) -> bytes:
        return (json.dumps({"current": self.current, "keys": {
            k: base64.b64encode(v).decode("ascii") for k, v in self.keys.items()}},
            indent=1) + "\n").encode("ascii")

    def save(self, path: Path) -> None:
        """Write the keyring to ``path`` (mode 0600 whatever the umask), replacing it whole:
        a crash leaves the old file or the new one, never half of either."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, self.dumps())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read a keyring; anything wrong with it is one :class:`ConfigError` line."""
        try:
            doc = json.loads(path.read_bytes())
            keys = {str(k): base64.b64decode(v, validate=True)
                    for k, v in doc["keys"].items()}
            current = str(doc["current"])
        except OSError as exc:
            raise ConfigError(f"keyring {path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"keyring {path}: not a passerelle keyring "
                              "(make one with `passerelle keys new`)") from None
        for kid, key in keys.items():
            if len(kid) != KEY_ID_LEN or not kid.isascii() or not kid.isalnum():
                raise ConfigError(f"keyring {path}: key id {kid!r} is not {KEY_ID_LEN} letters "
                                  "or digits")
            if len(key) != 32:
                raise ConfigError(f"keyring {path}: key {kid} is not a 256-bit key")
        if current not in keys:
            raise ConfigError(f"keyring {path}: its current key {current} is not in it")
        return cls(current, keys)


def keyring_path(configured: Path | None) -> Path | None:
    """Where the keyring is: ``[keys] file``, else the systemd credential when there is one."""
    if configured is not None:
        return configured
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL).is_file():
        return Path(creds) / CREDENTIAL
    return None


def aad(table: str, record: str, index: int, count: int) -> bytes:
    return f"{table}/{record}/{index}/{count}".encode()


def piece_count(size: int) -> int:
    return max(1, math.ceil(size / PIECE))


def sealed_size(size: int) -> int:
    return size + piece_count(size) * OVERHEAD


def pieces_in(sealed_length: int) -> int:
    return max(1, math.ceil(sealed_length / SEALED_PIECE))


def rechunk(pieces: Iterable[bytes | memoryview], size: int = PIECE) -> Iterator[bytes]:
    """The same bytes in pieces of exactly ``size`` (the last shorter; one empty piece for
    nothing at all)."""
    buf = bytearray()
    sent = False
    for piece in pieces:
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
            sent = True
    if buf or not sent:
        yield bytes(buf)


class Sealer:
    """Seals with the keyring's current key, opens with any of its keys."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.current = keyring.current
        self._aead = {kid: AESGCM(key) for kid, key in keyring.keys.items()}

    def seal_piece(self, piece: bytes | memoryview, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return b"".join((MAGIC, self.current.encode("ascii"), nonce,
                         self._aead[self.current].encrypt(nonce, bytes(piece), ad)))

    def open_piece(self, sealed: bytes | memoryview, ad: bytes) -> bytes:
        sealed = bytes(sealed)
        if len(sealed) < OVERHEAD or not sealed.startswith(MAGIC):
            raise Unsealable("unsealed")
        kid = sealed[len(MAGIC):len(MAGIC) + KEY_ID_LEN].decode("ascii", "replace")
        aead = self._aead.get(kid)
        if aead is None:
            raise MissingKey(f"the spool holds records sealed with key {kid}, which the keyring "
                             "does not have")
        try:
            return aead.decrypt(sealed[len(MAGIC) + KEY_ID_LEN:HEADER], sealed[HEADER:], ad)
        except InvalidTag:
            raise Unsealable("altered") from None

    def seal(self, pieces: Iterable[bytes | memoryview], size: int, table: str,
             record: str) -> Iterator[bytes]:
        """The sealed pieces of ``size`` bytes given in ``pieces`` (any cut)."""
        count = piece_count(size)
        i = -1
        for i, piece in enumerate(rechunk(pieces)):
            if i >= count:
                raise Unsealable("grew")
            yield self.seal_piece(piece, aad(table, record, i, count))
        if i + 1 != count:
            raise Unsealable("shrank")

    def seal_bytes(self, data: bytes | bytearray | memoryview, table: str, record: str) -> bytes:
        view = memoryview(data)
        return b"".join(self.seal([view[at:at + PIECE] for at in range(0, len(view), PIECE)],
                                  len(view), table, record))

    def open_stream(self, read: Callable[[int], bytes], length: int, table: str,
                    record: str) -> Iterator[bytes]:
        """The plaintext pieces of a sealed value of ``length`` bytes read with ``read``."""
        count = pieces_in(length)
        for i in range(count):
            sealed = read(SEALED_PIECE)
            if not sealed:
                raise Unsealable("cut")
            yield self.open_piece(sealed, aad(table, record, i, count))
        if read(1):
            raise Unsealable("cut")

    def open_bytes(self, data: bytes | memoryview, table: str, record: str) -> bytes:
        view = memoryview(data)
        at = 0

        def read(n: int) -> bytes:
            nonlocal at
            out = bytes(view[at:at + n])
            at += len(out)
            return out

        return b"".join(self.open_stream(read, len(view), table, record))


def open_head(sealer: Sealer, read: Callable[[int], bytes], length: int, table: str,
              record: str, limit: int) -> bytes:
    """The first ``limit`` plaintext bytes, opening only the pieces that hold them."""
    out = bytearray()
    count = pieces_in(length)
    for i in range(count):
        if len(out) >= limit:
            break
        out += sealer.open_piece(read(SEALED_PIECE), aad(table, record, i, count))
    return bytes(out[:limit])


def open_sealer(configured: Path | None) -> Sealer | None:
    """The sealer of the keyring ``[keys] file`` (or the systemd credential), None when
    there is neither (messages stored in clear)."""
    path = keyring_path(configured)
    return Sealer(Keyring.load(path)) if path is not None else None
