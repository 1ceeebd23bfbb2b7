"""The failure policy: an exhaustive table for small cases, Hypothesis for the rest."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p0mq_actors.core.errors import (
    ConfigurationError,
    NodeStoppedError,
    NoPeerError,
    PeerRefusedError,
    PeerUnreachableError,
    SendError,
    TransportError,
    UnencodableError,
    WouldBlock,
)
from p2p0mq_actors.core.message import Message
from p2p0mq_actors.core.policy import Action, Decision, FailurePolicy, within_deadline

NOW = 100.0
DEADLINE = 130.0


def message(attempts: int = 0, deadline: float = DEADLINE) -> Message:
    return Message(
        source=b"alice", destination=b"bob", command=b"cmd", deadline=deadline, attempts=attempts
    )


RETRYABLE = [
    SendError("failed"),
    WouldBlock("not writable"),
    TransportError("zmq says no", errno=11),
    PeerUnreachableError("gone"),
    PeerRefusedError("bad key"),
    NoPeerError("who?"),
]
FINAL = [
    (UnencodableError("cannot encode"), "unencodable"),
    (NodeStoppedError("stopped"), "stopped"),
]
FOREIGN = [RuntimeError("boom"), KeyError("x"), KeyboardInterrupt()]

# Default policy: 0.05 s doubling, capped at 5 s.
DEFAULT_DELAYS = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


# -- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("attempts", "delay"), list(enumerate(DEFAULT_DELAYS)))
def test_a_retryable_error_is_retried_after_the_doubling_delay(
    error: BaseException, attempts: int, delay: float
) -> None:
    decision = FailurePolicy().decide(message(attempts), error, NOW)

    assert decision == Decision(Action.RETRY, delay, "")


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        (0, Decision(Action.RETRY, 0.05)),
        (1, Decision(Action.RETRY, 0.1)),
        (2, Decision(Action.RETRY, 0.2)),
        (3, Decision(Action.GIVE_UP, 0.0, "attempts")),
        (4, Decision(Action.GIVE_UP, 0.0, "attempts")),
        (5, Decision(Action.GIVE_UP, 0.0, "attempts")),
    ],
)
def test_a_retryable_error_is_given_up_once_max_attempts_retries_were_made(
    error: BaseException, attempts: int, expected: Decision
) -> None:
    policy = FailurePolicy(max_attempts=3)

    assert policy.decide(message(attempts), error, NOW) == expected


@pytest.mark.parametrize(("error", "reason"), FINAL, ids=["unencodable", "stopped"])
@pytest.mark.parametrize("attempts", range(6))
@pytest.mark.parametrize("max_attempts", [None, 0, 3])
def test_a_non_retryable_send_error_is_given_up_with_its_own_reason(
    error: SendError, reason: str, attempts: int, max_attempts: int | None
) -> None:
    policy = FailurePolicy(max_attempts=max_attempts)

    assert policy.decide(message(attempts), error, NOW) == Decision(Action.GIVE_UP, 0.0, reason)


@pytest.mark.parametrize("error", FOREIGN, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("attempts", range(6))
def test_an_error_that_is_not_a_send_error_is_given_up_as_error(
    error: BaseException, attempts: int
) -> None:
    assert FailurePolicy().decide(message(attempts), error, NOW) == Decision.give_up("error")


@pytest.mark.parametrize(
    "error",
    [*RETRYABLE, *(e for e, _ in FINAL), *FOREIGN],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("attempts", range(6))
@pytest.mark.parametrize("now", [DEADLINE, DEADLINE + 0.001, DEADLINE + 1e6])
def test_a_message_at_or_past_its_deadline_is_given_up_as_ttl_whatever_the_error(
    error: BaseException, attempts: int, now: float
) -> None:
    policy = FailurePolicy(max_attempts=2)

    assert policy.decide(message(attempts), error, now) == Decision.give_up("ttl")


def test_max_attempts_zero_means_no_retry_at_all() -> None:
    decision = FailurePolicy(max_attempts=0).decide(message(0), SendError("x"), NOW)

    assert decision == Decision.give_up("attempts")


# -- the deadline and the backoff --------------------------------------------------------


def test_a_retry_that_would_fall_due_exactly_at_the_deadline_is_given_up_as_ttl() -> None:
    decision = FailurePolicy().decide(message(2, deadline=NOW + 0.2), SendError("x"), NOW)

    assert decision == Decision.give_up("ttl")


def test_a_retry_that_falls_due_just_before_the_deadline_is_kept() -> None:
    decision = FailurePolicy().decide(message(2, deadline=NOW + 0.25), SendError("x"), NOW)

    assert decision == Decision.retry_after(0.2)


def test_a_zero_delay_policy_retries_now() -> None:
    decision = FailurePolicy(base_delay=0.0).decide(message(7), SendError("x"), NOW)

    assert decision == Decision.retry_now()
    assert decision == Decision(Action.RETRY, 0.0, "")


def test_a_huge_attempt_count_saturates_at_max_delay_without_overflow() -> None:
    policy = FailurePolicy(base_delay=0.5, factor=3, max_delay=7.0)

    assert policy.backoff(10**400) == 7.0
    assert policy.decide(message(10**18), SendError("x"), NOW) == Decision.retry_after(7.0)


@pytest.mark.parametrize("attempts", [0, 1, 10**400])
def test_a_factor_of_one_keeps_the_base_delay(attempts: int) -> None:
    assert FailurePolicy(base_delay=0.3, factor=1.0).backoff(attempts) == 0.3


def test_an_integer_factor_gives_float_delays() -> None:
    assert FailurePolicy(base_delay=1, factor=2, max_delay=100).backoff(3) == 8.0


def test_a_non_finite_now_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        FailurePolicy().decide(message(), SendError("x"), math.nan)

    assert str(info.value) == "invalid now=nan: must be a finite number of seconds"


# -- any decision and the deadline -------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "now", "expected"),
    [
        (Decision.retry_after(60.0), NOW, Decision.give_up("ttl")),  # far past it
        (Decision.retry_after(30.0), NOW, Decision.give_up("ttl")),  # exactly at it
        (Decision.retry_after(29.5), NOW, Decision.retry_after(29.5)),
        (Decision.retry_now(), NOW, Decision.retry_now()),
        (Decision.retry_now(), DEADLINE, Decision.give_up("ttl")),
        (Decision.give_up("mine"), NOW, Decision.give_up("mine")),
        (Decision.give_up("mine"), DEADLINE + 1, Decision.give_up("mine")),
    ],
)
def test_any_retry_that_would_fall_due_at_or_past_the_deadline_is_given_up_as_ttl(
    decision: Decision, now: float, expected: Decision
) -> None:
    assert within_deadline(decision, message(deadline=DEADLINE), now) == expected


# -- decisions ---------------------------------------------------------------------------


def test_the_decision_constructors_build_whole_values() -> None:
    assert Decision.retry_now() == Decision(Action.RETRY, 0.0, "")
    assert Decision.retry_after(1) == Decision(Action.RETRY, 1.0, "")
    assert Decision.retry_after(0) == Decision.retry_now()
    assert Decision.give_up("ttl") == Decision(Action.GIVE_UP, 0.0, "ttl")
    assert repr(Decision.retry_after(0.5)) == (
        "Decision(action=<Action.RETRY: 'retry'>, delay=0.5, reason='')"
    )


@pytest.mark.parametrize(
    ("delay", "shown"),
    [(-0.1, "-0.1"), (math.inf, "inf"), (math.nan, "nan"), ("1", "'1'"), (True, "True")],
)
def test_retry_after_refuses_a_delay_that_is_not_a_finite_number_of_seconds(
    delay: object, shown: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Decision.retry_after(delay)  # type: ignore[arg-type]

    assert str(info.value) == (
        f"invalid Decision.delay={shown}: must be a finite number of seconds >= 0"
    )


@pytest.mark.parametrize("reason", ["", None, b"ttl", {"x": 1}])
@pytest.mark.parametrize("build", ["give_up", "constructor"])
def test_give_up_needs_a_reason(reason: object, build: str) -> None:
    # The reason becomes a key of the node's drop counts: one that is not
    # a str (a dict cannot even be a key) used to stop the Concern there.
    with pytest.raises(ConfigurationError) as info:
        if build == "give_up":
            Decision.give_up(reason)  # type: ignore[arg-type]
        else:
            Decision(Action.GIVE_UP, 0.0, reason)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"invalid Decision.reason={reason!r}: must be a str (non-empty to give up)"
    )
    with pytest.raises(ConfigurationError, match=r"Decision\.reason"):
        Decision(Action.RETRY, 0.0, None)  # type: ignore[arg-type]


def test_a_decision_needs_an_action() -> None:
    with pytest.raises(ConfigurationError) as info:
        Decision("retry")  # type: ignore[arg-type]

    assert str(info.value) == "invalid Decision.action='retry': must be an Action"


# -- policy validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {"base_delay": -1},
            "invalid FailurePolicy.base_delay=-1: must be a finite number of seconds >= 0",
        ),
        (
            {"base_delay": math.nan},
            "invalid FailurePolicy.base_delay=nan: must be a finite number of seconds >= 0",
        ),
        (
            {"max_delay": math.inf},
            "invalid FailurePolicy.max_delay=inf: must be a finite number of seconds >= 0",
        ),
        (
            {"max_delay": "5"},
            "invalid FailurePolicy.max_delay='5': must be a finite number of seconds >= 0",
        ),
        ({"factor": 0.5}, "invalid FailurePolicy.factor=0.5: must be a finite number >= 1"),
        ({"factor": math.inf}, "invalid FailurePolicy.factor=inf: must be a finite number >= 1"),
        ({"factor": True}, "invalid FailurePolicy.factor=True: must be a finite number >= 1"),
        (
            {"base_delay": 2.0, "max_delay": 1.0},
            "invalid FailurePolicy.max_delay=1.0: must be >= base_delay=2.0",
        ),
        (
            {"max_attempts": -1},
            "invalid FailurePolicy.max_attempts=-1: must be an int >= 0, or None for no limit",
        ),
        (
            {"max_attempts": 2.0},
            "invalid FailurePolicy.max_attempts=2.0: must be an int >= 0, or None for no limit",
        ),
        (
            {"max_attempts": False},
            "invalid FailurePolicy.max_attempts=False: must be an int >= 0, or None for no limit",
        ),
    ],
)
def test_a_policy_field_out_of_range_is_refused_by_name_and_value(
    fields: dict[str, object], text: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        FailurePolicy(**fields)  # type: ignore[arg-type]

    assert str(info.value) == text


def test_the_default_policy_shows_its_settings() -> None:
    assert repr(FailurePolicy()) == (
        "FailurePolicy(base_delay=0.05, factor=2.0, max_delay=5.0, max_attempts=None)"
    )


# -- properties --------------------------------------------------------------------------

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=1.0, max_value=1e3, allow_nan=False, allow_infinity=False)
attempt_counts = st.integers(min_value=0, max_value=10**30)


@st.composite
def policies(draw: st.DrawFn) -> FailurePolicy:
    base = draw(seconds)
    cap = draw(st.floats(min_value=base, max_value=2e6, allow_nan=False, allow_infinity=False))
    limit = draw(st.none() | st.integers(min_value=0, max_value=50))
    return FailurePolicy(base_delay=base, factor=draw(factors), max_delay=cap, max_attempts=limit)


errors = st.sampled_from([*RETRYABLE, *(e for e, _ in FINAL), *FOREIGN])


@given(policies(), attempt_counts, attempt_counts)
def test_delays_never_decrease_as_attempts_grow_and_never_pass_the_cap(
    policy: FailurePolicy, a: int, b: int
) -> None:
    low, high = sorted((a, b))

    assert 0.0 <= policy.backoff(low) <= policy.backoff(high) <= policy.max_delay


@given(policies(), attempt_counts, errors, seconds, seconds)
def test_a_message_at_or_past_its_deadline_is_never_retried(
    policy: FailurePolicy, attempts: int, error: BaseException, deadline: float, late: float
) -> None:
    decision = policy.decide(message(attempts, deadline), error, deadline + late)

    assert decision == Decision.give_up("ttl")


@given(policies(), attempt_counts, errors, seconds, seconds)
def test_a_retry_always_falls_due_before_the_deadline(
    policy: FailurePolicy, attempts: int, error: BaseException, now: float, ttl: float
) -> None:
    decision = policy.decide(message(attempts, now + ttl), error, now)

    if decision.action is Action.RETRY:
        assert now + decision.delay < now + ttl
        assert decision.delay == policy.backoff(attempts)
        assert decision.reason == ""
    else:
        assert decision.delay == 0.0
        assert decision.reason in {"ttl", "attempts", "error", "unencodable", "stopped"}


@given(
    st.sampled_from([Decision.retry_now(), Decision.give_up("mine")])
    | seconds.map(Decision.retry_after),
    seconds,
    seconds,
)
def test_a_decision_kept_within_the_deadline_is_unchanged_or_given_up_as_ttl(
    decision: Decision, now: float, ttl: float
) -> None:
    kept = within_deadline(decision, message(deadline=now + ttl), now)

    in_time = decision.action is Action.GIVE_UP or now + decision.delay < now + ttl
    assert kept == (decision if in_time else Decision.give_up("ttl"))


HUGE = 10**400  # an int no float can hold: it passed ``< math.inf``, then overflowed


@pytest.mark.parametrize(
    "build",
    [
        lambda: Decision.retry_after(HUGE),
        lambda: Decision(Action.RETRY, HUGE),
        lambda: FailurePolicy(base_delay=HUGE, max_delay=HUGE),
        lambda: FailurePolicy(max_delay=HUGE),
        lambda: FailurePolicy(factor=HUGE),
        lambda: FailurePolicy().decide(message(), SendError("x"), HUGE),
    ],
)
def test_an_int_too_large_for_a_float_is_refused_as_not_finite(build: Any) -> None:
    """A Decision(RETRY, 10**400) used to be taken, then overflowed where
    its delay was added to the time: the Concern died with its messages."""
    with pytest.raises(ConfigurationError, match="finite"):
        build()
