"""Print appshield's internal import graph and its cycles, counting imports made inside
functions too (an import deferred into a function still ties the two modules together: it is
how a cycle hides from a plain `import` at the top).

    python scripts/import_graph.py            # the graph, then the cycles; exit 1 if any
    python scripts/import_graph.py --cycles   # only the cycles
    python scripts/import_graph.py --dot      # Graphviz, for a picture

Rules of the count:
- every `import appshield.x.y` / `from appshield.x import y` anywhere in a module's source,
  relative imports resolved, `TYPE_CHECKING`-only imports left out (they never run);
- `from appshield.x import y` is an edge to the submodule `appshield.x.y` when there is one,
  else to `appshield.x`;
- importing `appshield.x.y` runs the package `appshield.x` first, so that package is an edge
  too; the root package `appshield` is not (it is always loaded first, by whoever imports
  appshield, and only re-exports the public API).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "appshield"
TOP = "appshield"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> its file, for every module of the package."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            pending.extend(node.orelse)  # the `if TYPE_CHECKING:` body never runs
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _with_packages(name: str, modules: dict[str, Path]) -> set[str]:
    """`name` (as far as it is one of ours) and the packages above it, the root left out."""
    out: set[str] = set()
    parts = name.split(".")
    for end in range(2, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in modules:
            out.add(prefix)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, is_package, node)
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target == TOP or target.startswith(TOP + "."):
                    graph[name] |= _with_packages(target, modules)
        graph[name].discard(name)
        # A module's own package runs before it: not an edge the module chose.
        for package in _with_packages(name, modules):
            if name.startswith(package + ".") and package in graph[name]:
                graph[name].discard(package)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", action="store_true", help="print only the cycles")
    parser.add_argument("--dot", action="store_true", help="print Graphviz dot")
    args = parser.parse_args(argv)
    graph = import_graph()
    if args.dot:
        print("digraph appshield {")
        for name in sorted(graph):
            for target in sorted(graph[name]):
                print(f'  "{name}" -> "{target}";')
        print("}")
        return 0
    if not args.cycles:
        for name in sorted(graph):
            targets = ", ".join(sorted(t.removeprefix(TOP + ".") for t in graph[name]))
            print(f"{name.removeprefix(TOP + '.') or TOP}: {targets or '-'}")
    found = cycles(graph)
    print(f"\n{len(graph)} modules, {sum(len(t) for t in graph.values())} imports,", end=" ")
    print(f"{len(found)} cycle(s)")
    for component in found:
        print(f"  cycle of {len(component)}: " + ", ".join(component))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
