"""Pending requests: one timer for all timeouts, each future settled once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sendpath_kit import ME, make

from p2p0mq_actors.core.errors import (
    ConfigurationError,
    NodeStoppedError,
    NoPeerError,
    PeerRefusedError,
    RequestError,
    RequestTimeoutError,
)
from p2p0mq_actors.core.message import Kind, Message
from p2p0mq_actors.runtime.requests import COMPACT_SLACK, PendingRequests
from p2p0mq_actors.testing.clock import ManualClock


def test_a_reply_from_the_asked_peer_resolves_the_future() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"bob")
    future = pending.register(request, timeout=5)
    stranger = Message.create(
        b"eve", b"me", b"t", now=clock.now(), kind=Kind.REPLY, message_id=request.message_id
    )
    assert not pending.resolve(stranger)  # same id, wrong peer
    reply = request.reply({"ok": 1}, now=clock.now())
    assert pending.resolve(reply)
    assert future.get(timeout=1) == reply
    assert not pending.resolve(reply)  # settled once
    assert len(pending) == 0


def test_timeouts_share_one_timer_and_fire_in_order() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    futures = [pending.register(make(clock, b"bob"), timeout=t) for t in (3.0, 1.0, 2.0)]
    assert clock.pending == 1  # one timer, re-armed for the earliest deadline
    clock.advance(1.0)
    with pytest.raises(RequestTimeoutError):
        futures[1].get(timeout=1)
    assert len(pending) == 2
    clock.advance(2.0)
    for f in (futures[0], futures[2]):
        with pytest.raises(RequestTimeoutError):
            f.get(timeout=1)
    assert clock.pending == 0


def test_a_later_deadline_costs_no_timer() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    for _ in range(10):
        pending.register(make(clock, b"bob"), timeout=5.0)
        clock.advance(0.1)
    assert clock.pending == 1


def test_a_dropped_request_fails_with_its_reason_and_stopping_fails_the_rest() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    dropped, waiting = make(clock, b"bob"), make(clock, b"bob")
    f1, f2 = pending.register(dropped, 5), pending.register(waiting, 5)
    pending.dropped([(dropped, "ttl")])
    with pytest.raises(RequestError) as caught:
        f1.get(timeout=1)
    assert caught.value.reason == "ttl"
    pending.fail_all()
    with pytest.raises(NodeStoppedError):
        f2.get(timeout=1)
    assert clock.pending == 0


def test_answered_requests_cost_the_timer_one_firing_per_timeout_not_one_each() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    fired = 0
    for _ in range(200):  # steady traffic: each request answered before the next
        request = make(clock, b"bob")
        pending.register(request, timeout=5.0)
        assert pending.resolve(request.reply({}, now=clock.now()))
        fired += clock.advance(0.1)  # 20 s in all, four timeouts' worth
    assert 1 <= fired <= 4
    assert clock.pending <= 1
    assert len(pending) == 0


def test_a_waiting_request_behind_answered_ones_still_times_out_on_time() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    answered = [make(clock, b"bob") for _ in range(5)]
    for request in answered:
        pending.register(request, timeout=1.0)
    waiting = pending.register(make(clock, b"bob"), timeout=3.0)
    for request in answered:
        pending.resolve(request.reply({}, now=clock.now()))
    assert clock.advance(1.0) == 1  # the first deadline: only answered ones lapse
    assert len(pending) == 1
    clock.advance(1.999)
    assert len(pending) == 1
    clock.advance(0.001)
    with pytest.raises(RequestTimeoutError):
        waiting.get(timeout=1)
    assert clock.pending == 0


def test_the_deadline_heap_stays_near_the_number_of_waiting_requests() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    keep = [make(clock, b"bob") for _ in range(3)]
    futures = [pending.register(request, timeout=60.0) for request in keep]
    for _ in range(5000):  # answered long before any deadline lapses
        request = make(clock, b"bob")
        pending.register(request, timeout=60.0)
        pending.resolve(request.reply({}, now=clock.now()))
    assert len(pending._deadlines) <= 2 * 4 + COMPACT_SLACK
    clock.advance(60.0)
    for future in futures:
        with pytest.raises(RequestTimeoutError):
            future.get(timeout=1)
    assert len(pending) == 0


def test_a_reply_claiming_the_asked_peer_as_source_from_another_hop_resolves_nothing() -> None:
    # Mallory is admitted under her own uuid (the Receiver checks that), but
    # frame 1 (source) is hers to fill: the hop the reply came over decides.
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"alice")
    future = pending.register(request, timeout=5)
    genuine = request.reply({"answer": "real"}, now=clock.now())
    forged = replace(genuine, payload={"answer": "forged"}, previous_hop=b"mallory")
    assert (forged.source, forged.message_id) == (b"alice", request.message_id)
    assert not pending.resolve(forged)
    assert len(pending) == 1
    assert pending.resolve(genuine)
    assert future.get(timeout=1) == genuine


def test_a_reply_with_the_id_but_another_command_resolves_nothing() -> None:
    """It used to resolve the future (the asked peer's reply to something
    else, or a mistake of its own), and the genuine reply then went to the
    Concern's on_reply."""
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"alice")
    future = pending.register(request, timeout=5)
    genuine = request.reply({"answer": "real"}, now=clock.now())
    assert not pending.resolve(replace(genuine, command=b"nope"))
    assert pending.resolve(genuine)
    assert future.get(timeout=1) == genuine


