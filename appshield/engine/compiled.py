"""The compiled policy: rules sorted, indexed and ready to decide.

A decision looks only at candidate rules: each category has an index (see `categories`) that
turns an operation into rule *positions*. Positions order a category's rules by action (deny,
alert, allow) and then by file order, so scanning them in ascending order finds the winner
first: the first matching deny names the decision; the scan goes on through the remaining
denies only when that deny does not block, looking for one that does.
"""

from __future__ import annotations

from appshield.decision import Action, Decision, Mode
from appshield.document import PolicyDocument, RuleSpec
from appshield.engine.categories import (
    CategoryIndex,
    Rule,
    build_category,
    check_classes,
    index_state,
)
from appshield.engine.globs import (
    Matcher,
    has_magic,
    module_pattern,
    module_subject,
    path_matcher,
)
from appshield.operations import CATEGORIES, FileOp, ImportOp, NetworkOp, Operation, ProcessOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TypeAlias

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "CompiledPolicy",
    "StackInput",
    "compile_policy",
    "index_states",
]

StackInput: TypeAlias = "Callable[[], Sequence[str]] | Sequence[str] | None"

DEFAULT_CACHE_SIZE = 4096

_OP_CATEGORY: Mapping[type, str] = {
    ProcessOp: "process",
    FileOp: "file",
    NetworkOp: "network",
    ImportOp: "import",
}


class _Stack:
    """The call stack's modules, fetched on first need and at most once per decision."""

    __slots__ = ("_modules", "_scopes", "_source")

    def __init__(self, source: StackInput) -> None:
        self._source = source
        self._modules: tuple[str, ...] | None = None
        self._scopes: dict[int, bool] = {}

    @property
    def used(self) -> bool:
        """Some scope was checked: the decision depends on the stack."""
        return bool(self._scopes)

    def holds(self, scope: tuple[Matcher, ...]) -> bool:
        """Any module on the stack matches any of the scope's globs."""
        known = self._scopes.get(id(scope))
        if known is not None:
            return known
        modules = self._modules
        if modules is None:
            source = self._source
            if callable(source):
                source = source()
            self._modules = modules = tuple(
                module_subject(m) for m in (source or ()) if isinstance(m, str)
            )
        result = any(match(m) for m in modules for match in scope)
        self._scopes[id(scope)] = result
        return result


def _holds(rule: Rule, op: Any, stack: _Stack) -> bool:
    for pred in rule.preds or ():
        if not pred(op):
            return False
    if rule.scope is not None and not stack.holds(rule.scope):
        return False
    if rule.has_unless:
        for pred in rule.unless_preds:
            if not pred(op):
                return True
        return rule.unless_scope is not None and not stack.holds(rule.unless_scope)
    return True


_RANK: dict[str, int] = {"deny": 0, "alert": 1, "allow": 2}
_ALLOW_RANK = _RANK["allow"]


def _strictness(rank: int, blocks: bool) -> int:
    """allow 0, alert 2, a deny that does not block 4, one that blocks 5."""
    return (2 - rank) * 2 + blocks


