"""The validated policy, cached beside its file the way Python caches bytecode.

Reading a policy needs PyYAML and the validating loader: about 25 ms of imports before the
first rule is read, and far more for a large policy. Every process that starts under
appshield pays that, so the result of a successful load is kept in `__pycache__` beside the
policy file, written when Python would write bytecode (not under `PYTHONDONTWRITEBYTECODE` /
`-B`; `appshield check --compile` writes it anyway, for images built that way: `compile_file`)
and read whenever it is there and trustworthy. Never under `PYTHONPYCACHEPREFIX`: that
is the environment's to choose, and a shielded app chooses its children's environment.

The entry also holds the rule index of the document (`appshield.engine.index_states`), so
that the first decision of a process does not index thousands of rules; it is trusted as far
as the document is, and `Policy.identity` covers it.

A cached policy is used only when it is exactly what loading the files again would give:

- every file the load read (the policy, each `extends`, each built-in pack) still has the
  same bytes and the same real path (so a re-pointed symlink is a miss); that list must
  start with the policy file itself and name every file of the cached document (a list that
  leaves a file out proves nothing about it);
- every variable the rules used (`{cwd}`, `{tmp}`, `{home}`, ...) still has the same value;
- the same appshield version, cache format and Python (the tag is in the file name);
- `{stdlib}` and `{stdlib_modules}` are re-checked from sysconfig's paths, taken from the
  entry without asking sysconfig (7 M instructions) only while everything sysconfig computes
  them from is the same (`variables.sysconfig_proof`: the interpreter, its prefixes and
  `platlibdir`, the environment variables sysconfig reads, and the identity of the files
  sysconfig and its build-time data load from); otherwise sysconfig is asked;
- the path was given the same way (problems and reports quote it as given).

Anything else, or any doubt (unreadable, corrupt, a symlink, owned by someone else, writable
by group or others, in such a folder), is a miss and the policy is loaded from YAML as if
there were no cache. So the cache can make start-up faster, never the policy weaker. While a
shield runs, the cache files of its policy, their folder and every folder above them and
above the policy files are protected like the policy files themselves
(`protections.policy_files`), so the app cannot plant a weaker policy for its next start,
not even by renaming a folder. The cache is not authenticated (a key would be in the app's
own memory): a child started by a shielded parent checks what it loaded against the identity
its parent passed (`appshield.activation`), and reloads the YAML on a mismatch.

Deliberately only `marshal` (built in, no code execution on load) and `os`: the point is to
import nothing else before the shield is up.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

from appshield import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from appshield.document import Condition, Packages, PolicyDocument

__all__ = [
    "FORMAT",
    "cache_glob",
    "cache_path",
    "compile_file",
    "load",
    "load_indexed",
    "plain",
    "store",
]

FORMAT = 6  # bump when the stored shape changes (3: the rule index, `engine.index_states`;
# 4: the `packages` section; 5: what is needed of sysconfig, with its proof; 6: the index's
# positions as slots in tuples, `engine.indexes.Buckets`)
_MAGIC = f"appshield-policy-cache/{FORMAT}/{__version__}"
_SUFFIX = f".appshield-{sys.implementation.cache_tag or 'python'}.cache"
_UNSAFE_BITS = stat.S_IWGRP | stat.S_IWOTH


def _cache_folder(policy_path: str) -> str:
    return os.path.join(os.path.dirname(policy_path), "__pycache__")


def cache_path(policy_path: str) -> str:
    """Where the cache of the policy file at (absolute) `policy_path` lives."""
    return os.path.join(_cache_folder(policy_path), os.path.basename(policy_path) + _SUFFIX)


def cache_glob(policy_path: str) -> tuple[str, str]:
    """(folder, file-name prefix) of every cache of `policy_path`, any Python version: what
    the implicit protection covers while a shield runs."""
    return _cache_folder(policy_path), os.path.basename(policy_path) + ".appshield-"


def _trusted(st: os.stat_result, owners: tuple[int, ...]) -> bool:
    return st.st_uid in owners and not st.st_mode & _UNSAFE_BITS


def _owners(policy_path: str) -> tuple[int, ...]:
    # Whoever may write the policy itself may write its cache; so may we and root.
    try:
        owner = os.stat(policy_path).st_uid
    except OSError:
        owner = os.geteuid()
    return (os.geteuid(), owner, 0)


def load(given: str) -> PolicyDocument | None:
    """The cached document for the policy file `given` (as the caller spelled it), or None
    on any miss or doubt."""
    found = load_indexed(given)
    return None if found is None else found[0]


def load_indexed(given: str) -> tuple[PolicyDocument, tuple[Any, ...] | None] | None:
    """The cached document and its rule index (`appshield.engine.index_states`; None when
    the entry's is not of the expected shape, and the index is then built again), or None on
    any miss or doubt. The index is trusted as far as the document is: same file, same
    checks; and a child compares both with its parent's (`Policy.identity` covers it)."""
    try:
        entry = _verified(given)
        if entry is None:
            return None
        document, index = entry
        return _document(document), (index if _index_shaped(index) else None)
    except Exception:  # a cache is an optimisation: any surprise is a miss, never an error
        return None


def _index_shaped(index: Any) -> bool:
    return (
        type(index) is tuple
        and len(index) == 4
        and all(
            type(i) is tuple and len(i) == 2 and type(i[0]) is tuple and type(i[1]) is bytes
            for i in index
        )
    )


def is_valid(given: str) -> bool:
    """Whether the policy file `given` has a valid cache, and so is a valid policy (only a
    policy that loaded without a problem is cached), without building the document."""
    try:
        return _verified(given) is not None
    except Exception:
        return False


def _verified(given: str) -> Any:
    """(plain document, index) cached for `given`, once every check has passed; else None."""
    policy_path = os.path.abspath(given)
    where = cache_path(policy_path)
    owners = _owners(policy_path)
    folder = os.lstat(os.path.dirname(where))
    if not stat.S_ISDIR(folder.st_mode) or not _trusted(folder, owners):
        return None
    fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _trusted(st, owners):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    finally:
        os.close(fd)
    entry = marshal.loads(raw)
    magic, spelled, read_files, variables, document, index, stdlib = entry
    if magic != _MAGIC or spelled != given:
        return None
    listed = {path for path, _real, _content in read_files}
    if not read_files or read_files[0][0] != policy_path or not listed.issuperset(document[6]):
        return None  # document[6]: the document's files (see `plain`)
    for path, real, content in read_files:
        if os.path.realpath(path) != real:
            return None
        with open(path, "rb") as handle:
            if handle.read() != content:
                return None
    if stdlib is not None:
        from appshield.policy.variables import prove_sysconfig_answer

        # sysconfig's answer without sysconfig, while what it is computed from is the same
        # (else `{stdlib}` below asks sysconfig and compares, as always). The exporter rule
        # (`implicit:telemetry_exporter`) takes the same answer.
        prove_sysconfig_answer(*stdlib)
    if variables:
        from appshield.policy.variables import frozen, record, value

        for (policy_dir, name), expected in variables:
            if name == "tmp" and frozen(name) is None:
                current = _tempdir_guess()
                record(name, current)
            else:
                current = value(name, policy_dir)
            if current != expected:
                return None
    return document, index


def _tempdir_guess() -> tuple[str, ...]:
    """`{tmp}` as `tempfile.gettempdir()` would find it, without importing tempfile (random,
    shutil and the compression modules: several milliseconds of every start-up): the first
    of TMPDIR, TEMP, TMP, /tmp, /var/tmp, /usr/tmp that is a folder we may write, else the
    current folder. tempfile also creates a trial file there, so the two differ only for a
    folder that passes the permission check yet refuses a new file (a full disk); then the
    cached `{tmp}` stays the folder chosen when the cache was written (docs/policy.md)."""
    module = sys.modules.get("tempfile")
    if module is not None:
        return (module.gettempdir(),)
    candidates = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
    for folder in (*(c for c in candidates if c), "/tmp", "/var/tmp", "/usr/tmp"):
        folder = os.path.abspath(folder)
        if os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK):
            return (folder,)
    return (os.getcwd(),)


