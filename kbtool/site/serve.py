"""Serve a built site on 127.0.0.1 with the standard library's HTTP server, rebuilding it
when the knowledge base changes."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kbtool.core.knowledge_base import load
from kbtool.site.build import DEFAULT_OUT, BuildResult, build_site
from kbtool.site.watch import SiteWatcher

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
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(
            exc.errno,
            f"cannot serve on {host}:{port}: {reason} (another server there? pick another port)",
        ) from exc
    threading.Thread(target=server.serve_forever, name="kbtool-site", daemon=True).start()
    return server


def serve_site(
    site_dir: Path | str | BuildResult,
    port: int = 8000,
    host: str = HOST,
    watcher: SiteWatcher | None = None,
    interval: float = 1.0,
) -> None:
    """Serve an already built site on ``host:port`` until Ctrl-C (port 0: an ephemeral one);
    with a ``watcher``, poll it every ``interval`` seconds to rebuild on changes."""
    directory = site_dir.out if isinstance(site_dir, BuildResult) else Path(site_dir)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"no built site at {directory} (run kbtool build-site first)")
    server = start_server(directory, port, host)
    print(f"Serving KD Atlas at http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    if watcher is not None:
        print(f"Watching {watcher.root}/taxonomy and {watcher.root}/papers for changes")
    stop = threading.Event()
    try:
        while not stop.wait(interval):
            message = watcher.poll() if watcher is not None else None
            if message:
                print(message, flush=True)
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
    """Build the site of the knowledge base at ``root`` into ``out``, serve it until Ctrl-C and
    rebuild it incrementally whenever ``taxonomy/`` or ``papers/`` change."""
    kb = load(root)
    result = build_site(kb, out, incremental=True)
    print(f"Built {sum(result.pages.values())} pages in {result.seconds:.1f} s into {result.out}")
    serve_site(result, port, watcher=SiteWatcher(kb.root, result.out))
