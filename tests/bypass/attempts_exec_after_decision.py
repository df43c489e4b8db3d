"""The program changes between the decision and the exec: `preexec_fn` runs in the forked
child after the parent judged the program and before `_posixsubprocess` execs it (with no
audit event of its own). Each attempt starts an allowed (or missing) program whose path a
`preexec_fn` then points at `touch`, which the base policy denies by path.

Evidence: the canary file. In enforce the parent raises `PolicyViolation` from Popen (the
child never execs); in monitor the start goes on and the parent reports it
(api `subprocess.preexec_fn`).
"""

from __future__ import annotations

import os

from tests.bypass._harness import Attempt

TOUCH = "/usr/bin/touch"

# Every program start is denied: a program that cannot be found is denied too.
DENY_ALL_PROGRAMS = """\
- id: deny-all-programs
  category: process
  action: deny
  match: {}
"""


def _e(id: str, code: str, rules: str = "", before: str = "") -> Attempt:
    return Attempt(f"exec-{id}", code, "process", before=before, rules=rules)


def _chroot_setup() -> str:
    """A copy of `touch` at WORK/usr/bin/true with the libraries it needs, so that in a child
    chrooted to WORK `/usr/bin/true` is `touch`, and `/canary` is CANARY."""
    return (
        "import shutil, subprocess\n"
        "def _place(src):\n"
        "    dst = WORK + src\n"
        "    os.makedirs(os.path.dirname(dst), exist_ok=True)\n"
        "    shutil.copy2(src, dst)\n"
        f"_place('{TOUCH}')\n"
        f"os.rename(WORK + '{TOUCH}', WORK + '/usr/bin/true')\n"
        f"for line in subprocess.run(['ldd', '{TOUCH}'], capture_output=True, text=True)"
        ".stdout.splitlines():\n"
        "    lib = [w for w in line.split() if w.startswith('/')]\n"
        "    if lib:\n"
        "        _place(os.path.realpath(lib[0]))\n"
        "        if os.path.realpath(lib[0]) != lib[0]:\n"
        "            os.makedirs(os.path.dirname(WORK + lib[0]), exist_ok=True)\n"
        "            shutil.copy2(lib[0], WORK + lib[0])\n"
    )


ATTEMPTS: list[Attempt] = [
    # An allowed symlink (true) re-pointed at touch in the child.
    _e(
        "preexec-repoint-symlink",
        "import subprocess\n"
        "os.symlink('/usr/bin/true', 'prog')\n"
        "def pre():\n"
        "    os.unlink('prog')\n"
        f"    os.symlink('{TOUCH}', 'prog')\n"
        "subprocess.run(['./prog', CANARY], preexec_fn=pre)\n",
    ),
    # The same swap made atomically: a link to touch renamed over the allowed one.
    _e(
        "preexec-rename-link-over",
        "import subprocess\n"
        "os.symlink('/usr/bin/true', 'prog')\n"
        f"os.symlink('{TOUCH}', 'next')\n"
        "subprocess.run(['./prog', CANARY], preexec_fn=lambda: os.replace('next', 'prog'))\n",
    ),
    # The folder that held the judged program swapped for another one.
    _e(
        "preexec-folder-swap",
        "import subprocess\n"
        "os.makedirs('bin'); os.makedirs('evil')\n"
        "os.symlink('/usr/bin/true', 'bin/prog')\n"
        f"os.symlink('{TOUCH}', 'evil/prog')\n"
        "def pre():\n"
        "    os.rename('bin', 'old')\n"
        "    os.rename('evil', 'bin')\n"
        "subprocess.run(['prog', CANARY], env={'PATH': os.path.join(WORK, 'bin')},"
        " preexec_fn=pre)\n",
    ),
    # A copy of touch that cannot run when judged ("not found"), made executable in the
    # child. Under a policy that denies every program, the missing program is denied too.
    _e(
        "preexec-chmod-denied-copy",
        "import subprocess, shutil\n"
        f"shutil.copy('{TOUCH}', 'tool')\n"
        "os.chmod('tool', 0o644)\n"
        "subprocess.run(['./tool', CANARY], preexec_fn=lambda: os.chmod('tool', 0o755))\n",
        rules=DENY_ALL_PROGRAMS,
    ),
    # A program that is not there when judged (allowed: process default allow), created in
    # the child as a link to touch.
    _e(
        "preexec-create-link",
        "import subprocess\n"
        f"subprocess.run(['./tool', CANARY], preexec_fn=lambda: os.symlink('{TOUCH}', 'tool'))\n",
    ),
    # The same through a PATH search: every candidate is missing when judged.
    _e(
        "preexec-create-on-path",
        "import subprocess\n"
        "os.makedirs('a')\n"
        "subprocess.run(['tool', CANARY], env={'PATH': os.path.join(WORK, 'a') + ':/usr/bin'},"
        f" preexec_fn=lambda: os.symlink('{TOUCH}', 'a/tool'))\n",
    ),
    # asyncio's subprocesses pass preexec_fn on to Popen.
    _e(
        "asyncio-preexec-repoint",
        "import asyncio\n"
        "os.symlink('/usr/bin/true', 'prog')\n"
        "def pre():\n"
        "    os.unlink('prog')\n"
        f"    os.symlink('{TOUCH}', 'prog')\n"
        "async def main():\n"
        "    proc = await asyncio.create_subprocess_exec('./prog', CANARY, preexec_fn=pre)\n"
        "    await proc.wait()\n"
        "asyncio.run(main())\n",
    ),
]

if os.geteuid() == 0:
    # The child changes its root: the same path names another file for it alone, which the
    # parent cannot judge (implicit:undescribable). Needs CAP_SYS_CHROOT.
    ATTEMPTS.append(
        _e(
            "preexec-chroot",
            "subprocess.run(['/usr/bin/true', '/canary'], preexec_fn=lambda: os.chroot(WORK))\n",
            before=_chroot_setup(),
        )
    )
