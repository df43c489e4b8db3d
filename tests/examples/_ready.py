"""Which parts of appshield have landed, so that tests of the whole skip (with a reason)
rather than fail while the pieces they stand on are still being built."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path

import pytest

__all__ = ["require"]


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _hooks_ready() -> bool:
    hooks = importlib.import_module("appshield.hooks")
    return bool(hooks.all_patch_points() or hooks.all_audit_handlers())


def _run_ready() -> bool:
    return _has_module("appshield.cli") and _has_module("appshield.activation")


def _otel_ready() -> bool:
    # The placeholder sink is a single module; the OpenTelemetry sinks add modules beside it.
    telemetry = importlib.import_module("appshield.telemetry")
    folder = Path(telemetry.__file__ or "").parent
    return any(p.name != "__init__.py" for p in folder.glob("*.py"))


_CHECKS = {
    "loader": lambda: _has_module("appshield.policy.loader"),
    "engine": lambda: _has_module("appshield.engine") and _has_engine(),
    "normalize": lambda: _has_module("appshield.normalize"),
    "hooks": _hooks_ready,
    "cli": lambda: _has_module("appshield.cli") and shutil.which("appshield") is not None,
    "run": _run_ready,
    "otel": _otel_ready,
}


def _has_engine() -> bool:
    engine = importlib.import_module("appshield.engine")
    return hasattr(engine, "compile_policy")


def ready(*parts: str) -> bool:
    return all(_CHECKS[part]() for part in parts)


def require(*parts: str) -> None:
    """Skip the calling test unless every named part of appshield has landed."""
    missing = [part for part in parts if not _CHECKS[part]()]
    if missing:
        pytest.skip(f"appshield parts not landed yet: {', '.join(missing)}")
