"""CURVE keys: making them and checking them before zmq sees them.

Rules:
- Keys are Z85 text: 40 bytes that decode to a 32-byte Curve25519 key.
  libzmq would also take 32 raw bytes; we never pass those, so a key that is
  not 40 bytes of Z85 is a configuration mistake, caught here.
- A secret key never appears in a log line, a repr or an error message. Error
  messages about a bad key give its length and the reason, not its value
  (a mangled "public" key may well be a pasted secret).
"""

from __future__ import annotations

import struct

import zmq
from zmq.utils import z85

from ..core.errors import ConfigurationError
from ..core.ports import KeyPair

__all__ = ["check_key_pair", "check_public_key", "generate_keypair"]

CURVE_OVERHEAD = 33
"""A CURVE MESSAGE command's bytes around the frame it carries (name 8,
nonce 8, MAC 16, flags 1): what libzmq's ``MAXMSGSIZE`` check, which sees
frames encrypted, counts more (measured on libzmq 4.3.5, to the byte)."""
Z85_KEY_LEN = 40
RAW_KEY_LEN = 32


def generate_keypair() -> KeyPair:
    """A new random CURVE key pair, as Z85 text.

    Store the secret half with file mode 0600 and never log it.
    """
    public, secret = zmq.curve_keypair()
    return KeyPair(public=public, secret=secret)


def check_public_key(key: bytes) -> bytes:
    """Return ``key`` if it is a CURVE public key in Z85, else raise.

    Args:
        key: The key to check: 40 bytes of Z85 text.

    Raises:
        ConfigurationError: ``key`` is not bytes, not 40 bytes long, or not
            valid Z85. The message gives the length and reason, never the key.
    """
    return _check_z85(key, "public key")


def check_key_pair(keys: KeyPair) -> KeyPair:
    """Return ``keys`` if both halves are valid Z85 and belong together, else raise.

    Raises:
        ConfigurationError: a half is malformed, or the public key is not the
            one derived from the secret key. The message never shows the secret.
    """
    _check_z85(keys.public, "public key")
    _check_z85(keys.secret, "secret key")
    if zmq.curve_public(keys.secret) != keys.public:
        raise ConfigurationError(
            "the key pair does not match: its public key is not the one derived from"
            " its secret key; load both halves from the same certificate (neither is"
            " shown: a mangled public key may be a secret pasted in its place)"
        )
    return keys


def _check_z85(key: object, what: str) -> bytes:
    if not isinstance(key, bytes):
        raise ConfigurationError(
            f"a CURVE {what} must be bytes (40 bytes of Z85), got {type(key).__name__}"
        )
    if len(key) != Z85_KEY_LEN:
        raise ConfigurationError(
            f"a CURVE {what} must be {Z85_KEY_LEN} bytes of Z85, got {len(key)} bytes"
        )
    try:
        raw = z85.decode(key)
    except (KeyError, ValueError, struct.error):
        # KeyError: a byte outside the Z85 alphabet; struct.error: a 5-character
        # group worth more than 2**32 - 1.
        raise ConfigurationError(
            f"a CURVE {what} must be valid Z85 text; these {len(key)} bytes are not"
        ) from None
    if len(raw) != RAW_KEY_LEN:  # unreachable for 40 bytes, kept as a guard
        raise ConfigurationError(f"a CURVE {what} must decode to {RAW_KEY_LEN} bytes")
    return key
