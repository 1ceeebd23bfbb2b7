"""What the send path is given: settings, and Concerns to start with its keywords."""

from __future__ import annotations

from typing import Any

import pytest

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.runtime.sender import Sender
from p2p0mq_actors.testing import FakeSocketFactory, ManualClock


class Closed(Concern):
    """Forgot ``**kwargs``."""

    command = b"closed"

    def __init__(self, *, name: str) -> None:
        super().__init__()
        self.name = name


class Broken(Concern):
    """Accepts them, and fails for a reason of its own."""

    command = b"broken"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        raise TypeError("a bug of its own")


def test_a_concern_whose_init_refuses_the_nodes_keywords_is_told_how_to_fix_it() -> None:
    with Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender:
        with pytest.raises(ConfigurationError, match=r"Closed.__init__ must accept \*\*kwargs"):
            sender.add_concern(Closed, name="x")
        with pytest.raises(TypeError, match="a bug of its own"):
            sender.add_concern(Broken)
        assert b"closed" not in sender.concerns and b"broken" not in sender.concerns


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_rounds", 0),
        ("max_rounds", "3"),
        ("pacing", -1),
        ("unreachable_after", 0),
        ("unreachable_after", float("nan")),
        ("timeout", -1.0),
        ("clock", "x"),
        ("policy", "x"),
    ],
)
def test_a_send_path_with_a_wrong_setting_is_a_configuration_error_naming_it(
    option: str, value: object
) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Sender(b"me", sockets=FakeSocketFactory(), **{option: value})  # type: ignore[arg-type]
