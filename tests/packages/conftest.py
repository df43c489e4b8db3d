from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.packages._world import World, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Wheels built and installed into a fresh venv once per session (a few seconds)."""
    made = build_world(tmp_path_factory.mktemp("grants-world"))
    yield made
    made.close()
