"""Data root, checksums and resumable, atomic, verified downloads (urllib only).

Checksums. The published checksums of MNIST, Fashion-MNIST and CIFAR-10 are
MD5 sums of the original archives (the values torchvision and the datasets'
authors publish); we know no SHA-256 of those archives that we could confirm,
so a file is accepted when *either* its MD5 equals the published archive MD5
*or*, for IDX files, the MD5 of its uncompressed content equals the known one.
The second check accepts any recompressed or uncompressed copy of the same
data (such as ``../shared/datasets/mnist``). MD5 serves integrity here, not
security. A folder that carries a ``SHA256SUMS`` file is checked against it too
(see :func:`verify_files`).

Downloads go to ``NAME.part`` and continue from its length with an HTTP
``Range`` request; the file is renamed to ``NAME`` only once complete and
verified, so an interrupted or corrupt download never looks like a good file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clearconv.data.idx import DataError

__all__ = [
    "DataMissingError",
    "FileSpec",
    "default_data_root",
    "download",
    "fetch_files",
    "file_md5",
    "file_ok",
    "network_reason",
    "resolve_root",
    "verify_files",
]

_CHUNK = 1 << 20


class DataMissingError(DataError):
    """A data set is not on disk and could not be downloaded.

    The message (one line) says which files to put into which folder.
    """


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set.

    Attributes
    ----------
    name : str
        File name as published (e.g. ``"train-images-idx3-ubyte.gz"``).
    md5 : str or None
        MD5 of the published file.
    raw_md5 : str or None
        MD5 of the uncompressed content (IDX files): accepts recompressed copies.
    raw_size : int or None
        Uncompressed size in bytes; bounds the decompression when checking.
    """

    name: str
    md5: str | None = None
    raw_md5: str | None = None
    raw_size: int | None = None


