#!/usr/bin/env python3
"""The HTTP application behind the ingress in the ingress tests: it answers every request with what it
received, so a test can see exactly which headers nginx passed on.

    echo_upstream.py   listen on 127.0.0.1 (a free port), print the port on stdout, serve until SIGTERM

The answer is JSON `{"method", "path", "query", "headers": [[name, value], ...]}` with the headers in the
order and spelling received (a header sent twice appears twice). A client that accepts text/html (a browser)
gets the same JSON inside `<pre id="echo">` of a small page that also lists the X-User-* headers, which is
what the screenshots show. Only the standard library is used.
"""

from __future__ import annotations

import html
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY_BYTES = 1 << 20


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-upstream"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        parts = urlsplit(self.path)
        seen = {
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": [[name, value] for name, value in self.headers.items()],
        }
        if "text/html" in (self.headers.get("Accept") or ""):
            body, content_type = page(seen).encode(), "text/html; charset=utf-8"
        else:
            body, content_type = (json.dumps(seen, indent=2) + "\n").encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write("echo-upstream: " + (format % args) + "\n")


def page(seen: dict) -> str:
    identity = [(n, v) for n, v in seen["headers"] if n.lower().startswith("x-user-")]
    rows = "".join(
        f"<tr><th>{html.escape(n)}</th><td><code>{html.escape(v)}</code></td></tr>" for n, v in identity
    ) or '<tr><td colspan="2">none</td></tr>'
    target = seen["path"] + ("?" + seen["query"] if seen["query"] else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upstream echo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2430; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.05rem; margin-top: 1.5rem; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .35rem .8rem; border-bottom: 1px solid #dde2ea; }}
th {{ font-weight: 600; }} code {{ font-size: .95rem; }}
pre {{ background: #f4f6f9; padding: 1rem; font-size: .8rem; overflow: auto; max-height: 22rem; }}
</style></head>
<body>
<h1>The application behind nginx</h1>
<p>{html.escape(seen["method"])} <code>{html.escape(target)}</code></p>
<h2>Identity headers set by the ingress</h2>
<table id="identity">{rows}</table>
<h2>Every header received</h2>
<pre id="echo">{html.escape(json.dumps(seen, indent=2))}</pre>
</body></html>
"""


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
