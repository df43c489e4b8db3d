"""Policy loader: YAML text, a file, or a Python mapping -> a validated `PolicyDocument`.

Every problem is collected, not just the first, and raised together as one `PolicyError`
whose problems print as `FILE:LINE:COL: message` (`<policy>` for text without a file
name; a dotted key path for a mapping). The reading itself lives in small helpers:
`_yaml` (safe event-level YAML -> node tree), `_check` (basic shapes), `_fields` (match
fields), `variables` ({home}, {stdlib}, ...). This module validates the document and
merges `extends`.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from appshield.decision import Action, Mode
from appshield.document import (
    MATCH_FIELDS,
    Condition,
    Packages,
    PolicyDocument,
    Protections,
    RuleSpec,
    SourceRef,
)
from appshield.errors import PolicyError, PolicyProblem
from appshield.operations import CATEGORIES
from appshield.policy import _fields
from appshield.policy import variables as _variables
from appshield.policy._check import Checker
from appshield.policy._nodes import Node, from_python
from appshield.policy._packages import merge_packages, read_packages
from appshield.policy._yaml import parse

__all__ = [
    "PACKS_DIR",
    "TEXT_NAME",
    "LoadInputs",
    "load_file",
    "load_file_inputs",
    "load_mapping",
    "load_text",
]


class LazyVariables(Mapping[str, tuple[str, ...]]):
    """The variables for one policy folder, each computed when a glob first names it.

    `used` records what was looked up: a cached policy is valid only while these still
    have the same values (a `{cwd}` rule loaded in another folder is another policy).
    Here rather than in `appshield.policy.variables`, which every start loads for the policy
    cache's proof: only a load from YAML needs it, and an ABC subclass costs about 0.16 M
    instructions to create (docs/performance.md, "Start-up, seventh round").
    """

    def __init__(self, policy_dir: str, used: dict[tuple[str, str], tuple[str, ...]]) -> None:
        self.policy_dir = policy_dir
        self.used = used

    def __getitem__(self, name: str) -> tuple[str, ...]:
        key = (self.policy_dir, name)
        found = self.used.get(key)
        if found is None:
            found = self.used[key] = _variables.value(name, self.policy_dir)
        return found

    def __contains__(self, name: object) -> bool:
        return name in _variables.NAMES

    def __iter__(self) -> Iterator[str]:
        return iter(_variables.NAMES)

    def __len__(self) -> int:
        return len(_variables.NAMES)


PACKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "packs")
PACK_PREFIX = "appshield:"
TEXT_NAME = "<policy>"  # the FILE of problems in text loaded without a file name

TOP_KEYS = (
    "version",
    "name",
    "mode",
    "extends",
    "disable",
    "defaults",
    "rules",
    "protections",
    "packages",
)
RULE_KEYS = ("id", "description", "category", "action", "match", "unless", "scope", "mode")
PROTECTION_KEYS = ("policy_files", "unshielded_children", "telemetry_exporter")
ACTIONS = ("allow", "deny", "alert")
MODES = ("enforce", "monitor")
VERSION = 1
MAX_PROBLEMS = 100  # beyond this a list of problems helps nobody (an alias bomb has thousands)
_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_PACK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ALL_FIELDS = tuple(dict.fromkeys(f for fs in MATCH_FIELDS.values() for f in fs))


# --- public entry points -----------------------------------------------------------------


def load_text(text: str, *, filename: str | None = None) -> PolicyDocument:
    """Validate YAML text. `extends` resolve against `filename`'s folder (else the cwd)."""
    if isinstance(text, bytes):
        text = _decode(text, filename or TEXT_NAME)
    if not isinstance(text, str):
        raise PolicyError(f"policy text must be a string, not {type(text).__name__}")
    if filename is None:
        source = _Source(TEXT_NAME, None, os.getcwd(), None)
    else:
        source = _file_source(_path_text(filename), os.fspath(filename))
    return _Loader().load_top(source, text)


def load_file(path: str | os.PathLike[str]) -> PolicyDocument:
    """Read and validate the policy file at `path`."""
    return load_file_inputs(path)[0]


# Everything outside the policy text that a load depended on: each file read as
# (absolute path, real path, bytes), and each variable looked up as (folder, name) -> values.
LoadInputs = tuple[tuple[tuple[str, str, bytes], ...], Mapping[tuple[str, str], tuple[str, ...]]]


