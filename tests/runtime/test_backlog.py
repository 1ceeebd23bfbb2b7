"""The Receiver's count of what Concerns hold unhandled: counting on and off,
the wait for it to fall, and Concerns that stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from p2p0mq_actors.runtime.backlog import Backlog
from p2p0mq_actors.testing import MessageLog, Recorder


class FakeRef:
    """What the backlog reads of a Concern's ref."""

    def __init__(self, name: str) -> None:
        self.actor_urn = f"urn:{name}"
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


def test_it_counts_what_is_handed_and_what_is_handled_once() -> None:
    backlog, a, b = Backlog(10), FakeRef("a"), FakeRef("b")
    done_a = backlog.add(a, 4)
    done_b = backlog.add(b, 3)
    backlog.add(a, 2)
    assert backlog.total == 9 and not backlog.full
    assert backlog.holders() == [(a, 6), (b, 3)]
    done_a()
    done_a()  # twice counts once
    assert backlog.total == 5
    done_b()
    assert backlog.total == 2 and backlog.holders() == [(a, 2)]
    assert (backlog.held_by(a), backlog.held_by(b)) == (2, 0)


def test_it_is_full_at_the_limit_and_a_wait_ends_at_half() -> None:
    backlog, a = Backlog(10), FakeRef("a")
    assert backlog.resume_at == 5
    first = backlog.add(a, 6)
    second = backlog.add(a, 4)
    assert backlog.full
    assert backlog.wait(0.0) is False  # 10 held: not down to 5
    first()
    assert not backlog.full and backlog.wait(0.0) is True  # 4 held
    second()
    assert backlog.total == 0


def test_a_concern_handling_its_batch_wakes_the_waiting_receiver() -> None:
    backlog, a = Backlog(4), FakeRef("a")
    done = backlog.add(a, 4)
    waiting, result = threading.Event(), []

    def receiver() -> None:
        waiting.set()
        result.append(backlog.wait(10.0))

    thread = threading.Thread(target=receiver)
    thread.start()
    assert waiting.wait(5.0)
    done()  # before or during the wait: either way it ends at once
    thread.join(5.0)
    assert not thread.is_alive() and result == [True]


def test_what_a_stopped_concern_held_is_forgotten() -> None:
    backlog, a, b = Backlog(10), FakeRef("a"), FakeRef("b")
    done_a = backlog.add(a, 7)
    backlog.add(b, 2)
    a.alive = False
    assert backlog.forget_stopped() == 7
    assert backlog.total == 2 and backlog.holders() == [(b, 2)]
    done_a()  # late: changes nothing
    assert backlog.total == 2
    assert backlog.forget_stopped() == 0
    assert backlog.lost == 7


def test_a_batch_its_concern_stopped_before_handling_is_counted_lost_once() -> None:
    backlog, a = Backlog(10), FakeRef("a")
    handled, dropped = backlog.add(a, 3), backlog.add(a, 4)
    handled()
    dropped(False)  # Received.lost: the Concern stopped first
    dropped(False)
    assert (backlog.total, backlog.lost) == (0, 4)


def test_a_real_actor_that_stopped_is_forgotten() -> None:
    ref = Recorder.start(MessageLog())
    backlog = Backlog(10)
    backlog.add(ref, 5)
    assert backlog.forget_stopped() == 0  # running: it may still count off
    ref.stop()
    assert backlog.forget_stopped() == 5 and backlog.total == 0


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(1, 50)),
        st.tuples(st.just("done"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("stop"), st.integers(0, 2), st.just(0)),
    ),
    max_size=60,
)


@given(_OPS)
def test_the_total_is_always_what_running_concerns_hold(ops: list[tuple[str, int, int]]) -> None:
    backlog, refs = Backlog(100), [FakeRef(str(i)) for i in range(3)]
    handed: list[tuple[int, int, Callable[[], None]]] = []  # (ref, count, done)
    handled: set[int] = set()
    forgotten: set[int] = set()  # refs whose counts were dropped
    for op, i, n in ops:
        if op == "add" and refs[i].alive:
            handed.append((i, n, backlog.add(refs[i], n)))
        elif op == "done" and handed:
            k = i % len(handed)
            handed[k][2]()
            handled.add(k)
        elif op == "stop":
            refs[i].alive = False
            backlog.forget_stopped()
            forgotten.add(i)
        expected = sum(
            n for k, (r, n, _) in enumerate(handed) if k not in handled and r not in forgotten
        )
        assert backlog.total == expected >= 0
        for r in range(len(refs)):  # and per Concern
            held = sum(
                n
                for k, (j, n, _) in enumerate(handed)
                if j == r and k not in handled and r not in forgotten
            )
            assert backlog.held_by(refs[r]) == held
        assert backlog.full == (expected >= 100)
