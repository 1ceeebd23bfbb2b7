"""The only layer that imports zmq: CURVE sockets, keys and zmq error mapping.

Everything above this layer sees the ``PeerSocket`` / ``SocketFactory``
protocols of ``p2p0mq_actors.core.ports`` and the library's error tree.
"""

from .errors import (
    EAGAIN,
    ENOTSOCK,
    ETERM,
    SocketClosedError,
    configuration_error,
    error_for_errno,
    translate,
)
from .keys import check_key_pair, check_public_key, generate_keypair
from .keystore import KeyStore
from .sockets import CurveDealerFactory, CurveDealerSocket

__all__ = [
    "EAGAIN",
    "ENOTSOCK",
    "ETERM",
    "CurveDealerFactory",
    "CurveDealerSocket",
    "KeyStore",
    "SocketClosedError",
    "check_key_pair",
    "check_public_key",
    "configuration_error",
    "error_for_errno",
    "generate_keypair",
    "translate",
]
