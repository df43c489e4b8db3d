"""Finding the policy when none is given.

Order: `APPSHIELD_POLICY`, then `appshield.yaml` and `.appshield.yaml` in the start folder
and each parent, stopping after the repository root (the first folder holding `.git`) or
the filesystem root. Finding nothing is an error, never a silent allow-all.
"""

from __future__ import annotations

import os

from appshield.errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["POLICY_NAMES", "discover_policy"]

POLICY_NAMES = ("appshield.yaml", ".appshield.yaml")
ENV_VAR = "APPSHIELD_POLICY"


def discover_policy(start_dir: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The path of the policy to use; `PolicyError` "no policy found ..." when there is none.

    A path from `APPSHIELD_POLICY` is returned as given (the loader reports it when it is
    missing): a variable that names a file must never fall back to some other policy.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_VAR)
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
    raise PolicyError(
        f"no policy found: set {ENV_VAR} or create appshield.yaml"
        f" (searched {searched[0]} up to {searched[-1]})"
    )
