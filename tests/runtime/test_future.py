"""ReplyFuture keeps Pykka's future contract."""

from __future__ import annotations

import asyncio
import gc
import queue
import threading

import pykka
import pytest
from gc_kit import cyclic_garbage

from p2p0mq_actors.runtime.future import ReplyFuture

WAIT = 5.0


class Boom(Exception):
    pass


def test_get_returns_what_was_set_to_every_reader() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.set(7)
    assert future.get(timeout=0) == 7
    assert future.get() == 7


def test_get_times_out_with_pykka_timeout() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=-1.0)  # a lapsed deadline: no wait, no ValueError
    future.set(1)
    assert future.get(timeout=0) == 1


def test_waiting_threads_are_all_woken_by_set() -> None:
    future: ReplyFuture[str] = ReplyFuture()
    got: list[str] = []
    started = threading.Barrier(4)

    def wait() -> None:
        started.wait(WAIT)
        got.append(future.get(timeout=WAIT))

    readers = [threading.Thread(target=wait) for _ in range(3)]
    for thread in readers:
        thread.start()
    started.wait(WAIT)
    future.set("done")
    for thread in readers:
        thread.join(WAIT)
    assert got == ["done"] * 3


def test_an_exception_set_is_raised_with_its_traceback() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    try:
        raise Boom("no")
    except Boom:
        future.set_exception()
    with pytest.raises(Boom, match="no") as raised:
        future.get(timeout=0)
    assert raised.value.__traceback__ is not None


def test_a_failed_get_leaves_nothing_for_the_collector_to_free() -> None:
    # The error raised holds get's frame in its traceback; with the future
    # among that frame's locals it was a cycle (future -> outcome -> error).
    with cyclic_garbage() as garbage:  # what the collector finds meanwhile
        for _ in range(3):
            future: ReplyFuture[int] = ReplyFuture()
            future.set_exception((Boom, Boom("no"), None))
            for _ in range(2):  # each get raises it again, with the traceback it was set with
                with pytest.raises(Boom, match="no"):
                    future.get(timeout=0)
            del future
        gc.collect()
        assert not [o for o in garbage if isinstance(o, (ReplyFuture, Boom))]


def test_an_exception_given_as_a_type_only_is_built() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.set_exception((Boom, None, None))
    with pytest.raises(Boom):
        future.get(timeout=0)


@pytest.mark.parametrize("second", ["set", "set_exception"])
def test_a_future_is_set_once(second: str) -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.set(1)
    with pytest.raises(queue.Full):
        if second == "set":
            future.set(2)
        else:
            future.set_exception((Boom, Boom(), None))
    assert future.get(timeout=0) == 1


def test_racing_setters_give_one_outcome() -> None:
    for _ in range(200):
        future: ReplyFuture[int] = ReplyFuture()
        fulls: list[int] = []

        def put(value: int, f: ReplyFuture[int] = future, out: list[int] = fulls) -> None:
            try:
                f.set(value)
            except queue.Full:
                out.append(value)

        threads = [threading.Thread(target=put, args=(v,)) for v in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert len(fulls) == 2
        assert future.get(timeout=0) not in fulls


def test_map_filter_join_reduce_and_get_all() -> None:
    a: ReplyFuture[int] = ReplyFuture()
    b: ReplyFuture[int] = ReplyFuture()
    doubled = a.map(lambda v: v * 2)
    both = a.join(b)
    a.set(3)
    b.set(4)
    assert doubled.get(timeout=WAIT) == 6
    assert both.get(timeout=WAIT) == [3, 4]
    assert both.reduce(lambda x, y: x + y).get(timeout=WAIT) == 7
    assert both.filter(lambda v: v > 3).get(timeout=WAIT) == [4]
    assert pykka.get_all([a, b], timeout=WAIT) == [3, 4]


def test_a_waiter_woken_by_a_get_hook_runs_it() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(future.get(timeout=WAIT)))
    reader.start()
    future.set_get_hook(lambda timeout: 5)
    reader.join(WAIT)
    assert got == [5]
    with pytest.raises(queue.Full):
        future.set(1)


