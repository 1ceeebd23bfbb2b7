"""``python -m p2p0mq_actors``: the ``p2p0mq-actors`` command (the demo by default)."""

from .cli import main

raise SystemExit(main())
