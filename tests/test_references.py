"""The project cites its sources by reference (docs/references.md), never by a path outside itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["src", "conf", "docs", "scripts", "mk", "README.md", "Makefile", "pyproject.toml", "results/paper"]


def _files():
    for name in SCANNED:
        p = ROOT / name
        yield from ([p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and "__pycache__"
                                                   not in q.parts
                                                   and q.suffix not in (".png", ".pdf", ".npy")))


def test_no_file_points_outside_the_repository() -> None:
    bad = []
    for f in _files():
        text = f.read_text(errors="replace")
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(r"shared/seeds|\.\./shared|[0-9]{3}_[0-9a-f]{16}\.txt", line):
                bad.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not bad, "cite the source (docs/references.md) instead of a path:\n" + "\n".join(bad)


@pytest.mark.parametrize("needle", [
    "Correlated Noise in Deep Convolutional Neural Networks", "University of Waterloo",
    "Synaptic Failure is a Flat Minima Optimizer", "Harvard University",
    "push–pull inhibition layer", "Neural Computing", "10.1007/s00521-020-04751-8",
    "mixup: Beyond empirical risk minimization", "Manifold mixup", "Benchmarking neural network robustness",
    "Efficient object localization", "DropBlock", "nearest correlation matrix",
    "Towards deep learning models",
    "Explaining and harnessing adversarial examples", "Square attack", "Fisher-Rao metric",
    "Striving for simplicity", "Very deep convolutional networks", "Deep residual learning",
])
def test_references_hold_the_full_entries(needle: str) -> None:
    assert needle in (ROOT / "docs" / "references.md").read_text()
