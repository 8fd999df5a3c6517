"""A STAND-IN web site on loopback, for the URL and web components of flows (no web is reachable here).

* Direct requests (``http://127.0.0.2:PORT/lighthouse.html``) get the static pages of ``site/pages/``.
* As an HTTP forward proxy (``http_proxy=http://127.0.0.2:PORT``) it answers for the hosts that have a
  folder under ``site/hosts/`` (``export.arxiv.org``: a canned Atom feed for arXiv's query API) and
  refuses every other host with 502: nothing is ever forwarded, no request leaves the machine.
  Plain HTTP only (an HTTPS ``CONNECT`` is refused): the components here call arXiv over http.
* ``GET /_stand_in/requests``: the URLs asked for so far (JSON), for tests.

Stdlib only:  python3 services/web/server.py --host 127.0.0.2 --port 8020
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

SITE = Path(__file__).resolve().parent / "site"


class Handler(BaseHTTPRequestHandler):
    server_version = "stepflow-stand-in-web/1"
    asked: list[str] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        print(f"{self.address_string()} {format % args}", flush=True)

    def _send(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, root: Path, path: str) -> None:
        rel = path.lstrip("/") or "index.html"
        target = (root / rel).resolve()
        if root.resolve() not in target.parents or not target.is_file():
            self._send(404, f"stand-in web: no page {path}\n".encode())
            return
        kind = mimetypes.guess_type(target.name)[0]
        if kind is None:
            xml = target.read_bytes().lstrip().startswith(b"<?xml")
            kind = "application/atom+xml" if xml else "text/plain"
        if kind.startswith("text/"):
            kind += "; charset=utf-8"
        self._send(200, target.read_bytes(), kind)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        full = self.path if url.scheme else f"http://{self.headers.get('Host', '')}{self.path}"
        if not url.path.startswith(("/_stand_in/", "/health")):
            with self.lock:
                self.asked.append(full)
        if url.scheme:  # a proxy request: absolute URL
            hosts = SITE / "hosts"
            if url.scheme != "http" or not (hosts / (url.hostname or "")).is_dir():
                self._send(502, f"stand-in web: no stand-in for {url.scheme}://{url.hostname}\n".encode())
                return
            self._file(hosts / str(url.hostname), url.path)
        elif url.path == "/_stand_in/requests":
            with self.lock:
                self._send(200, json.dumps(self.asked).encode(), "application/json")
        elif url.path == "/health":
            self._send(200, b'{"status": "ok"}', "application/json")
        else:
            self._file(SITE / "pages", url.path)

    do_HEAD = do_GET  # noqa: N815

    def do_CONNECT(self) -> None:  # noqa: N802
        self._send(502, b"stand-in web: HTTPS is not proxied\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("STEPFLOW_WEB_HOST", "127.0.0.2"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("STEPFLOW_WEB_PORT", "8020")))
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"stand-in web site on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
