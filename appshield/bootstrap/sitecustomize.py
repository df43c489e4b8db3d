"""appshield's start-up hook: put this folder first on PYTHONPATH (`appshield run` does;
`appshield bootstrap-path` prints it) and set APPSHIELD_POLICY.

At interpreter start-up, `site` imports the first `sitecustomize` on sys.path: this one. It
(1) switches the shield on, locked, and (2) runs the sitecustomize that would have been
imported without this folder (a user's, or the one `opentelemetry-instrument` or
`ddtrace-run` put on the path), once.

`site` prints and swallows errors raised here and would then run the app unshielded, so any
failure to switch the shield on ends the process with exit code 2 and one line on stderr
instead. A failure in (or in finding and loading) the chained sitecustomize does not stop
the app: it is reported as `site` would have reported it without appshield.

This folder deliberately holds nothing but this file, so it shadows no other module.
"""


def _appshield_start() -> None:
    import os
    import sys

    try:
        from appshield._activate import activate, chain_sitecustomize
    except BaseException as exc:  # appshield or a dependency is missing for this interpreter
        sys.stderr.write(
            "appshield: refusing to run unshielded: cannot import appshield"
            f" ({type(exc).__name__}: {exc}) in {sys.executable}\n"
        )
        sys.stderr.flush()
        os._exit(2)
    activate("bootstrap")
    chain_sitecustomize(__file__)


_appshield_start()
del _appshield_start
