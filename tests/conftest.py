"""Settings shared by the whole suite."""

from __future__ import annotations

from hypothesis import settings

# Property tests check behaviour, never speed: a deadline per example turns a busy CI
# machine (or two cores shared with other jobs) into failures that say nothing about the
# code. Speed is measured by benchmarks/run.py.
settings.register_profile("appshield", deadline=None)
settings.load_profile("appshield")
