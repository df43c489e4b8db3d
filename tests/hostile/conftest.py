from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile._harness import FIGURES, Listener


@pytest.fixture(scope="session")
def hostile_listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The "Must show": positions covered, cases run, cases that got through, per mode.
    if not FIGURES.batches:
        return
    terminalreporter.write_sep("-", "hostile-argument property suite")
    terminalreporter.write_line(FIGURES.summary())
    if FIGURES.path is not None:
        terminalreporter.write_line(f"figures: {FIGURES.path}")
