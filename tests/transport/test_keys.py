"""CURVE key generation and checks."""

from __future__ import annotations

import pytest
import zmq
from zmq.utils import z85

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.ports import KeyPair
from p2p0mq_actors.transport.keys import check_key_pair, check_public_key, generate_keypair


def test_generated_key_pairs_are_z85_halves_that_belong_together() -> None:
    keys = generate_keypair()

    assert (len(keys.public), len(keys.secret)) == (40, 40)
    assert (len(z85.decode(keys.public)), len(z85.decode(keys.secret))) == (32, 32)
    assert zmq.curve_public(keys.secret) == keys.public
    assert generate_keypair() != keys


def test_a_valid_public_key_is_returned_unchanged() -> None:
    key = generate_keypair().public

    assert check_public_key(key) is key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("a" * 40, "a CURVE public key must be bytes (40 bytes of Z85), got str"),
        (b"short", "a CURVE public key must be 40 bytes of Z85, got 5 bytes"),
        (b"\x01" * 32, "a CURVE public key must be 40 bytes of Z85, got 32 bytes"),
        (b" " * 40, "a CURVE public key must be valid Z85 text; these 40 bytes are not"),
        (b"\xc3\xa9" * 20, "a CURVE public key must be valid Z85 text; these 40 bytes are not"),
        # '#' is the largest Z85 digit: "#####" is worth more than 2**32 - 1
        (b"#" * 40, "a CURVE public key must be valid Z85 text; these 40 bytes are not"),
    ],
)
def test_a_malformed_public_key_is_a_configuration_error(key: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_public_key(key)  # type: ignore[arg-type]

    assert str(info.value) == message
    # The decoder's KeyError would show a byte of the key in the traceback.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_a_matching_key_pair_passes() -> None:
    keys = generate_keypair()

    assert check_key_pair(keys) is keys


def test_a_mismatched_key_pair_is_refused_without_showing_the_secret() -> None:
    mine, other = generate_keypair(), generate_keypair()
    keys = KeyPair(public=mine.public, secret=other.secret)

    with pytest.raises(ConfigurationError) as info:
        check_key_pair(keys)

    assert str(info.value).startswith("the key pair does not match: its public key")
    assert other.secret.decode() not in str(info.value)
    assert mine.public.decode() not in str(info.value)


def test_a_secret_given_as_the_public_half_is_not_shown_when_refused() -> None:
    pair = generate_keypair()  # the public half mangled: the secret pasted in its place
    with pytest.raises(ConfigurationError, match="does not match") as info:
        check_key_pair(KeyPair(public=pair.secret, secret=pair.secret))
    assert pair.secret.decode() not in str(info.value)


def test_a_malformed_secret_key_is_refused_without_showing_it() -> None:
    secret = b"!" * 39 + b" "
    keys = KeyPair(public=generate_keypair().public, secret=secret)

    with pytest.raises(ConfigurationError) as info:
        check_key_pair(keys)

    assert str(info.value) == "a CURVE secret key must be valid Z85 text; these 40 bytes are not"
    assert "!!!" not in repr(info.value)


def test_the_key_pair_repr_hides_the_secret() -> None:
    keys = generate_keypair()

    assert repr(keys) == f"KeyPair(public={keys.public!r}, secret=<hidden>)"
