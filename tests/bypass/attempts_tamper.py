"""Tamper attempts against the process and file hooks: switch the checks off, then start
`touch CANARY` or write CANARY.

Each must fail to switch anything off: the audit hook is the backstop for patches that were
undone (reloads, rebinding, `__wrapped__`), and no state the app can set (environment
variables, the OpenTelemetry suppress key) is consulted after start-up.
"""

from __future__ import annotations

from tests.bypass._harness import Attempt

TOUCH = "/usr/bin/touch"


def _t(id: str, code: str, before: str = "") -> Attempt:
    return Attempt(f"tamper-{id}", code, "tamper", before=before)


ATTEMPTS: list[Attempt] = [
    _t("system-wrapped", "getattr(os.system, '__wrapped__', os.system)('touch ' + CANARY)"),
    _t(
        "posix-spawn-wrapped",
        "original = getattr(os.posix_spawn, '__wrapped__', os.posix_spawn)\n"
        f"pid = original('{TOUCH}', ['touch', CANARY], dict(os.environ))\n"
        "os.waitpid(pid, 0)",
    ),
    _t(
        "spawnv-wrapped",
        "original = getattr(os.spawnv, '__wrapped__', os.spawnv)\n"
        f"original(os.P_WAIT, '{TOUCH}', ['touch', CANARY])",
    ),
    _t(
        "os-open-wrapped",
        "os.close(getattr(os.open, '__wrapped__', os.open)(CANARY, os.O_CREAT | os.O_WRONLY))",
    ),
    _t(
        "os-open-wrapped-dir-fd",
        "dfd = os.open(WORK, os.O_RDONLY)\nos.chdir('/')\n"
        "original = getattr(os.open, '__wrapped__', os.open)\n"
        "os.close(original('canary', os.O_CREAT | os.O_WRONLY, dir_fd=dfd))",
    ),
    _t(
        "fresh-posix-open-dir-fd",
        "import sys\ndfd = os.open(WORK, os.O_RDONLY)\nos.chdir('/')\n"
        "del sys.modules['posix']\nimport posix as fresh\n"
        "os.close(fresh.open('canary', os.O_CREAT | os.O_WRONLY, dir_fd=dfd))",
    ),
    _t("reload-os", "import importlib\nimportlib.reload(os)\nos.system('touch ' + CANARY)"),
    _t(
        "reload-os-spawn",
        "import importlib\nimportlib.reload(os)\n"
        f"os.spawnv(os.P_WAIT, '{TOUCH}', ['touch', CANARY])",
    ),
    _t(
        "reload-subprocess",
        "import importlib, subprocess\nimportlib.reload(subprocess)\n"
        "subprocess.run(['touch', CANARY])",
    ),
    _t(
        "reload-posixsubprocess",
        "import importlib, _posixsubprocess, multiprocessing.util as u\n"
        "importlib.reload(_posixsubprocess)\n"
        f"os.waitpid(u.spawnv_passfds(b'{TOUCH}', ['touch', CANARY], ()), 0)",
    ),
    _t(
        "reload-posix-mkfifo",
        "import importlib, posix\nimportlib.reload(posix)\nposix.mkfifo(CANARY)",
    ),
    _t(
        "pop-and-reimport-os",
        "import sys\ndel sys.modules['os']\nimport os as fresh\nfresh.system('touch ' + CANARY)",
    ),
    _t(
        "pop-and-reimport-subprocess",
        "import sys\nsys.modules.pop('subprocess', None)\nimport subprocess\n"
        "subprocess.run(['touch', CANARY])",
    ),
    _t(
        "rebind-spawnvp",
        "os.spawnvp = saved\nos.spawnlp(os.P_WAIT, 'touch', 'touch', CANARY)",
        before="saved = os.spawnvp\n",
    ),
    _t(
        "rebind-posix-open",
        "import posix\nos.open = saved\nos.close(os.open(CANARY, os.O_CREAT | os.O_WRONLY))",
        before="saved = os.open\n",
    ),
    _t(
        "otel-suppress",
        "from opentelemetry import context\n"
        "keys = [getattr(context, '_SUPPRESS_INSTRUMENTATION_KEY', 'suppress_instrumentation'),\n"
        "        'suppress_instrumentation']\n"
        "ctx = context.get_current()\n"
        "for key in keys:\n"
        "    ctx = context.set_value(key, True, ctx)\n"
        "context.attach(ctx)\n"
        "os.system('touch ' + CANARY)\n"
        "open(CANARY, 'w').close()",
    ),
    _t(
        "env-disable-after-start",
        "os.environ['APPSHIELD_DISABLE'] = '1'\nos.environ['APPSHIELD_MODE'] = 'monitor'\n"
        "open(CANARY, 'w').close()",
    ),
    _t(
        "env-path-after-start",
        "os.environ['PATH'] = WORK\nimport shutil\n"
        f"shutil.copy('{TOUCH}', os.path.join(WORK, 'touch'))\n"
        "os.spawnlp(os.P_WAIT, 'touch', 'touch', CANARY)",
    ),
    _t(
        "uninstall-locked",
        "import appshield\ntry:\n    appshield.uninstall()\nexcept RuntimeError as exc:\n"
        "    print('refused:', exc)\nopen(CANARY, 'w').close()",
    ),
]