def test_await() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.set(9)

    async def read() -> int:
        return await future

    assert asyncio.run(read()) == 9


# -- done callbacks ----------------------------------------------------------------


def test_done_callbacks_run_once_in_order_when_the_outcome_comes() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    seen: list[tuple[str, int]] = []
    future.add_done_callback(lambda f: seen.append(("a", f.get(timeout=0))))
    future.add_done_callback(lambda f: seen.append(("b", f.get(timeout=0))))
    assert seen == []
    future.set(3)
    assert seen == [("a", 3), ("b", 3)]
    future.add_done_callback(lambda f: seen.append(("late", f.get(timeout=0))))  # at once
    assert seen == [("a", 3), ("b", 3), ("late", 3)]


def test_a_done_callback_sees_a_failure_and_one_that_raises_harms_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: ReplyFuture[int] = ReplyFuture()
    seen: list[BaseException] = []

    def broken(_: ReplyFuture[int]) -> None:
        raise Boom("callback")

    def record(f: ReplyFuture[int]) -> None:
        with pytest.raises(Boom) as info:
            f.get(timeout=0)
        seen.append(info.value)

    def exits(_: ReplyFuture[int]) -> None:
        raise SystemExit(1)  # in an actor's thread, Pykka would stop every actor

    future.add_done_callback(broken)
    future.add_done_callback(exits)
    future.add_done_callback(record)
    future.set_exception((Boom, Boom("no"), None))
    assert [str(e) for e in seen] == ["no"]
    assert "a done callback" in caplog.text and "callback" in caplog.text
    assert "SystemExit" in caplog.text


def test_a_done_callback_runs_in_the_setting_thread_after_the_waiters_are_let_go() -> None:
    future: ReplyFuture[str] = ReplyFuture()
    threads: list[str] = []
    got = threading.Event()
    future.add_done_callback(lambda f: threads.append(threading.current_thread().name))

    def wait() -> None:
        future.get(timeout=WAIT)
        got.set()

    reader = threading.Thread(target=wait)
    reader.start()
    setter = threading.Thread(target=future.set, args=("x",), name="setter")
    setter.start()
    setter.join(WAIT)
    reader.join(WAIT)
    assert got.is_set() and threads == ["setter"]


def test_done_callbacks_run_when_pykka_sets_a_get_hook() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    seen: list[int] = []
    future.add_done_callback(lambda f: seen.append(f.get(timeout=0)))
    future.set_get_hook(lambda timeout: 9)
    assert seen == [9]


@pytest.mark.parametrize("derive", ["map", "filter", "reduce", "join"])
def test_a_derived_futures_callbacks_run_once_its_sources_are_done(derive: str) -> None:
    """They used to run at once, as the derived future was made: its get
    hook was taken for its outcome, and ``get(timeout=0)`` in the callback
    timed out."""
    a: ReplyFuture[list[int]] = ReplyFuture()
    b: ReplyFuture[list[int]] = ReplyFuture()
    derived = {
        "map": lambda: a.map(len),
        "filter": lambda: a.filter(lambda v: v > 1),
        "reduce": lambda: a.reduce(lambda x, y: x + y),
        "join": lambda: a.join(b),
    }[derive]()
    seen: list[object] = []
    derived.add_done_callback(lambda f: seen.append(f.get(timeout=0)))
    a.set([1, 2, 3])
    if derive == "join":
        assert seen == []  # b is not done yet
        b.set([4])
    assert seen == [{"map": 3, "filter": [2, 3], "reduce": 6, "join": [[1, 2, 3], [4]]}[derive]]
    late: list[object] = []
    derived.add_done_callback(late.append)  # done: at once
    assert late == [derived]


def test_a_future_joined_with_another_kind_of_future_is_taken_as_done_at_once() -> None:
    a: ReplyFuture[int] = ReplyFuture()
    other: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    joined = a.join(other)
    seen: list[object] = []
    joined.add_done_callback(seen.append)  # nothing says when `other` is done
    assert seen == [joined]
    a.set(1)
    other.set(2)
    assert joined.get(timeout=WAIT) == [1, 2]
