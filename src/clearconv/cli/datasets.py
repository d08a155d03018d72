"""``clearconv datasets list|fetch|verify``: where the data sets are, download them, check them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import (
    DATASETS,
    add_command,
    add_data_dir,
    data_root,
    format_table,
    load_named,
    print_json,
)

_FILE_SETS = ("mnist", "fashion-mnist", "cifar10")
_DESCRIPTIONS = {
    "mnist": "handwritten digits, 60,000 + 10,000 grey 28x28",
    "fashion-mnist": "clothing, 60,000 + 10,000 grey 28x28",
    "cifar10": "objects, 50,000 + 10,000 RGB 32x32 (binary version)",
    "xo": "the tutorials' X/O toy, 9x9, generated (no files)",
    "fsdd": "spoken digits, 2,700 + 300 recordings at 8 kHz (recordings.tar.gz; no download)",
}


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "datasets",
        run,
        help="list, fetch or verify the known data sets",
        description="List the known data sets and where they are, download one "
        "(verified, resumable) or check its files' checksums.",
    )
    p.add_argument("action", choices=("list", "fetch", "verify"), help="what to do")
    p.add_argument("name", nargs="?", help=f"data set for fetch/verify: {', '.join(_FILE_SETS)}")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _report(name: str, root: Path) -> dict[str, str]:
    """``{file: "ok" | "missing" | "bad checksum"}`` for a data set with files."""
    from clearconv.data import verify_cifar10, verify_mnist

    if name in ("mnist", "fashion-mnist"):
        return verify_mnist(root, fashion=name == "fashion-mnist")
    return verify_cifar10(root)


def _check_name(name: str | None, action: str) -> str:
    if name is None:
        raise CLIError(f"datasets {action} needs a data set name: {', '.join(_FILE_SETS)}")
    if name == "xo":
        raise CLIError("xo is generated on the fly: there is nothing to fetch or verify")
    if name == "fsdd":
        raise CLIError(
            "fsdd is not downloaded: put recordings.tar.gz from the Free Spoken Digit Dataset "
            "repository into ROOT/fsdd/ and give --data-dir ROOT"
        )
    if name not in _FILE_SETS:
        raise CLIError(f"unknown dataset {name!r}: choose from {', '.join(_FILE_SETS)}")
    return name


def run(args: argparse.Namespace) -> int:
    root = data_root(args)
    if args.action == "list":
        return _list(root, args.json)
    name = _check_name(args.name, args.action)
    if args.action == "fetch":
        _fetch(name, root)
    report = _report(name, root)
    bad = {f: s for f, s in report.items() if s != "ok"}
    folder = root / name
    if args.json:
        print_json({"dataset": name, "folder": folder, "ok": not bad, "files": report})
    else:
        print(format_table(["file", "status"], list(report.items())))
    if bad:
        problems = ", ".join(f"{f}: {s}" for f, s in bad.items())
        print(
            f"clearconv datasets: {name} under {folder} is not complete: {problems}",
            file=sys.stderr,
        )
        return 1
    if not args.json:
        print(f"{name}: all {len(report)} files verified in {folder}")
    return 0


def _list(root: Path, as_json: bool) -> int:
    rows = []
    for name in DATASETS:
        if name == "xo":
            rows.append({"name": name, "folder": None, "status": "generated", "about": ""})
        elif name == "fsdd":
            folder = root / name
            there = (folder / "recordings.tar.gz").is_file() or any(folder.glob("recordings/*.wav"))
            status = "present" if there else "missing"
            rows.append({"name": name, "folder": str(folder), "status": status})
        else:
            report = _report(name, root)
            present = sum(s != "missing" for s in report.values())
            status = (
                "present"
                if present == len(report)
                else "missing"
                if present == 0
                else f"partial ({present}/{len(report)} files)"
            )
            rows.append({"name": name, "folder": str(root / name), "status": status})
        rows[-1]["about"] = _DESCRIPTIONS[name]
    if as_json:
        print_json({"root": str(root), "datasets": rows})
        return 0
    print(f"data root: {root}")
    print(
        format_table(
            ["name", "status", "folder", "about"],
            [[r["name"], r["status"], r["folder"] or "-", r["about"]] for r in rows],
        )
    )
    return 0


def _fetch(name: str, root: Path) -> None:
    """Download both splits (skipping files already there), verified by the loaders."""
    for split in ("train", "test"):
        load_named(name, root, split, download=True, fetching=True)
