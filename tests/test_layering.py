"""The layers import one way: the patching layer (`appshield/hooks/`) is handed the shield at
install (`hooks._gate.bind`) and never reaches up into the runtime or the activation code,
not even from inside a function. An upward import is how the old import cycle began."""

from __future__ import annotations

import ast
from pathlib import Path

import appshield

PACKAGE = Path(appshield.__file__).resolve().parent
FORBIDDEN_FROM_HOOKS = ("appshield.runtime", "appshield._activate")


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
    for path in sorted((PACKAGE / "hooks").glob("*.py")):
        for line, name in _imported_names(ast.parse(path.read_text(), str(path))):
            if name.startswith(FORBIDDEN_FROM_HOOKS):
                offenders.append(f"{path.name}:{line}: {name}")
    assert offenders == []
