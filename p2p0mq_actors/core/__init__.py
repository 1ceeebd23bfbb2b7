"""Pure code: message model, wire codecs, fairness queues, failure policy.

Nothing here imports zmq or pykka, starts a thread or reads a clock.
"""
