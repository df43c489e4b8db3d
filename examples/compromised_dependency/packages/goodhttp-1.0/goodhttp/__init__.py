"""goodhttp 1.0: a tiny HTTP client, trusted to talk to the app's API."""

import socket


def get(port: int, path: str = "/") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return conn.recv(100).decode(errors="replace").split("\r\n")[0]
