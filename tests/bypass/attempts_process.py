"""Process bypass attempts: every way to start `touch CANARY` (or a shell that does).

The base policy denies shells and `touch` by name and by path. Evidence: the canary file.
Attempts that start a program in a forked child leave the child through `os._exit`, so a
refusal there ends the child quietly (the parent waits and the canary tells).
"""

from __future__ import annotations

from tests.bypass._harness import Attempt

TOUCH = "/usr/bin/touch"

# Only `git` (found in a trusted place) may start, so a copy of another program under that
# name in the writable work folder is the thing being tested.
ONLY_GIT = """\
- id: only-git
  category: process
  action: deny
  match: {}
  unless: {executable: [git]}
"""


def _p(id: str, code: str, before: str = "", rules: str = "") -> Attempt:
    return Attempt(f"proc-{id}", code, "process", before=before, rules=rules)


def _in_child(call: str) -> str:
    """Run `call` in a forked child that always leaves with os._exit."""
    return (
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        f"        {call}\n"
        "    finally:\n"
        "        os._exit(1)\n"
        "os.waitpid(pid, 0)\n"
    )


WORK_COPY = "import shutil\nshutil.copy('/usr/bin/touch', os.path.join(WORK, 'git'))\n"

ATTEMPTS: list[Attempt] = [
    _p("popen-name", "import subprocess\nsubprocess.Popen(['touch', CANARY]).wait()"),
    _p("run-absolute", f"import subprocess\nsubprocess.run(['{TOUCH}', CANARY])"),
    _p("call", "import subprocess\nsubprocess.call(['touch', CANARY])"),
    _p("check-output", "import subprocess\nsubprocess.check_output(['touch', CANARY])"),
    _p("shell-true", "import subprocess\nsubprocess.run('touch ' + CANARY, shell=True)"),
    _p("getoutput", "import subprocess\nsubprocess.getoutput('touch ' + CANARY)"),
    _p(
        "executable-sh",
        "import subprocess\n"
        "subprocess.run(['harmless', '-c', 'touch ' + CANARY], executable='/bin/sh')",
    ),
    _p(
        "executable-touch",
        f"import subprocess\nsubprocess.run(['ls', CANARY], executable='{TOUCH}')",
    ),
    _p("bytes-argv", "import subprocess\nsubprocess.run([b'touch', os.fsencode(CANARY)])"),
    _p(
        "pathlike-argv",
        f"import subprocess, pathlib\nsubprocess.run([pathlib.Path('{TOUCH}'), CANARY])",
    ),
    _p(
        "env-path", "import subprocess\nsubprocess.run(['touch', CANARY], env={'PATH': '/usr/bin'})"
    ),
    _p(
        "env-path-work-copy",
        WORK_COPY + "import subprocess\nsubprocess.run(['git', CANARY], env={'PATH': WORK})",
        rules=ONLY_GIT,
    ),
    _p(
        "relative-work-copy",
        WORK_COPY + "import subprocess\nsubprocess.run(['./git', CANARY])",
        rules=ONLY_GIT,
    ),
    _p(
        "symlink-ls-to-touch",
        f"os.symlink('{TOUCH}', 'ls')\nimport subprocess\nsubprocess.run(['./ls', CANARY])",
    ),
    _p(
        "relative-path",
        f"import subprocess\nsubprocess.run([os.path.relpath('{TOUCH}'), CANARY])",
    ),
    _p("child-cwd", "import subprocess\nsubprocess.run(['./touch', CANARY], cwd='/usr/bin')"),
    _p("proc-self-root", f"import subprocess\nsubprocess.run(['/proc/self/root{TOUCH}', CANARY])"),
    _p("dot-segments", "import subprocess\nsubprocess.run(['/usr/./lib/../bin//touch', CANARY])"),
    _p("os-system", "os.system('touch ' + CANARY)"),
    _p("posix-system", "import posix\nposix.system('touch ' + CANARY)"),
    _p("captured-system", "s('touch ' + CANARY)", before="from os import system as s\n"),
    _p("os-popen", "os.popen('touch ' + CANARY).read()"),
    _p("execv-in-fork", _in_child(f"os.execv('{TOUCH}', ['touch', CANARY])")),
    _p("execvp-in-fork", _in_child("os.execvp('touch', ['touch', CANARY])")),
    _p("execle-in-fork", _in_child(f"os.execle('{TOUCH}', 'touch', CANARY, dict(os.environ))")),
    _p(
        "fexecve-in-fork",
        f"fd = os.open('{TOUCH}', os.O_RDONLY)\n"
        + _in_child("os.execve(fd, ['touch', CANARY], dict(os.environ))"),
    ),
    _p("spawnlp", "os.spawnlp(os.P_WAIT, 'touch', 'touch', CANARY)"),
    _p("spawnv", f"os.spawnv(os.P_WAIT, '{TOUCH}', ['touch', CANARY])"),
    _p("spawnvpe", "os.spawnvpe(os.P_WAIT, 'touch', ['touch', CANARY], {'PATH': '/usr/bin'})"),
    _p(
        "spawnl-nowait",
        f"pid = os.spawnl(os.P_NOWAIT, '{TOUCH}', 'touch', CANARY)\nos.waitpid(pid, 0)",
    ),
    _p(
        "posix-spawn",
        f"pid = os.posix_spawn('{TOUCH}', ['touch', CANARY], dict(os.environ))\nos.waitpid(pid, 0)",
    ),
    _p(
        "posix-spawnp",
        "pid = os.posix_spawnp('touch', ['touch', CANARY], dict(os.environ))\nos.waitpid(pid, 0)",
    ),
    _p(
        "posix-module-spawn",
        f"import posix\npid = posix.posix_spawn('{TOUCH}', ['touch', CANARY], dict(os.environ))\n"
        "os.waitpid(pid, 0)",
    ),
    _p(
        "captured-posix-spawn",
        f"pid = ps('{TOUCH}', ['touch', CANARY], dict(os.environ))\nos.waitpid(pid, 0)",
        before="from os import posix_spawn as ps\n",
    ),
    _p("pty-spawn", "import pty\npty.spawn(['touch', CANARY])"),
    _p(
        "fork-exec-direct",
        "import multiprocessing.util as u\n"
        f"pid = u.spawnv_passfds(b'{TOUCH}', ['touch', CANARY], ())\nos.waitpid(pid, 0)",
    ),
    _p(
        "preexec-fn-exec",
        "import subprocess\n"
        "try:\n"
        "    subprocess.run(['/usr/bin/true'],\n"
        f"        preexec_fn=lambda: os.execv('{TOUCH}', ['touch', CANARY]))\n"
        "except subprocess.SubprocessError as exc:\n"
        "    print('refused in the child:', exc)\n",
    ),
    _p(
        "asyncio-exec",
        "import asyncio\n"
        "async def main():\n"
        "    p = await asyncio.create_subprocess_exec('touch', CANARY)\n"
        "    await p.wait()\n"
        "asyncio.run(main())\n",
    ),
    _p(
        "asyncio-shell",
        "import asyncio\n"
        "async def main():\n"
        "    p = await asyncio.create_subprocess_shell('touch ' + CANARY)\n"
        "    await p.wait()\n"
        "asyncio.run(main())\n",
    ),
    _p(
        "thread",
        "import subprocess, threading\n"
        "t = threading.Thread(target=subprocess.run, args=(['touch', CANARY],))\n"
        "t.start(); t.join()\n",
    ),
    _p(
        "mp-spawn-start",
        "import multiprocessing as mp\n"
        "def work():\n"
        "    open(CANARY, 'w').close()\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('spawn').Process(target=work)\n"
        "    p.start(); p.join()\n",
        rules="""\
- id: no-mp-spawn
  category: process
  action: deny
  match: {command_line: "*spawn_main*"}
""",
    ),
    _p(
        "mp-forkserver-start",
        "import multiprocessing as mp\n"
        "def work():\n"
        "    open(CANARY, 'w').close()\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('forkserver').Process(target=work)\n"
        "    p.start(); p.join()\n",
        rules="""\
- id: no-mp-forkserver
  category: process
  action: deny
  match: {command_line: "*forkserver*"}
""",
    ),
    _p(
        "mp-fork-child-runs",
        "import multiprocessing as mp, subprocess\n"
        "def work():\n"
        "    subprocess.run(['touch', CANARY])\n"
        "p = mp.get_context('fork').Process(target=work)\n"
        "p.start(); p.join()\n",
    ),
]