def test_a_routed_request_is_answered_over_its_hop_or_by_its_peer_and_no_one_else() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    requests = [
        Message.create(ME, b"carol", b"t", now=clock.now(), next_hop=b"bob", message_id=mid)
        for mid in (9001, 9002)
    ]
    futures = [pending.register(request, timeout=5) for request in requests]

    def reply(mid: int, over: bytes) -> Message:
        answer = Message.create(
            b"carol", ME, b"t", now=clock.now(), kind=Kind.REPLY, message_id=mid
        )
        return replace(answer, previous_hop=over)

    assert not pending.resolve(reply(9001, b"mallory"))
    answers = [reply(9001, b"bob"), reply(9002, b"carol")]
    assert [pending.resolve(answer) for answer in answers] == [True, True]
    assert [future.get(timeout=1) for future in futures] == answers


def test_a_forgotten_request_is_not_pending_and_never_times_out() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"bob")
    pending.register(request, timeout=1.0)
    pending.forget(request)
    assert len(pending) == 0
    clock.advance(1.0)
    assert (len(pending), pending.failed, clock.pending) == (0, {}, 0)
    assert not pending.resolve(request.reply({}, now=clock.now()))


def test_a_refused_request_stays_pending_while_its_message_may_still_be_retried() -> None:
    # Refusal is retryable: the Concern's policy may send the request again
    # once the peer admits our key, so failing the future now would tell the
    # caller "not done" about an action that gets done.
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"bob")
    future = pending.register(request, timeout=5)
    pending.failed_items([(request, PeerRefusedError("bob refused", peer=b"bob"))])
    assert (len(pending), pending.failed) == (1, {})
    reply = request.reply({"ok": 1}, now=clock.now())
    assert pending.resolve(reply)
    assert future.get(timeout=1) == reply


@pytest.mark.parametrize(
    ("reason", "raised"), [("ttl", RequestError), ("stopped", NodeStoppedError)]
)
def test_a_dropped_request_says_its_reason_then_its_last_send_error_and_chains_it(
    reason: str, raised: type[Exception]
) -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"carol")
    future = pending.register(request, timeout=5)
    first = NoPeerError("no connection to peer b'carol'", peer=b"carol")
    last = PeerRefusedError("check its public key", peer=b"carol")
    pending.failed_items([(request, first)])
    pending.failed_items([(request, last)])
    pending.dropped([(request, reason)])
    with pytest.raises(raised) as caught:
        future.get(timeout=1)
    assert str(caught.value) == (
        f"{request!r} was dropped ({reason}) before a reply came; last send error: "
        "PeerRefusedError: check its public key"
    )
    assert (getattr(caught.value, "reason", None), caught.value.__cause__) == (reason, last)
    assert pending.failed == {reason: 1}


