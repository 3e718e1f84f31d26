"""File-system plumbing shared by the data sets: checksums, verification stamps (written with
:func:`bioreg.io.atomic_write_bytes`), resumable downloads and safe tar extraction.

Nothing here knows about a particular data set; the data set modules describe their
files with :class:`FileSpec` and call :func:`verify_files`, :func:`download_url` and
:func:`safe_extract_tar`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioreg.io import atomic_write_bytes

from .errors import DataError

__all__ = [
    "FileSpec",
    "VerificationStamp",
    "download_url",
    "md5sum",
    "safe_extract_tar",
    "verify_files",
]

log = logging.getLogger(__name__)

STAMP_NAME = ".bioreg-verified.json"
_STAMP_VERSION = 1
_CHUNK = 1 << 20


def md5sum(path: str | os.PathLike[str], chunk_size: int = _CHUNK) -> str:
    """Hex MD5 digest of a file, read in chunks (constant memory)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


class VerificationStamp:
    """Cache of successful MD5 checks for the files of one directory.

    A full MD5 pass over CIFAR-10-C reads 3 GB; the stamp (``.bioreg-verified.json`` in
    the data directory) remembers, per file, the size and modification time (ns) it had
    when it last matched a given MD5. A file counts as verified only if its size, its
    mtime *and* the expected MD5 all equal the recorded ones, so editing, truncating,
    replacing or touching the file -- or expecting a different checksum -- forces a new
    MD5 pass. (A byte edit that restores the old mtime would go unnoticed; pass
    ``use_stamp=False`` to :func:`verify_files` for a full check.)

    The stamp is written atomically; if the directory is read-only it is simply not
    written (verification still succeeds, it is just repeated next time).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STAMP_NAME
        self._entries: dict[str, dict[str, Any]] = self._read()
        self._dirty = False

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            payload = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(payload, dict) or payload.get("version") != _STAMP_VERSION:
            return {}
        files = payload.get("files")
        return dict(files) if isinstance(files, dict) else {}

    @staticmethod
    def _key(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_size, st.st_mtime_ns

    def is_verified(self, path: Path, md5: str) -> bool:
        """Whether ``path`` matched ``md5`` before and has not changed since."""
        entry = self._entries.get(path.name)
        if not isinstance(entry, dict):
            return False
        size, mtime_ns = self._key(path)
        return entry.get("size") == size and entry.get("mtime_ns") == mtime_ns and entry.get("md5") == md5

    def record(self, path: Path, md5: str) -> None:
        """Remember that ``path`` (in its current state) matches ``md5``."""
        size, mtime_ns = self._key(path)
        self._entries[path.name] = {"size": size, "mtime_ns": mtime_ns, "md5": md5,
                                    "verified_at": time.time()}
        self._dirty = True

    def forget(self, name: str) -> None:
        """Drop the entry of file ``name`` (e.g. after it failed a check)."""
        if self._entries.pop(name, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the stamp atomically if it changed; read-only directories are tolerated."""
        if not self._dirty:
            return
        payload = {"version": _STAMP_VERSION, "files": self._entries}
        try:
            atomic_write_bytes(self.path, json.dumps(payload, indent=1, sort_keys=True).encode())
        except OSError as exc:  # read-only data directory: verification is just not cached
            log.debug("could not write verification stamp %s: %s", self.path, exc)
        self._dirty = False


@dataclass(frozen=True)
class FileSpec:
    """One expected file of a data set.

    Attributes:
        name: path relative to the data set directory.
        md5: expected hex MD5, or ``None`` to skip the content check.
        check: optional cheap structural check (size, header, ...) run before the MD5;
            returns ``None`` if the file is fine or a short reason why it is not.
    """

    name: str
    md5: str | None
    check: Callable[[Path], str | None] | None = None


