"""``make gpu-check DEVICE=cpu``: the one GPU command's dry run at a tiny size, so it cannot rot.

Every part runs its real code path (benchmarks, packing workers, the correlation analysis, the plan)
on a few images, ``aot_eager`` in place of Inductor; the test checks the outputs a GPU window relies
on: at most 8 files, one RESULT line per part, every part ``ok``, the plan's RESULT line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = [
    "gpu_tests",
    "throughput",
    "compile",
    "cudagraphs",
    "c10c",
    "noise",
    "dropout",
    "correlation",
    "packing",
    "plan",
]


@pytest.mark.slow  # trains a few batches of each benchmark configuration: several minutes on 2 CPU cores
@pytest.mark.timeout(2400)
def test_gpu_check_dry_run_on_the_cpu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    out = subprocess.run(
        ["make", "--no-print-directory", "gpu-check", "DEVICE=cpu", f"GPU_CHECK_ARGS=--out {tmp_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=2300,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gpu_check.json", "gpu_check.log", "gpu_check.md", "plan.json"] and len(files) <= 8
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT part=")]
    assert [x.split()[1] for x in lines] == [f"part={p}" for p in PARTS]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {p: doc["parts"][p]["status"] for p in PARTS} == dict.fromkeys(PARTS, "ok")
    res = doc["parts"]
    assert res["gpu_tests"]["result"].get("skipped", 0) >= 1  # the gpu tests skip on the CPU
    assert all(c["pipeline_ratio"] > 0 for c in res["throughput"]["result"]["configs"])
    assert res["cudagraphs"]["result"]["configs"][0]["compile"] == "aot_eager"  # the compiled path ran
    assert res["c10c"]["result"]["images"] == 19 * 5 * 2
    assert (
        "cg_step_ratio_allconvnet" in res["noise"]["result"]
        and "worst_step_ratio" in res["dropout"]["result"]
    )
    assert len(res["correlation"]["result"]["layers"]) == 2  # tiny: layers 8 and 9 (full size: all five)
    (pack,) = res["packing"]["result"].values()
    assert [lv["n"] for lv in pack["levels"]] == [1, 2] and pack["levels"][0]["packing_speedup"] == 1.0
    plan_line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT part=plan"))
    assert "total_gpu_hours=" in plan_line and "basis=estimate" in plan_line  # measured only on a GPU
    plan = json.loads((tmp_path / "plan.json").read_text())  # tiny: Tables 2.5 and pp4, 5 seeds each
    assert plan["unique_runs"] == 25 + 50 and plan["unique_ablation_runs"] == 10 + 5  # readings apart
    assert "| packing | ok |" in (tmp_path / "gpu_check.md").read_text()
