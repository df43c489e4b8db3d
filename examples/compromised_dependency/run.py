"""A dependency of the app turns malicious; appshield's grants stop it. One command:

    python examples/compromised_dependency/run.py

1. Builds wheels from `packages/` (goodhttp 1.0, evil 1.0, evil 2.0) and installs goodhttp
   and evil 1.0 into a fresh venv in a temporary folder (appshield comes from the Python
   running this script).
2. Runs `app/main.py` under `appshield run` with `appshield.yaml`: it works, nothing reported.
3. "Upgrades" evil to 2.0, whose import steals `~/.aws/credentials` (a canary in a temporary
   HOME), runs `sh`, sends the canary to a port of its own and through goodhttp.
4. Runs the app without appshield: every attack lands (the canary reaches both listeners, the
   shell leaves its marker files).
5. Runs it under appshield again: every attack is blocked and reported naming `evil 2.0`;
   the app keeps working.

Exit 0 when the story holds, 1 otherwise. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Listener:
    """A TCP listener on 127.0.0.1 recording what each connection sends."""

    def __init__(self, reply: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []
        self.reply = reply
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(4096).decode(errors="replace"))
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def take(self) -> list[str]:
        taken, self.received = self.received, []
        return taken


def build_wheel(source: Path, out: Path) -> Path:
    """A pure-Python wheel of the package folder `source` (named NAME-VERSION)."""
    name, version = source.name.rsplit("-", 1)
    info = f"{name}-{version}.dist-info"
    files = {
        str(p.relative_to(source)): p.read_bytes()
        for p in sorted(source.rglob("*.py"))
        if "__pycache__" not in p.parts
    }
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"]).encode()
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def pip_install(python: Path, *wheels: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            "--disable-pip-version-check",
            *map(str, wheels),
        ],
        check=True,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="appshield-story-") as temp:
        root = Path(temp)
        wheels = {p.name: build_wheel(p, root) for p in (HERE / "packages").iterdir() if p.is_dir()}
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        site = next((venv / "lib").glob("python*/site-packages"))
        # appshield and its dependencies: from the Python running this script
        parents = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        (site / "_story_parent.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
        )
        home = root / "home"
        (home / ".aws").mkdir(parents=True)
        (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key=CANARY\n")
        api, exfil = Listener(b"HTTP/1.0 200 OK\r\n\r\n"), Listener(b"")
        policy = root / "appshield.yaml"
        policy.write_text(
            (HERE / "appshield.yaml").read_text().replace("{API_PORT}", str(api.port))
        )
        log = root / "violations.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "PYTHON"))}
        env.update(
            HOME=str(home),
            STORY_DIR=str(root),
            API_PORT=str(api.port),
            EXFIL_PORT=str(exfil.port),
            APPSHIELD_LOG=str(log),
            OTEL_SDK_DISABLED="true",
        )

        def run_app(shielded: bool) -> subprocess.CompletedProcess[str]:
            for marker in root.glob("pwned-*"):
                marker.unlink()
            log.unlink(missing_ok=True)
            api.take(), exfil.take()
            app = [str(python), str(HERE / "app" / "main.py")]
            if shielded:
                app = [str(python), "-m", "appshield", "run", "--policy", str(policy), "--", *app]
            done = subprocess.run(app, env=env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
            return done

        ok = True

        def expect(what: str, holds: bool) -> None:
            nonlocal ok
            ok = ok and holds
            print(f"  [{'ok' if holds else 'FAILED'}] {what}")

        print("1. goodhttp 1.0 and evil 1.0, under appshield")
        pip_install(python, wheels["goodhttp-1.0"], wheels["evil-1.0"])
        done = run_app(shielded=True)
        print("   " + done.stdout.strip().replace("\n", "\n   "))
        expect(
            "the app works", done.returncode == 0 and "slug: compromised-dependency" in done.stdout
        )
        expect("nothing reported", not log.exists())

        print("2. evil is updated to 2.0; without appshield")
        pip_install(python, wheels["evil-2.0"])
        done = run_app(shielded=False)
        stolen = [r for r in exfil.take() if "CANARY" in r]
        carried = [r for r in api.take() if "CANARY" in r]
        markers = sorted(p.name for p in root.glob("pwned-*"))
        expect(f"the canary reached the attacker's port {len(stolen)} times", len(stolen) == 2)
        expect(f"goodhttp carried it to the API {len(carried)} times", len(carried) == 2)
        expect(f"the shell ran: {markers}", markers == ["pwned-import", "pwned-thread"])

        print("3. evil 2.0, under appshield")
        done = run_app(shielded=True)
        print("   " + done.stdout.strip().replace("\n", "\n   "))
        records = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )
        for r in records:
            print(
                f"   blocked {r['category']:8} {r['target'][:60]:60} {r['rule']} "
                f"({r.get('package')} {r.get('package_version')})"
            )
        expect(
            "the app keeps working",
            done.returncode == 0 and "api says: HTTP/1.0 200 OK" in done.stdout,
        )
        expect(
            "no canary left the process",
            not [r for r in exfil.take() + api.take() if "CANARY" in r],
        )
        expect("no shell ran", not list(root.glob("pwned-*")))
        expect(
            "every report names evil 2.0",
            bool(records)
            and all(
                (r.get("package"), r.get("package_version")) == ("evil", "2.0") and r["blocked"]
                for r in records
            ),
        )
        print("the story holds" if ok else "the story does NOT hold")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
