"""Policies: loading (`loader`), the validated data (`model`), the public `Policy` type and
finding the policy when none is given (`discover_policy`)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TypeAlias

    from appshield.decision import Decision, Mode
    from appshield.document import PolicyDocument
    from appshield.engine import CompiledPolicy
    from appshield.operations import Operation

__all__ = ["POLICY_NAMES", "Policy", "PolicyDocument", "discover_policy", "load_policy"]

# appshield's own installed files: protected by `protections.policy_files`.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

StackInput: TypeAlias = "Callable[[], Sequence[str]] | Sequence[str] | None"


class Policy:
    """A validated policy with its effective mode. Immutable; compiled on first decision.

    mode: the effective mode, `mode=` argument > the file's `mode` > enforce. (The
    `APPSHIELD_MODE` variable is applied by whoever builds the runtime configuration.)
    """

    __slots__ = ("_compiled", "_index", "document", "mode")

    def __init__(
        self,
        document: PolicyDocument,
        *,
        mode: Mode | None = None,
        index: tuple[Any, ...] | None = None,
    ) -> None:
        self.document = document
        self.mode: Mode = mode or document.mode or "enforce"
        self._compiled: CompiledPolicy | None = None
        # The rules' index (`appshield.engine.index_states`): from the policy cache, else
        # built when first asked for, at the latest when the policy is compiled, so that
        # the first decision does not index every rule.
        self._index = index

    @classmethod
    def from_yaml(cls, text: str, *, filename: str | None = None) -> Policy:
        """Parse and validate YAML text. `extends` resolve relative to `filename`'s folder
        (or the current directory when no filename is given)."""
        from appshield.policy.loader import load_text

        return cls(load_text(text, filename=filename))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, use_cache: bool = True) -> Policy:
        from appshield.policy import cache

        given = os.fspath(path)
        if isinstance(given, str) and use_cache:
            found = cache.load_indexed(given)
            if found is not None:
                return cls(found[0], index=found[1])
        from appshield.policy.loader import load_file_inputs

        document, (read_files, variables) = load_file_inputs(given)
        policy = cls(document)
        if isinstance(given, str):
            cache.store(given, document, read_files, variables, index=policy.index)
        return policy

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: str | None = None) -> Policy:
        from appshield.policy.loader import load_mapping

        return cls(load_mapping(data, base_dir=base_dir))

    @property
    def name(self) -> str:
        return self.document.name or (
            os.path.basename(self.document.files[0]) if self.document.files else "inline"
        )

    @property
    def files(self) -> tuple[str, ...]:
        return self.document.files

    def with_mode(self, mode: Mode | None) -> Policy:
        if mode is None or mode == self.mode:
            return self
        return Policy(self.document, mode=mode, index=self._index)

    def index(self) -> tuple[Any, ...]:
        """The rules' index as plain data (see `appshield.engine.index_states`)."""
        index = self._index
        if index is None:
            from appshield.engine import index_states

            index = self._index = index_states(self.document)
        return index

    @property
    def compiled(self) -> CompiledPolicy:
        compiled = self._compiled
        if compiled is None:
            from appshield.engine import compile_policy, escape

            # File names are literal paths, not globs: `[`, `*` or `?` in a name must not
            # widen or break the protection.
            files = self.document.files
            protected = (
                *(escape(f) for f in files),
                *(_cache_protection(f) for f in files),
                # The cache's own folder: a forged `__pycache__` renamed into its place (or
                # made anew where there was none) would hold a forged cache.
                *(escape(_cache_folder(f)) for f in files),
                escape(PACKAGE_DIR) + "/**",
            )
            compiled = compile_policy(
                self.document,
                self.mode,
                protected_paths=protected,
                protected_folders=_folders_above((*files, PACKAGE_DIR)),
                implicit_allows=self._implicit_allows(),
                index=self.index(),
            )
            self._compiled = compiled
        return compiled

    def _implicit_allows(self) -> tuple[Any, ...]:
        if not self.document.protections.telemetry_exporter:
            return ()
        from appshield.policy.exporter import exporter_rules
        from appshield.settings import STARTUP

        return exporter_rules(STARTUP.environ)

    @property
    def identity(self) -> str:
        """A digest of exactly what this policy enforces: the validated document (every rule
        with its variables expanded, the defaults, the protections, the files it came from)
        and the effective mode. A child carries its parent's shield only when its own policy
        has the same identity (`appshield._inherit`)."""
        from appshield.policy.cache import plain

        reach: tuple[Any, ...] = ()
        if self.document.protections.telemetry_exporter:
            from appshield.policy.exporter import configured_endpoints
            from appshield.settings import STARTUP

            # What `implicit:telemetry_exporter` lets through: a child uses its root's
            # endpoints, so both sides agree unless the child is not the parent's shield.
            reach = configured_endpoints(STARTUP.environ)
        text = repr(("appshield-policy-identity/2", self.mode, plain(self.document), reach))
        # The index is a function of the document, but a cached one is not proved to be it:
        # the identity covers it (marshal version 2 bytes: equal indexes, equal bytes), so
        # a child with another index reloads the YAML.
        import marshal

        index = marshal.dumps(self.index(), 2)
        return _digest(text.encode("utf-8", "surrogateescape") + index)

    def decide(self, operation: Operation, stack: StackInput = None) -> Decision:
        """The pure decision for one operation. `stack`: the modules on the call stack
        (innermost first), or a callable returning them; only consulted when a candidate
        rule has a `scope`."""
        return self.compiled.decide(operation, stack)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Policy)
            and other.document == self.document
            and other.mode == self.mode
        )

    def __hash__(self) -> int:
        return hash((self.document.files, self.mode))

    def __repr__(self) -> str:
        return f"<Policy {self.name!r} mode={self.mode} rules={len(self.document.rules)}>"


