"""A str that lies about which name it is, for the tests of the remembered-call memories."""

from __future__ import annotations


class LyingName(str):
    """A str subclass whose characters name one file (what the system call gets) while its
    `__hash__` and `__eq__` claim to be another name, `claimed` (what a dict lookup keyed by
    remembered names would see)."""

    claimed = ""

    def __hash__(self) -> int:
        return hash(self.claimed)

    def __eq__(self, other: object) -> bool:
        return True


def lying_name(actual: str, claimed: str) -> LyingName:
    name = LyingName(actual)
    name.claimed = claimed
    return name
