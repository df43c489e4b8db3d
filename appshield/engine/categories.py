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

from appshield.decision import Action, Decision, Mode
from appshield.document import Condition, RuleSpec
from appshield.engine.globs import (
    Matcher,
    has_magic,
    literal_ends,
    module_pattern,
    module_subject,
    path_matcher,
    translate_path,
    translate_plain,
)
from appshield.engine.indexes import Buckets, CidrIndex, HostIndex, KeyIndex, PathTrie
from appshield.engine.predicates import Pred, host_key, predicates

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from appshield.operations import NetworkOp

__all__ = ["CategoryIndex", "Rule", "build_category", "index_state"]

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


_GLOB_FIELDS = frozenset(
    {"executable", "command_line", "path", "host", "module", "origin", "library"}
)


def check_classes(spec: RuleSpec) -> None:
    """Raise GlobError now for a bad `[...]` class, rather than at the first decision (the
    compiler calls it for every written rule, before any index is built).

    Walks the fields a condition has (one to three) rather than asking for each glob field
    by name: it runs for every written rule at every start."""
    groups: list[Any] = [spec.scope or ()]
    for condition in (spec.match,) if spec.unless is None else (spec.match, spec.unless):
        groups.append(condition.scope or ())
        for name, values in condition.fields.items():
            if name in _GLOB_FIELDS:
                groups.append(values)
            elif name == "args":
                groups.extend(values)
    for globs in groups:
        for glob in globs:
            if "[" in glob:
                translate_path(glob)
                translate_plain(glob)


def _scope(globs: tuple[str, ...] | None) -> tuple[Matcher, ...] | None:
    if globs is None:
        return None
    return tuple(path_matcher(module_pattern(g)) for g in globs)


# Positions below a category's offset belong to its implicit denies (`_implicit`), so the
# written rules' positions do not depend on which protections are on: an index of the written
# rules alone, built once and kept in the policy cache (`index_state`), fits any install.
_OFFSET = {"file": 2, "process": 1, "network": 0, "import": 0}