def test_a_request_dropped_without_a_failed_send_has_no_cause() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    request = make(clock, b"bob")
    future = pending.register(request, timeout=5)
    pending.dropped([(request, "ttl")])
    with pytest.raises(RequestError) as caught:
        future.get(timeout=1)
    assert str(caught.value) == f"{request!r} was dropped (ttl) before a reply came"
    assert caught.value.__cause__ is None


def test_the_last_send_error_is_forgotten_when_its_request_ends_however_it_ends() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    answered, lapsed, forgotten, stopped, dropped = (make(clock, b"bob") for _ in range(5))
    for request in (answered, lapsed, forgotten, stopped, dropped):
        pending.register(request, timeout=5 if request is not lapsed else 1)
        pending.failed_items([(request, NoPeerError("who?", peer=b"bob"))])
    other = make(clock, b"bob")  # never registered: nothing to remember
    pending.failed_items([(other, NoPeerError("who?", peer=b"bob"))])
    assert sorted(pending._errors) == sorted(
        r.message_id for r in (answered, lapsed, forgotten, stopped, dropped)
    )
    pending.resolve(answered.reply({}, now=clock.now()))
    clock.advance(1)
    pending.forget(forgotten)
    pending.dropped([(dropped, "ttl")])
    assert sorted(pending._errors) == [stopped.message_id]
    pending.fail_all()
    assert pending._errors == {}


def test_a_request_timing_out_names_its_peer_and_the_send_error_it_is_retried_for() -> None:
    clock = ManualClock()
    pending = PendingRequests(clock)
    quiet, failing = make(clock, b"bob"), make(clock, b"carol")
    futures = [pending.register(m, timeout=1) for m in (quiet, failing)]
    refused = PeerRefusedError("peer b'carol' refused our key", peer=b"carol")
    pending.failed_items([(failing, refused)])
    clock.advance(1.0)
    errors = []
    for future in futures:
        with pytest.raises(RequestTimeoutError) as caught:
            future.get(timeout=1)
        errors.append(caught.value)
    assert [str(e) for e in errors] == [
        f"no reply from peer b'bob' to request #{quiet.message_id} in time",
        f"no reply from peer b'carol' to request #{failing.message_id} in time; "
        "last send error: PeerRefusedError: peer b'carol' refused our key",
    ]
    assert [e.__cause__ for e in errors] == [None, refused]
    assert pending.failed == {"timeout": 2}


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0, -1.0, "5", True, None])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused_and_nothing_is_left_pending(
    timeout: object,
) -> None:
    # NaN never comes due (a request that never times out); inf fails only
    # in the clock, after the request was registered for ever.
    clock = ManualClock()
    pending = PendingRequests(clock)
    with pytest.raises(ConfigurationError, match="timeout"):
        pending.register(make(clock, b"bob"), timeout=timeout)  # type: ignore[arg-type]
    assert len(pending) == 0
    assert clock.pending == 0


def test_a_request_registered_as_the_node_stops_is_refused_and_not_left_pending() -> None:
    """It used to be left pending, its caller told of a closed clock."""
    clock = ManualClock()
    pending = PendingRequests(clock)
    pending.fail_all()
    with pytest.raises(ConfigurationError, match="the node stopped"):
        pending.register(make(clock, b"bob"), timeout=5)
    assert len(pending) == 0


def test_a_request_registered_just_before_the_stop_is_failed_by_it_even_if_the_clock_closed() -> (
    None
):
    class Closing(ManualClock):  # the stop runs between the request's entry and its timer
        def call_later(self, delay: float, callback: Any) -> Any:
            pending.fail_all()
            raise ConfigurationError("call_later on a closed clock")

    clock = Closing()
    pending = PendingRequests(clock)
    future = pending.register(make(clock, b"bob"), timeout=5)
    with pytest.raises(NodeStoppedError):
        future.get(timeout=1)
    assert len(pending) == 0
