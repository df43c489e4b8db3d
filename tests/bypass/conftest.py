from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bypass._harness import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    # One per test: a connection an earlier test's child made, which the accepting thread
    # takes only later on a loaded machine, must never count as this test's.
    server = Listener()
    yield server
    server.close()
