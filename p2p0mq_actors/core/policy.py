"""The failure policy: what to do with a message whose send failed.

Rules, checked in this order (the first that applies decides):

1. A message at or past its deadline (``now >= message.deadline``) is given
   up with reason ``"ttl"``, whatever the error was.
2. A ``SendError`` with ``retryable`` False is given up with the error's own
   ``reason`` (``"unencodable"``, ``"stopped"``, ...).
3. Any exception that is not a ``SendError`` is given up with reason
   ``"error"``: the policy only knows how to retry send failures.
4. A message already retried ``max_attempts`` times or more
   (``message.attempts >= max_attempts``) is given up with reason
   ``"attempts"``. ``max_attempts=None`` means no limit but the deadline.
5. Otherwise the message is retried after an exponential backoff of
   ``min(max_delay, base_delay * factor ** message.attempts)`` seconds;
   huge attempt counts saturate at ``max_delay`` instead of overflowing.
6. If that retry would fall due at or past the deadline
   (``now + delay >= deadline``) it could not happen in time, so the message
   is given up with reason ``"ttl"`` now.
7. A delay of zero is ``Decision.retry_now()``.

So a ``RETRY`` decision always falls due strictly before the deadline, and
delays never decrease as attempts grow (``factor >= 1``).

Rule 6 holds for every decision, not only this policy's: ``within_deadline``
applies it to whatever a Concern's ``on_send_failed`` returns, so a custom
retry set past the deadline drops the message now instead of holding it
until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeGuard

from .checks import finite
from .errors import ConfigurationError, SendError
from .message import Message


class Action(Enum):
    """What the sender does with a failed message."""

    RETRY = "retry"
    GIVE_UP = "give-up"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a failure: retry (now or after ``delay`` seconds) or give up.

    Build one with the class methods rather than the constructor::

        Decision.retry_now()
        Decision.retry_after(0.25)
        Decision.give_up("ttl")

    Attributes:
        action: ``Action.RETRY`` or ``Action.GIVE_UP``.
        delay: Seconds to wait before the retry; 0 for a give-up.
        reason: Why the message was given up (it becomes the drop reason);
            empty for a retry.
    """

    action: Action
    delay: float = 0.0
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.action, Action):
            raise ConfigurationError(f"invalid Decision.action={self.action!r}: must be an Action")
        _check_seconds("Decision.delay", self.delay)
        reason = self.reason
        if not isinstance(reason, str) or (self.action is Action.GIVE_UP and not reason):
            # it becomes the drop reason: a key of the node's counts, and logged
            raise ConfigurationError(
                f"invalid Decision.reason={reason!r}: must be a str (non-empty to give up)"
            )

    @classmethod
    def retry_now(cls) -> Decision:
        """Retry at once (the message goes back to the head of its queue)."""
        return cls(Action.RETRY)

    @classmethod
    def retry_after(cls, delay: float) -> Decision:
        """Retry after ``delay`` seconds.

        Raises:
            ConfigurationError: ``delay`` is negative, not finite or not a number.
        """
        _check_seconds("Decision.delay", delay)
        return cls(Action.RETRY, float(delay))

    @classmethod
    def give_up(cls, reason: str) -> Decision:
        """Give the message up; it is dropped with ``reason``.

        Raises:
            ConfigurationError: ``reason`` is not a non-empty str.
        """
        return cls(Action.GIVE_UP, 0.0, reason)


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """Retry with exponential backoff until the deadline (or ``max_attempts``).

    The default policy of a Concern. Call ``decide`` with the failed message,
    the error and the current monotonic time; the rules are in this module's
    docstring.

    Example::

        policy = FailurePolicy(base_delay=0.1, max_delay=2.0, max_attempts=5)
        decision = policy.decide(message, error, now=clock.now())
        if decision.action is Action.RETRY:
            clock.call_later(decision.delay, lambda: resend(message.retried()))

    Attributes:
        base_delay: Seconds to wait before the first retry (``attempts == 0``).
        factor: How much each retry multiplies the delay by; at least 1.
        max_delay: The longest delay; at least ``base_delay``.
        max_attempts: Give up once a message has been retried this many
            times; ``None`` for no limit but the deadline, 0 for no retries.

    Raises:
        ConfigurationError: A field is out of range; the message names it.
    """

    base_delay: float = 0.05
    factor: float = 2.0
    max_delay: float = 5.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        _check_seconds("FailurePolicy.base_delay", self.base_delay)
        _check_seconds("FailurePolicy.max_delay", self.max_delay)
        if not _is_number(self.factor) or not finite(self.factor) or self.factor < 1:
            raise _invalid("factor", self.factor, "must be a finite number >= 1")
        if self.max_delay < self.base_delay:
            raise _invalid(
                "max_delay", self.max_delay, f"must be >= base_delay={self.base_delay!r}"
            )
        limit = self.max_attempts
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise _invalid("max_attempts", limit, "must be an int >= 0, or None for no limit")

    def decide(self, message: Message, error: BaseException, now: float) -> Decision:
        """Decide what happens to ``message`` whose send failed with ``error`` at ``now``.

        Args:
            message: The message that failed; its ``attempts`` counts earlier retries.
            error: What the send raised (usually a ``SendError``).
            now: The current monotonic time, in the message deadline's seconds.

        Raises:
            ConfigurationError: ``now`` is not a finite number.
        """
        if not finite(now):
            raise ConfigurationError(f"invalid now={now!r}: must be a finite number of seconds")
        if message.expired(now):
            return Decision.give_up("ttl")
        if isinstance(error, SendError):
            if not error.retryable:
                return Decision.give_up(error.reason)
        else:
            return Decision.give_up("error")
        if self.max_attempts is not None and message.attempts >= self.max_attempts:
            return Decision.give_up("attempts")
        delay = self.backoff(message.attempts)
        # retry_after(0.0) == retry_now() (rule 7)
        return within_deadline(Decision.retry_after(delay), message, now)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before retrying a message already retried ``attempts`` times.

        ``min(max_delay, base_delay * factor ** attempts)``, without the deadline
        check that ``decide`` adds.
        """
        if self.base_delay == 0 or self.factor == 1:
            return float(self.base_delay)
        try:
            raw = self.base_delay * float(self.factor) ** attempts
        except OverflowError:  # factor ** huge attempts: the cap applies anyway
            return float(self.max_delay)
        return float(min(self.max_delay, raw))


def within_deadline(decision: Decision, message: Message, now: float) -> Decision:
    """``decision``, or a give-up with reason ``"ttl"`` if it is a retry that
    would fall due at or past ``message``'s deadline (``now + delay >=
    deadline``): such a retry could never be sent in time, and carrying it out
    would only keep the message, neither sent nor dropped, until then.

    Example::

        decision = within_deadline(concern.on_send_failed(message, error), message, now)
    """
    if decision.action is Action.RETRY and now + decision.delay >= message.deadline:
        return Decision.give_up("ttl")
    return decision


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _invalid(field: str, value: object, why: str) -> ConfigurationError:
    return ConfigurationError(f"invalid FailurePolicy.{field}={value!r}: {why}")


def _check_seconds(name: str, value: object) -> None:
    # finite(): an int too large for a float passes ``< math.inf``, then
    # overflows where the delay is added to a time (a Concern used to die).
    if not _is_number(value) or not finite(value) or value < 0:
        raise ConfigurationError(
            f"invalid {name}={value!r}: must be a finite number of seconds >= 0"
        )
