"""bioreg.io: the one atomic writer (records, tables, figures, checkpoints, data stamps)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import bioreg.io as io_mod
from bioreg.io import atomic_write_bytes, atomic_write_json, atomic_write_text, current_umask, save_figure


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_writes_whole_files_and_creates_the_folder(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write_text(p, "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "r.json", {"a": Path("/x"), "b": [1, 2]})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": "/x",\n  "b": [\n    1,\n    2\n  ]\n}\n'
    assert sorted(q.name for q in (tmp_path / "a" / "b").iterdir()) == ["x.bin"]  # no temporary file left


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask_as_open_would(tmp_path, umask, mode):
    """A new file gets 0o666 less the umask (what ``open(path, "w")`` gives), not mkstemp's 0600 and not
    a fixed 0o644; the umask is read when the file is written, not when bioreg was imported."""
    code = (f"import os; from pathlib import Path; from bioreg.io import atomic_write_bytes, current_umask\n"
            f"os.umask({umask:#o}); assert current_umask() == {umask:#o}\n"
            f"atomic_write_bytes(Path({str(tmp_path)!r}) / 'x', b'1')\n"
            f"open(Path({str(tmp_path)!r}) / 'ref', 'w').close()\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _mode(tmp_path / "x") == mode == _mode(tmp_path / "ref")


def test_current_umask_does_not_change_it():
    before = os.umask(0o022)
    try:
        assert current_umask() == 0o022 and current_umask() == 0o022
    finally:
        os.umask(before)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    p = atomic_write_text(tmp_path / "rec.json", "old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(p, "new")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["rec.json"]


def test_save_figure_writes_each_format_atomically(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = save_figure(fig, tmp_path / "figs", "line", ("png", "pdf"), dpi=50, close=True)
    assert not plt.fignum_exists(fig.number)  # closed
    assert [p.name for p in paths] == ["line.png", "line.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert _mode(paths[0]) == 0o666 & ~current_umask()
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["line.pdf", "line.png"]
