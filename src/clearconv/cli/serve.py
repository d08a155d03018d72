"""``clearconv serve MODEL``: the drawing page and JSON API (Starlette on uvicorn)."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import add_command, install_hint


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "serve",
        run,
        help="a web page to draw on, with predictions and feature maps, and a JSON API",
        description="Serve a page with a canvas (mouse and touch) and an image upload that "
        "shows class probabilities and every layer's feature maps, plus a JSON API: "
        "POST /api/predict, POST /api/featuremaps, GET /api/model. Binds to 127.0.0.1 "
        "unless --host says otherwise.",
    )
    p.add_argument("model", help="model file (.npz)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every network)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--max-bytes",
        type=int,
        default=2 * 1024 * 1024,
        help="largest request body in bytes (default 2 MiB)",
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or :class:`CLIError` saying why not.

    Binding before uvicorn starts means a busy port or a wrong address is one
    line and exit 2, and "serving on" is printed only for a server that is up.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise CLIError(
            f"--host {host!r}: not an address or a name this machine can resolve"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # as uvicorn does: a port left in TIME_WAIT by a server just stopped is reusable
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "the port is in use (another server?): stop it or choose another --port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this machine: use 127.0.0.1 or 0.0.0.0"
        elif exc.errno == errno.EACCES:
            why = "no permission (ports below 1024 need privileges): try --port 8000"
        else:
            why = (exc.strerror or str(exc)).lower()
        raise CLIError(f"cannot serve on {host}:{port}: {why}") from exc
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from clearconv.serve.app import create_app
    except ImportError as exc:
        raise CLIError(f"serve needs starlette and uvicorn: {install_hint('serve')}") from exc
    from clearconv import io

    path = Path(args.model)
    if not path.is_file():
        raise CLIError(f"{path}: model file not found")
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    if args.max_bytes < 1024:
        raise CLIError(f"--max-bytes must be at least 1024, got {args.max_bytes}")
    model = io.load(path)
    app = create_app(model, max_bytes=args.max_bytes)
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]  # the real one when --port 0
    host = f"[{args.host}]" if ":" in args.host else args.host
    # limit_concurrency: beyond 64 open requests uvicorn answers 503 at once
    # instead of queueing without bound; idle keep-alive connections close after 5 s.
    config = uvicorn.Config(app, log_level="warning", limit_concurrency=64, timeout_keep_alive=5)
    print(f"serving {path.name} on http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
    return 0
