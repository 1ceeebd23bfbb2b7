"""The public test kit: manual clock, fake sockets, recorders and pytest fixtures.

See the README's "Testing your own Concerns" for how to use them.
"""

from .clock import ManualClock
from .fake_socket import FakeSocket, FakeSocketFactory
from .recorder import MessageLog, OutcomeBook, Recorder, RecordingConcern

__all__ = [
    "FakeSocket",
    "FakeSocketFactory",
    "ManualClock",
    "MessageLog",
    "OutcomeBook",
    "Recorder",
    "RecordingConcern",
]