class CompiledPolicy:
    """A policy ready to decide. Immutable after construction except for its decision cache.

    Thread-safe: the cache is a dict used only through single `get`/`__setitem__`/`clear`
    calls, each atomic (under the GIL, and under free threading through the dict's own lock);
    a race can at worst compute the same decision twice.
    """

    def __init__(
        self,
        categories: Mapping[str, CategoryIndex],
        mode: Mode,
        defaults: Mapping[str, Action],
        cache_size: int,
        scope_globs: tuple[str, ...] = (),
    ) -> None:
        self.mode: Mode = mode
        self._categories = categories
        self._defaults = defaults
        self._cache_size = cache_size
        self._enforce = mode == "enforce"
        self._scope_globs: tuple[str, ...] = scope_globs
        # One cache per category. A decision that consulted the call stack (a candidate's
        # fields held and its scope was checked) is never cached: it is the only input besides
        # the operation, so every other decision is a function of the operation alone.
        self._caches: dict[type, dict[Any, Decision] | None] = {
            cls: ({} if cache_size > 0 else None) for cls in _OP_CATEGORY
        }

    # A `Decider` (appshield.ports) that decides scopes from the code on the stack, and has
    # no use for the names frames claim.
    describes_callers = False

    def decide(self, op: Operation, stack: StackInput = None, api: str = "") -> Decision:
        """The decision for `op`. `stack`: the modules on the call stack, or a callable that
        returns them; called only when a candidate rule has a scope, at most once. `api`
        (the call the operation came through) does not change a decision."""
        cache = self._caches.get(op.__class__)
        if cache is None:
            return self._decide(op, stack)[0]
        try:
            decision = cache.get(op)
        except TypeError:  # an unhashable field (a list for argv): decide, do not cache
            return self._decide(op, stack)[0]
        if decision is None:
            decision, used_stack = self._decide(op, stack)
            if not used_stack:
                if len(cache) >= self._cache_size:
                    cache.clear()
                cache[op] = decision
        return decision

    def decide_uncached(self, op: Operation, stack: StackInput = None) -> Decision:
        """`decide` without the cache (for benchmarks and tests)."""
        return self._decide(op, stack)[0]

    def _decide(self, op: Operation, stack: StackInput) -> tuple[Decision, bool]:
        """The decision, and whether the call stack was consulted to reach it."""
        category = _OP_CATEGORY.get(op.__class__)
        if category is None:
            raise TypeError(f"not an operation: {op!r}")
        index = self._categories[category]
        rules = index.rules
        winner: Rule | None = None
        view: _Stack | None = None
        for position in index.candidates(op):
            rule = rules[position]
            if rule is None:  # first time a candidate: made now (see CategoryIndex)
                rule = index.rule_at(position)
            if winner is not None and rule.rank:
                break  # past the denies: the deny that won does not block
            preds = rule.preds
            if preds is None:
                preds = rule.compile()
            if rule.plain:  # fields only: test them inline, saving a call per candidate
                failed = False
                for pred in preds:
                    if not pred(op):
                        failed = True
                        break
                if failed:
                    continue
            else:
                if view is None and rule.needs_stack:
                    view = _Stack(stack)
                if not _holds(rule, op, view):  # type: ignore[arg-type]
                    continue
            if winner is None:
                winner = rule
                if rule.rank or rule.blocks or not self._enforce:
                    break
            elif rule.blocks:
                return winner.blocked_decision, view is not None and view.used
        used = view is not None and view.used
        if winner is None:
            return index.default_for(op), used
        return winner.decision, used

    def no_library_stricter(self, decision: Decision) -> bool:
        """Whether no native library path would be decided more strictly than `decision`,
        the decision for a stand-in path no rule names specially (for a file appshield cannot
        see: the one SQLite's SQL function `load_extension()` is asked for), under the same
        call stack. Proved from the import rules, conservatively, in the order deny that
        blocks > deny that does not > alert > allow:

        - a blocking deny is as strict as any;
        - no rule has a `library` in its `unless` (it could hold for the stand-in and not for
          the file, or the reverse);
        - no rule naming `library` is stricter than `decision` (it could catch the file the
          stand-in missed);
        - the decision is the default's (a file no rule matches gets the same), or comes from
          rules that name no library or whose `library` globs include `/**` (they match every
          file too), or the default is no stricter than it (a file they miss falls there).

        So an allow holds only where every library is allowed (`library: "/**"`, or an
        allowing default, with nothing stricter naming a library), and the baseline pack's
        alert on `/**` stays an alert unless a deny names a library."""
        if decision.blocked:
            return True
        index = self._categories["import"]
        worst = _strictness(_RANK[decision.action], decision.blocked)
        rules = index.all_rules()
        for rule in rules:
            spec = rule.spec
            if spec.unless is not None and "library" in spec.unless.fields:
                return False
            if "library" in spec.match.fields and _strictness(rule.rank, rule.blocks) > worst:
                return False
        default = index.default_decision
        if decision.rule_id == default.rule_id:
            return True
        winners = [rule for rule in rules if rule.id == decision.rule_id]
        if winners and all(
            "/**" in rule.spec.match.fields.get("library", ("/**",)) for rule in winners
        ):
            return True
        return _strictness(_RANK[default.action], default.blocked) <= worst

    def needs_stack(self, category: str) -> bool:
        """Some rule of the category has a `scope` or an `unless.scope`."""
        categories = self._categories
        if isinstance(categories, _LazyCategories) and category not in categories:
            return categories.scoped[category]
        return categories[category].needs_stack

    def scope_matcher(self) -> Callable[[str], bool] | None:
        """A test of whether a module name matches some `scope` or `unless.scope` glob of
        any rule (None: the policy has no scope). The hooks record which code objects
        belong to those modules only (see `appshield.hooks.imports.scope_code`)."""
        globs = self._scope_globs
        if not globs:
            return None
        matchers = tuple(path_matcher(module_pattern(g)) for g in globs)
        tops = self.scope_tops()

        def wanted(name: str) -> bool:
            if tops is not None and name.partition(".")[0] not in tops:
                return False
            subject = module_subject(name)
            return any(match(subject) for match in matchers)

        return wanted

    def scope_tops(self) -> frozenset[str] | None:
        """The top-level names of the `scope` globs: a module whose top name is not among
        them matches none (None: some top is a pattern itself, or there is no scope). Asked
        for every module a loader compiles, so most are turned away by one set lookup."""
        globs = self._scope_globs
        if not globs:
            return None
        tops = frozenset(g.partition(".")[0] for g in globs)
        return None if any(has_magic(top) for top in tops) else tops

    def stack_matters(self, op: Operation) -> bool:
        """Could the call stack change whether `op` is allowed, or, when it is not, its
        decision? The hooks remember an allowed operation (to let its repeats through before
        the gate) only when it could not: a scoped rule for some other operation (the
        telemetry exporter's, say) leaves every other one cacheable.

        A candidate whose match fields hold and that has a `scope` (or an `unless.scope`)
        makes the stack matter, with one exception: an allow whose only tie to the stack is
        its own `scope`. On another stack it holds or not, and so it can only add an allow;
        when `op` is allowed without it (`decide(op, None)`: no scope holds on an empty
        stack), every stack allows `op`, by that rule or another, and only the allow's rule
        id differs, which nothing remembered reads. `implicit:telemetry_exporter` is such an
        allow: without the exception, every lookup of `localhost` (its default endpoint's
        host) was decided in full, about 220,000 instructions each."""
        category = _OP_CATEGORY.get(op.__class__)
        if category is None:
            raise TypeError(f"not an operation: {op!r}")
        index = self._categories[category]
        if not index.needs_stack:
            return False
        cache = self._caches.get(op.__class__)
        if cache is not None:
            # The hooks ask right after deciding `op`: a decision in the cache was reached
            # without the stack (see `decide`), so no scoped rule could change it. This
            # keeps the question a dict lookup instead of a second pass over the candidates.
            try:
                if op in cache:
                    return False
            except TypeError:  # an unhashable field: ask the rules
                pass
        scoped_allows = False
        for position in index.candidates(op):
            rule = index.rule_at(position)
            if not rule.needs_stack:
                continue
            preds = rule.preds
            if preds is None:
                preds = rule.compile()
            # Only a rule whose match fields hold can be decided by the stack (`unless`
            # fields are not looked at: that can only say "matters" more often).
            if all(pred(op) for pred in preds):
                if rule.rank == _ALLOW_RANK and rule.unless_scope is None:  # set by compile()
                    scoped_allows = True
                    continue
                return True
        return scoped_allows and self._decide(op, None)[0].action != "allow"

    def import_screen(self) -> CategoryIndex:
        """The import index: its `quiet` tells the hooks an import no rule can name."""
        return self._categories["import"]

    def index(self, category: str) -> CategoryIndex:
        """The category's candidate index, for hooks that screen an operation before they
        build it (`ImportIndex.quiet`)."""
        return self._categories[category]

    def has_rules(self, category: str) -> bool:
        """Some written or implicit rule applies to the category."""
        return self._categories[category].count > 0

    def default(self, category: str) -> Action:
        return self._defaults[category]

    def file_needs_resolved_path(self, access: str) -> bool:
        """Whether `FileOp.resolved` can change the action or the blocking of a decision for
        this access. False lets a hook skip resolving symlinks.

        A path glob looks at the resolved path, so any rule (or `unless`) with a `path` field
        for this access may care, with one exception: when the default is allow, allow rules
        cannot change the outcome (they could only change which allow is named), so only
        deny and alert rules count then.
        """
        return self._categories["file"].resolved_matters(access)

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}={self._categories[c].count}" for c in CATEGORIES)
        return f"<CompiledPolicy mode={self.mode} rules: {counts}>"


