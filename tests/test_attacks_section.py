"""The ``extra.attacks`` record section is pinned: key order, structure and every value.

``tests/data/attacks_section.json`` holds the sections :class:`AdversarialEvaluator` produced for a
tiny model with fixed seeds *before* its ``__call__`` was rewritten as an attack-spec table + a loop
+ a section formatter (issue 13); the rewrite must reproduce them exactly (``time_s`` fields aside),
so tables built from old and new records agree. Regenerate the file only for an intended change of
the record format: ``uv run python tests/test_attacks_section.py`` (and say why in the commit).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bioreg.evaluate.attacks import AdversarialEvaluator
from bioreg.evaluate.core import EvalContext

GOLDEN = Path(__file__).parent / "data" / "attacks_section.json"
SHAPE = (3, 6, 6)
C = 5
FAST = {"square_queries": 60, "noise_draws": 4, "unbounded_steps": 6, "unbounded_n": 7, "steps": 4}

#: name -> evaluator kwargs; together they reach every branch of the section formatter
CASES: dict[str, dict[str, Any]] = {
    # every attack and the red flags; 3 uneven batches
    "all": dict(FAST, n=12, batch_size=5, seed=7),
    # PGD-CE not requested: the sweep's 8/255 point is run on its own, no random-search counts
    "no_pgd_ce": dict(FAST, n=10, batch_size=4, seed=1, attacks=["fgsm", "pgd_t", "square"],
                      eps_sweep=[4 / 255, 8 / 255]),
    # L2 only, no red flags, fixed start, own L2 steps, a non-default confidence
    "l2_plain": dict(FAST, n=9, batch_size=9, seed=3, attacks=["pgd_ce_l2", "pgd_t_l2", "pgd_ce"],
                     red_flags=False, random_start=False, steps_l2=3, confidence=0.9),
}


class Tiny(nn.Module):
    """A fixed two-layer net: attacks succeed on some images and not on others."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        d = math.prod(SHAPE)
        self.l1 = nn.Linear(d, 16)
        self.l2 = nn.Linear(16, C)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x.flatten(1))))


class _DM:
    num_classes = C

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.ds = torch.utils.data.TensorDataset(x, y)

    def test_set(self):
        return self.ds


def _ctx() -> EvalContext:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (14, *SHAPE), generator=g).float() / 255
    model = Tiny().eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::3] = torch.randint(0, C, y[::3].shape, generator=g)  # some clean errors
    return EvalContext(model=model, datamodule=_DM(x, y), device=torch.device("cpu"), progress=False)


def _strip(d: Any) -> Any:
    """The section without its wall-clock times, as JSON would store it."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k != "time_s"}
    if isinstance(d, (list, tuple)):
        return [_strip(v) for v in d]
    return d


def section(case: str) -> dict:
    return json.loads(json.dumps(_strip(AdversarialEvaluator(**CASES[case])(_ctx()))))


def _same(a: Any, b: Any, where: str = "section") -> None:
    """Equal with the same key order; floats to 1e-12 relative."""
    if isinstance(b, dict):
        assert isinstance(a, dict), where
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in b:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _same(u, v, f"{where}[{i}]")
    elif isinstance(b, float) and not isinstance(a, bool):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), f"{where}: {a} != {b}"
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("case", list(CASES))
def test_section_matches_the_pinned_one(case: str) -> None:
    golden = json.loads(GOLDEN.read_text())[case]
    got = section(case)
    _same(got, golden, case)


def test_pinned_sections_are_not_trivial() -> None:
    """The pinned numbers discriminate: attacks differ from each other and from the clean accuracy."""
    g = json.loads(GOLDEN.read_text())
    accs = {g["all"]["clean"]["acc"], *(e["acc"] for e in g["all"]["linf"].values()),
            *(e["acc"] for e in g["all"]["l2"].values())}
    assert len(accs) >= 3
    assert set(g["all"]) >= {"linf", "l2", "eps_sweep", "unbounded", "noise", "random_search", "red_flags",
                             "settings"}
    assert "red_flags" not in g["l2_plain"] and "pgd_ce" not in g["no_pgd_ce"]["linf"]


if __name__ == "__main__":  # regenerate the pinned sections (intended format changes only)
    torch.set_num_threads(1)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({c: section(c) for c in CASES}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
