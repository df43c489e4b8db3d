"""Renamed modules and forged scopes: a module judged by the name it claims, a frame judged by
the `__name__` of the dictionary it runs in.

- `impname-*`: `_ctypes`' extension file loaded under another dotted name (its `PyInit__ctypes`
  runs whatever package the name claims) with ctypes' own source run as `zz.ctypes`, then
  libc's `creat` makes the canary with no file hook on the way; and
  `zipimporter.load_module`, which runs a module without any spec or loader hook. The harness
  policy denies `ctypes`, `_ctypes` and `evilmod` by name.
- `scope-*`: the `docs/limits.md` mitigation (deny `_posixsubprocess` unless the stack holds
  `subprocess` or `multiprocessing.*`) against code that only claims to be `subprocess`; the
  fresh `_posixsubprocess` it would get is unpatched, and its `fork_exec` (no audit event)
  runs `touch` on the canary.

Attempts that need an API of some Python versions only are listed for those versions.
"""

from __future__ import annotations

import sys

from tests.bypass._harness import Attempt

# Where `_ctypes`' extension and ctypes' package live, found without importing either.
FIND_CTYPES = """\
import importlib.machinery as _im
SO = _im.PathFinder.find_spec("_ctypes").origin
CTYPES_INIT = _im.PathFinder.find_spec("ctypes").origin
"""

# ctypes' own `__init__.py` run as `zz.ctypes` on top of a `_ctypes` obtained somehow (`M`).
# Its last line imports `ctypes._endian`, stubbed so that nothing else named ctypes loads.
RUN_CTYPES_AS_ZZ = """\
import types, importlib.util
sys.modules["_ctypes"] = M
_stub = types.ModuleType("ctypes._endian")
_stub.__getattr__ = lambda name: object
_spec = importlib.util.spec_from_file_location(
    "zz.ctypes", CTYPES_INIT, submodule_search_locations=[os.path.dirname(CTYPES_INIT)]
)
C = importlib.util.module_from_spec(_spec)
sys.modules["ctypes"] = sys.modules["zz.ctypes"] = C
sys.modules["ctypes._endian"] = _stub
_spec.loader.exec_module(C)
libc = C.CDLL(None)
libc.creat(CANARY.encode(), 0o644)
"""

ZZ_PACKAGE = """\
import types
_zz = types.ModuleType("zz")
_zz.__path__ = []
sys.modules["zz"] = _zz
"""


def _renamed(id: str, load: str, before: str = "") -> Attempt:
    return Attempt(id, ZZ_PACKAGE + load + RUN_CTYPES_AS_ZZ, "import", FIND_CTYPES + before)


_SO_AS_ZZ = [
    _renamed(
        "impname-ctypes-so-spec-from-file",
        "import importlib.util\n"
        "_s = importlib.util.spec_from_file_location('zz._ctypes', SO)\n"
        "M = importlib.util.module_from_spec(_s)\n_s.loader.exec_module(M)\n",
    ),
    _renamed(
        "impname-ctypes-so-extension-loader",
        "import importlib.machinery as im\n"
        "_l = im.ExtensionFileLoader('zz._ctypes', SO)\n"
        "M = _l.create_module(im.ModuleSpec('zz._ctypes', _l, origin=SO))\n"
        "_l.exec_module(M)\n",
    ),
    _renamed(
        "impname-ctypes-so-create-dynamic",
        "import _imp, importlib.machinery as im\n"
        "M = _imp.create_dynamic(im.ModuleSpec('zz._ctypes', None, origin=SO))\n"
        "_imp.exec_dynamic(M)\n",  # multi-phase init (3.12+): the module body runs here
    ),
    # The loader's path names an allowed file, the spec the one C really loads.
    _renamed(
        "impname-ctypes-so-loader-path-differs",
        "import _imp, importlib.machinery as im, json\n"
        "_l = im.ExtensionFileLoader('zz._ctypes', json.__file__)\n"
        "M = _l.create_module(im.ModuleSpec('zz._ctypes', _l, origin=SO))\n"
        "_imp.exec_dynamic(M)\n",
    ),
    # A symbolic link in a folder of the app's, imported the ordinary way as `zz._ctypes`.
    Attempt(
        "impname-ctypes-so-symlink",
        "import importlib\nsys.modules.pop('zz', None)\n"
        "M = importlib.import_module('zz._ctypes')\n" + RUN_CTYPES_AS_ZZ,
        "import",
        FIND_CTYPES + "os.makedirs(os.path.join(WORK, 'zz'))\n"
        "os.symlink(SO, os.path.join(WORK, 'zz', os.path.basename(SO)))\n"
        "sys.path.insert(0, WORK)\n",
    ),
    # A copy is another file: its init name (the name's last part) is what gives it away.
    _renamed(
        "impname-ctypes-so-copied",
        "import importlib.util\n"
        "_s = importlib.util.spec_from_file_location('zz._ctypes', COPY)\n"
        "M = importlib.util.module_from_spec(_s)\n_s.loader.exec_module(M)\n",
        "import shutil\nCOPY = shutil.copy(SO, os.path.join(WORK, os.path.basename(SO)))\n",
    ),
]

