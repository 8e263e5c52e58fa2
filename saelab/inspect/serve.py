"""`saelab inspect serve`: the report directory over HTTP on 127.0.0.1 only (never on other interfaces)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        pass


def make_server(report: str | Path, port: int = 8000) -> ThreadingHTTPServer:
    """A server of `report` bound to 127.0.0.1:`port` (0 picks a free port); call serve_forever() on it."""
    report = Path(report)
    if not (report / "index.html").is_file():
        raise FileNotFoundError(f"{report} holds no index.html; build a report with `saelab inspect` first")
    if not 0 <= port < 65536:
        raise ValueError(f"port must be in [0, 65535], got {port}")
    handler = functools.partial(_Quiet, directory=str(report.resolve()))
    try:
        return ThreadingHTTPServer((HOST, port), handler)
    except OSError as e:
        raise ValueError(f"cannot listen on {HOST}:{port} ({e.strerror}); pick another --port") from e


def address(server: ThreadingHTTPServer) -> str:
    return f"http://{HOST}:{server.server_address[1]}/index.html"
