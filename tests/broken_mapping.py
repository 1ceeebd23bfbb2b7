"""A payload value whose reading raises: shared by the codec's and the
connection's tests of a message that cannot be encoded for a reason of
its own (not one of msgpack's refusals)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class BrokenMapping(Mapping[str, int]):
    """A payload value whose reading raises (a lazily loaded view, say)."""

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("backing store gone")

    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: str) -> int:
        raise RuntimeError("backing store gone")
