"""Messages for the lane and planner tests: one sender, unique ids, far deadlines."""

from __future__ import annotations

from itertools import count

from p2p0mq_actors.core.message import Message, Priority

FAST, MEDIUM, SLOW = Priority.FAST, Priority.MEDIUM, Priority.SLOW
_ids = count(1)


def msg(peer: bytes, prio: Priority = MEDIUM, deadline: float = 1e9) -> Message:
    return Message(
        source=b"me",
        destination=peer,
        command=b"t",
        deadline=deadline,
        priority=prio,
        message_id=next(_ids),
    )
