"""Bulk sends: a run of fast messages onto one peer's socket in as few
calls as its wire allows.

Two callers use it, each with its own ``BulkSend`` (an encoder's packer
serves one thread at a time):
- a PeerConnection, for a plan's fast messages (``run_plan``'s
  ``send_all``);
- the express lane, for a ``send_many`` to an idle peer, in the caller's
  thread (``express.py``), which leaves to the connection what does not
  go out at once.

Either way it stops where the socket would block and where a message
needs the connection's care (one that does not encode: the connection's
own send of it names the fault). A message whose send raised anything
else fails alone, and the rest goes on (``PeerSocket.send_each``: it was
tried, and is not sent again); on the native wire, the messages of a frame.

On the native wire a run travels in batch frames of up to
``FRAME_MESSAGES``, each packed in one call (``encode_native_batch``); on
p2p0mq's wire, ``EACH_CHUNK`` messages at a time are encoded in one pass
and sent in one loop (``Encoder.many``, ``PeerSocket.send_each``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..core.codec import Encoder, WireShape
from ..core.errors import (
    PeerUnreachableError,
    SendError,
    UnexpectedSendError,
    WouldBlock,
    detached,
)
from ..core.message import Message
from ..core.native import encode_native_batch
from ..core.ports import PeerSocket

FRAME_MESSAGES: Final = 64
"""On the native wire, the most messages sent in one frame."""
FRAME_BYTES: Final = 256 * 1024
"""... and the size at which a frame is sent before it has that many (or
``max_frame``, if less: a frame never passes that)."""
EACH_CHUNK: Final = 64
"""p2p0mq's wire: how many fast messages are encoded, then sent, at a time."""

Failed = list[tuple[Message, SendError]]


class BulkSend:
    """Runs of fast messages to one peer, for one thread at a time.

    Args:
        peer: the peer's uuid (named in errors).
        encoder: the caller's encoder; its shape chooses the way.
    """

    __slots__ = ("_chunk", "_encode", "_native", "frame_bytes", "peer")

    def __init__(self, peer: bytes, encoder: Encoder) -> None:
        self.peer = peer
        self._encode = encoder
        self._native = encoder.shape is WireShape.NATIVE
        self.frame_bytes = min(FRAME_BYTES, encoder.limit)
        """The size past which a frame is not sent (see ``FRAME_BYTES``)."""
        self._chunk = FRAME_MESSAGES  # native: messages packed a frame

    def __call__(
        self,
        socket: PeerSocket,
        messages: Sequence[Message],
        now: float,
        *,
        lone_last: bool = False,
    ) -> tuple[int, Failed]:
        """Send ``messages`` in order from the first: how many were taken
        (sent, or failed), and those of them that failed, with why.

        It stops where the socket would block, and where a message needs a
        caller's care: one that does not encode (the caller's own send of
        it names the fault), and on the native wire two that still overflow
        a frame, or a last lone message (the connection puts that one in
        the frame of its plan's other messages) unless ``lone_last``: then
        it goes in a frame of its own (the express lane).
        """
        if self._native:
            return self._frames(socket, messages, now, lone_last)
        return self._each(socket, messages, now)

    def _frames(
        self, socket: PeerSocket, messages: Sequence[Message], now: float, lone_last: bool
    ) -> tuple[int, Failed]:
        """The native wire: each frame packed in one call. A frame packed
        past ``frame_bytes`` is packed again with half as many messages,
        and that size is kept until frames come out under half of that
        again (large payloads cost a few wasted packings once, not in every
        run)."""
        pack = self._encode.pack
        failed: Failed = []
        total, done, size = len(messages), 0, self._chunk
        while total - done > 1:
            chunk = messages[done : done + size]
            try:
                if not socket.writable():
                    break
                frame = encode_native_batch(chunk, now, pack=pack)
            except Exception:  # not only msgpack's refusals: a payload's own bug too
                break
            if len(frame) > self.frame_bytes:
                if len(chunk) <= 2:
                    break
                size = len(chunk) // 2
                continue
            try:
                socket.send_frames([frame])
            except WouldBlock:  # (writable a moment ago): nothing went out
                break
            except Exception as exc:
                error = frame_error(self.peer, exc, len(chunk))
                failed.extend((message, error) for message in chunk)
            done += len(chunk)
            if len(chunk) == size < FRAME_MESSAGES and len(frame) < self.frame_bytes // 2:
                size = min(FRAME_MESSAGES, size * 2)
        self._chunk = size
        if lone_last and total - done == 1:
            last = messages[done]
            try:
                frames = self._encode(last, now)
                if not socket.writable():
                    return done, failed
            except Exception:  # too large, unencodable: the connection names it
                return done, failed
            try:
                socket.send_frames(frames)
            except WouldBlock:
                return done, failed
            except Exception as exc:
                failed.append((last, frame_error(self.peer, exc, 1)))
            done += 1
        return done, failed

    def _each(
        self, socket: PeerSocket, messages: Sequence[Message], now: float
    ) -> tuple[int, Failed]:
        """p2p0mq's wire: ``EACH_CHUNK`` at a time, each chunk in one pass
        and one loop, not a call a message (a connection's CPU 2.7-3.1 ->
        2.1-2.2 us a message, ``python -m bench.cpu``, scenario 1's work).
        Chunks, not the whole run at once: a plan of thousands meets the
        high-water mark, and what was encoded past it would be encoded again
        in the next plan (measured that way, 3.6-3.7 us a message)."""
        send_each = getattr(socket, "send_each", None)
        if send_each is None:  # an application's socket without it: one call each
            return 0, []
        encode_many = self._encode.many
        failed: Failed = []
        done, total = 0, len(messages)
        while done < total:
            chunk = messages[done : done + EACH_CHUNK]
            frames = encode_many(chunk, now)
            encoded = len(frames)
            while frames:
                taken, error = send_each(frames)
                done += taken
                if error is None:
                    break
                if isinstance(error, WouldBlock):
                    return done, failed
                failed.append((messages[done], error))
                done += 1
                frames = frames[taken + 1 :]
            if encoded < len(chunk):
                break  # the next does not encode: the caller's send names the fault
        return done, failed


def frame_error(peer: bytes, exc: Exception, count: int) -> SendError:
    """What the ``count`` messages of a frame that could not be sent to
    ``peer`` failed with."""
    if isinstance(exc, WouldBlock):  # not a wait: these left their queues
        return PeerUnreachableError(
            f"peer {peer!r} stopped taking messages while a frame of {count} was filled",
            peer=peer,
        )
    if isinstance(exc, SendError):
        return detached(exc)
    error = UnexpectedSendError(
        f"sending a frame of {count} to {peer!r} raised {type(exc).__name__}: {exc}",
        peer=peer,
    )
    error.__cause__ = exc
    return error
