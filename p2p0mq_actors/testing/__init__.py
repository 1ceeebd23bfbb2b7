"""The public test kit: manual clock, fake sockets, recorders and pytest fixtures.

See the README's "Testing your own Concerns" for how to use them. The
actor messages a Concern gets (``Received``, ``Sent``, ``Failed``,
``Dropped``) and sends its Scheduler (``Retry``, ``Enqueue``: a
``Recorder`` standing in for it sees these) are here too.
"""

from ..runtime.messages import Dropped, Enqueue, Failed, Received, Retry, Sent
from .clock import ManualClock
from .fake_socket import FakeSocket, FakeSocketFactory
from .recorder import MessageLog, OutcomeBook, Recorder, RecordingConcern

__all__ = [  # noqa: RUF022 - the kit, then the actor messages
    "FakeSocket",
    "FakeSocketFactory",
    "ManualClock",
    "MessageLog",
    "OutcomeBook",
    "Recorder",
    "RecordingConcern",
    "Dropped",
    "Enqueue",
    "Failed",
    "Received",
    "Retry",
    "Sent",
]
