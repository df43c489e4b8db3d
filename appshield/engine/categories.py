"""Per-category rule sets: the compiled rules and the index that picks candidates for an op.

Which field files a rule (a rule with several alternatives is filed once per alternative):

    file      path (a segment trie per access; a rule without path sits at the trie's root)
    process   executable: globs with `/` in a segment trie, literal base names in a dict
    network   host (exact names, IP literals, dot-suffixes), else cidr, else port
    import    module (segment trie over `a/b` forms), else origin, else library

Fields that do not file a rule are still checked by its predicates; a rule filed under no
field (no indexable field, or a glob with no literal part) is checked for every operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from appshield.decision import Action, Decision, Mode
from appshield.document import Condition, RuleSpec
from appshield.engine.globs import (
    Matcher,
    has_magic,
    module_pattern,
    module_subject,
    path_matcher,
    translate_path,
    translate_plain,
)
from appshield.engine.indexes import CidrIndex, HostIndex, KeyIndex, PathTrie
from appshield.engine.predicates import Pred, host_key, predicates

if TYPE_CHECKING:
    from appshield.operations import NetworkOp

__all__ = ["CategoryIndex", "Rule", "build_category"]

_RANK: dict[str, int] = {"deny": 0, "alert": 1, "allow": 2}
_ACCESSES = ("read", "write", "delete")


class Rule:
    """One rule, ready to be indexed; its predicates are built on first use (most rules of a
    large policy are never a candidate in a given process, and building thousands of closures
    would lengthen start-up). `rank`: 0 deny, 1 alert, 2 allow. `blocks`: a match blocks (a
    deny whose own mode is not monitor, under an enforcing policy)."""

    __slots__ = (
        "blocked_decision",
        "blocks",
        "decision",
        "has_unless",
        "id",
        "needs_stack",
        "plain",
        "preds",
        "rank",
        "scope",
        "spec",
        "unless_preds",
        "unless_scope",
    )

    def __init__(self, spec: RuleSpec, mode: Mode) -> None:
        self.spec = spec
        self.id = spec.id
        self.rank = _RANK[spec.action]
        unless = spec.unless
        self.has_unless = unless is not None
        self.needs_stack = spec.scope is not None or (
            unless is not None and unless.scope is not None
        )
        self.plain = not (self.has_unless or spec.scope is not None)
        self.blocks = self.rank == 0 and spec.mode != "monitor" and mode == "enforce"
        self.decision = Decision(spec.action, spec.id, self.blocks, mode)
        self.blocked_decision = Decision(spec.action, spec.id, mode == "enforce", mode)
        self.preds: tuple[Pred, ...] | None = None
        self.scope: tuple[Matcher, ...] | None = None
        self.unless_preds: tuple[Pred, ...] = ()
        self.unless_scope: tuple[Matcher, ...] | None = None

    def compile(self) -> tuple[Pred, ...]:
        """Build the predicates. Idempotent; two threads racing here build equal values, and
        `preds` is stored last, so a reader that sees it sees the rest."""
        spec = self.spec
        allow = spec.action == "allow"
        self.scope = _scope(spec.scope)
        unless = spec.unless
        if unless is not None:
            # An exception to a deny must be hard to meet, an exception to an allow easy.
            self.unless_preds = predicates(
                spec.category, unless.fields, broad_path=allow, broad_exec=allow
            )
            self.unless_scope = _scope(unless.scope)
        preds = predicates(
            spec.category, spec.match.fields, broad_path=not allow, broad_exec=spec.action == "deny"
        )
        if self.rank and spec.category == "network" and "transport" not in spec.match.fields:
            # A raw socket writes its destination into the packet: the address its call
            # names proves nothing, so only a rule that names `raw` allows (or alerts) one.
            preds = (*preds, _not_raw)
        self.preds = preds
        return preds


def _not_raw(op: NetworkOp) -> bool:
    return op.transport != "raw"


_GLOB_FIELDS = ("executable", "command_line", "path", "host", "module", "origin", "library")


def check_classes(spec: RuleSpec) -> None:
    """Raise GlobError now for a bad `[...]` class, rather than at the first decision (the
    compiler calls it for every written rule, before any index is built)."""
    conditions = [spec.match] if spec.unless is None else [spec.match, spec.unless]
    globs = [*(spec.scope or ()), *(g for c in conditions for g in c.scope or ())]
    for condition in conditions:
        for name in _GLOB_FIELDS:
            globs.extend(condition.fields.get(name, ()))
        for vector in condition.fields.get("args", ()):
            globs.extend(vector)
    for glob in globs:
        if "[" in glob:
            translate_path(glob)
            translate_plain(glob)


def _scope(globs: tuple[str, ...] | None) -> tuple[Matcher, ...] | None:
    if globs is None:
        return None
    return tuple(path_matcher(module_pattern(g)) for g in globs)


class CategoryIndex:
    """The rules of one category, sorted by (rank, file order), and their candidate index."""

    rules: Sequence[Rule]
    default_decision: Decision
    needs_stack: bool

    def __init__(self, rules: Sequence[Rule], default: Action, mode: Mode, category: str) -> None:
        self.rules = rules
        self.default = default
        blocked = default == "deny" and mode == "enforce"
        self.default_decision = Decision(default, f"default:{category}", blocked, mode)
        self.needs_stack = any(r.needs_stack for r in rules)

    def candidates(self, op: Any) -> list[int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def default_for(self, op: Any) -> Decision:
        """The decision for `op` when no rule matches it."""
        return self.default_decision

    def resolved_matters(self, access: str) -> bool:
        return False


def _sorted(out: list[int]) -> list[int]:
    return sorted(set(out)) if len(out) > 1 else out


def _fields(rule: Rule) -> Any:
    return rule.spec.match.fields


class FileIndex(CategoryIndex):
    def __init__(self, rules: Sequence[Rule], default: Action, mode: Mode) -> None:
        super().__init__(rules, default, mode, "file")
        self.tries = {access: PathTrie() for access in _ACCESSES}
        self._resolved = {access: False for access in _ACCESSES}
        for position, rule in enumerate(rules):
            fields = _fields(rule)
            accesses = fields.get("access", _ACCESSES)
            for access in accesses:
                trie = self.tries.get(access)
                if trie is None:
                    continue
                globs = fields.get("path")
                if globs is None:
                    trie.root[1].append(position)
                for glob in globs or ():
                    trie.add(glob, position)
                if _path_sensitive(rule, default):
                    self._resolved[access] = True

    def candidates(self, op: Any) -> list[int]:
        trie = self.tries.get(op.access)
        if trie is None:
            return []
        out: list[int] = []
        trie.collect(op.path, out)
        resolved = op.resolved
        if resolved is not None and resolved != op.path:
            trie.collect(resolved, out)
        return _sorted(out)

    def resolved_matters(self, access: str) -> bool:
        return self._resolved.get(access, False)


def _path_sensitive(rule: Rule, default: Action) -> bool:
    if default == "allow" and rule.rank == 2:
        return False  # an allow under an allow default cannot change action or blocking
    unless = rule.spec.unless
    return "path" in _fields(rule) or (unless is not None and "path" in unless.fields)


class ProcessIndex(CategoryIndex):
    def __init__(self, rules: Sequence[Rule], default: Action, mode: Mode) -> None:
        super().__init__(rules, default, mode, "process")
        self.paths = PathTrie()
        self.names = KeyIndex()
        for position, rule in enumerate(rules):
            globs = _fields(rule).get("executable")
            if globs is None:
                self.names.add_always(position)
            for glob in globs or ():
                if "/" in glob:
                    self.paths.add(glob, position)
                elif has_magic(glob):
                    self.names.add_always(position)
                else:
                    self.names.add(glob, position)

    def candidates(self, op: Any) -> list[int]:
        out = list(self.names.always)
        keys = self.names.keys
        exe = op.executable
        self.paths.collect(exe, out)
        hit = keys.get(exe.rpartition("/")[2])
        if hit:
            out += hit
        if op.argv:
            argv0 = op.argv[0]
            if argv0 != exe:
                self.paths.collect(argv0, out)
                hit = keys.get(argv0.rpartition("/")[2])
                if hit:
                    out += hit
        return _sorted(out)


class NetworkIndex(CategoryIndex):
    def __init__(self, rules: Sequence[Rule], default: Action, mode: Mode) -> None:
        super().__init__(rules, default, mode, "network")
        self.hosts = HostIndex()
        self.cidrs = CidrIndex()
        self.ports = KeyIndex()
        self.port_ranges: list[tuple[int, int, int]] = []
        for position, rule in enumerate(rules):
            self._file(_fields(rule), position)
        self.always = self.ports.always
        # Raw sockets are denied unless a rule allows them, whatever the category default.
        self.raw_decision = Decision("deny", "default:network", mode == "enforce", mode)

    def default_for(self, op: Any) -> Decision:
        if op.transport == "raw":
            return self.raw_decision
        return self.default_decision

    def _file(self, fields: Any, position: int) -> None:
        if "host" in fields:
            for pattern in fields["host"]:
                self.hosts.add(host_key(pattern), position)
        elif "cidr" in fields:
            for cidr in fields["cidr"]:
                self.cidrs.add(cidr, position)
        elif "port" in fields:
            for low, high in fields["port"]:
                if low == high:
                    self.ports.add(low, position)
                else:
                    self.port_ranges.append((low, high, position))
        else:
            self.ports.add_always(position)

    def candidates(self, op: Any) -> list[int]:
        out = self.always + self.hosts.general
        hosts = self.hosts
        if op.host is not None:
            hosts.collect(op.host, out)
        address = op.address
        if address is not None:
            hosts.collect(address, out)
            if self.cidrs.tables:
                self.cidrs.collect(address, out)
        requested = op.requested
        if requested is not None:
            hosts.collect(requested, out)
            if self.cidrs.tables:
                self.cidrs.collect(requested, out)
        for name in op.names:
            hosts.collect(name, out)
        port = op.port
        if port is not None:
            hit = self.ports.keys.get(port)
            if hit:
                out += hit
            for low, high, position in self.port_ranges:
                if low <= port <= high:
                    out.append(position)
        return _sorted(out)


class ImportIndex(CategoryIndex):
    def __init__(self, rules: Sequence[Rule], default: Action, mode: Mode) -> None:
        super().__init__(rules, default, mode, "import")
        self.modules = PathTrie()
        self.origins = PathTrie()
        self.libraries = PathTrie()
        self.always: list[int] = []
        for position, rule in enumerate(rules):
            fields = _fields(rule)
            if "module" in fields:
                for glob in fields["module"]:
                    self.modules.add(module_pattern(glob), position)
            elif "origin" in fields:
                for glob in fields["origin"]:
                    self.origins.add(glob, position)
            elif "library" in fields:
                for glob in fields["library"]:
                    self.libraries.add(glob, position)
            else:
                self.always.append(position)
        # For `quiet`: nothing is filed where every import would reach it, and an import that
        # meets no rule is allowed without a report.
        self._quiet = default == "allow" and not (
            self.always or self.modules.root[1] or self.origins.root[1]
        )
        self._module_tops: dict[str, Any] = self.modules.root[0]
        self._origin_tops: dict[str, Any] = self.origins.root[0]

    def quiet(
        self, module: str, origin: str | None, home: str | None = None, init: str | None = None
    ) -> bool:
        """True when ImportOp(module, origin, None, home, init) has no candidate rule and so
        is decided as the default, a silent allow, whatever the call stack: the first segment
        of each name's trie path and of the origin's leads nowhere. `origin` is normalised
        (as the op holds it). A first import of a module no rule names costs two dict
        lookups."""
        if not self._quiet:
            return False
        tops = self._module_tops
        end = module.find(".")
        top = module if end < 0 else module[:end]
        if "/" in top or top in tops:
            return False  # (a `/` in a module name: rare, left to the engine)
        if home is not None or init is not None:  # rare: a name its file does not have
            for name in (home, init):
                if name is not None:
                    end = name.find(".")
                    top = name if end < 0 else name[:end]
                    if "/" in top or top in tops:
                        return False
        if origin is None:
            return True
        end = origin.find("/", 1)
        return (origin[1:end] if end > 0 else origin[1:]) not in self._origin_tops

    def candidates(self, op: Any) -> list[int]:
        out = list(self.always)
        if op.module is not None:
            self.modules.collect(module_subject(op.module), out)
            # The names the module's code has besides its dotted name (see ImportOp).
            if op.home is not None:
                self.modules.collect(module_subject(op.home), out)
            if op.init is not None:
                self.modules.collect(module_subject(op.init), out)
        if op.origin is not None:
            self.origins.collect(op.origin, out)
        if op.library is not None:
            self.libraries.collect(op.library, out)
        return _sorted(out)


_INDEXES: dict[str, type[CategoryIndex]] = {
    "file": FileIndex,
    "process": ProcessIndex,
    "network": NetworkIndex,
    "import": ImportIndex,
}


def _implicit(
    category: str,
    protected_paths: tuple[str, ...],
    children: bool,
    protected_folders: tuple[str, ...] = (),
) -> list[RuleSpec]:
    if category == "file" and protected_paths:
        fields = {"path": protected_paths, "access": ("write", "delete")}
        out = [RuleSpec("implicit:policy_files", "file", "deny", Condition(fields))]
        if protected_folders:
            # The folders above a protected file: renaming one away (and a forged copy in)
            # would swap the file without touching it.
            folders = {"path": protected_folders, "access": ("delete",)}
            out.append(RuleSpec("implicit:policy_files", "file", "deny", Condition(folders)))
        return out
    if category == "process" and children:
        unshielded: dict[str, tuple[Any, ...]] = {"unshielded": (True,)}
        return [RuleSpec("implicit:unshielded_children", "process", "deny", Condition(unshielded))]
    return []


def build_category(
    category: str,
    specs: Sequence[RuleSpec],
    *,
    default: Action,
    mode: Mode,
    protected_paths: tuple[str, ...],
    unshielded_children: bool,
    protected_folders: tuple[str, ...] = (),
    implicit_allows: Sequence[RuleSpec] = (),
) -> CategoryIndex:
    """Compile and index one category's rules. Implicit protections come first (they are
    denies that precede every written rule); implicit allows (`implicit:telemetry_exporter`)
    come last, so that a written allow matching the same operation names the decision (and a
    written deny beats them, as it beats any allow)."""
    implicit = _implicit(category, protected_paths, unshielded_children, protected_folders)
    ordered = [*implicit, *specs, *implicit_allows]
    ranked = sorted(enumerate(ordered), key=lambda item: (_RANK[item[1].action], item[0]))
    rules = [Rule(spec, mode) for _order, spec in ranked]
    return _INDEXES[category](rules, default, mode)  # type: ignore[call-arg]
