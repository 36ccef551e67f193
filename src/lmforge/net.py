"""Network helpers shared by the commands that listen on a port (`deploy`, `app`)."""

from __future__ import annotations

import socket

from lmforge.errors import UserError


def check_port(host: str, port: int, flag: str = "--port") -> None:
    """A busy port is an error that names it (ms-swift silently moves to another, which breaks clients)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"port {port} on {host} is busy ({e.strerror})", hint=f"pick another with {flag}")