if sys.version_info < (3, 12):  # the `imp` module is gone in 3.12
    _SO_AS_ZZ.append(
        _renamed(
            "impname-ctypes-so-imp-load-dynamic",
            "import warnings\nwarnings.simplefilter('ignore')\nimport imp\n"
            "M = imp.load_dynamic('zz._ctypes', SO)\n",
        )
    )

EVIL = "print('SECRET-7f3a9', flush=True)\n"

WRITE_EVILZIP = f"""\
import zipfile
ZIP = os.path.join(WORK, "bundle.zip")
with zipfile.ZipFile(ZIP, "w") as _z:
    _z.writestr("evilmod.py", {EVIL!r})
    _z.writestr("evilpkg/__init__.py", "import evilmod\\n")
"""

_ZIP = [
    Attempt(
        "impname-zipimporter-load-module",
        "import warnings, zipimport\nwarnings.simplefilter('ignore')\n"
        "zipimport.zipimporter(ZIP).load_module('evilmod')",
        "import",
        WRITE_EVILZIP,
        evidence="stdout",
    ),
    # A subclass that lies about the file: load_module reads the archive itself.
    Attempt(
        "impname-zipimporter-load-module-subclass",
        "import warnings, zipimport\nwarnings.simplefilter('ignore')\n"
        "class Z(zipimport.zipimporter):\n"
        "    def get_filename(self, name): return '/nonexistent/allowed.py'\n"
        "Z(ZIP).load_module('evilmod')",
        "import",
        WRITE_EVILZIP,
        evidence="stdout",
    ),
]

# The limits.md mitigation for the re-import of `_posixsubprocess`.
SCOPED_POSIXSUBPROCESS = """\
- id: posixsubprocess-only-from-subprocess
  category: import
  action: deny
  match: {module: _posixsubprocess}
  unless: {scope: [subprocess, "multiprocessing.*"]}
"""

# `P` is a fresh `_posixsubprocess`: its fork_exec runs `touch CANARY` (argument lists as
# subprocess passes them in each version).
FORK_EXEC_TOUCH = """\
import shutil
_touch = shutil.which("touch").encode()
_r, _w = os.pipe()
_head = ([_touch, CANARY.encode()], [_touch], True, (), None, None,
         -1, -1, -1, -1, -1, -1, _r, _w, False, False)
if sys.version_info >= (3, 11):
    _tail = (-1, None, None, None, -1, None, False)
else:
    _tail = (None, None, None, -1, None)
_pid = P.fork_exec(*_head, *_tail)
os.close(_w)
os.waitpid(_pid, 0)
"""

# subprocess is imported after install (so its `_posixsubprocess` is judged and patched
# then, not reported as loaded before the shield); the attack wants a fresh copy.
FRESH = "import subprocess\nsys.modules.pop('_posixsubprocess')\n"


def _scope(id: str, get: str) -> Attempt:
    return Attempt(id, FRESH + get + FORK_EXEC_TOUCH, "import", rules=SCOPED_POSIXSUBPROCESS)


_SCOPE = [
    _scope(
        "scope-exec-fake-name",
        "_g = {'__name__': 'subprocess'}\nexec('import _posixsubprocess as P', _g)\nP = _g['P']\n",
    ),
    # co_filename says subprocess.py, and the code runs in subprocess's own namespace.
    _scope(
        "scope-compile-real-filename",
        "exec(compile('import _posixsubprocess as P', subprocess.__file__, 'exec'),"
        " subprocess.__dict__)\nP = subprocess.P\n",
    ),
    # A function planted in subprocess's namespace, claiming its file and module.
    _scope(
        "scope-planted-function",
        "exec(compile('def _grab():\\n    import _posixsubprocess\\n"
        "    return _posixsubprocess\\n', subprocess.__file__, 'exec'), subprocess.__dict__)\n"
        "P = subprocess._grab()\n",
    ),
    # A stand-in module registered as `subprocess`, claiming the real file and spec.
    _scope(
        "scope-fake-module-claims-file",
        "import types\n_fake = types.ModuleType('subprocess')\n"
        "_fake.__file__ = subprocess.__file__\n_fake.__spec__ = subprocess.__spec__\n"
        "sys.modules['subprocess'] = _fake\n"
        "exec(compile('import _posixsubprocess as P', subprocess.__file__, 'exec'),"
        " _fake.__dict__)\nP = _fake.P\n",
    ),
]

ATTEMPTS: list[Attempt] = [*_SO_AS_ZZ, *_ZIP, *_SCOPE]
