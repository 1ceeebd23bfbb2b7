"""The send path's actors on fake sockets and a manual clock."""

from __future__ import annotations

import errno
import random
import threading
from collections import Counter

import pytest
from sendpath_kit import ME, Path, Recording

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.codec import WireShape
from p2p0mq_actors.core.errors import (
    ConfigurationError,
    NoPeerError,
    TransportError,
    UnencodableError,
    WouldBlock,
)
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.core.planner import MAX_ROUNDS
from p2p0mq_actors.core.policy import FailurePolicy
from p2p0mq_actors.runtime.intake import EXPRESS_MANY, IntakeFullError
from p2p0mq_actors.runtime.messages import FLUSH, Shutdown
from p2p0mq_actors.runtime.turns import TURNS

FAST, MEDIUM, SLOW = Priority.FAST, Priority.MEDIUM, Priority.SLOW
TIMEOUT = 5.0


def test_rounds_across_three_peers_with_uneven_backlogs_go_out_in_exact_rounds(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    p: Path = path_factory([b"a", b"b", b"c"], max_rounds=1)
    a = [p.msg(b"a") for _ in range(5)]
    b = [p.msg(b"b") for _ in range(3)]
    c = [p.msg(b"c")]
    s1, s2, s3 = p.msg(b"a", SLOW), p.msg(b"c", SLOW), p.msg(b"b", SLOW)
    fa, fb = p.msg(b"a", FAST), p.msg(b"b", FAST)
    p.sender.enqueue_all(requests={MEDIUM: a + b + c, SLOW: [s1, s2, s3], FAST: [fa, fb]})
    p.book.wait_for(lambda bk: len(bk.sent) == 14)
    rounds = [
        {fa, a[0], s1, fb, b[0], c[0]},
        {a[1], b[1], s2},
        {a[2], b[2], s3},
        {a[3]},
        {a[4]},
    ]
    sent = p.journal.ids()
    at = 0
    for expected in rounds:
        assert set(sent[at : at + len(expected)]) == {m.message_id for m in expected}
        at += len(expected)
    assert [mid for peer, mid in p.journal.entries if peer == b"a"] == [
        m.message_id for m in [fa, a[0], s1, *a[1:]]
    ]
    assert p.book.dropped == [] and p.book.failed == []


@pytest.mark.parametrize("rounds", [16, MAX_ROUNDS, 64])
def test_a_victim_queued_behind_a_flood_goes_out_in_the_next_round(path_factory, rounds) -> None:  # type: ignore[no-untyped-def]
    """Y's message is queued (and taken in by the Scheduler) while X is
    sending the 500th of 10,000: at most two more X messages go first,
    whatever the plans' length."""
    p: Path = path_factory([b"x", b"y"], max_rounds=rounds)
    victim = p.msg(b"y")
    marks: list[int] = []

    def hook(peer: bytes, n: int) -> None:
        if peer == b"x" and n == 500:
            p.sender.enqueue_medium(victim)
            p.sender.scheduler.ask(FLUSH, timeout=5)  # the Scheduler has taken it in
            marks.append(n)

    p.journal.hook = hook
    flood = [p.msg(b"x") for _ in range(10_000)]
    p.sender.enqueue_medium(flood)
    p.book.wait_for(lambda bk: len(bk.sent) == 10_001, timeout=30)
    sent = p.journal.ids()
    assert sent.index(victim.message_id) - marks[0] <= 2
    assert sorted(sent) == sorted([victim.message_id, *(m.message_id for m in flood)])
    assert [mid for mid in sent if mid != victim.message_id] == [m.message_id for m in flood]


def test_would_block_mid_batch_keeps_order_and_loses_nothing(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    sock = p.sock(b"x")
    sock.accept(3)
    batch = [p.msg(b"x") for _ in range(10)]
    p.sender.enqueue_medium(batch)
    sock.wait_for_sent(3)
    p.sender.flush()
    assert len(sock.sent) == 3 and p.book.failed == []
    sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == 10)
    assert p.journal.ids() == [m.message_id for m in batch]
    assert p.book.failed == [] and p.book.dropped == []


def test_a_blocked_peer_drops_each_message_as_its_ttl_runs_out_in_any_order(path_factory) -> None:  # type: ignore[no-untyped-def]
    # The queue is scanned only once its earliest deadline has passed: the
    # deadlines here are out of queue order, and each drop must come on time
    # (all within the 10 s a peer may stay unwritable).
    p: Path = path_factory([b"x"])
    sock = p.sock(b"x")
    sock.block()
    m2, m05, m4, m1 = (p.msg(b"x", ttl=t) for t in (2.0, 0.5, 4.0, 1.0))
    p.sender.enqueue_medium([m2, m05, m4, m1])
    p.sender.flush()
    for advance, dropped in ((0.6, [m05]), (0.5, [m05, m1]), (1.0, [m05, m1, m2])):
        p.clock.advance(advance)
        count = len(dropped)
        p.book.wait_for(lambda bk, n=count: len(bk.dropped) == n)
        assert [m for m, _ in p.book.dropped] == dropped
    sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == 1)
    assert p.book.sent == [m4] and p.book.failed == []


