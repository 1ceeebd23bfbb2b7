"""A small demonstration of the send path over real CURVE sockets.

Alice's node sends messages on the three lanes to Bob, who listens on a
ZAP-guarded CURVE ROUTER on 127.0.0.1, and to Carol, whose public key Alice
has wrong. Bob prints what arrives, in order; Alice's Concern prints what it
hears: every message ends sent or dropped, with a reason.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from .concerns.base import Concern
from .core.codec import decode
from .core.errors import SendError
from .core.message import Message, Priority
from .core.policy import Decision, FailurePolicy
from .runtime.sender import Sender
from .transport.context import end_context, new_context
from .transport.keys import generate_keypair
from .transport.router import AllowedKeys, CurveRouter
from .transport.sockets import CurveDealerFactory


class Chat(Concern):
    """Alice's Concern for ``chat``: reports what happens to her messages."""

    command = b"chat"

    def __init__(self, *, out: TextIO, ended: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = out
        self.ended = ended

    def on_sent(self, messages: Sequence[Message]) -> None:
        print(f"  alice: {len(messages)} sent", file=self.out)

    def on_send_failed(self, message: Message, error: SendError) -> Decision:
        print(
            f"  alice: #{message.message_id} to {message.destination!r} failed: "
            f"{type(error).__name__}",
            file=self.out,
        )
        return super().on_send_failed(message, error)

    def on_dropped(self, message: Message, reason: str) -> None:
        print(
            f"  alice: #{message.message_id} to {message.destination!r} dropped: {reason}",
            file=self.out,
        )
        self.ended.set()


def main(out: TextIO = sys.stdout) -> int:
    alice_keys, bob_keys, carol_keys = generate_keypair(), generate_keypair(), generate_keypair()
    bob_ctx, alice_ctx = new_context(), new_context()
    bob = CurveRouter(bob_ctx, bob_keys, AllowedKeys([alice_keys.public]))
    endpoint = bob.bind("tcp://127.0.0.1:*")
    print(f"bob listens on {endpoint} (CURVE, ZAP admits alice only)", file=out)
    sender = Sender(
        b"alice",
        sockets=CurveDealerFactory(alice_ctx, b"alice", alice_keys),
    )
    carol_ended = threading.Event()
    try:
        sender.add_concern(Chat, out=out, ended=carol_ended, policy=FailurePolicy(max_attempts=0))
        sender.add_peer(b"bob", endpoint, bob_keys.public)
        sender.add_peer(b"carol", endpoint, carol_keys.public)  # wrong key: Bob's server
        sender.connect_peers()
        now = sender.clock.now()

        def chat(to: bytes, text: str) -> Message:
            return Message.create(b"alice", to, b"chat", {"text": text}, now=now, ttl=5)

        medium = [chat(b"bob", f"medium {i}") for i in range(4)]
        slow = [chat(b"bob", f"slow {i}") for i in range(2)]
        fast = [chat(b"bob", f"fast {i}") for i in range(2)]
        sender.enqueue_all(
            requests={Priority.MEDIUM: medium, Priority.SLOW: slow, Priority.FAST: fast}
        )
        sender.enqueue_fast(chat(b"carol", "hello carol"))
        for _ in range(len(medium) + len(slow) + len(fast)):
            frames = bob.recv_frames(timeout=5)
            if frames is None:
                print("bob: nothing more arrived", file=out)
                return 1
            m = decode(frames, b"bob", now=sender.clock.now())
            print(f"bob got #{m.message_id} from {m.source!r}: {m.payload['text']}", file=out)
        if not carol_ended.wait(timeout=5):
            print("alice: heard nothing about carol's message", file=out)
            return 1
    finally:
        sender.stop()
        bob.close()
        end_context(alice_ctx)
        end_context(bob_ctx)
    print("done: every message ended sent or dropped", file=out)
    return 0
