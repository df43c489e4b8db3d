"""Interception of the imports category (patch points and audit-event handlers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from appshield.hooks._patching import PatchPoint

PATCHES: tuple[PatchPoint, ...] = ()
AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {}