def test_a_message_that_outlives_its_ttl_is_dropped_once_with_reason_ttl(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    sock = p.sock(b"x")
    sock.block()
    short, long_ = p.msg(b"x", ttl=5), p.msg(b"x", ttl=60)
    p.sender.enqueue_medium([short, long_])
    p.sender.flush()
    p.clock.advance(6)
    p.book.wait_for(lambda bk: len(bk.dropped) == 1)
    sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == 1)
    p.sender.flush()
    assert p.book.dropped == [(short, "ttl")]
    assert p.book.sent == [long_]
    assert p.journal.ids() == [long_.message_id]


def test_a_failed_send_goes_to_the_concern_which_retries_it_until_it_is_sent(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    p: Path = path_factory([b"x"], policy=FailurePolicy(base_delay=0.5))
    sock = p.sock(b"x")
    sock.fail_next(2, errno.EHOSTUNREACH)
    m = p.msg(b"x", FAST)
    p.sender.enqueue(m, FAST)
    p.book.wait_for(lambda bk: len(bk.failed) == 1)
    p.sender.flush()
    assert p.book.sent == []
    p.clock.advance(0.5)  # first backoff: 0.5 s
    p.book.wait_for(lambda bk: len(bk.failed) == 2)
    p.sender.flush()
    p.clock.advance(1.0)  # second backoff: 1.0 s
    p.book.wait_for(lambda bk: len(bk.sent) == 1)
    (first, err1), (second, _) = p.book.failed
    assert isinstance(err1, TransportError) and err1.errno == errno.EHOSTUNREACH
    assert [first.attempts, second.attempts, p.book.sent[0].attempts] == [0, 1, 2]
    assert p.book.sent[0].message_id == m.message_id
    assert p.journal.ids() == [m.message_id]


def test_a_raising_concern_leaves_the_node_working(path_factory) -> None:  # type: ignore[no-untyped-def]
    class Broken(Concern):
        command = b"broken"

        def on_sent(self, messages):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

        def on_send_failed(self, message, error):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    p: Path = path_factory([b"x"], policy=FailurePolicy(base_delay=0.0))
    broken = p.sender.add_concern(Broken, policy=FailurePolicy(base_delay=0.0))
    sock = p.sock(b"x")
    sock.fail_next(1)
    bad = [
        p.msg(b"x").__class__.create(b"me", b"x", b"broken", now=p.clock.now()) for _ in range(3)
    ]
    p.sender.enqueue_fast(bad)
    sock.wait_for_sent(3)
    p.sender.flush()
    good = p.msg(b"x")
    p.sender.enqueue(good)
    p.book.wait_for(lambda bk: len(bk.sent) == 1)
    stats = broken.proxy().stats().get(timeout=5)
    assert stats["errors"] >= 2 and stats["retried"] == 1 and stats["sent"] == 3
    assert broken.is_alive()
    assert len(sock.sent) == 4


def test_every_message_ends_sent_or_dropped_exactly_once_under_injected_failures(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    rnd = random.Random(20261204)
    peers = [b"p1", b"p2", b"p3"]
    p: Path = path_factory(
        peers, policy=FailurePolicy(base_delay=0.0, max_attempts=3), max_rounds=8
    )
    socks = {peer: p.sock(peer) for peer in peers}
    total = 10_000
    queued = []
    for start in range(0, total, 500):
        for sock in socks.values():
            sock.fail_next(rnd.randrange(0, 40), rnd.choice([errno.EHOSTUNREACH, errno.EINVAL]))
        if rnd.random() < 0.3:
            socks[rnd.choice(peers)].accept(rnd.randrange(0, 50))
        batch = []
        for _ in range(500):
            dest = rnd.choice([*peers, b"nobody"])
            ttl = rnd.choice([30.0, 30.0, 30.0, 0.001])
            batch.append(p.msg(dest, rnd.choice([FAST, MEDIUM, SLOW]), ttl=ttl))
        queued += batch
        p.clock.advance(0.01)
        p.sender.enqueue_all(
            requests={FAST: batch[:100], MEDIUM: batch[100:400], SLOW: batch[400:]}
        )
        for sock in socks.values():
            if rnd.random() < 0.5:
                sock.unblock()
        assert start < total
    for sock in socks.values():
        sock.unblock()
    p.book.wait_for(lambda bk: len(bk.ended()) == total, timeout=60)
    p.sender.flush()
    ended = p.book.ended()
    assert sorted(ended) == sorted(m.message_id for m in queued)
    assert len(p.book.sent) + len(p.book.dropped) == total  # nothing twice
    reasons = Counter(v for v in ended.values())
    assert reasons["sent"] > total / 2
    assert set(reasons) <= {"sent", "dropped:ttl", "dropped:attempts"}
    assert reasons["dropped:attempts"] > 0 and reasons["dropped:ttl"] > 0
    sent_ids = p.journal.ids()
    assert len(sent_ids) == len(set(sent_ids)) == reasons["sent"]


def test_an_unknown_priority_is_a_clear_error(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    with pytest.raises(ConfigurationError, match="unknown priority 7"):
        p.sender.enqueue(p.msg(b"x"), 7)  # type: ignore[arg-type]


def test_stopping_drops_what_is_queued_with_reason_stopped(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sock(b"x").block()
    queued = [p.msg(b"x") for _ in range(5)] + [p.msg(b"x", SLOW)]
    p.sender.enqueue_medium(queued[:5])
    p.sender.enqueue_slow(queued[5:])
    p.sender.flush()
    p.sender.stop()
    assert sorted(m.message_id for m, r in p.book.dropped if r == "stopped") == sorted(
        m.message_id for m in queued
    )
    assert p.sock(b"x").closed


def test_two_concerns_for_one_command_is_an_error(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    with pytest.raises(ConfigurationError, match="already has a Concern"):
        p.sender.add_concern(Recording, book=p.book)


def test_a_fast_message_for_an_idle_peer_skips_the_scheduler(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()  # the Scheduler has opened x's gate
    m = p.msg(b"x", FAST)
    p.sender.send_one(m)
    p.book.wait_for(lambda bk: len(bk.sent) == 1)
    assert p.sender.intake.puts == 0 and p.sender.intake.wakes == 0
    assert p.journal.ids() == [m.message_id]


def test_an_express_message_sent_whole_reopens_the_gate_itself(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()  # the Scheduler has opened x's gate
    messages = [p.msg(b"x", FAST) for _ in range(5)]
    for n, m in enumerate(messages, 1):
        p.sender.send_one(m)  # no flush between: the connection reopened the gate
        p.book.wait_for(lambda bk, n=n: len(bk.sent) == n)  # type: ignore[misc]
    assert p.sender.intake.puts == 0 and p.sender.intake.wakes == 0
    assert p.journal.ids() == [m.message_id for m in messages]


def test_a_blocked_express_message_goes_back_to_the_scheduler(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()
    sock = p.sock(b"x")
    sock.block()
    first = p.msg(b"x", FAST)
    p.sender.send_one(first)  # through the gate; the socket would block
    later = [p.msg(b"x", FAST) for _ in range(3)]
    for m in later:
        p.sender.send_one(m)  # the gate is claimed: these wait in the intake
    p.sender.flush()
    assert p.book.sent == []
    sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == 4)
    assert p.journal.ids() == [m.message_id for m in [first, *later]]
    p.sender.flush()
    after = p.msg(b"x", FAST)
    puts = p.sender.intake.puts
    p.sender.send_one(after)  # idle again: the Scheduler reopened the gate
    p.book.wait_for(lambda bk: len(bk.sent) == 5)
    assert p.sender.intake.puts == puts


def test_a_stopped_connection_lends_its_socket_no_more(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()
    lane = p.sender.intake.gate.lane(b"x")
    assert lane is not None
    p.sender.send_one(p.msg(b"x", FAST))
    p.book.wait_for(lambda bk: len(bk.sent) == 1)
    assert lane.sent == 1
    p.sender.remove_peer(b"x")
    assert p.sender.intake.gate.lane(b"x") is None
    assert p.sock(b"x").closed
    assert not lane.deliver(p.msg(b"x", FAST))  # detached before the socket closed
    assert len(p.sock(b"x").sent) == 1


def test_messages_sent_while_their_peer_is_removed_and_added_again_each_end_exactly_once(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    """A plan the Scheduler handed to a connection being stopped (it had not
    yet heard of the removal) used to be thrown away with the connection's
    inbox: its messages never ended (review of session 20: 300-2,400 lost
    in 11 runs of 15)."""
    p: Path = path_factory([b"x"], policy=FailurePolicy(max_attempts=0))
    queued: list[Message] = []
    done = threading.Event()

    def flood() -> None:
        lanes = (FAST, MEDIUM, SLOW)
        for i in range(50_000):  # until the peer was removed 40 times
            if done.is_set():
                return
            message = p.msg(b"x", lanes[i % 3])
            p.sender.send_one(message)
            queued.append(message)

    sender = threading.Thread(target=flood, name="test-flood")
    sender.start()
    try:
        for _ in range(40):
            p.sender.remove_peer(b"x")
            p.sender.add_peer(b"x", "tcp://127.0.0.1:1/x", b"k" * 40)
            p.sender.connect_peers()
    finally:
        done.set()
    sender.join(30)
    assert not sender.is_alive()
    ids = {m.message_id for m in queued}
    try:
        p.book.wait_for(lambda b: ids <= b.ended().keys(), timeout=15)
    finally:
        ends = Counter(m.message_id for m in p.book.sent)
        ends.update(m.message_id for m, _ in p.book.dropped)
        assert [mid for mid in ids if ends[mid] != 1] == []


def _assert_sent_once_each_lane_in_order(p: Path, sent: list[Message]) -> None:
    """Every message of ``sent`` went out once, and each peer's lanes in order."""
    assert sorted(p.journal.ids()) == sorted(m.message_id for m in sent)
    for peer in p.peers:
        for lane in (FAST, MEDIUM, SLOW):
            ids = {m.message_id for m in sent if m.priority is lane}
            want = [m.message_id for m in sent if m.next_hop == peer and m.priority is lane]
            assert [mid for q, mid in p.journal.entries if q == peer and mid in ids] == want


def test_direct_and_queued_sends_keep_fifo_order_and_lose_nothing(path_factory) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(7)
    p: Path = path_factory([b"x", b"y"])
    socks = {peer: p.sock(peer) for peer in (b"x", b"y")}
    sent = []
    for i in range(3000):
        peer = rnd.choice([b"x", b"y"])
        m = p.msg(peer, rnd.choice([FAST, FAST, MEDIUM, SLOW]))
        sent.append(m)
        p.sender.send_one(m)
        if i % 250 == 0:
            socks[peer].accept(rnd.randrange(0, 30))
        elif i % 250 == 100:
            socks[peer].unblock()
        if i % 50 == 25:
            p.sender.flush()  # let the Scheduler catch up: idle peers' gates open
    for sock in socks.values():
        sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == len(sent), timeout=30)
    _assert_sent_once_each_lane_in_order(p, sent)
    assert p.sender.intake.puts < len(sent)  # some went the direct way


def test_plans_take_turns_and_give_the_turn_back_after_failures(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x", b"y"])
    socks = {peer: p.sock(peer) for peer in (b"x", b"y")}
    seen_locked: list[bool] = []
    for sock in socks.values():
        send = sock.send_frames

        def watched(frames, send=send):  # type: ignore[no-untyped-def]
            seen_locked.append(TURNS.locked())
            send(frames)

        sock.send_frames = watched  # type: ignore[method-assign]
    socks[b"x"].fail_next(3, errno.EHOSTUNREACH)
    sent = [p.msg(peer, MEDIUM) for peer in (b"x", b"y") for _ in range(20)]
    p.sender.enqueue(sent, MEDIUM)
    p.book.wait_for(lambda bk: len(bk.sent) + len(bk.failed) >= len(sent))
    p.sender.flush()
    assert seen_locked and all(seen_locked)  # every plan's send ran on its turn
    assert TURNS.acquire(blocking=False)  # and the turn was given back
    TURNS.release()


def test_a_message_sent_right_after_connect_peers_finds_its_peer_known(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    # The Scheduler takes the intake after any message it handles: a
    # message sent right after connect_peers() must not reach it before the
    # peer does (it failed as for an unknown peer, now and then, under load).
    p: Path = path_factory([])
    uuids = [f"peer-{n}".encode() for n in range(50)]
    for uuid in uuids:  # each sent to at once, while the last may still be in hand
        p.sender.add_peer(uuid, f"tcp://127.0.0.1:1/{uuid.decode()}", b"k" * 40)
        p.sender.connect_peers()
        p.sender.enqueue_medium(p.msg(uuid))
    p.book.wait_for(lambda bk: len(bk.sent) + len(bk.failed) == len(uuids))
    assert p.book.failed == []


def test_a_fast_send_many_for_an_idle_peer_is_sent_before_it_returns(
    path_factory,
) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()  # the Scheduler has opened x's gate
    run = [p.msg(b"x", FAST) for _ in range(EXPRESS_MANY + 300)]
    p.sender.enqueue_many(run)
    assert p.journal.ids() == [m.message_id for m in run]  # in this thread, in order
    assert p.sender.intake.puts == 0 and p.sender.intake.wakes == 0
    p.book.wait_for(lambda bk: len(bk.sent) == len(run))  # on_sent, as for any send
    again = [p.msg(b"x", FAST) for _ in range(3)]
    p.sender.enqueue_many(again)  # the gate was handed back open
    assert p.journal.ids()[-3:] == [m.message_id for m in again]


def test_a_send_many_cut_short_by_the_socket_keeps_order_with_what_follows(
    path_factory,
) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()
    sock = p.sock(b"x")
    sock.accept(30)
    first = [p.msg(b"x", FAST) for _ in range(100)]
    p.sender.enqueue_many(first)
    assert p.journal.ids() == [m.message_id for m in first[:30]]
    later = [p.msg(b"x", FAST) for _ in range(50)]
    p.sender.enqueue_many(later)  # the gate is claimed: through the intake
    single = p.msg(b"x", FAST)
    p.sender.send_one(single)
    p.sender.flush()
    assert p.book.failed == [] and len(p.journal.ids()) == 30
    sock.unblock()
    everything = [*first, *later, single]
    p.book.wait_for(lambda bk: len(bk.sent) == len(everything))
    assert p.journal.ids() == [m.message_id for m in everything]
    assert p.book.failed == [] and p.book.dropped == []
    p.sender.flush()  # idle again: the Scheduler reopens the gate
    puts = p.sender.intake.puts
    p.sender.enqueue_many([p.msg(b"x", FAST) for _ in range(5)])
    assert len(p.journal.ids()) == len(everything) + 5 and p.sender.intake.puts == puts


def test_a_send_many_leaves_expired_and_unencodable_ones_to_the_connection(
    path_factory,
) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    p.sender.flush()
    run = [p.msg(b"x", FAST) for _ in range(20)]
    run[5] = p.msg(b"x", FAST, ttl=1.0)
    run[12] = Message.create(
        ME, b"x", b"t", {"n": object()}, now=p.clock.now(), priority=FAST, message_id=999_999
    )
    p.clock.advance(2.0)
    p.sender.enqueue_many(run)
    p.book.wait_for(lambda bk: len(bk.sent) == 18 and len(bk.dropped) == 2)
    assert p.book.dropped == [(run[5], "ttl"), (run[12], "unencodable")]
    ((failed, error),) = p.book.failed
    assert failed is run[12] and isinstance(error, UnencodableError)
    assert p.journal.ids() == [m.message_id for i, m in enumerate(run) if i not in (5, 12)]


def test_send_many_and_send_keep_fifo_order_and_lose_nothing(path_factory) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(11)
    p: Path = path_factory([b"x", b"y"])
    socks = {peer: p.sock(peer) for peer in (b"x", b"y")}
    sent = []
    ways: Counter[bool] = Counter()
    for i in range(400):
        peer = rnd.choice([b"x", b"y"])
        if rnd.random() < 0.5:
            m = p.msg(peer, rnd.choice([FAST, FAST, MEDIUM, SLOW]))
            sent.append(m)
            p.sender.send_one(m)
        else:
            mixed = rnd.random() < 0.3
            run = [
                p.msg(rnd.choice([b"x", b"y"]) if mixed else peer, FAST)
                for _ in range(rnd.choice([2, 3, 40, 200, EXPRESS_MANY + 5]))
            ]
            sent.extend(run)
            puts = p.sender.intake.puts
            p.sender.enqueue_many(run)
            ways[p.sender.intake.puts == puts] += 1  # True: all taken through the gate
        if i % 40 == 0:
            socks[peer].accept(rnd.randrange(0, 30))
        elif i % 40 == 20:
            socks[peer].unblock()
        if i % 10 == 5:
            p.sender.flush()
    for sock in socks.values():
        sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == len(sent), timeout=30)
    _assert_sent_once_each_lane_in_order(p, sent)
    assert p.book.failed == [] and p.book.dropped == []
    assert ways[True] > 5 and ways[False] > 5  # both ways, many times


def test_a_send_many_finding_its_peer_blocked_keeps_the_intakes_bound(path_factory) -> None:  # type: ignore[no-untyped-def]
    peers = [b"p0", b"p1", b"p2"]
    p: Path = path_factory(peers, intake_capacity=200, intake_timeout=0.2)
    socks = [p.sock(peer) for peer in peers]
    p.sender.flush()
    for sock in socks:
        sock.block()
    p.sender.enqueue_many([p.msg(b"p0", FAST) for _ in range(1000)])  # an empty intake: taken
    with pytest.raises(IntakeFullError):
        p.sender.enqueue_many([p.msg(b"p1", FAST) for _ in range(1000)])
    p.sender.flush()
    assert p.sender.scheduler.proxy().depths().get(timeout=5)["fast"] <= 1000
    assert p.book.failed == [] and p.journal.ids() == []


def test_a_send_many_sent_in_part_queues_the_rest_and_does_not_raise(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"P", b"Q"], intake_capacity=100, intake_timeout=0.2)
    q = p.sock(b"Q")
    p.sender.flush()
    q.block()
    p.sender.enqueue_medium([p.msg(b"Q") for _ in range(100)])  # the Scheduler is full
    p.sender.flush()
    other = [p.msg(b"Q") for _ in range(10)]

    def another_thread_puts(peer: bytes, n: int) -> None:  # while P's first run goes out
        if peer == b"P" and n == 1:
            p.sender.intake.put(other)

    p.journal.hook = another_thread_puts
    batch = [p.msg(b"P", FAST) for _ in range(2 * EXPRESS_MANY)]
    p.sender.enqueue_many(batch)  # the second run finds the intake in use: queued
    assert len(p.sock(b"P").sent) == EXPRESS_MANY
    q.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == 110 + len(batch), timeout=30)
    assert [mid for peer, mid in p.journal.entries if peer == b"P"] == [
        m.message_id for m in batch
    ]


def test_a_send_many_sends_no_message_twice_when_a_send_raises(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    sock = p.sock(b"x")
    p.sender.flush()
    journaled, calls = sock.send_frames, [0]

    def taken_then_raises(frames: list[bytes]) -> None:
        journaled(frames)  # the socket took it, then a layer below raised
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("a bug below the socket")

    sock.send_frames = taken_then_raises
    batch = [p.msg(b"x", FAST) for _ in range(10)]
    p.sender.enqueue_many(batch)
    p.book.wait_for(lambda bk: len(bk.sent) == 9 and len(bk.failed) == 1)
    assert sorted(p.journal.ids()) == sorted(m.message_id for m in batch)  # each once
    assert p.book.failed[0][0] is batch[2]


def test_an_interrupted_send_many_leaves_the_peer_usable(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    sock = p.sock(b"x")
    p.sender.flush()

    def interrupted(messages: object) -> tuple[int, None]:
        raise KeyboardInterrupt  # as Ctrl-C in the sending thread would

    sock.send_each = interrupted
    with pytest.raises(KeyboardInterrupt):
        p.sender.enqueue_many([p.msg(b"x", FAST) for _ in range(10)])
    del sock.send_each
    later = p.msg(b"x")
    p.sender.enqueue_medium([later])  # through the Scheduler: the peer is not busy for ever
    p.book.wait_for(lambda bk: later in bk.sent)


def test_a_node_stopping_during_a_send_many_drops_the_rest_as_stopped(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"])
    sock = p.sock(b"x")
    p.sender.flush()
    sock.accept(30)

    def stop_during_the_run(peer: bytes, n: int) -> None:
        if n == 10:  # what Node.stop does first, from another thread
            stopper = threading.Thread(
                target=lambda: p.sender.scheduler.ask(Shutdown(), timeout=TIMEOUT)
            )
            stopper.start()
            stopper.join(TIMEOUT)

    p.journal.hook = stop_during_the_run
    batch = [p.msg(b"x", FAST) for _ in range(100)]
    p.sender.enqueue_many(batch)  # part went out: no error, each message an outcome
    p.book.wait_for(lambda bk: len(bk.sent) + len(bk.dropped) + len(bk.failed) == 100)
    assert p.book.sent == batch[:30] and p.book.failed == []
    assert {reason for _, reason in p.book.dropped} == {"stopped"}


def test_a_native_frame_that_would_block_after_all_is_sent_later_not_failed(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"], shape=WireShape.NATIVE)
    sock = p.sock(b"x")
    p.sender.flush()
    accepted, calls = type(sock).send_frames.__get__(sock), [0]  # (not the 0.1.1 journal)

    def blocked_once(frames: list[bytes]) -> None:
        calls[0] += 1
        if calls[0] == 1:  # the high-water mark met between the check and the send
            raise WouldBlock("would block", peer=b"x")
        accepted(frames)

    sock.send_frames = blocked_once
    batch = [p.msg(b"x", FAST) for _ in range(10)]
    p.sender.enqueue_many(batch)
    p.book.wait_for(lambda bk: len(bk.sent) == len(batch))
    assert p.book.failed == [] and calls[0] >= 2 and len(sock.sent) == calls[0] - 1


def test_what_a_removed_peers_connection_held_fails_with_no_peer_and_is_not_stopped(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    """A removed peer's connection used to drop what it held as "stopped",
    which a pending request took for the node stopping (NodeStoppedError)
    while the node went on; what the Scheduler held failed with NoPeerError."""
    p: Path = path_factory([b"x"], policy=FailurePolicy(max_attempts=0))
    p.sock(b"x").block()
    held = [p.msg(b"x") for _ in range(3)]
    for message in held:
        p.sender.send_one(message)
    p.sender.flush()
    p.sender.flush()  # the blocked plan's result is back: the connection holds them
    p.sender.remove_peer(b"x")
    p.book.wait_for(lambda b: len(b.dropped) == 3)
    assert [(m, type(e)) for m, e in p.book.failed] == [(m, NoPeerError) for m in held]
    assert all(reason != "stopped" for _, reason in p.book.dropped)


def test_one_message_object_sent_three_times_one_copy_failing_reports_the_other_two_sent(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    """Failures were matched to messages by identity: the failed copy took
    the two that went out with it, never reported sent."""
    p: Path = path_factory([b"x"], policy=FailurePolicy(max_attempts=0))
    p.sender.flush()  # x idle: its express gate open
    m = p.msg(b"x", FAST)
    p.sock(b"x").fail_next(1, errno.EHOSTUNREACH)
    p.sender.enqueue_many([m, m, m])
    p.book.wait_for(lambda b: len(b.sent) == 2 and len(b.dropped) == 1)
    assert p.book.sent == [m, m] and p.book.dropped == [(m, "attempts")]
    assert len(p.sock(b"x").sent) == 2
