from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bypass._harness import Listener


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()
