"""File bypass attempts: every way to create CANARY (write denied) or print the secret file
(read denied).

Evidence: the canary file for writes, SECRET-7f3a9 on stdout for reads.
"""

from __future__ import annotations

from tests.bypass._harness import Attempt


def _w(id: str, code: str, before: str = "", rules: str = "") -> Attempt:
    return Attempt(f"file-{id}", code, "file", before=before, rules=rules)


def _r(id: str, code: str, before: str = "", rules: str = "") -> Attempt:
    return Attempt(f"file-{id}", code, "file", before=before, rules=rules, evidence="stdout")


SCRATCH = "src = os.path.join(WORK, 'scratch')\nopen(src, 'w').close()\n"

# A folder whose listing is denied; the secret is a file *name* in it, made before install.
LISTED = "os.makedirs('listed', exist_ok=True)\nopen('listed/SECRET-7f3a9', 'w').close()\n"
NO_LISTING = """\
- id: no-listing
  category: file
  action: deny
  match: {path: "{cwd}/listed", access: read}
"""

# A secret kept as a module file (`settings_prod.py`), whose reading a file rule denies, and
# a loader whose `get_data` has importlib's own `get_data` read it while the loader's
# `get_code` runs (the window in which the import system's own reads are the import
# category's): only the module being read, and its cache, belong to that window.
SECRET_MODULE = (
    "open('settings_prod.py', 'w').write('SECRET-7f3a9')\n"
    "open('plain_module.py', 'w').write('VALUE = 1')\n"
)
NO_SECRET_MODULE = """\
- id: no-secret-module
  category: file
  action: deny
  match: {path: "{cwd}/settings_prod.py", access: read}
"""
LOADER_GET_DATA = """\
import importlib.machinery as m, importlib.util as u
class Loader(m.SourceFileLoader):
    def get_data(self, path):
        print(m.SourceFileLoader.get_data(self, os.path.join(WORK, 'settings_prod.py')))
        return b'VALUE = 1'
p = os.path.join(WORK, 'plain_module.py')
spec = u.spec_from_file_location('plain_module', p, loader=Loader('plain_module', p))
spec.loader.exec_module(u.module_from_spec(spec))
"""

# The same window for writes: importlib's `set_data` makes every missing folder on the way to
# the file it writes before it opens it. Only the module's own bytecode cache folders belong
# to the window: the canary, made here as a folder, is a write like any other.
LOADER_SET_DATA = """\
import importlib.machinery as m, importlib.util as u
open(os.path.join(WORK, 'plain_module.py'), 'w').write('VALUE = 1')
class Loader(m.SourceFileLoader):
    def get_data(self, path):
        m.SourceFileLoader.set_data(self, os.path.join(CANARY, 'x.pyc'), b'')
        return b'VALUE = 1'
p = os.path.join(WORK, 'plain_module.py')
spec = u.spec_from_file_location('plain_module', p, loader=Loader('plain_module', p))
spec.loader.exec_module(u.module_from_spec(spec))
"""