def verify_files(
    directory: str | os.PathLike[str],
    specs: Sequence[FileSpec],
    *,
    dataset: str,
    fix: str,
    use_stamp: bool = True,
) -> None:
    """Check that every file of ``specs`` exists, passes its structural check and its MD5.

    All files are checked before failing, and the :class:`DataError` lists every bad
    file with the reason, followed by ``fix`` (the command or URL that repairs the data).
    MD5 results are cached in a :class:`VerificationStamp` unless ``use_stamp`` is false.
    """
    directory = Path(directory)
    stamp = VerificationStamp(directory) if use_stamp else None
    problems: list[str] = []
    for spec in specs:
        path = directory / spec.name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if spec.check is not None:
            reason = spec.check(path)
            if reason is not None:
                problems.append(f"{path}: {reason}")
                if stamp is not None:
                    stamp.forget(path.name)
                continue
        if spec.md5 is None or (stamp is not None and stamp.is_verified(path, spec.md5)):
            continue
        actual = md5sum(path)
        if actual != spec.md5:
            problems.append(
                f"{path}: checksum mismatch (MD5 {actual}, expected {spec.md5}); "
                "the file is damaged, truncated or not the official release"
            )
            if stamp is not None:
                stamp.forget(path.name)
            continue
        if stamp is not None:
            stamp.record(path, spec.md5)
    if stamp is not None:
        stamp.save()
    if problems:
        listing = "\n  - ".join(problems)
        raise DataError(f"{dataset} in {directory} failed verification:\n  - {listing}\nFix: {fix}")


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
    chunk_size: int = _CHUNK,
) -> Path:
    """Download ``url`` to ``dest`` resumably and atomically, then check its MD5.

    Bytes are appended to ``<dest>.part``; an interrupted download is resumed with an
    HTTP ``Range`` request on the next call (a server that ignores ranges makes it start
    over). Only once the MD5 matches is the ``.part`` file renamed to ``dest``, so
    ``dest`` never exists half-written. A ``dest`` that already matches is kept.

    Args:
        url: source URL.
        dest: final file path.
        md5: expected hex MD5 (``None`` skips the check; avoid for real data).
        progress: optional callback ``(bytes_done, total_bytes_or_None)``.
        timeout: socket timeout in seconds.
        chunk_size: read size in bytes.

    Raises:
        DataError: on network failure (the partial file is kept for resuming) or when the
            finished file fails the MD5 (the partial file is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        log.info("%s already present and verified", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _open_from(url, start, timeout)
        if response is not None:
            _append_response(response, part, start, chunk_size, progress)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(
            f"download of {url} failed: {exc}. The partial file {part} was kept; run the same "
            "command again to resume."
        ) from exc
    if md5 is not None:
        _check_download_md5(part, url, md5)
    os.replace(part, dest)
    log.info("downloaded %s (%s)", dest, _format_bytes(dest.stat().st_size))
    return dest


def _open_from(url: str, start: int, timeout: float) -> Any:
    """The response for ``url`` from byte ``start`` on (an HTTP ``Range`` request when ``start > 0``);
    ``None`` when the server answers 416 to a range: the range is past the end, the ``.part`` file is
    complete."""
    headers = {"User-Agent": "bioreg-data/1.0"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https URL from code)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:  # 416: range past the end -> the .part is complete
            raise
        return None


def _append_response(response: Any, part: Path, start: int, chunk_size: int,
                     progress: Callable[[int, int | None], None] | None) -> None:
    """Write the body of ``response`` to ``part``: appended when the server honoured the range from
    ``start``, from scratch when it ignored it; flushed to disk at the end."""
    with response:
        if start and response.status != 206:
            log.info("server ignored the Range request; restarting %s from scratch",
                     part.name[: -len(".part")])
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        done = start
        with open(part, "ab" if start else "wb") as fh:
            while block := response.read(chunk_size):
                fh.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
            fh.flush()
            os.fsync(fh.fileno())


def _check_download_md5(part: Path, url: str, md5: str) -> None:
    """Delete ``part`` and raise :class:`DataError` when its MD5 is not ``md5``."""
    actual = md5sum(part)
    if actual != md5:
        part.unlink(missing_ok=True)
        raise DataError(
            f"downloaded file from {url} has MD5 {actual}, expected {md5}; it was deleted. "
            "Run the command again; if this persists the server is serving a different file."
        )


def _safe_member_path(member: tarfile.TarInfo, archive: Path, prefix: str | None) -> str:
    """Normalised relative path of ``member``; raise on anything unsafe."""
    name = member.name
    norm = posixpath.normpath(name)
    parts = norm.split("/")
    if name.startswith(("/", "\\")) or ".." in parts or norm.startswith("..") or ":" in parts[0]:
        raise DataError(f"refusing to extract {archive}: member {name!r} escapes the target directory")
    if not (member.isfile() or member.isdir()):
        raise DataError(
            f"refusing to extract {archive}: member {name!r} is not a regular file or directory "
            "(links and device files are not allowed)"
        )
    if prefix is not None and parts[0] != prefix:
        raise DataError(f"refusing to extract {archive}: member {name!r} is outside the expected folder "
                        f"{prefix!r}/")
    return norm


def safe_extract_tar(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    prefix: str | None = None,
) -> list[Path]:
    """Extract a tar archive into ``dest`` safely and file-by-file atomically.

    Every member must be a regular file or a directory whose normalised path stays inside
    ``dest`` (and, if ``prefix`` is given, lies under ``<prefix>/``); anything else (absolute
    paths, ``..``, symlinks, hard links, devices) aborts the extraction with a
    :class:`DataError` before it is written. Files are extracted into a temporary
    directory next to their destination and then renamed into place, so a crash never
    leaves a half-written file under its final name. Python's ``filter="data"`` is used
    as well where available.

    Returns:
        The final paths of the extracted files.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{archive.name}.extract-"))
    extract_kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    moved: list[Path] = []
    try:
        staged: list[str] = []
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = _safe_member_path(member, archive, prefix)
                if member.isdir():
                    continue
                tar.extract(member, tmp, **extract_kwargs)
                staged.append(rel)
        for rel in staged:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, target)
            moved.append(target)
    except tarfile.TarError as exc:
        raise DataError(f"{archive} is not a readable tar archive ({exc}); delete it and download it "
                        "again") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return moved


def print_progress(label: str) -> Callable[[int, int | None], None]:
    """A progress callback for :func:`download_url` that prints at most once a second."""
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0 and (total is None or done < total):
            return
        last[0] = now
        if total:
            print(f"\r{label}: {_format_bytes(done)} / {_format_bytes(total)} ({100 * done / total:.1f}%)",
                  end="", flush=True)
        else:
            print(f"\r{label}: {_format_bytes(done)}", end="", flush=True)
        if total is not None and done >= total:
            print(flush=True)

    return report


def iter_missing(directory: Path, names: Iterable[str]) -> list[str]:
    """Names from ``names`` that are not regular files in ``directory``."""
    return [name for name in names if not (directory / name).is_file()]
