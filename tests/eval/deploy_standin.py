"""A stand-in for the `lmforge deploy` that `lmforge eval --eval_deploy true` starts: `/v1/models` answers at once,
a chat completion never does (an eval mid-run). `python deploy_standin.py PORT INFO` writes `INFO` = "pgid port"
when it listens and `INFO.busy` when the first completion request arrives."""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main(port: int, info: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "standin", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            info.with_suffix(".busy").write_text("busy")
            time.sleep(3600)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    info.write_text(f"{os.getpgid(0)} {port}")
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
