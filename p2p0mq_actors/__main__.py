"""``python -m p2p0mq_actors``: runs the demo (the CLI comes with a later issue)."""

from .demo import main

raise SystemExit(main())
