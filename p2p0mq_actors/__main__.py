"""``python -m p2p0mq_actors``: runs the demo (the CLI comes with a later issue)."""

import logging
import sys

from .demo import main

logging.basicConfig(
    stream=sys.stdout, level=logging.WARNING, format="  (log) %(levelname)s %(name)s: %(message)s"
)
raise SystemExit(main())