def load_file_inputs(path: str | os.PathLike[str]) -> tuple[PolicyDocument, LoadInputs]:
    """`load_file`, also returning its inputs: a cached copy of the result stays valid exactly
    as long as they are unchanged (see `appshield.policy.cache`)."""
    shown = _path_text(path)
    try:
        with open(shown, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise PolicyError(
            [PolicyProblem(f"cannot read policy: {_os_reason(exc)}", shown)]
        ) from None
    loader = _Loader()
    source = _file_source(shown, shown)
    loader.read_files.append((source.path or "", source.real or "", raw))
    document = loader.load_top(source, _decode(raw, shown))
    return document, (tuple(loader.read_files), loader.variables_used)


def load_mapping(data: Mapping[str, Any], *, base_dir: str | None = None) -> PolicyDocument:
    """Validate an already-parsed policy. `extends` and `{policy_dir}` use `base_dir`."""
    folder = os.path.abspath(_path_text(base_dir)) if base_dir is not None else os.getcwd()
    source = _Source(None, None, folder, None)
    return _Loader().load_top(source, from_python(data))


# --- sources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    display: str | None  # FILE in messages; None for a mapping
    path: str | None  # absolute path, for SourceRef and PolicyDocument.files
    base_dir: str  # where `extends` and {policy_dir} point
    real: str | None  # symlinks resolved, for cycles and the folder check
    pack: bool = False


def _file_source(display: str, path: str, *, pack: bool = False) -> _Source:
    absolute = os.path.abspath(path)
    return _Source(display, absolute, os.path.dirname(absolute), os.path.realpath(absolute), pack)


def _path_text(path: str | os.PathLike[str]) -> str:
    """A path argument as text; one that no file can have is a `PolicyError` up front."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise PolicyError(f"a policy path must be text, not {type(path).__name__}") from None
    if not isinstance(text, str) or "\0" in text:
        raise PolicyError(f"{text!r} is not a usable policy path")
    return text


def _decode(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError([_not_utf8(raw, exc, shown)]) from None


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, shown: str) -> PolicyProblem:
    line = raw.count(b"\n", 0, exc.start) + 1
    column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    return PolicyProblem(f"not UTF-8 text ({exc.reason})", shown, line, column)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --- merging -----------------------------------------------------------------------------


@dataclass
class _Rule:
    spec: RuleSpec
    node: Node
    ck: Checker


@dataclass
class _Merged:
    name: str | None = None
    mode: Mode | None = None
    defaults: dict[str, Action] = field(default_factory=dict)
    rules: list[_Rule] = field(default_factory=list)
    protections: dict[str, bool] = field(default_factory=dict)
    packages: Packages | None = None

    def absorb(self, other: _Merged) -> None:
        """Take `other` as a later layer: its settings win, its rules come after."""
        self.name = other.name if other.name is not None else self.name
        self.mode = other.mode if other.mode is not None else self.mode
        self.defaults.update(other.defaults)
        self.protections.update(other.protections)
        self.rules.extend(other.rules)
        self.packages = merge_packages(self.packages, other.packages)


def _where(rule: _Rule) -> str:
    node = rule.node
    if node.has_place:
        return f"{rule.ck.file or TEXT_NAME}:{node.line}:{node.col}"
    return node.path or "rules"


class _Loader:
    def __init__(self) -> None:
        self.problems: list[PolicyProblem] = []
        self.files: list[str] = []
        self.seen: set[str] = set()
        self.order: dict[str | None, int] = {}
        self.read_files: list[tuple[str, str, bytes]] = []
        self.variables_used: dict[tuple[str, str], tuple[str, ...]] = {}

    def load_top(self, source: _Source, content: str | Node) -> PolicyDocument:
        # A large policy allocates hundreds of thousands of small, acyclic objects (nodes,
        # tuples, rules); the cyclic collector would run over all of them again and again,
        # doubling the load time. Refcounting frees everything here, so pause it.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._load_top(source, content)
        finally:
            if paused:
                gc.enable()

    def _load_top(self, source: _Source, content: str | Node) -> PolicyDocument:
        self._register(source)
        node = self._tree(source, content)
        merged = self._load(node, source, [])
        if merged is not None and node is not None and node.kind == "map":
            self._check_defaults(merged, node, source)
        if self.problems or merged is None:
            raise PolicyError(self._sorted())
        return PolicyDocument(
            version=VERSION,
            name=merged.name,
            mode=merged.mode,
            defaults={c: merged.defaults[c] for c in CATEGORIES},
            rules=tuple(r.spec for r in merged.rules),
            protections=Protections(**merged.protections),
            files=tuple(self.files),
            packages=merged.packages,
        )

    def _register(self, source: _Source) -> None:
        self.order.setdefault(source.display, len(self.order))
        if source.real is not None:
            self.seen.add(source.real)
        if source.path is not None and not source.pack:
            self.files.append(source.path)

    def _sorted(self) -> list[PolicyProblem]:
        def key(p: PolicyProblem) -> tuple[int, int, int]:
            return (self.order.get(p.file, len(self.order)), p.line or 0, p.column or 0)

        ordered = sorted(dict.fromkeys(self.problems), key=key)
        if len(ordered) > MAX_PROBLEMS:
            rest = len(ordered) - MAX_PROBLEMS
            ordered = [*ordered[:MAX_PROBLEMS], PolicyProblem(f"... and {rest} more problems")]
        return ordered

    def _tree(self, source: _Source, content: str | Node) -> Node | None:
        if isinstance(content, Node):
            return content
        node, yaml_problems = parse(content)
        for message, line, col in yaml_problems:
            self.problems.append(PolicyProblem(message, source.display or TEXT_NAME, line, col))
        if yaml_problems and node is None:
            return _ALREADY_REPORTED
        return node

    # -- one file -----------------------------------------------------------------------

    def _load(self, node: Node | None, source: _Source, stack: list[_Source]) -> _Merged | None:
        ck = Checker(source.display, self.problems)
        if node is None:
            ck.report(None, "the policy is empty (it needs at least 'version' and 'defaults')")
            return None
        if node.kind == "bad":
            return None
        if node.kind != "map":
            ck.wrong_type(node, "the policy", "a mapping")
            return None
        entries = ck.mapping(node, "the policy", TOP_KEYS, "at the top level") or {}
        self._check_version(ck, node, entries)
        variables = LazyVariables(source.base_dir, self.variables_used)
        merged = self._extends(ck, entries.get("extends"), source, [*stack, source])
        self._disable(ck, entries.get("disable"), merged)
        own = _Merged()
        own.name = self._optional(ck, entries, "name", ck.text)
        mode = self._optional(ck, entries, "mode", lambda n, w: ck.choice(n, w, MODES))
        own.mode = cast("Mode | None", mode)
        own.defaults = self._defaults(ck, entries.get("defaults"))
        own.protections = self._protections(ck, entries.get("protections"))
        own.rules = self._rules(ck, entries.get("rules"), source, variables)
        if "packages" in entries:
            own.packages = read_packages(ck, entries["packages"][1], source.path, variables)
        self._check_duplicates(merged.rules, own.rules)
        merged.absorb(own)
        return merged

    @staticmethod
    def _optional(ck: Checker, entries: dict[str, tuple[Node, Node]], key: str, read: Any) -> Any:
        entry = entries.get(key)
        return read(entry[1], key) if entry is not None else None

    def _check_version(
        self, ck: Checker, node: Node, entries: dict[str, tuple[Node, Node]]
    ) -> None:
        entry = entries.get("version")
        if entry is None:
            ck.report(node, f"missing 'version' (add 'version: {VERSION}')")
            return
        version = ck.integer(entry[1], "version")
        if version is not None and version != VERSION:
            ck.report(entry[1], f"version must be {VERSION}, not {version}")

    def _check_defaults(self, merged: _Merged, node: Node, source: _Source) -> None:
        missing = [c for c in CATEGORIES if c not in merged.defaults]
        if not missing:
            return
        ck = Checker(source.display, self.problems)
        entry = next(((k, v) for k, v in node.items() if _key_text(k) == "defaults"), None)
        if entry is None and len(missing) == len(CATEGORIES):
            ck.report(
                node, "missing 'defaults' (an action for each of: " + ", ".join(CATEGORIES) + ")"
            )
            return
        ck.report(
            entry[0] if entry else node,
            "'defaults' has no action for "
            + ", ".join(missing)
            + " (after extends are merged, every category needs one)",
        )

    # -- sections -----------------------------------------------------------------------

    def _defaults(self, ck: Checker, entry: tuple[Node, Node] | None) -> dict[str, Action]:
        if entry is None:
            return {}
        found = ck.mapping(entry[1], "defaults", CATEGORIES, "in defaults") or {}
        out: dict[str, Action] = {}
        for category, (_key, value) in found.items():
            action = ck.choice(value, f"defaults.{category}", ACTIONS)
            if action is not None:
                out[category] = cast("Action", action)
        return out

    def _protections(self, ck: Checker, entry: tuple[Node, Node] | None) -> dict[str, bool]:
        if entry is None:
            return {}
        found = ck.mapping(entry[1], "protections", PROTECTION_KEYS, "in protections") or {}
        out: dict[str, bool] = {}
        for name, (_key, value) in found.items():
            flag = ck.boolean(value, f"protections.{name}")
            if flag is not None:
                out[name] = flag
        return out

    def _rules(
        self,
        ck: Checker,
        entry: tuple[Node, Node] | None,
        source: _Source,
        variables: Mapping[str, tuple[str, ...]],
    ) -> list[_Rule]:
        if entry is None:
            return []
        node = entry[1]
        if node.kind == "scalar" and node.value is None and node.ytype == "null":
            return []  # `rules:` with nothing under it: no rules
        if node.kind != "seq":
            ck.wrong_type(node, "rules", "a list")
            return []
        out: list[_Rule] = []
        for item in node.elements():
            spec = _read_rule(ck, item, source, variables)
            if spec is not None:
                out.append(_Rule(spec, item, ck))
        return out

    def _check_duplicates(self, inherited: list[_Rule], own: list[_Rule]) -> None:
        first: dict[str, _Rule] = {}
        for rule in inherited:
            first.setdefault(rule.spec.id, rule)
        for rule in own:
            earlier = first.get(rule.spec.id)
            if earlier is not None:
                rule.ck.report(
                    rule.node,
                    f"duplicate rule id {rule.spec.id!r} (first defined at {_where(earlier)})",
                )
            else:
                first[rule.spec.id] = rule

    def _disable(self, ck: Checker, entry: tuple[Node, Node] | None, merged: _Merged) -> None:
        if entry is None:
            return
        items = entry[1].elements() if entry[1].kind == "seq" else [entry[1]]
        drop: set[str] = set()
        known = {r.spec.id for r in merged.rules}
        for item in items:
            rule_id = ck.text(item, "disable")
            if rule_id is None:
                continue
            if rule_id not in known:
                ck.report(item, f"disable: no inherited rule has id {rule_id!r}")
            drop.add(rule_id)
        merged.rules = [r for r in merged.rules if r.spec.id not in drop]

    # -- extends ------------------------------------------------------------------------

    def _extends(
        self, ck: Checker, entry: tuple[Node, Node] | None, source: _Source, stack: list[_Source]
    ) -> _Merged:
        merged = _Merged()
        if entry is None:
            return merged
        items = entry[1].elements() if entry[1].kind == "seq" else [entry[1]]
        for item in items:
            target = ck.text(item, "extends")
            if target is None:
                continue
            child = self._resolve(ck, item, target, source)
            if child is None:
                continue
            if any(s.real == child.real for s in stack):
                names = [s.display or TEXT_NAME for s in stack] + [child.display or target]
                start = next(i for i, s in enumerate(stack) if s.real == child.real)
                ck.report(item, "extends cycle: " + " -> ".join(names[start:]))
                continue
            if child.real in self.seen:
                continue  # already merged through another path: its rules are in once
            text = self._read(ck, item, target, child)
            if text is None:
                continue
            self._register(child)
            layer = self._load(self._tree(child, text), child, stack)
            if layer is not None:
                self._check_duplicates(merged.rules, layer.rules)
                merged.absorb(layer)
        return merged

    def _resolve(self, ck: Checker, item: Node, target: str, source: _Source) -> _Source | None:
        if target.startswith(PACK_PREFIX):
            name = target[len(PACK_PREFIX) :]
            path = os.path.join(PACKS_DIR, f"{name}.yaml")
            if not _PACK_NAME.match(name) or not os.path.isfile(path):
                ck.report(item, f"extends: no built-in pack {target!r} (see appshield/packs/)")
                return None
            return _file_source(path, path, pack=True)
        if not target or "\0" in target:
            ck.report(item, f"extends: {target!r} is not a file path")
            return None
        path = os.path.join(source.base_dir, target)
        folder = os.path.realpath(source.base_dir)
        real = os.path.realpath(path)
        if not real.startswith(folder.rstrip(os.sep) + os.sep):
            ck.report(item, f"extends: {target!r} is outside this policy's folder")
            return None
        shown = target
        if source.display is not None and source.path is not None:
            shown = os.path.normpath(os.path.join(os.path.dirname(source.display), target))
        return _file_source(shown, path, pack=source.pack)

    def _read(self, ck: Checker, item: Node, target: str, child: _Source) -> str | None:
        try:
            with open(child.path or "", "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            ck.report(item, f"extends: cannot read {target!r}: {_os_reason(exc)}")
            return None
        self.read_files.append((child.path or "", child.real or "", raw))
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.problems.append(_not_utf8(raw, exc, child.display or target))
            return None


_ALREADY_REPORTED = Node("bad", None)


def _key_text(key: Node) -> str | None:
    if key.text is not None:
        return key.text
    return key.value if isinstance(key.value, str) else None


# --- rules -------------------------------------------------------------------------------


def _read_rule(
    ck: Checker, node: Node, source: _Source, variables: Mapping[str, tuple[str, ...]]
) -> RuleSpec | None:
    entries = ck.mapping(node, "a rule", RULE_KEYS, "in rule")
    if entries is None:
        return None
    rule_id = _required(ck, node, entries, "id", lambda n: _rule_id(ck, n))
    category = _required(
        ck, node, entries, "category", lambda n: ck.choice(n, "category", CATEGORIES)
    )
    action = _required(ck, node, entries, "action", lambda n: ck.choice(n, "action", ACTIONS))
    fields = MATCH_FIELDS.get(category or "", _ALL_FIELDS)
    match = _required(
        ck,
        node,
        entries,
        "match",
        lambda n: _condition(ck, n, "match", category, fields, variables),
    )
    unless = _optional_entry(
        entries,
        "unless",
        lambda n: _condition(ck, n, "unless", category, (*fields, "scope"), variables),
    )
    scope = _optional_entry(entries, "scope", lambda n: _fields.read_scope(ck, n))
    mode = _optional_entry(entries, "mode", lambda n: ck.choice(n, "mode", MODES))
    description = _optional_entry(entries, "description", lambda n: ck.text(n, "description"))
    parts_ok = all(
        x is not _BAD for x in (rule_id, category, action, match, unless, scope, mode, description)
    )
    if not parts_ok or rule_id is None or category is None or action is None or match is None:
        return None
    return RuleSpec(
        id=rule_id,
        category=category,
        action=cast("Action", action),
        match=match,
        unless=unless,
        scope=scope,
        mode=cast("Mode | None", mode),
        description=description,
        source=SourceRef(source.path, node.line, node.col or 1) if node.line is not None else None,
    )


_BAD: Any = object()  # an optional entry that was present but invalid


def _required(
    ck: Checker, node: Node, entries: dict[str, tuple[Node, Node]], key: str, read: Any
) -> Any:
    entry = entries.get(key)
    if entry is None:
        ck.report(node, f"rule has no {key!r}")
        return None
    return read(entry[1])


def _optional_entry(entries: dict[str, tuple[Node, Node]], key: str, read: Any) -> Any:
    entry = entries.get(key)
    if entry is None:
        return None
    value = read(entry[1])
    return _BAD if value is None else value


def _rule_id(ck: Checker, node: Node) -> str | None:
    rule_id = ck.text(node, "id")
    if rule_id is not None and not _ID.match(rule_id):
        ck.report(node, f"id {rule_id!r} may hold only letters, digits, '.', '_' and '-'")
        return None
    return rule_id


def _condition(
    ck: Checker,
    node: Node,
    what: str,
    category: str | None,
    allowed: tuple[str, ...],
    variables: Mapping[str, tuple[str, ...]],
) -> Condition | None:
    kind = f"a {category} rule" if category else "a rule"
    if node.kind == "scalar" and node.ytype == "null" and not node.text:
        ck.report(
            node,
            f"{what} is empty (write {{}} to match every {category or ''} operation)".replace(
                "  ", " "
            ),
        )
        return None
    entries = ck.mapping(node, what, allowed, f"in {what} of {kind}")
    if entries is None or category is None:
        return None
    fields = _fields.read_condition_fields(ck, entries, category, variables)
    scope: tuple[str, ...] | None = None
    if "scope" in entries:
        scope = _fields.read_scope(ck, entries["scope"][1], f"{what}.scope")
        if scope is None:
            return None
    if fields is None:
        return None
    return Condition(fields=fields, scope=scope)
