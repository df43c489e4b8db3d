"""The decision engine: pure, no I/O, no patching.

    compiled = compile_policy(document, "enforce", protected_paths=(...))
    decision = compiled.decide(FileOp("/etc/shadow", "read"))

`compile_policy` sorts and indexes the rules once; `CompiledPolicy.decide` then looks only
at the candidate rules the indexes give for the operation (see `categories`), and caches
every decision that did not consult the call stack, keyed on the operation.
The semantics are docs/architecture.md, "Matching semantics" and "Decision".

Costs: indexing is a pass over the rules (`index_states`), done once at load and kept in the
policy cache; compiling restores that index, and a rule's predicates (and any regex) are
built only when the rule is first a candidate, so neither start-up nor the first decision
grows much with the policy. A decision costs the
same for 10 or 10,000 rules (`python benchmarks/bench_decision.py`). Decisions are pure:
no I/O, no `os` or `sys` calls; the only code run outside the engine is the `stack` callable.

Modules: `globs` (matchers), `indexes` (trie, host, CIDR and key indexes), `predicates`
(match fields as closures), `categories` (per-category rule sets), `compiled` (decide).
"""

from __future__ import annotations

from appshield.engine.compiled import (
    DEFAULT_CACHE_SIZE,
    CompiledPolicy,
    StackInput,
    compile_policy,
    index_states,
)
from appshield.engine.globs import GlobError, escape, glob_problem

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "CompiledPolicy",
    "GlobError",
    "StackInput",
    "compile_policy",
    "escape",
    "glob_problem",
    "index_states",
]
