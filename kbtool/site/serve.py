"""Serve a built site on 127.0.0.1 with the standard library's HTTP server."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kbtool.site.build import DEFAULT_OUT, BuildResult, build_site

HOST = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files from the site directory, without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        return


def start_server(directory: Path | str, port: int = 0, host: str = HOST) -> ThreadingHTTPServer:
    """Serve ``directory`` on ``host:port`` (0: an ephemeral port) from a daemon thread.

    The caller stops it with ``server.shutdown(); server.server_close()``; the bound port is
    ``server.server_address[1]``.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="kbtool-site", daemon=True).start()
    return server


def serve_site(site_dir: Path | str | BuildResult, port: int = 8000, host: str = HOST) -> None:
    """Serve an already built site on ``host:port`` until Ctrl-C (port 0: an ephemeral one)."""
    directory = site_dir.out if isinstance(site_dir, BuildResult) else Path(site_dir)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"no built site at {directory} (run kbtool build-site first)")
    server = start_server(directory, port, host)
    print(f"Serving KD Atlas at http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


def serve(
    root: Path | str | None = None,
    port: int = 8000,
    out: Path | str = DEFAULT_OUT,
) -> None:
    """Build the site of the knowledge base at ``root`` into ``out`` and serve it until Ctrl-C."""
    result = build_site(root, out)
    print(f"Built {sum(result.pages.values())} pages in {result.seconds:.1f} s into {result.out}")
    serve_site(result, port)
