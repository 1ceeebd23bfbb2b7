"""The README's test-kit examples, run as written (with a concrete Concern)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p0mq_actors import Concern, Message, Sender, TransportError
from p2p0mq_actors.testing import (
    Failed,
    FakeSocketFactory,
    ManualClock,
    MessageLog,
    OutcomeBook,
    Recorder,
    RecordingConcern,
    Retry,
)


class MyConcern(Concern):
    command = b"mine"


class MyRecordingConcern(RecordingConcern):
    command = b"mine"


def test_my_concern_retries_after_its_backoff() -> None:
    clock, log = ManualClock(), MessageLog()
    concern = MyConcern.start(scheduler=Recorder.start(log), clock=clock)
    m = Message.create(b"me", b"bob", MyConcern.command, now=clock.now())
    concern.tell(Failed(((m, TransportError("down", errno=113)),)))
    assert log.wait_for(1) == [Retry(later=((m.retried(), clock.now() + 0.05),))]


def test_a_blocked_peer_loses_nothing() -> None:
    sockets, clock, book = FakeSocketFactory(), ManualClock(), OutcomeBook()
    with Sender(b"me", sockets=sockets, clock=clock) as sender:
        sender.add_concern(MyRecordingConcern, book=book)
        sender.add_peer(b"bob", "tcp://127.0.0.1:1", b"k" * 40)
        sockets.prepare(b"bob").accept(3)
        sender.connect_peers()
        batch = [Message.create(b"me", b"bob", b"mine", now=clock.now()) for _ in range(10)]
        sender.enqueue_medium(batch)
        sockets.wait_for_socket(b"bob").wait_for_sent(3)
        sockets.wait_for_socket(b"bob").unblock()
        book.wait_for(lambda b: len(b.sent) == 10)
    assert book.sent == batch


def readme_block(heading: str) -> str:
    """The first Python block after ``heading`` in the README."""
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    after = text[text.index(f"\n{heading}\n") :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```\n", start)]


def test_the_readme_node_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It showed Alice alone: without Bob's add_peer his replies could not
    be sent, and a reader following it saw every request time out."""
    monkeypatch.chdir(tmp_path)  # its key stores are relative folders
    exec(compile(readme_block("## A node"), "README.md", "exec"), {"__name__": "readme"})
    endpoint, payload = capsys.readouterr().out.splitlines()
    assert endpoint.startswith("tcp://127.0.0.1:") and payload == "{'n': 1}"
