"""What a shielded parent hands its Python children: exactly its policy, nothing to recompute.

A parent that was switched on through the environment (`appshield run`, the sitecustomize
bootstrap, `opentelemetry-instrument`) puts one variable, `APPSHIELD_IDENTITY`, in its own
environment, so every child that inherits the environment carries it:

- the identity of the policy it enforces (`Policy.identity`: a digest of the validated
  document, variables expanded, and the effective mode);
- the variable values its root process expanded (`{cwd}`, `{tmp}`, `{home}`, ...): a child
  freezes them instead of computing its own (`appshield.policy.variables.freeze`);
- the Python it runs (`sys.implementation.cache_tag`) and the folders that hold appshield and
  its dependencies, so that a child of the same Python that lacks them on its own path (a
  venv's base interpreter started by its real path) loads the parent's copy;
- whether the policy permits unshielded children (`protections.unshielded_children: false`),
  readable without importing appshield: the bootstrap of a child that cannot load appshield
  then lets it run, unshielded, as the parent already decided at spawn time.

The child loads its policy, computes the identity and refuses to start (exit 2) when it
differs. The parent, at spawn time, treats a Python child whose environment carries another
value (or none) as unshielded (`implicit:unshielded_children`). Nothing here is secret: it is
a promise the child checks, not a credential.

The text is `1:<a|d>:<hex>`: format 1, `a` when unshielded children are allowed, then the
hex of the UTF-8 fields joined by NUL (which no path or variable value can hold).
Only `os` and `sys`: the bootstrap reads it before the rest of appshield is imported.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["VARIABLE", "Inherited", "add_site", "decode", "encode", "unshielded_allowed"]

VARIABLE = "APPSHIELD_IDENTITY"
_FORMAT = "1"


class Inherited(NamedTuple):
    digest: str
    variables: tuple[tuple[str, tuple[str, ...]], ...]
    tag: str
    site: tuple[str, ...]
    unshielded_ok: bool


def encode(value: Inherited) -> str:
    fields = [value.digest, value.tag, str(len(value.site)), *value.site]
    for name, values in value.variables:
        fields += [name, str(len(values)), *values]
    raw = "\0".join(fields).encode("utf-8", "surrogateescape")
    return f"{_FORMAT}:{'a' if value.unshielded_ok else 'd'}:{raw.hex()}"


def decode(text: str) -> Inherited:
    """The identity in `text`; ValueError when it is not one this version wrote."""
    form, flag, data = text.split(":", 2)
    if form != _FORMAT or flag not in ("a", "d"):
        raise ValueError("not an appshield identity of this version")
    fields = bytes.fromhex(data).decode("utf-8", "surrogateescape").split("\0")
    digest, tag, count = fields[0], fields[1], int(fields[2])
    site = tuple(fields[3 : 3 + count])
    if len(site) != count:
        raise ValueError("truncated appshield identity")
    rest = fields[3 + count :]
    variables: list[tuple[str, tuple[str, ...]]] = []
    while rest:
        name, n = rest[0], int(rest[1])
        values = tuple(rest[2 : 2 + n])
        if len(values) != n:
            raise ValueError("truncated appshield identity")
        variables.append((name, values))
        rest = rest[2 + n :]
    return Inherited(digest, tuple(variables), tag, site, flag == "a")


def unshielded_allowed(environ: Mapping[str, str]) -> bool:
    """Whether the parent's policy lets this process run unshielded (read without decoding)."""
    return environ.get(VARIABLE, "").startswith(f"{_FORMAT}:a:")


def add_site(folders: Sequence[str]) -> None:
    """Put the parent's appshield and dependency folders at the end of `sys.path`, where they
    only serve what this interpreter does not have itself (same Python only). As site
    folders: their `.pth` files (editable installs, a venv's extra paths) count, as they did
    in the parent."""
    import site

    for folder in folders:
        if folder not in sys.path and os.path.isdir(folder):
            site.addsitedir(folder)
