"""Fixtures for the actor tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sendpath_kit import Path


@pytest.fixture
def path_factory() -> Iterator[Callable[..., Path]]:
    made: list[Path] = []

    def build(peers: list[bytes], **options: object) -> Path:
        p = Path(peers, **options)
        made.append(p)
        return p

    yield build
    for p in made:
        p.sender.stop()
