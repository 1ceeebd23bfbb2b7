"""A small demonstration: two nodes over real CURVE sockets on 127.0.0.1.

Alice sends Bob chat messages on the three lanes and asks him for an echo;
Bob's Concern prints what arrives, in order, and answers the echo. Alice also
writes to Carol with the wrong public key for her: the handshake is refused
and Alice's Concern hears that the message was dropped. Every message ends
sent or dropped, with a reason.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from .concerns.base import Concern
from .core.errors import SendError
from .core.message import Message, Priority
from .core.policy import Decision, FailurePolicy
from .node import Node
from .transport.keystore import KeyStore


def _say(out: TextIO, line: str) -> None:
    """One write per line: the Concerns print from their own threads.

    Flushed at once, so each line shows as it happens; once the reader is gone
    (``p2p0mq-actors | head -1``) the rest is discarded, not a traceback in
    every thread that writes.
    """
    try:
        out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        discard_output(out)


def discard_output(out: TextIO) -> None:
    """Send whatever is still to be written to ``out`` to /dev/null: its reader is gone.

    Python's recipe for a closed pipe ("Note on SIGPIPE" in the docs of
    ``signal``): later writes, and the flush at exit, then succeed instead of
    raising ``BrokenPipeError`` again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, out.fileno())
    finally:
        os.close(devnull)


class LogLines(logging.Handler):
    """Log records as lines of the demo's output, among its own."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging's rule: a bad record is reported, never raised
            self.handleError(record)
        else:
            _say(self._out, line)


class Chat(Concern):
    """Prints what happens to chat messages, on both sides."""

    command = b"chat"

    def __init__(self, *, out: TextIO, name: str, ended: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out, self.name, self.ended = out, name, ended
        self.got = 0

    def on_request(self, message: Message) -> None:
        self.got += 1
        _say(self.out, f"{self.name} got from {message.source!r}: {message.payload['text']}")
        if self.got == 8:
            self.ended.set()

    def on_sent(self, messages: Sequence[Message]) -> None:
        _say(self.out, f"  {self.name}: {len(messages)} sent")

    def on_send_failed(self, message: Message, error: SendError) -> Decision:
        _say(
            self.out,
            f"  {self.name}: #{message.message_id} to {message.destination!r} failed: "
            f"{type(error).__name__}",
        )
        return super().on_send_failed(message, error)

    def on_dropped(self, message: Message, reason: str) -> None:
        _say(
            self.out,
            f"  {self.name}: #{message.message_id} to {message.destination!r} dropped: {reason}",
        )
        self.ended.set()


class Echo(Concern):
    """Answers every ``echo`` request with its payload."""

    command = b"echo"

    def on_request(self, message: Message) -> Mapping[str, Any]:
        return dict(message.payload)


def main(out: TextIO = sys.stdout) -> int:
    with tempfile.TemporaryDirectory(prefix="p2p0mq-demo-") as tmp:
        return _run(Path(tmp), out)


def _run(tmp: Path, out: TextIO) -> int:
    alice_keys, bob_keys = KeyStore(tmp / "alice"), KeyStore(tmp / "bob")
    # Each store knows the other's key before either node starts, so each
    # admits the other from its first handshake on (keys handed out ahead,
    # as p2p0mq's users do): only Carol's handshake is refused below.
    alice_keys.add_public_key(b"bob", bob_keys.create(b"bob").public)
    bob_keys.add_public_key(b"alice", alice_keys.create(b"alice").public)
    carol_wrong = KeyStore(tmp / "elsewhere").create(b"carol").public
    bob_heard, carol_ended = threading.Event(), threading.Event()
    with (
        Node(b"alice", keys=alice_keys, policy=FailurePolicy(max_attempts=0)) as alice,
        Node(b"bob", keys=bob_keys) as bob,
    ):
        _say(out, f"alice listens on {alice.endpoint}, bob on {bob.endpoint} (CURVE + ZAP)")
        alice.add_concern(Chat, out=out, name="alice", ended=carol_ended)
        bob.add_concern(Chat, out=out, name="bob", ended=bob_heard)
        bob.add_concern(Echo)
        bob.add_peer(b"alice", alice.endpoint, alice_keys.load(b"alice").public)
        alice.add_peer(b"bob", bob.endpoint, bob_keys.load(b"bob").public)
        alice.add_peer(b"carol", bob.endpoint, carol_wrong)  # bob's address, a wrong key
        batch = [
            *(alice.message(b"bob", b"chat", {"text": f"medium {i}"}) for i in range(4)),
            *(
                alice.message(b"bob", b"chat", {"text": f"slow {i}"}, priority=Priority.SLOW)
                for i in range(2)
            ),
            *(
                alice.message(b"bob", b"chat", {"text": f"fast {i}"}, priority=Priority.FAST)
                for i in range(2)
            ),
        ]
        alice.send_many(batch)
        alice.send(b"carol", b"chat", {"text": "hello carol"}, priority=Priority.FAST)
        reply = alice.request(b"bob", b"echo", {"ping": 1}, timeout=5).get(timeout=10)
        _say(out, f"alice's echo request came back: {reply.payload}")
        if not (bob_heard.wait(10) and carol_ended.wait(10)):
            _say(out, "demo: timed out")
            return 1
        stats = alice.stats()
        _say(out, f"alice: sent={stats['sent']} dropped={stats['dropped_by_reason']}")
    _say(out, "done: every message ended sent or dropped")
    return 0
