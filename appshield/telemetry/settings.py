"""Telemetry settings, read once from the start-up environment snapshot.

The `OTEL_*` variables configure the private pipeline that appshield uses when the app has
not configured OpenTelemetry itself. One deliberate difference from the OpenTelemetry
default: a signal whose `OTEL_<SIGNAL>_EXPORTER` is unset exports over OTLP only when an OTLP
endpoint variable is set, so a process with no telemetry settings sends nothing anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from appshield.settings import log_format, seconds

__all__ = ["SIGNALS", "TelemetrySettings"]

SIGNALS: tuple[str, ...] = ("traces", "logs", "metrics")
_KNOWN_EXPORTERS = frozenset({"otlp", "console", "none"})


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    return seconds(environ.get(name), default)  # the one reading of a seconds setting


def _exporters(environ: Mapping[str, str], signal: str) -> tuple[str, ...]:
    raw = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if not raw:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ("otlp",) if endpoint else ()
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    return tuple(n for n in names if n in _KNOWN_EXPORTERS and n != "none")


@dataclass(frozen=True)
class TelemetrySettings:
    log_path: str | None = None
    log_format: str = "json"  # APPSHIELD_LOG_FORMAT (checked at install: appshield.settings)
    redact: bool = True
    interval_s: float = 10.0
    max_keys: int = 4096
    flush_timeout_s: float = 2.0
    # exporters of the private pipeline, per signal: () means that signal stays off
    exporters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], log_path: str | None = None
    ) -> TelemetrySettings:
        disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        exporters = {s: () if disabled else _exporters(environ, s) for s in SIGNALS}
        return cls(
            log_path=log_path if log_path is not None else (environ.get("APPSHIELD_LOG") or None),
            log_format=log_format(environ.get("APPSHIELD_LOG_FORMAT")),
            redact=environ.get("APPSHIELD_REDACT", "1").strip().lower() not in ("0", "false", "no"),
            interval_s=_float(environ, "APPSHIELD_AGGREGATION_INTERVAL", 10.0),
            flush_timeout_s=_float(environ, "APPSHIELD_FLUSH_TIMEOUT", 2.0),
            exporters=exporters,
            environ=dict(environ),
        )

    @property
    def private_signals(self) -> tuple[str, ...]:
        return tuple(s for s in SIGNALS if self.exporters.get(s))
