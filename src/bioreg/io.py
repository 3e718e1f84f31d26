"""Atomic file writes, the one way bioreg writes a file: a run that dies never leaves a half-written
record, table, figure, checkpoint or data stamp.

Every writer goes through :func:`atomic_write_bytes`: the bytes go to a temporary file in the target's
own folder (so the final rename never crosses file systems), are ``fsync``\\ ed, get the permissions
of a newly created file (``0o666`` less the process umask, as ``open()`` would give them: ``0o644``
under the usual umask ``022``, ``0o640`` under ``027``), and are ``os.replace``\\ d over the target,
which readers therefore see either whole and old or whole and new. :func:`save_figure` writes a
Matplotlib figure the same way. This module is the lowest layer of the package: it imports nothing
from it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "save_figure", "current_umask"]

_UMASK_AT_IMPORT = os.umask(0)
os.umask(_UMASK_AT_IMPORT)


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux; elsewhere the
    value at import: setting and restoring it would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename;
    the folder is created if needed. On any failure the temporary file is removed and ``path`` is
    left as it was. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n")


def _default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_figure(fig: Any, out_dir: str | os.PathLike, stem: str, formats: Sequence[str] = ("png",),
                dpi: int = 110, close: bool = False) -> list[Path]:
    """Write the Matplotlib figure ``fig`` as ``<out_dir>/<stem>.<fmt>`` for each format, atomically
    (``bbox_inches="tight"``); returns the files written. ``close``: close the figure afterwards
    (``pyplot.close``), also when a write fails; otherwise it stays open."""
    try:
        paths = []
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
            paths.append(atomic_write_bytes(Path(out_dir) / f"{stem}.{fmt}", buf.getvalue()))
        return paths
    finally:
        if close:
            import matplotlib.pyplot as plt  # only here: this module stays free of matplotlib

            plt.close(fig)
