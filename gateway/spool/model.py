"""Values of the queue: states, directions, work items, the retry policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    RECEIVED = "received"
    TRANSLATED = "translated"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    QUARANTINED = "quarantined"
    HELD = "held"


FINAL = (State.DELIVERED, State.BOUNCED)


class Direction(StrEnum):
    TO_TRUST = "to_trust"
    TO_LEGACY = "to_legacy"
    NOTICE = "notice"  # bounces and warnings we write ourselves: delivered as they are


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff (Postfix-like: 5 min doubling to ~1 h), delay warning, lifetime."""

    initial: float = 300.0
    factor: float = 2.0
    maximum: float = 3600.0
    delay_warning_after: float = 4 * 3600.0
    lifetime: float = 5 * 86400.0

    def delay(self, attempts: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** max(0, attempts - 1)))

    def waited(self, attempts: int, *, enough: float = float("inf")) -> float:
        """What the retry schedule of a message tried ``attempts`` times has made it wait,
        the wait now scheduled included (counted up to ``enough``).  A clock that jumps
        forward adds a day to the wall-clock age of a message, never to this: the lifetime
        and the delay warning are judged by both (see ``covers``)."""
        total = 0.0
        for n in range(1, attempts + 1):
            total += self.delay(n)
            if total >= enough:
                break
        return total

    def covers(self, attempts: int, age: float, span: float) -> bool:
        """Whether ``span`` (the lifetime, the delay warning) is over for a message whose
        wall-clock age is ``age`` after ``attempts`` attempts: by the clock *and* by its
        schedule, so that a wall clock stepped forward does not end it early."""
        return age >= span and self.waited(attempts, enough=span) >= span


@dataclass(frozen=True)
class RecipientState:
    rcpt: str
    state: State
    attempts: int
    next_attempt: float
    reason: str


@dataclass(frozen=True)
class QueueEntry:
    """What `queue list` shows: ids, sizes, ages, states — nothing about patients."""

    queue_id: str
    direction: str
    message_id: str
    mail_from_domain: str
    size: int
    digest: str
    received_at: float
    recipients: tuple[RecipientState, ...] = field(default=())


@dataclass(frozen=True)
class TranslateWork:
    queue_id: str
    direction: Direction
    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    received_at: float
    attempts: int
    path: str = ""  # a large message is in this file, ``data`` empty (see ``lease_translate``)
    # how the legacy hub authenticated the session it came over ("certificate", "smtp-auth"),
    # "" when it did not: stored by the listener with the message, never read from it
    hub_auth: str = ""


@dataclass(frozen=True)
class DeliverWork:
    output_id: int
    queue_id: str
    direction: Direction
    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    received_at: float
    attempts: int
    first_deferred: float | None
    warned: bool
    message_id: str
    in_doubt: bool = False  # an earlier attempt was interrupted: the peer may have it
    routes: dict[str, str] = field(default_factory=dict)  # directory alias -> its mailbox
    path: str = ""  # large translated bytes are in this file, ``data`` empty
