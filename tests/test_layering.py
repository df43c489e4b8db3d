"""The layers import one way: core (the policy document, decisions, operations, the engine)
<- hooks <- runtime <- activation and the CLI; telemetry and learn never import the patching
layer. The patching layer is handed the shield at install (`hooks._gate.bind`) and never
reaches up into the runtime or the activation code, not even from inside a function. An
upward import is how the old import cycle began."""

from __future__ import annotations

import ast
from pathlib import Path

import appshield
from scripts.import_graph import cycles, import_graph

PACKAGE = Path(appshield.__file__).resolve().parent
FORBIDDEN_FROM_HOOKS = ("appshield.runtime", "appshield.activation")


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from appshield import runtime`
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def test_nothing_in_hooks_imports_the_runtime_or_activation() -> None:
    offenders = []
    for path in sorted((PACKAGE / "hooks").rglob("*.py")):
        for line, name in _imported_names(ast.parse(path.read_text(), str(path))):
            if name.startswith(FORBIDDEN_FROM_HOOKS):
                offenders.append(f"{path.name}:{line}: {name}")
    assert offenders == []


# The whole graph, imports inside functions included (scripts/import_graph.py prints it).
GRAPH = import_graph()

CORE = (
    "appshield.document",
    "appshield.decision",
    "appshield.operations",
    "appshield.errors",
    "appshield.normalize",
    "appshield._threadstate",
    "appshield._modules",
    "appshield.settings",
    "appshield.ports",
    "appshield._proc_describe",
    "appshield._proc_children",
    "appshield.versions",
    "appshield.attribution",
    "appshield.grants",
    "appshield.policy",
    "appshield.engine",
    "appshield.shadow",
)
ABOVE_CORE = (
    "appshield.hooks",
    "appshield.runtime",
    "appshield.activation",
    "appshield.activation.reload",
    "appshield.telemetry",
    "appshield.learn",
    "appshield.record",
    "appshield.cli",
    "appshield.auto",
    "appshield.bootstrap",
)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _offenders(lower: tuple[str, ...], higher: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _within(module, lower)
        for target in targets
        if _within(target, higher)
    )


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(GRAPH) == []


def test_the_core_imports_nothing_above_it() -> None:
    assert _offenders(CORE, ABOVE_CORE) == []


def test_telemetry_and_learn_never_import_the_patching_layer() -> None:
    sinks = ("appshield.telemetry", "appshield.learn", "appshield.record")
    assert _offenders(sinks, ("appshield.hooks", "appshield.runtime")) == []


def test_learn_builds_on_record_never_the_reverse() -> None:
    # learn reads recordings; the recorder that `install` loads must not bring learn along
    assert _offenders(("appshield.record",), ("appshield.learn",)) == []


def test_the_graph_sees_imports_inside_functions() -> None:
    # The reason the old cycle went unnoticed: `from appshield.x import y` in a function body.
    assert "appshield._threadstate" in GRAPH["appshield.normalize"]


def test_the_seams_are_ports_not_tricks() -> None:
    # Learn hands its decider and reporter in at install (appshield.ports); nothing tells
    # the engine's policy apart by its type or reads a caller's locals to find the API.
    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    assert [p.name for p, text in sources.items() if "is CompiledPolicy" in text] == []
    assert [p.name for p, text in sources.items() if 'f_locals.get("api")' in text] == []
    assert "APPSHIELD_LEARN" not in sources[PACKAGE / "runtime.py"]
    assert "learn" not in "".join(
        line for line in sources[PACKAGE / "runtime.py"].splitlines() if "import" in line
    )
