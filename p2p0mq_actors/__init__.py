"""p2p0mq-actors."""