def index_states(document: PolicyDocument) -> tuple[Any, ...]:
    """The written rules' index of every category (in `CATEGORIES` order), as plain data:
    what `compile_policy(index=...)` restores. A pure function of the document, so the
    policy cache can keep it (and a policy's identity covers it)."""
    by_category: dict[str, list[RuleSpec]] = {c: [] for c in CATEGORIES}
    for rule in document.rules:
        by_category[rule.category].append(rule)
    return tuple(index_state(c, by_category[c], document.defaults[c]) for c in CATEGORIES)


def compile_policy(
    document: PolicyDocument,
    mode: Mode,
    *,
    protected_paths: tuple[str, ...] = (),
    cache_size: int = DEFAULT_CACHE_SIZE,
    protected_folders: tuple[str, ...] = (),
    implicit_allows: Sequence[RuleSpec] = (),
    index: Sequence[Any] | None = None,
) -> CompiledPolicy:
    """Compile `document` for the effective `mode`.

    protected_paths: path globs of the policy files and appshield's own files; with
    `protections.policy_files` they are denied for write and delete (`implicit:policy_files`).
    protected_folders: path globs of the folders above them, denied for delete (a rename
        away) under the same protection and rule id.
    cache_size: the bound of each per-category decision cache (0: no cache). A cache that
    reaches it is cleared, which keeps the bookkeeping to one `len` per miss.
    implicit_allows: allow rules appshield adds on its own authority, after the written ones
        (`implicit:telemetry_exporter`, see `appshield.policy.exporter`).
    index: `index_states(document)`, computed before (at load, or kept in the policy cache):
        each category's index is then restored, not built, when first needed.
    """
    missing = [c for c in CATEGORIES if c not in document.defaults]
    if missing:
        raise ValueError(f"defaults must name every category; missing: {', '.join(missing)}")
    # The category indexes are built on first use (`_LazyCategories`), inside whichever hook
    # needs one first; the cyclic GC is deliberately left alone there, since pausing it is
    # visible to the app's other threads.
    return _compile(
        document,
        mode,
        protected_paths,
        cache_size,
        protected_folders,
        tuple(implicit_allows),
        index,
    )