def store(
    given: str,
    document: PolicyDocument,
    read_files: tuple[tuple[str, str, bytes], ...],
    variables: Mapping[tuple[str, str], tuple[str, ...]],
    index: Callable[[], tuple[Any, ...]] | None = None,
) -> None:
    """Write the cache for a policy just loaded from `given`; silently skipped where Python
    would not write bytecode, or where the folder is not one we would trust on reading.
    `index`: gives the document's rule index (asked only when the cache is written; without
    it the index is built here)."""
    if sys.dont_write_bytecode:
        return
    try:
        _store(given, document, read_files, variables, index)
    except Exception:  # read-only file systems and the like: start-up just stays slower
        return


def compile_file(given: str) -> tuple[PolicyDocument, str]:
    """`appshield check --compile`: load the policy file `given` from its YAML and write its
    cache whether or not this interpreter writes bytecode, for images that set
    `PYTHONDONTWRITEBYTECODE` (docs/operations.md). Returns the document and the cache's
    path. Raises `PolicyError` for an invalid policy (nothing is written), `OSError` when
    the cache cannot be written, or would not be trusted where it would be read.

    Nothing is weaker for it: the file is the one `store` writes (same place, never under
    `PYTHONPYCACHEPREFIX`; same owner and permission rules), and a start reads it only while
    every check of `load` holds. Run it as the app would start, with the same path spelling:
    `given` is made absolute, as every way in spells the policy path."""
    from appshield.policy.loader import load_file_inputs

    given = os.path.abspath(given)
    document, (read_files, variables) = load_file_inputs(given)
    where = _store(given, document, read_files, variables)
    if _verified(given) is None:  # e.g. a variable this process sees otherwise than a start
        raise OSError(f"the cache written to {where} does not verify; a start would not use it")
    return document, where


