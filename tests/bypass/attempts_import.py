"""Import bypass attempts: every way to run a denied module, or load a native library.

Evidence: "stdout". The denied module prints the secret marker from its own body (a literal
in its source, so no denied file or socket is needed for the evidence); native loads print
it once the load has returned. The modules are written by `before`, ahead of install.
"""

from __future__ import annotations

from tests.bypass._harness import Attempt

EVIL = "print('SECRET-7f3a9', flush=True)\n"

WRITE_EVILMOD = f"""\
with open(os.path.join(WORK, "evilmod.py"), "w") as _f:
    _f.write({EVIL!r})
sys.path.insert(0, WORK)
"""

WRITE_EVIL_ELSEWHERE = f"""\
EVIL_FILE = os.path.join(WORK, "innocent_name.py")
with open(EVIL_FILE, "w") as _f:
    _f.write({EVIL!r})
"""

WRITE_EVILZIP = f"""\
import zipfile
ZIP = os.path.join(WORK, "bundle.zip")
with zipfile.ZipFile(ZIP, "w") as _z:
    _z.writestr("evilmod.py", {EVIL!r})
"""

RELOADABLE = """\
with open(os.path.join(WORK, "evilmod.py"), "w") as _f:
    _f.write("import os\\nif os.environ.get('RELOADED'):\\n")
    _f.write("    print('SECRET-7f3a9', flush=True)\\n")
sys.path.insert(0, WORK)
import evilmod
"""

# Modules loaded from the attempt's working folder (the subprocess cwd) are denied.
DENY_WORK_ORIGIN = """\
- id: no-code-from-work
  category: import
  action: deny
  match: {origin: "{cwd}/**"}
"""

DENY_NATIVE = """\
- id: no-native-libraries
  category: import
  action: deny
  match: {library: "/**"}
"""

DENY_XXLIMITED = """\
- id: no-xxlimited
  category: import
  action: deny
  match: {module: xxlimited}
"""

FIND_XXLIMITED = """\
import glob, sysconfig
# The folder of the interpreter's own extension modules (`lib-dynload`), found on sys.path
# because sysconfig's paths point elsewhere inside a virtual environment.
SO = next(
    hit
    for folder in [*sys.path, os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload")]
    if folder.endswith("lib-dynload")
    for hit in glob.glob(os.path.join(folder, "xxlimited.*.so"))
)
"""


def _imp(id: str, code: str, before: str = WRITE_EVILMOD, rules: str = "") -> Attempt:
    return Attempt(id, code, "import", before=before, evidence="stdout", rules=rules)


def _native(id: str, code: str, before: str = "") -> Attempt:
    return _imp(id, code + "\nprint('SECRET-7f3a9')", before, DENY_NATIVE)