class CategoryIndex:
    """The rules of one category, sorted by (rank, file order), and their candidate index.

    `rules[position]` is None until the rule is first needed (`rule_at`): a restored index
    knows where each rule is filed without having made a `Rule` of any of them.
    """

    rules: list[Rule | None]
    default_decision: Decision
    needs_stack: bool
    category: str

    def __init__(self, default: Action, mode: Mode) -> None:
        self.default = default
        self.mode: Mode = mode
        blocked = default == "deny" and mode == "enforce"
        self.default_decision = Decision(default, f"default:{self.category}", blocked, mode)
        self.needs_stack = False
        self.count = 0
        self.rules = []
        self._specs: Sequence[RuleSpec | None] = ()

    def attach(self, specs: Sequence[RuleSpec | None], count: int, needs_stack: bool) -> None:
        """The rule at each position (None where no rule is) and what is known of them all."""
        self._specs = specs
        self.rules = [None] * len(specs)
        self.count = count
        self.needs_stack = needs_stack

    def rule_at(self, position: int) -> Rule:
        rule = self.rules[position]
        if rule is None:
            spec = self._specs[position]
            assert spec is not None, position
            rule = self.rules[position] = Rule(spec, self.mode)
        return rule

    def all_rules(self) -> list[Rule]:
        return [self.rule_at(p) for p in range(len(self._specs)) if self._specs[p] is not None]

    def add(self, position: int, spec: RuleSpec) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def finish(self) -> None:
        """Called once every rule is filed (or the state restored)."""

    def export(self) -> tuple[Any, ...]:  # pragma: no cover - overridden
        """The index as plain data (dicts, lists, tuples, str, int, bool: what marshal keeps)."""
        raise NotImplementedError

    def restore(self, state: tuple[Any, ...]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def candidates(self, op: Any) -> list[int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def default_for(self, op: Any) -> Decision:
        """The decision for `op` when no rule matches it."""
        return self.default_decision

    def may_object(self, op: Any) -> bool:
        """Whether the decision for `op` can be anything but an allow: the default is not
        allow, or some candidate rule denies or alerts (an allow rule, whatever its `unless`
        and scope, can only turn the default allow into an allow that names it). Costs the
        candidate lookup alone: no rule is made and no predicate compiled."""
        if self.default != "allow":
            return True
        specs = self._specs
        for position in self.candidates(op):
            spec = specs[position]
            if spec is None or spec.action != "allow":
                return True
        return False

    def resolved_matters(self, access: str) -> bool:
        return False


def _sorted(out: list[int]) -> list[int]:
    return sorted(set(out)) if len(out) > 1 else out


def _fields(spec: RuleSpec) -> Any:
    return spec.match.fields


class FileIndex(CategoryIndex):
    category = "file"

    def __init__(self, default: Action, mode: Mode) -> None:
        super().__init__(default, mode)
        self.tries = {access: PathTrie() for access in _ACCESSES}
        self._resolved = {access: False for access in _ACCESSES}

    def add(self, position: int, spec: RuleSpec) -> None:
        fields = _fields(spec)
        for access in fields.get("access", _ACCESSES):
            trie = self.tries.get(access)
            if trie is None:
                continue
            globs = fields.get("path")
            if globs is None:
                trie.add_root(position)
            for glob in globs or ():
                trie.add(glob, position)
            if _path_sensitive(spec, self.default):
                self._resolved[access] = True

    def finish(self) -> None:
        for trie in self.tries.values():
            trie.freeze()

    def export(self) -> tuple[Any, ...]:
        return ({a: t.export() for a, t in self.tries.items()}, dict(self._resolved))

    def restore(self, state: tuple[Any, ...]) -> None:
        tries, resolved = state
        for access, trie in tries.items():
            self.tries[access].restore(trie)
        self._resolved.update(resolved)

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


def _path_sensitive(spec: RuleSpec, default: Action) -> bool:
    if default == "allow" and spec.action == "allow":
        return False  # an allow under an allow default cannot change action or blocking
    unless = spec.unless
    return "path" in _fields(spec) or (unless is not None and "path" in unless.fields)


class ProcessIndex(CategoryIndex):
    """Executable globs: with a `/` in a segment trie; base names by literal name, by the
    literal text a glob starts with (`tool*`), or ends with (`*-dev`); the rest always.

    A spawn looks up its base names' prefixes of the lengths in use (a few dict lookups), so
    250 `toolN*` denies cost what none cost, instead of 250 glob matches per spawn.
    """

    category = "process"

    def __init__(self, default: Action, mode: Mode) -> None:
        super().__init__(default, mode)
        self.paths = PathTrie()
        self.names = KeyIndex()
        self.prefixes = Buckets()
        self.suffixes = Buckets()
        self._prefix_sizes: tuple[int, ...] = ()
        self._suffix_sizes: tuple[int, ...] = ()

    def add(self, position: int, spec: RuleSpec) -> None:
        globs = _fields(spec).get("executable")
        if globs is None:
            self.names.add_always(position)
        for glob in globs or ():
            if "/" in glob:
                self.paths.add(glob, position)
            elif not has_magic(glob):
                self.names.add(glob, position)
            else:
                prefix, suffix = literal_ends(glob)
                if prefix:
                    self.prefixes.add(prefix, position)
                elif suffix:
                    self.suffixes.add(suffix, position)
                else:
                    self.names.add_always(position)

    def finish(self) -> None:
        for buckets in (self.paths, self.names, self.prefixes, self.suffixes):
            buckets.freeze()
        self._prefix_sizes = tuple(sorted({len(k) for k in self.prefixes.slots}))
        self._suffix_sizes = tuple(sorted({len(k) for k in self.suffixes.slots}))

    def export(self) -> tuple[Any, ...]:
        return (
            self.paths.export(),
            self.names.export(),
            self.names.always,
            self.prefixes.export(),
            self.suffixes.export(),
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        paths, names, self.names.always, prefixes, suffixes = state
        self.paths.restore(paths)
        self.names.restore(names)
        self.prefixes.restore(prefixes)
        self.suffixes.restore(suffixes)

    def _by_name(self, name: str, out: list[int]) -> None:
        names = self.names
        slot = names.slots.get(name)
        if slot is not None:
            out += names.hits[slot]
        size = len(name)
        if self._prefix_sizes:
            slots, hits = self.prefixes.slots, self.prefixes.hits
            for k in self._prefix_sizes:
                if k > size:
                    break
                slot = slots.get(name[:k])
                if slot is not None:
                    out += hits[slot]
        if self._suffix_sizes:
            slots, hits = self.suffixes.slots, self.suffixes.hits
            for k in self._suffix_sizes:
                if k > size:
                    break
                slot = slots.get(name[size - k :])
                if slot is not None:
                    out += hits[slot]

    def candidates(self, op: Any) -> list[int]:
        out = list(self.names.always)
        exe = op.executable
        self.paths.collect(exe, out)
        self._by_name(exe.rpartition("/")[2], out)
        if op.argv:
            argv0 = op.argv[0]
            if argv0 != exe:
                self.paths.collect(argv0, out)
                self._by_name(argv0.rpartition("/")[2], out)
        return _sorted(out)


class NetworkIndex(CategoryIndex):
    category = "network"

    def __init__(self, default: Action, mode: Mode) -> None:
        super().__init__(default, mode)
        self.hosts = HostIndex()
        self.cidrs = CidrIndex()
        self.ports = KeyIndex()
        self.port_ranges: list[tuple[int, int, int]] = []
        self.always = self.ports.always
        # Raw sockets are denied unless a rule allows them, whatever the category default.
        self.raw_decision = Decision("deny", "default:network", mode == "enforce", mode)

    def default_for(self, op: Any) -> Decision:
        if op.transport == "raw":
            return self.raw_decision
        return self.default_decision

    def add(self, position: int, spec: RuleSpec) -> None:
        fields = _fields(spec)
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

    def finish(self) -> None:
        self.hosts.freeze()
        self.cidrs.freeze()
        self.ports.freeze()

    def export(self) -> tuple[Any, ...]:
        hosts, ports = self.hosts, self.ports
        return (
            hosts.exact.export(),
            hosts.suffix.export(),
            hosts.general,
            self.cidrs.export(),
            ports.export(),
            ports.always,
            self.port_ranges,
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        hosts, ports = self.hosts, self.ports
        exact, suffix, hosts.general, cidrs, keys, ports.always, port_ranges = state
        hosts.exact.restore(exact)
        hosts.suffix.restore(suffix)
        self.cidrs.restore(cidrs)
        ports.restore(keys)
        self.port_ranges = [tuple(r) for r in port_ranges]
        self.always = ports.always

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
            ports = self.ports
            slot = ports.slots.get(port)
            if slot is not None:
                out += ports.hits[slot]
            for low, high, position in self.port_ranges:
                if low <= port <= high:
                    out.append(position)
        return _sorted(out)


class ImportIndex(CategoryIndex):
    category = "import"

    def __init__(self, default: Action, mode: Mode) -> None:
        super().__init__(default, mode)
        self.modules = PathTrie()
        self.origins = PathTrie()
        self.libraries = PathTrie()
        self.always: list[int] = []
        self._quiet = False
        self._module_tops: dict[str, int] = {}
        self._origin_tops: dict[str, int] = {}
        self._attached = False
        self._objecting: ImportIndex | None = None

    def add(self, position: int, spec: RuleSpec) -> None:
        fields = _fields(spec)
        if "module" in fields:
            for name in fields["module"]:
                if has_magic(name):
                    self.modules.add(module_pattern(name), position)
                else:
                    # A plain name's trie path, without making and parsing its pattern
                    # (`/a/b/**` is filed under a, b): the implicit allows name ~50 modules.
                    self.modules.add_under(name.replace(".", "/").split("/"), position)
        elif "origin" in fields:
            for glob in fields["origin"]:
                self.origins.add(glob, position)
        elif "library" in fields:
            for glob in fields["library"]:
                self.libraries.add(glob, position)
        else:
            self.always.append(position)

    def finish(self) -> None:
        for trie in (self.modules, self.origins, self.libraries):
            trie.freeze()
        # For `quiet`: nothing is filed where every import would reach it, and an import that
        # meets no rule is allowed without a report.
        self._quiet = self.default == "allow" and not (
            self.always or self.modules.root or self.origins.root
        )
        self._module_tops = self.modules.tops
        self._origin_tops = self.origins.tops

    def export(self) -> tuple[Any, ...]:
        return (
            self.modules.export(),
            self.origins.export(),
            self.libraries.export(),
            self.always,
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        modules, origins, libraries, self.always = state
        self.modules.restore(modules)
        self.origins.restore(origins)
        self.libraries.restore(libraries)

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

    def attach(self, specs: Sequence[RuleSpec | None], count: int, needs_stack: bool) -> None:
        super().attach(specs, count, needs_stack)
        self._attached = True
        self._objecting = None

    def objecting(self) -> ImportIndex:
        """This index's deny and alert rules alone, filed at their own positions: its `quiet`
        is True for an import that no rule which could object to it can name, so that
        `may_object` would say False (an allow rule can only name an allow). The report of the
        modules loaded before install asks this of each one: the exporter's allows name
        nearly all of them by their standard-library origin, and looking up every such
        allow to find none that objects cost about 1.3 M instructions of every start.

        Made on the first call from the rules attached, then kept (a pure function of them).
        Before the rules are attached it is the whole index: every rule counts."""
        found = self._objecting
        if found is None:
            if not self._attached:
                return self
            found = ImportIndex(self.default, self.mode)
            specs = self._specs
            for position in range(len(specs)):
                spec = specs[position]
                if spec is not None and spec.action != "allow":
                    found.add(position, spec)
            found.finish()
            self._objecting = found
        return found

    def names_nothing(self) -> bool:
        """True when `quiet` says True for every import whose names hold no `/`: no rule is
        filed under any module or origin name, and none reaches every import."""
        return self._quiet and not self._module_tops and not self._origin_tops

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


def _scoped(spec: RuleSpec) -> bool:
    return spec.scope is not None or (spec.unless is not None and spec.unless.scope is not None)


def _written_order(specs: Sequence[RuleSpec]) -> list[int]:
    """The written rules by (deny, alert, allow), then file order."""
    return sorted(range(len(specs)), key=lambda i: (_RANK[specs[i].action], i))


def index_state(category: str, specs: Sequence[RuleSpec], default: Action) -> tuple[Any, ...]:
    """The index of a category's written rules as plain data: (the rules' order, the marshalled
    index). What `build_category(prebuilt=...)` restores; the policy cache keeps it, so that
    a process does not index thousands of rules before its first decision."""
    import marshal

    index = _INDEXES[category](default, "enforce")
    order = _written_order(specs)
    for position, i in enumerate(order, _OFFSET[category]):
        index.add(position, specs[i])
    # Version 2: no shared references, so equal indexes give equal bytes (an identity
    # digests them), whichever objects happened to be shared when they were built.
    return tuple(order), marshal.dumps(index.export(), 2)


if TYPE_CHECKING:
    _PlacedBase = Sequence[RuleSpec | None]
else:
    # A plain class at run time: the index only takes `len` of it and indexes it, and a
    # `Sequence` subclass (an ABC) costs every start about 0.1 M instructions more to create
    # (docs/performance.md, "Start-up, seventh round"). Type checkers see the Sequence.
    _PlacedBase = object


class _Placed(_PlacedBase):
    """The rule spec at each position, looked up when asked: the implicit denies, a gap up
    to the offset, the written rules in `order`, then the implicit allows."""

    __slots__ = ("_allows", "_denies", "_offset", "_order", "_written")

    def __init__(
        self,
        denies: Sequence[RuleSpec],
        offset: int,
        written: Sequence[RuleSpec],
        order: Sequence[int],
        allows: Sequence[RuleSpec],
    ) -> None:
        self._denies, self._offset, self._written = denies, offset, written
        self._order, self._allows = order, allows

    def __len__(self) -> int:
        return self._offset + len(self._order) + len(self._allows)

    def __getitem__(self, position: int) -> RuleSpec | None:  # type: ignore[override]
        if position < self._offset:
            return self._denies[position] if position < len(self._denies) else None
        at = position - self._offset
        if at < len(self._order):
            return self._written[self._order[at]]
        return self._allows[at - len(self._order)]


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
    prebuilt: tuple[Any, ...] | None = None,
    needs_stack: bool | None = None,
) -> CategoryIndex:
    """Compile and index one category's rules. Implicit protections come first (they are
    denies that precede every written rule); implicit allows (`implicit:telemetry_exporter`)
    come last, so that a written allow matching the same operation names the decision (and a
    written deny beats them, as it beats any allow).

    prebuilt: `index_state` of these very specs (from the policy cache): restored instead of
    indexing every written rule again; the implicit rules are filed into it here.
    needs_stack: whether some rule has a scope, when the caller knows it already."""
    implicit = _implicit(category, protected_paths, unshielded_children, protected_folders)
    offset = _OFFSET[category]
    assert len(implicit) <= offset
    index: CategoryIndex | None = None
    order: Sequence[int] = ()
    if prebuilt is not None:
        import marshal

        order, state = prebuilt
        if len(order) == len(specs):
            index = _INDEXES[category](default, mode)
            index.restore(marshal.loads(state))
    if index is None:
        index = _INDEXES[category](default, mode)
        order = _written_order(specs)
        for position, i in enumerate(order, offset):
            index.add(position, specs[i])
    for position, spec in enumerate(implicit):
        index.add(position, spec)
    for position, spec in enumerate(implicit_allows, offset + len(order)):
        index.add(position, spec)
    index.finish()
    if needs_stack is None:
        needs_stack = any(_scoped(s) for s in (*implicit, *specs, *implicit_allows))
    count = len(implicit) + len(specs) + len(implicit_allows)
    index.attach(_Placed(implicit, offset, specs, order, implicit_allows), count, needs_stack)
    return index
