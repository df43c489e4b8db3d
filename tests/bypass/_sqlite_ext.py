"""A Python whose SQLite loads extensions, and a real extension for it to load.

The pyenv interpreters of CI are built without SQLite extension loading; Debian's
`/usr/bin/python3` (and the official `python` images) have it. Tests of `load_extension` run
that interpreter with this checkout and this venv's packages on `PYTHONPATH`, when it is the
same major.minor as the interpreter running the tests (so the venv's C extensions, wrapt's
included, load in it); otherwise they are skipped with the reason.

The extension is built with gcc in a temporary folder. Its `sqlite3_extension_init` creates
the file named by `$BYPASS_CANARY` (native code, past every Python hook): the canary exists
exactly when SQLite loaded the library.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

__all__ = ["EXTENSION_SOURCE", "Loader", "loader"]

SYSTEM_PYTHON = "/usr/bin/python3"
_HEADER = "/usr/include/sqlite3ext.h"

EXTENSION_SOURCE = r"""
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int sqlite3_extension_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
    SQLITE_EXTENSION_INIT2(api);
    const char *canary = getenv("BYPASS_CANARY");
    if (canary) {
        int fd = open(canary, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            (void)write(fd, "loaded\n", 7);
            close(fd);
        }
    }
    return SQLITE_OK;
}
"""


class Loader:
    """How to run a Python that loads SQLite extensions: `python`, the `env` additions it
    needs, and `library`, a built extension (absolute path ending in `.so`)."""

    def __init__(self, python: str, env: dict[str, str], library: str) -> None:
        self.python = python
        self.env = env
        self.library = library


def _pythonpath() -> str:
    root = Path(__file__).resolve().parents[2]
    paths = sysconfig.get_paths()
    parts = [str(root), paths["purelib"], paths["platlib"]]
    return os.pathsep.join(dict.fromkeys(parts))


@functools.cache
def loader() -> Loader | str:
    """A `Loader`, or the reason there is none on this machine (for `pytest.skip`)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} does not exist"
    env = {"PYTHONPATH": _pythonpath()}
    probe = (
        "import sys, sqlite3\n"
        "print('%d.%d' % sys.version_info[:2])\n"
        "print(hasattr(sqlite3.Connection, 'enable_load_extension'))\n"
        "import wrapt._wrappers, appshield\n"
        "print(appshield.__file__)\n"
    )
    found = subprocess.run(
        [SYSTEM_PYTHON, "-c", probe],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = found.stdout.split()
    ours = "{}.{}".format(*sys.version_info[:2])
    if len(lines) >= 2 and lines[0] != ours:
        return f"{SYSTEM_PYTHON} is Python {lines[0]}, not {ours} (the venv's C extensions)"
    if len(lines) >= 2 and lines[1] != "True":
        return f"{SYSTEM_PYTHON}'s sqlite3 is built without extension loading"
    if found.returncode != 0 or len(lines) < 3:
        return f"{SYSTEM_PYTHON} cannot import wrapt's C extension or appshield: {found.stderr}"
    if not os.path.exists(_HEADER):
        return f"{_HEADER} is missing (libsqlite3-dev): no extension can be built"
    gcc = shutil.which("gcc")
    if gcc is None:
        return "no gcc to build the extension"
    folder = Path(tempfile.mkdtemp(prefix="appshield-sqlite-ext-"))
    source = folder / "canary_ext.c"
    source.write_text(EXTENSION_SOURCE)
    library = folder / "canary_ext.so"
    built = subprocess.run(
        [gcc, "-shared", "-fPIC", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if built.returncode != 0:
        return f"gcc could not build the extension: {built.stderr}"
    return Loader(SYSTEM_PYTHON, env, str(library))