ATTEMPTS: list[Attempt] = [
    _imp("imp-statement", "import evilmod"),
    _imp("imp-from-statement", "from evilmod import *"),
    _imp("imp-dunder-import", "__import__('evilmod')"),
    _imp("imp-import-module", "import importlib\nimportlib.import_module('evilmod')"),
    _imp(
        "imp-captured-dunder-import", "IMP('evilmod')", before=WRITE_EVILMOD + "IMP = __import__\n"
    ),
    _imp(
        "imp-thread",
        "import threading\nt = threading.Thread(target=__import__, args=('evilmod',))\n"
        "t.start(); t.join()",
    ),
    _imp(
        "imp-package-submodule",
        "import evilmod.sub",
        before="os.makedirs(os.path.join(WORK, 'evilmod'))\n"
        "open(os.path.join(WORK, 'evilmod', '__init__.py'), 'w').close()\n"
        f"open(os.path.join(WORK, 'evilmod', 'sub.py'), 'w').write({EVIL!r})\n"
        "sys.path.insert(0, WORK)\n",
    ),
    _imp(
        "imp-spec-from-file-allowed-name",
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('json', EVIL_FILE)\n"
        "m = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(m)",
        before=WRITE_EVIL_ELSEWHERE,
        rules=DENY_WORK_ORIGIN,
    ),
    _imp(
        "imp-loader-exec-without-spec",
        "import types, importlib.machinery as im\n"
        "m = types.ModuleType('json')\n"
        "im.SourceFileLoader('json', EVIL_FILE).exec_module(m)",
        before=WRITE_EVIL_ELSEWHERE,
        rules=DENY_WORK_ORIGIN,
    ),
    _imp(
        "imp-loader-swapped-after-check",
        "import importlib.util, importlib.machinery as im, json\n"
        "spec = importlib.util.spec_from_file_location('json2', json.__file__)\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "spec.loader = im.SourceFileLoader('json2', EVIL_FILE)\n"
        "spec.loader.exec_module(m)",
        before=WRITE_EVIL_ELSEWHERE,
        rules=DENY_WORK_ORIGIN,
    ),
    _imp(
        "imp-deprecated-load-module",
        "import warnings, importlib.machinery as im\n"
        "warnings.simplefilter('ignore')\n"
        "im.SourceFileLoader('evilmod', os.path.join(WORK, 'evilmod.py')).load_module()",
    ),
    _imp(
        "imp-custom-meta-path-loader",
        "import importlib.abc, importlib.util\n"
        "class L(importlib.abc.Loader):\n"
        "    def create_module(self, spec): return None\n"
        "    def exec_module(self, m): exec(SRC, m.__dict__)\n"
        "class F(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        return importlib.util.spec_from_loader(name, L()) if name == 'evilmod' else None\n"
        "sys.meta_path.insert(0, F())\nimport evilmod",
        before=f"SRC = {EVIL!r}\n",
    ),
    _imp("imp-zipimport-path", "sys.path.insert(0, ZIP)\nimport evilmod", before=WRITE_EVILZIP),
    _imp(
        "imp-zipimporter-direct",
        "import zipimport, importlib.util\n"
        "spec = zipimport.zipimporter(ZIP).find_spec('evilmod')\n"
        "m = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(m)",
        before=WRITE_EVILZIP,
    ),
    _imp(
        "imp-reload",
        "import importlib\nos.environ['RELOADED'] = '1'\nimportlib.reload(evilmod)",
        before=RELOADABLE,
    ),
    _imp(
        "imp-sys-modules-pop-reimport",
        "os.environ['RELOADED'] = '1'\nsys.modules.pop('evilmod')\nimport evilmod",
        before=RELOADABLE,
    ),
    _imp(
        "imp-runpy-run-module",
        "import runpy\nrunpy.run_module('evilmod')",
    ),
    _imp(
        "imp-restore-load-unlocked",
        "import importlib._bootstrap as b\n"
        "b._load_unlocked = getattr(b._load_unlocked, '__wrapped__', b._load_unlocked)\n"
        "import evilmod",
    ),
    _imp(
        "imp-restore-every-wrapped",
        "import importlib._bootstrap as b, importlib._bootstrap_external as bx, importlib.util\n"
        "classes = [v for v in vars(bx).values() if isinstance(v, type)]\n"
        "for owner in (b, bx, importlib.util, *classes):\n"
        "    for k, v in list(vars(owner).items()):\n"
        "        if type(v).__name__.endswith('FunctionWrapper'):\n"
        "            setattr(owner, k, v.__wrapped__)\n"
        "import evilmod",
    ),
    _imp(
        "imp-reimport-importlib",
        "for n in [n for n in sys.modules if n.startswith('importlib')]:\n"
        "    del sys.modules[n]\n"
        "import importlib\nimportlib.import_module('evilmod')",
    ),
    _imp(
        "imp-extension-module",
        "import xxlimited\nprint('SECRET-7f3a9')",
        before="",
        rules=DENY_XXLIMITED,
    ),
    _imp(
        "imp-extension-spec-from-file",
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('xxlimited', SO)\n"
        "importlib.util.module_from_spec(spec)\nprint('SECRET-7f3a9')",
        before=FIND_XXLIMITED,
        rules=DENY_XXLIMITED,
    ),
    _imp(
        "imp-create-dynamic-direct",
        "import _imp, importlib.machinery as im\n"
        "_imp.create_dynamic(im.ModuleSpec('xxlimited', None, origin=SO))\nprint('SECRET-7f3a9')",
        before=FIND_XXLIMITED,
        rules=DENY_XXLIMITED,
    ),
    _imp("imp-ctypes", "import ctypes\nprint('SECRET-7f3a9')", before=""),
    _native(
        "imp-ctypes-dlopen-alias", "DL('libc.so.6', 2)", "import _ctypes\nDL = _ctypes.dlopen\n"
    ),
    _native("imp-ctypes-cdll-captured", "CT.CDLL('libc.so.6')", "import ctypes as CT\n"),
    _native("imp-ctypes-dlopen-null", "CT.CDLL(None)", "import ctypes as CT\n"),
    _native("imp-cffi-dlopen", "import cffi\ncffi.FFI().dlopen('libc.so.6')"),
]