class _LazyCategories(dict[str, CategoryIndex]):
    """Category indexes built on first use.

    A process pays for compiling only the categories it exercises: a short script that never
    opens a socket never builds the network index, and start-up (where every shielded process
    waits) compiles nothing. Each index is a pure function of the validated document, so two
    threads racing to build one build equal indexes and either may win.
    """

    def __init__(self, build: Callable[[str], CategoryIndex], scoped: Mapping[str, bool]) -> None:
        super().__init__()
        self._build = build
        # Whether some rule of a category has a scope, known without building the index:
        # hooks ask this when they install.
        self.scoped = scoped

    def __missing__(self, category: str) -> CategoryIndex:
        index = self._build(category)
        self[category] = index
        return index


def _compile(
    document: PolicyDocument,
    mode: Mode,
    protected_paths: tuple[str, ...],
    cache_size: int,
    protected_folders: tuple[str, ...] = (),
    implicit_allows: tuple[RuleSpec, ...] = (),
    index: Sequence[Any] | None = None,
) -> CompiledPolicy:
    protections = document.protections
    by_category: dict[str, list[RuleSpec]] = {c: [] for c in CATEGORIES}
    allows_by_category: dict[str, list[RuleSpec]] = {c: [] for c in CATEGORIES}
    scoped = dict.fromkeys(CATEGORIES, False)
    scope_globs: dict[str, None] = {}
    for rule in implicit_allows:
        if rule.scope is not None or (rule.unless is not None and rule.unless.scope is not None):
            scoped[rule.category] = True
            scope_globs.update(dict.fromkeys(rule.scope or ()))
        allows_by_category[rule.category].append(rule)
    for rule in document.rules:
        if rule.scope is not None or (rule.unless is not None and rule.unless.scope is not None):
            scoped[rule.category] = True
            scope_globs.update(dict.fromkeys(rule.scope or ()))
            scope_globs.update(dict.fromkeys(rule.unless.scope or () if rule.unless else ()))
        # A bad `[...]` class fails here, when the shield starts, even though the index that
        # holds the rule is only built later.
        check_classes(rule)
        by_category[rule.category].append(rule)

    def build(category: str) -> CategoryIndex:
        return build_category(
            category,
            by_category[category],
            default=document.defaults[category],
            mode=mode,
            protected_paths=protected_paths if protections.policy_files else (),
            unshielded_children=protections.unshielded_children,
            protected_folders=protected_folders if protections.policy_files else (),
            implicit_allows=allows_by_category[category],
            prebuilt=None if index is None else index[CATEGORIES.index(category)],
            needs_stack=scoped[category],
        )

    categories = _LazyCategories(build, scoped)
    if index is not None:
        # Restoring is a copy of plain data, not a pass over the rules: done now, at load,
        # for the categories nearly every process decides at once (its imports, which
        # install itself screens, and its files), so that no decision of theirs waits for
        # it. Not the network index: filing its implicit allows (the telemetry exporter's
        # `::1` and collector hosts) imports `ipaddress` (about 6 M instructions), which the
        # first network decision imports anyway to read its address; a process that never
        # opens a socket never pays it. Nor the process index (about 0.2 M): most processes
        # start no program, and the first that does costs far more than restoring it.
        for category in CATEGORIES:
            if category in ("file", "import"):
                categories[category] = build(category)
    return CompiledPolicy(categories, mode, dict(document.defaults), cache_size, tuple(scope_globs))