def default_data_root() -> Path:
    """The data root: ``$CLEARCONV_DATA`` if set (``$CONVNET_DATA``, its name
    before the rename, still counts), else ``~/.cache/clearconv``.

    Example
    -------
    >>> isinstance(default_data_root(), Path)
    True
    """
    env = os.environ.get("CLEARCONV_DATA") or os.environ.get("CONVNET_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "clearconv"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root`` if given, else :func:`default_data_root`."""
    return default_data_root() if root is None else Path(root).expanduser()


def file_md5(path: str | os.PathLike, *, decompress: bool = False, limit: int | None = None) -> str:
    """MD5 hex digest of a file (of its gzip-decompressed content when ``decompress``).

    ``limit`` stops reading after ``limit + 1`` bytes, so a decompression bomb
    yields a wrong digest instead of an endless read.
    """
    h = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if decompress else open
    read = 0
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            read += len(chunk)
            if limit is not None and read > limit:
                break
    return h.hexdigest()


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def file_ok(path: str | os.PathLike, spec: FileSpec) -> bool:
    """Whether ``path`` holds the data ``spec`` describes (see the module notes).

    A spec without any checksum accepts every file.
    """
    path = Path(path)
    if spec.md5 is None and spec.raw_md5 is None:
        return True
    digest = file_md5(path)
    if digest == spec.md5:
        return True
    if spec.raw_md5 is None:
        return False
    if digest == spec.raw_md5:  # an uncompressed copy
        return True
    try:
        return _is_gzip(path) and (
            file_md5(path, decompress=True, limit=spec.raw_size) == spec.raw_md5
        )
    except (OSError, EOFError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_files(folder: str | os.PathLike, specs: Sequence[FileSpec]) -> dict[str, str]:
    """Check each file of a data set; ``{name: "ok" | "missing" | "bad checksum"}``.

    A file is looked for under its published name and without ``.gz``. When
    ``folder/SHA256SUMS`` exists, files it lists must also match it.
    """
    folder = Path(folder)
    sums: dict[str, str] = {}
    sums_file = folder / "SHA256SUMS"
    if sums_file.is_file():
        for line in sums_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0].lower()
    report = {}
    for spec in specs:
        path = find_file(folder, spec.name)
        if path is None:
            report[spec.name] = "missing"
        elif not file_ok(path, spec) or (path.name in sums and _sha256(path) != sums[path.name]):
            report[spec.name] = "bad checksum"
        else:
            report[spec.name] = "ok"
    return report


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or the same name without (or with) ``.gz``, if present."""
    alt = name[:-3] if name.endswith(".gz") else name + ".gz"
    for candidate in (folder / name, folder / alt):
        if candidate.is_file():
            return candidate
    return None


def download(
    url: str, dest: str | os.PathLike, spec: FileSpec | None = None, *, timeout: float = 30.0
) -> Path:
    """Download ``url`` to ``dest``: resumable, atomic, verified against ``spec``.

    Bytes go to ``dest + ".part"``; an existing ``.part`` is continued with an
    HTTP ``Range`` request (a server that ignores it sends everything and the
    part is restarted). When complete, the file is checked with :func:`file_ok`
    and renamed to ``dest``; on a checksum mismatch the part is deleted.

    Parameters
    ----------
    url : str
    dest : str or PathLike
    spec : FileSpec, optional
        Checksums to verify; ``None`` accepts any content.
    timeout : float
        Seconds for the connection and each read.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DataError
        The download completed but its checksum is wrong (nothing is kept).
    urllib.error.URLError, OSError
        Network failures (the ``.part`` file is kept for the next attempt).
    """
    dest = Path(dest)
    # the folders this call creates: removed again if the download fails before
    # writing anything, so a failed fetch leaves no empty folder behind
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _download(url, dest, spec, timeout)
    except BaseException:
        for folder in created:  # deepest first; stops at the first one not empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _download(url: str, dest: Path, spec: FileSpec | None, timeout: float) -> Path:
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "clearconv"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:  # 416: the part already holds everything
            raise
        response = None
    if response is not None:
        with response:
            status = getattr(response, "status", None) or response.getcode()
            mode = "ab" if offset and status == 206 else "wb"
            with open(part, mode) as f:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
    if spec is not None and not file_ok(part, spec):
        found = file_md5(part)
        part.unlink()
        raise DataError(
            f"{url}: checksum mismatch for {dest.name}: expected MD5 {spec.md5}, "
            f"found {found}; the download was discarded, try again"
        )
    os.replace(part, dest)
    return dest


def network_reason(exc: BaseException, url: str) -> str:
    """Why a download failed, in words (no ``[Errno -2]`` or ``<urlopen error ...>``).

    Example
    -------
    >>> import urllib.error, socket
    >>> err = urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
    >>> network_reason(err, "https://example.org/mnist/")
    'no network: cannot resolve example.org'
    """
    host = urllib.parse.urlsplit(url).hostname or url
    reason = getattr(exc, "reason", exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"{url} answered HTTP {exc.code} {exc.reason}"
    if isinstance(reason, socket.gaierror):
        return f"no network: cannot resolve {host}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} did not answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{host}: {reason.strerror[:1].lower()}{reason.strerror[1:]}"
    return f"{host}: {reason}"


def fetch_files(
    folder: Path,
    specs: Iterable[FileSpec],
    mirrors: Sequence[str],
    dataset: str,
    *,
    download_ok: bool,
) -> dict[str, Path]:
    """Return the path of every file in ``specs``, downloading the missing ones.

    Each missing file is tried on each mirror in turn. If some file can be
    neither found nor downloaded, raise :class:`DataMissingError` with one line
    naming the files, the folder and a URL to get them from.
    """
    specs = list(specs)
    found: dict[str, Path] = {}
    errors: list[str] = []
    for spec in specs:
        path = find_file(folder, spec.name)
        if path is None and download_ok:
            for mirror in mirrors:
                try:
                    path = download(mirror + spec.name, folder / spec.name, spec)
                    break
                except (OSError, DataError) as exc:  # URLError is an OSError
                    errors.append(network_reason(exc, mirror))
        if path is not None:
            found[spec.name] = path
    missing = [s.name for s in specs if s.name not in found]
    if missing:
        why = f"download failed ({errors[-1]})" if errors else "downloads are off"
        raise DataMissingError(
            f"{dataset} not found and {why}: put {', '.join(missing)} "
            f"(from {mirrors[0]}) into {folder}/ (or point --data-dir / $CLEARCONV_DATA at a "
            f"folder that has {folder.name}/)"
        )
    return found
