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

appshield itself is imported from the package this file belongs to, by absolute path (a
fake `appshield` earlier on PYTHONPATH is never what runs). A child of a shielded parent also
gets the parent's identity (`appshield._inherit`): its policy must be exactly the parent's.

This folder deliberately holds nothing but this file, so it shadows no other module.
"""


def _unshielded_allowed(identity: str) -> bool:
    # appshield._inherit.unshielded_allowed, restated: appshield may be what failed to import.
    return identity.startswith("1:a:")


def _import_own_appshield(package: str) -> None:
    """Import the appshield package at `package` as `appshield`, and check that every
    appshield module already imported (by a .pth file, say) comes from there."""
    import os
    import sys

    init = os.path.join(package, "__init__.py")
    real = os.path.realpath(package) + os.sep
    if "appshield" not in sys.modules:
        # importlib.util's own two functions, from the frozen import system that every
        # interpreter has loaded: importlib.util would bring contextlib and functools.
        import _frozen_importlib
        import _frozen_importlib_external

        spec = _frozen_importlib_external.spec_from_file_location(
            "appshield", init, submodule_search_locations=[package]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"no appshield package at {package}")
        module = _frozen_importlib.module_from_spec(spec)
        sys.modules["appshield"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop("appshield", None)
            raise
    for name, module in list(sys.modules.items()):
        if name == "appshield" or name.startswith("appshield."):
            where = getattr(module, "__file__", None)
            if not isinstance(where, str) or not os.path.realpath(where).startswith(real):
                raise ImportError(f"{name} was imported from {where}, not from {package}")


def _appshield_start() -> None:
    import os
    import sys

    # appshield is imported from the folder this file belongs to, by absolute path, never by
    # a search of sys.path: a package named `appshield` earlier on the child's PYTHONPATH
    # must not be what runs (or fails to run) the shield.
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        _import_own_appshield(package)
        from appshield import _inherit

        passed = os.environ.get(_inherit.VARIABLE)
        if passed is not None:
            parent = _inherit.decode(passed)
            if parent.tag != sys.implementation.cache_tag:
                raise ImportError(
                    f"the parent runs {parent.tag}, this interpreter {sys.implementation.cache_tag}"
                )
            _inherit.add_site(parent.site)
        from appshield.activation import activate, chain_sitecustomize
    except BaseException as exc:  # appshield or a dependency is missing for this interpreter
        if _unshielded_allowed(os.environ.get("APPSHIELD_IDENTITY", "")):
            return  # the parent's policy permits unshielded children, and decided at spawn
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
