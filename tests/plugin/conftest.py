"""The `pytester` fixture for these tests. `pytest_plugins` may only be set in the rootdir's
conftest, so the plugin is registered here when this folder is collected."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