def _cache_protection(policy_file: str) -> str:
    from appshield.engine import escape
    from appshield.policy.cache import cache_glob

    folder, name_prefix = cache_glob(policy_file)
    return f"{escape(folder)}/{escape(name_prefix)}*"


def _digest(data: bytes) -> str:
    # `_blake2` is built in and imports in well under a millisecond; `hashlib` brings OpenSSL
    # (about 5 ms of every start-up).
    try:
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - a build without it
        from hashlib import sha256

        return sha256(data).hexdigest()
    return blake2b(data, digest_size=32).hexdigest()


def _cache_folder(policy_file: str) -> str:
    from appshield.policy.cache import cache_glob

    return cache_glob(policy_file)[0]


def _folders_above(paths: Sequence[str]) -> tuple[str, ...]:
    """Globs of every folder above each path (as given and with symlinks resolved), up to but
    not including `/`: renaming any of them away moves the file with it."""
    from appshield.engine import escape
    from appshield.normalize import realpath  # os.path.realpath's answer, in fewer steps

    found: dict[str, None] = {}
    for path in paths:
        for spelling in dict.fromkeys((os.path.abspath(path), realpath(path))):
            folder = os.path.dirname(spelling)
            while folder and folder != os.path.dirname(folder):
                found.setdefault(escape(folder), None)
                folder = os.path.dirname(folder)
    return tuple(found)


def __getattr__(name: str) -> Any:
    # `PolicyDocument` on first use: `appshield run` imports this package only for the
    # policy cache's check, which never builds a document.
    if name == "PolicyDocument":
        from appshield.document import PolicyDocument

        return PolicyDocument
    raise AttributeError(f"module 'appshield.policy' has no attribute {name!r}")


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Parse and validate the policy file at `path`; raise `PolicyError` on any problem."""
    return Policy.from_file(path)


# -- discovery ------------------------------------------------------------------------------
# Kept in this package, not a module of its own: every start loads this package anyway, and a
# module of its own cost each start about 0.3 M instructions of finding and loading
# (docs/performance.md, "Start-up, seventh round").

POLICY_NAMES = ("appshield.yaml", ".appshield.yaml")
_ENV_VAR = "APPSHIELD_POLICY"


def discover_policy(start_dir: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The path of the policy to use: `APPSHIELD_POLICY`, then `appshield.yaml` and
    `.appshield.yaml` in the start folder and each parent, stopping after the repository root
    (the first folder holding `.git`) or the filesystem root. Finding nothing is
    `PolicyError` "no policy found ...", never a silent allow-all.

    A path from `APPSHIELD_POLICY` is returned as given (the loader reports it when it is
    missing): a variable that names a file must never fall back to some other policy.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(_ENV_VAR)
    if explicit:
        return explicit
    folder = os.path.abspath(start_dir if start_dir is not None else os.getcwd())
    searched = []
    while True:
        searched.append(folder)
        for name in POLICY_NAMES:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
        parent = os.path.dirname(folder)
        if os.path.exists(os.path.join(folder, ".git")) or parent == folder:
            break
        folder = parent
    # Here, not at the top: `appshield run`'s own process loads this package for the policy
    # cache, and `appshield.errors` only when there is a problem to report.
    from appshield.errors import PolicyError

    raise PolicyError(
        f"no policy found: set {_ENV_VAR} or create appshield.yaml"
        f" (searched {searched[0]} up to {searched[-1]})"
    )
