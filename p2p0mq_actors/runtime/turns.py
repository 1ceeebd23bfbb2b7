"""Turns: one thread of the process at a time sends or receives a batch.

pyzmq lets go of the GIL around every ``send`` and ``recv``, however small
the frame. When several threads of one process send or receive at once
(the PeerConnections of a node carrying out their plans, the Receivers of
several nodes), each of those calls hands the GIL to another thread and
waits to get it back: every frame becomes a thread switch (a convoy).
Taking turns with one lock puts the others to sleep on the lock instead of
on the GIL, so a thread that lets go of the GIL in ``send`` gets it straight
back. Nothing runs slower for it: those threads never ran in parallel.

Measured (a node sending medium backlogs to ten peers, raw sinks in another
process, medians of 5, two runs each): 0.1.1 wire 78-85k msg/s without
turns, 84-89k with them; native 80-107k without, 118-133k with. A process
hosting ten receiving nodes: 17-20 us of Receiver CPU a message without,
10 us with.

Rules:
- Held only around non-blocking socket work (a plan's sends, a drain of
  ready messages): never while waiting (``poll``, a full intake) and never
  while another turn-taker could be needed to make progress.
"""

from __future__ import annotations

import threading
from typing import Final

TURNS: Final = threading.Lock()
