"""``clearconv serve MODEL``: the drawing page and JSON API (Starlette on uvicorn)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import add_command


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
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--max-bytes",
        type=int,
        default=2 * 1024 * 1024,
        help="largest request body in bytes (default 2 MiB)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from clearconv.serve.app import create_app
    except ImportError as exc:
        raise CLIError(
            f"serve needs starlette and uvicorn: pip install 'clearconv[serve]' ({exc})"
        ) from exc
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
    print(f"serving {path.name} on http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    # limit_concurrency: beyond 64 open requests uvicorn answers 503 at once
    # instead of queueing without bound; idle keep-alive connections close after 5 s.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        limit_concurrency=64,
        timeout_keep_alive=5,
    )
    return 0