ATTEMPTS: list[Attempt] = [
    # -- every open route
    _w("builtins-open", "open(CANARY, 'w').close()"),
    _w("io-open", "import io\nio.open(CANARY, 'w').close()"),
    _w("raw-io-open", "import _io\n_io.open(CANARY, 'w').close()"),
    _w("io-fileio", "import io\nio.FileIO(CANARY, 'w').close()"),
    _w("raw-io-fileio", "import _io\n_io.FileIO(CANARY, 'w').close()"),
    _w("captured-fileio", "fio(CANARY, 'w').close()", before="from io import FileIO as fio\n"),
    _w("append-plus", "open(CANARY, 'a+').close()"),
    _w("mkdir-through-a-loaders-set-data", LOADER_SET_DATA),
    _w("os-open-creat", "os.close(os.open(CANARY, os.O_CREAT | os.O_WRONLY))"),
    _w("posix-open", "import posix\nos.close(posix.open(CANARY, os.O_CREAT | os.O_WRONLY))"),
    _w("bytes-path", "open(os.fsencode(CANARY), 'wb').close()"),
    _w("pathlike", "import pathlib\nopen(pathlib.PurePosixPath(CANARY), 'w').close()"),
    _w("relative", "open('canary', 'w').close()"),
    _w("dot-dot", "open(os.path.join(WORK, 'forbidden', '..', 'canary'), 'w').close()"),
    _w(
        "dir-fd",
        "dfd = os.open(WORK, os.O_RDONLY)\nos.chdir('/')\n"
        "os.close(os.open('canary', os.O_CREAT | os.O_WRONLY, dir_fd=dfd))",
    ),
    _w(
        "proc-self-fd-folder",
        "dfd = os.open(WORK, os.O_RDONLY)\nos.chdir('/')\n"
        "open(f'/proc/self/fd/{dfd}/canary', 'w').close()",
    ),
    _w("proc-self-root", "open('/proc/self/root' + CANARY, 'w').close()"),
    _w("symlink-then-write", "os.symlink(CANARY, 'link')\nopen('link', 'w').close()"),
    _w(
        "symlinked-folder-write",
        # the alias sits beside WORK (in pytest's tmp_path), outside the protected folder
        "alias = os.path.join(os.path.dirname(WORK), 'alias')\n"
        "os.symlink(WORK, alias)\n"
        "open(os.path.join(alias, 'canary'), 'w').close()",
    ),
    # -- creating the canary by other calls
    _w("rename-onto", SCRATCH + "os.rename(src, CANARY)"),
    _w("replace-onto", SCRATCH + "os.replace(src, CANARY)"),
    _w("hard-link", SCRATCH + "os.link(src, CANARY)"),
    _w("symlink-at", "os.symlink('/etc/hostname', CANARY)"),
    _w("mkdir", "os.mkdir(CANARY)"),
    _w("makedirs", "os.makedirs(os.path.join(CANARY, 'a', 'b'))"),
    _w("mkfifo", "os.mkfifo(CANARY)"),
    _w("mknod", "import stat\nos.mknod(CANARY, 0o600 | stat.S_IFREG)"),
    _w("shutil-copy", SCRATCH + "import shutil\nshutil.copy(src, CANARY)"),
    _w("shutil-copyfile", SCRATCH + "import shutil\nshutil.copyfile(src, CANARY)"),
    _w("shutil-move", SCRATCH + "import shutil\nshutil.move(src, CANARY)"),
    _w(
        "shutil-copytree",
        "import shutil\nos.mkdir('tree')\nshutil.copytree('tree', CANARY)",
    ),
    _w("pathlib-write-text", "import pathlib\npathlib.Path(CANARY).write_text('x')"),
    _w("pathlib-touch", "import pathlib\npathlib.Path(CANARY).touch()"),
    _w("pathlib-mkdir", "import pathlib\npathlib.Path(CANARY).mkdir()"),
    _w("codecs-open", "import codecs\ncodecs.open(CANARY, 'w').close()"),
    _w("tarfile", "import tarfile\ntarfile.open(CANARY, 'w').close()"),
    _w("gzip", "import gzip\ngzip.open(CANARY, 'wb').close()"),
    _w("bz2", "import bz2\nbz2.open(CANARY, 'wb').close()"),
    _w("zipfile", "import zipfile\nzipfile.ZipFile(CANARY, 'w').close()"),
    _w("sqlite3-connect", "import sqlite3\nsqlite3.connect(CANARY).execute('create table t(x)')"),
    _w(
        "posix-spawn-file-actions",
        "pid = os.posix_spawn('/usr/bin/true', ['true'], dict(os.environ), file_actions=[\n"
        "    (os.POSIX_SPAWN_OPEN, 1, CANARY, os.O_WRONLY | os.O_CREAT, 0o644)])\n"
        "os.waitpid(pid, 0)",
    ),
    _w(
        "thread",
        "import threading\n"
        "t = threading.Thread(target=lambda: open(CANARY, 'w').close())\nt.start(); t.join()",
    ),
    _w(
        "mp-fork-child",
        "import multiprocessing as mp\n"
        "p = mp.get_context('fork').Process(target=lambda: open(CANARY, 'w').close())\n"
        "p.start(); p.join()",
    ),
    _w(
        "mp-spawn-child",
        "import multiprocessing as mp\n"
        "def work():\n"
        "    open(CANARY, 'w').close()\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('spawn').Process(target=work)\n"
        "    p.start(); p.join()\n",
    ),
    _w(
        "tempfile-in-forbidden",
        "import tempfile\nfd, p = tempfile.mkstemp(dir=os.path.join(WORK, 'forbidden'))\n"
        "os.close(fd)\nos.rename(p, CANARY)",
    ),
    # -- reading the secret
    _r("read-secret", "print(open(SECRET_FILE).read())"),
    _r("read-relative", "print(open('secret.txt').read())"),
    _r("read-dot-dot", "os.chdir('forbidden')\nprint(open('../secret.txt').read())"),
    _r("read-symlink", "os.symlink(SECRET_FILE, 'innocent')\nprint(open('innocent').read())"),
    _r(
        "read-symlinked-folder",
        "os.symlink(WORK, 'alias')\nprint(open('alias/secret.txt').read())",
    ),
    _r("read-proc-self-root", "print(open('/proc/self/root' + SECRET_FILE).read())"),
    _r(
        "read-module-file-through-a-loaders-get-data",
        LOADER_GET_DATA,
        before=SECRET_MODULE,
        rules=NO_SECRET_MODULE,
    ),
    _r("read-proc-self-cwd", "print(open('/proc/self/cwd/secret.txt').read())"),
    _r(
        "read-dir-fd",
        "dfd = os.open(WORK, os.O_RDONLY)\nos.chdir('/')\n"
        "fd = os.open('secret.txt', os.O_RDONLY, dir_fd=dfd)\nprint(os.read(fd, 100).decode())",
    ),
    _r("read-hard-link", "os.link(SECRET_FILE, 'hard')\nprint(open('hard').read())"),
    _r(
        "read-copy",
        "import shutil\nshutil.copy(SECRET_FILE, 'copy.txt')\nprint(open('copy.txt').read())",
    ),
    _r("read-tokenize", "import tokenize\nprint(tokenize.open(SECRET_FILE).read())"),
    _r("read-linecache", "import linecache\nprint(linecache.getline(SECRET_FILE, 1))"),
    _r(
        "read-fileinput",
        "import fileinput\nfor line in fileinput.input(SECRET_FILE):\n    print(line)",
    ),
    _r("read-pathlib", "import pathlib\nprint(pathlib.Path(SECRET_FILE).read_text())"),
    _r("read-open-code", "import io\nprint(io.open_code(SECRET_FILE).read().decode())"),
    _r("read-bytes-path", "print(open(os.fsencode(SECRET_FILE), 'rb').read().decode())"),
    _r("list-folder", "print(os.listdir('listed'))", before=LISTED, rules=NO_LISTING),
    _r(
        "scandir-folder",
        "print([e.name for e in os.scandir('listed')])",
        before=LISTED,
        rules=NO_LISTING,
    ),
    _r("glob-folder", "import glob\nprint(glob.glob('listed/*'))", before=LISTED, rules=NO_LISTING),
    _r(
        "pathlib-iterdir",
        "import pathlib\nprint([p.name for p in pathlib.Path('listed').iterdir()])",
        before=LISTED,
        rules=NO_LISTING,
    ),
]
