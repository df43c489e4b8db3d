"""A module another thread is still importing is not one appshield may read.

An import puts the module in `sys.modules` before its body runs. The first violation makes
appshield import the OpenTelemetry SDK on its own thread; a second violation that looked up
`opentelemetry.context` meanwhile found it half empty, the AttributeError was swallowed by
the sink's fence, and that violation's span and log record were lost without a trace (the
test `test_exporter_is_exempt_from_a_network_deny_but_the_app_is_not` failed 1 run in 3).

Here the half-imported state is made on purpose and held: a thread imports the real
`opentelemetry.context` through a loader that pauses before running its body, and the app's
violation happens while it is paused.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from appshield._modules import loaded
from tests.telemetry.apps import run_app
from tests.telemetry.otlp_receiver import attributes, running

# Pauses the import of the real `opentelemetry.context` right before its body runs.
PAUSED_IMPORT = """
import importlib.abc, importlib.machinery, threading
started, release = threading.Event(), threading.Event()

class PausingLoader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real
    def create_module(self, spec):
        return self.real.create_module(spec)
    def exec_module(self, module):
        started.set()
        release.wait(30)
        self.real.exec_module(module)

class PausingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "opentelemetry.context":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = PausingLoader(spec.loader)
        return spec

sys.meta_path.insert(0, PausingFinder())
importer = threading.Thread(target=__import__, args=("opentelemetry.context",))
importer.start()
started.wait(30)
half = sys.modules["opentelemetry.context"]
print(json.dumps({"half": not hasattr(half, "get_current")}))
"""


def test_a_violation_during_the_sdks_own_import_is_still_exported(tmp_path: Path) -> None:
    body = (
        PAUSED_IMPORT
        + """
violate()
release.set()
importer.join(30)
print(json.dumps({"done": True}))
"""
    )
    with running() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "APPSHIELD_FLUSH_TIMEOUT": "30"}
        result = run_app(tmp_path, body, env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.split()
        assert lines == ['{"half":', "true}", '{"done":', "true}"], result.stdout
        spans = [s for s in receiver.spans() if s.name == "appshield.violation"]
        assert [attributes(s.attributes)["security_rule.name"] for s in spans] == [
            "no-denied-writes"
        ]
        logs = receiver.log_records()
        assert [r.event_name for r in logs] == ["appshield.violation"]
        assert receiver.metric_points("appshield.telemetry.dropped") == []


def test_loaded_waits_for_the_end_of_the_module_body(tmp_path: Path) -> None:
    """`loaded` answers None while another thread runs the module's body, the module once
    the body is over, and None for a module never imported. It imports nothing."""
    (tmp_path / "appshield_race_probe.py").write_text(
        "import threading\n"
        "import appshield_race_gate as gate\n"
        "gate.started.set()\n"
        "gate.release.wait(30)\n"
        "READY = True\n"
    )
    gate = type(sys)("appshield_race_gate")
    gate.started, gate.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    sys.modules["appshield_race_gate"] = gate
    sys.path.insert(0, str(tmp_path))
    importer = threading.Thread(target=__import__, args=("appshield_race_probe",))
    try:
        assert loaded("appshield_race_probe") is None
        importer.start()
        assert gate.started.wait(30)  # type: ignore[attr-defined]
        assert "appshield_race_probe" in sys.modules  # there, but half done
        assert loaded("appshield_race_probe") is None
        gate.release.set()  # type: ignore[attr-defined]
        importer.join(30)
        module = loaded("appshield_race_probe")
        assert module is sys.modules["appshield_race_probe"]
        assert module.READY is True  # type: ignore[attr-defined]
        assert loaded("appshield_never_imported_module") is None
        assert "appshield_never_imported_module" not in sys.modules
    finally:
        gate.release.set()  # type: ignore[attr-defined]
        importer.join(30)
        sys.path.remove(str(tmp_path))
        for name in ("appshield_race_probe", "appshield_race_gate"):
            sys.modules.pop(name, None)
