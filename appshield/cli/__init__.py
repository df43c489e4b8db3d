"""The `appshield` command (also `python -m appshield`).

    appshield run [--policy P] [--mode enforce|monitor] -- CMD [ARGS...]
                                           CMD shielded (appshield.cli.run)

    appshield check [--compile] [P...]     validate policies; exit 0 valid, 1 invalid
                                           (--compile: also write each one's cache; 1 when
                                           that fails)
    appshield explain [--policy P] CATEGORY ...
                                           the decision for one described operation;
                                           exit 0 allow, 1 deny, 3 alert, 2 invalid policy
        explain process [--shell] [--cwd D] -- PROG [ARGS...]
        explain file read|write|delete PATH
        explain network connect|send|bind|resolve HOST[:PORT] [--transport T] [--address A]
        explain import MODULE [--origin PATH] [--library PATH]
        common: --stack mod1,mod2 (modules on the call stack, for `scope`), --mode, --json,
                --package NAME[==VERSION] (as that distribution's code: its grant)
    appshield schema                       print the JSON Schema of the policy format
    appshield diff OLD NEW [--format text|json|sarif]
                                           capability diff; exit 0 NEW widens nothing,
                                           1 it widens, 2 invalid policy
    appshield --version


This module holds only `main`: `appshield run` is on the start-up path of every process it
shields, so its usual spellings go straight to `appshield.cli.run`, and only every other
command loads the subcommands' table and argparse (`appshield.cli.commands`; `COMMANDS` and
`build_parser` are still reachable from here).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from appshield.cli.commands import COMMANDS, build_parser
    from appshield.cli.commands import EXIT_ALERT as EXIT_ALERT
    from appshield.cli.commands import EXIT_ALLOW as EXIT_ALLOW
    from appshield.cli.commands import EXIT_DENY as EXIT_DENY
    from appshield.cli.commands import EXIT_INVALID as EXIT_INVALID

__all__ = ["COMMANDS", "build_parser", "main"]

# The subcommands' names, loaded from `appshield.cli.commands` when first asked for (PEP 562).
_FROM_COMMANDS = frozenset(
    {"COMMANDS", "EXIT_ALERT", "EXIT_ALLOW", "EXIT_DENY", "EXIT_INVALID", "build_parser"}
)


def __getattr__(name: str) -> Any:
    if name not in _FROM_COMMANDS:
        raise AttributeError(f"module 'appshield.cli' has no attribute {name!r}")
    from appshield.cli import commands

    value = getattr(commands, name)
    globals()[name] = value
    return value


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["run"]:
        # `appshield run` is on the start-up path of every process it shields: its usual
        # spellings are read without building (and importing) every subcommand's parser.
        from appshield.cli.run import run, simple_run_arguments

        simple = simple_run_arguments(arguments)
        if simple is not None:
            policy, mode, command = simple
            return run(command, policy=policy, mode=mode)
    from appshield.cli.commands import parse_and_run

    return parse_and_run(argv)


if __name__ == "__main__":
    sys.exit(main())