def _store(
    given: str,
    document: PolicyDocument,
    read_files: tuple[tuple[str, str, bytes], ...],
    variables: Mapping[tuple[str, str], tuple[str, ...]],
    index: Callable[[], tuple[Any, ...]] | None = None,
) -> str:
    policy_path = os.path.abspath(given)
    where = cache_path(policy_path)
    folder = os.path.dirname(where)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    if not _trusted(os.lstat(folder), _owners(policy_path)):
        raise PermissionError(
            f"{folder} is not a folder the cache may live in (a symlink, owned by someone"
            " else, or writable by group or others)"
        )
    if index is None:  # a caller that has not built it (the index is never left out)
        from appshield.engine import index_states

        kept = index_states(document)
    else:
        kept = index()
    from appshield.policy.variables import sysconfig_answer_with_proof

    stdlib: Any = sysconfig_answer_with_proof()
    entry = (_MAGIC, given, read_files, tuple(variables.items()), plain(document), kept, stdlib)
    data = marshal.dumps(entry)
    # Written aside and renamed into place, so a reader sees the old file or the new one.
    temporary = f"{where}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, where)
    except OSError:
        os.unlink(temporary)
        raise
    return where


# -- the document as plain data (tuples, str, int, bool, None: what marshal stores) ---------


def _plain_condition(condition: Condition | None) -> Any:
    if condition is None:
        return None
    return (tuple(condition.fields.items()), condition.scope)


def plain(document: PolicyDocument) -> Any:
    rules = tuple(
        (
            r.id,
            r.category,
            r.action,
            _plain_condition(r.match),
            _plain_condition(r.unless),
            r.scope,
            r.mode,
            r.description,
            None if r.source is None else (r.source.file, r.source.line, r.source.column),
        )
        for r in document.rules
    )
    protections = tuple(document.protections)
    return (
        document.version,
        document.name,
        document.mode,
        tuple(document.defaults.items()),
        rules,
        protections,
        document.files,
        _plain_packages(document.packages),
    )


def _plain_packages(packages: Packages | None) -> Any:
    if packages is None:
        return None
    grants = tuple(
        (
            g.name,
            g.version,
            tuple(
                (category, tuple(_plain_condition(c) for c in conditions))
                for category, conditions in g.allows.items()
            ),
            None if g.source is None else tuple(g.source),
        )
        for g in packages.grants.values()
    )
    return (packages.default, packages.first_party, grants)


def _packages(plain: Any) -> Packages | None:
    if plain is None:
        return None
    from appshield.document import Condition, Grant, Packages, SourceRef

    default, first_party, grants = plain
    read = {
        name: Grant(
            name,
            version,
            {
                category: tuple(_condition(c, Condition) or Condition() for c in conditions)
                for category, conditions in allows
            },
            None if source is None else SourceRef(*source),
        )
        for name, version, allows, source in grants
    }
    return Packages(default, first_party, read)


def _condition(plain: Any, kind: type[Condition]) -> Condition | None:
    if plain is None:
        return None
    fields, scope = plain
    return kind(dict(fields), scope)


def _document(plain: Any) -> PolicyDocument:
    # Here, not at the top: `appshield run` asks `is_valid` and never builds the document.
    from appshield.document import Condition, PolicyDocument, Protections, RuleSpec, SourceRef

    version, name, mode, defaults, rules, protections, files, packages = plain
    specs = tuple(
        RuleSpec(
            id=rule_id,
            category=category,
            action=action,
            match=_condition(match, Condition) or Condition(),
            unless=_condition(unless, Condition),
            scope=scope,
            mode=rule_mode,
            description=description,
            source=None if source is None else SourceRef(*source),
        )
        for rule_id, category, action, match, unless, scope, rule_mode, description, source in rules
    )
    return PolicyDocument(
        version=version,
        name=name,
        mode=mode,
        defaults=dict(defaults),
        rules=specs,
        protections=Protections(*protections),
        files=files,
        packages=_packages(packages),
    )
