"""The demo (``python -m p2p0mq_actors``) runs end to end over real CURVE sockets."""

from __future__ import annotations

import io
import re

import pytest

from p2p0mq_actors.demo import main

pytestmark = pytest.mark.integration


def test_the_demo_delivers_in_round_order_and_accounts_for_every_message() -> None:
    out = io.StringIO()
    assert main(out) == 0
    text = out.getvalue()
    got = re.findall(r"bob got from b'alice': (.+)", text)
    assert got == [
        "fast 0", "fast 1",
        "medium 0", "slow 0",
        "medium 1", "slow 1",
        "medium 2",
        "medium 3",
    ]  # fmt: skip
    assert "alice's echo request came back: {'ping': 1}" in text
    assert "to b'carol' failed: PeerRefusedError" in text
    assert "to b'carol' dropped: attempts" in text
    assert "alice: sent=9 dropped={'attempts': 1}" in text
    assert text.endswith("done: every message ended sent or dropped\n")
