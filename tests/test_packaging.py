"""A non-editable install finds its data: the wheel ships the table specs and the published tables.

``uv build`` the wheel (offline), install it into a fresh virtual environment that reuses this
environment's already-installed dependencies (a ``.pth`` line pointing at our site-packages; no
network, no editable ``src/`` on the path) and render one table from outside the repository.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from bioreg.results.tables import PAPER_DIR_ENV, default_paper_dir, load_paper, load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_paper_dir_setting_overrides_the_default(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(PAPER_DIR_ENV, str(tmp_path))
    assert default_paper_dir() == tmp_path
    monkeypatch.delenv(PAPER_DIR_ENV)
    assert (default_paper_dir() / "pushpull2020_table4_sensitivity.csv").is_file()
    with pytest.raises(ValueError,
                       match=rf"pushpull2020_table4_sensitivity.csv not found in .*{PAPER_DIR_ENV}"):
        load_paper(load_spec("pp4"), paper_dir=tmp_path)


@pytest.mark.slow
def test_wheel_install_renders_a_table_outside_the_repository(tmp_path: Path) -> None:
    """Measured: about 10 s (build 4 s, venv 3 s, install + render 3 s)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not on PATH")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", PAPER_DIR_ENV)}
    dist = tmp_path / "dist"
    build = subprocess.run([uv, "build", "--wheel", "--offline", "-o", str(dist)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "offline" in (build.stderr + build.stdout).lower():
        pytest.skip(f"uv cannot build offline here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("bioreg-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies of this environment, as a plain path entry: its .pth files (our editable
    # src/ among them) are not processed, so `import bioreg` can only find the installed wheel
    Path(purelib, "zz_reuse_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([uv, "pip", "install", "--offline", "--no-deps", "--python", str(py), str(wheel)], env=env,
                   check=True, capture_output=True, timeout=300)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = textwrap.dedent("""
        import bioreg, sys
        from bioreg.results.aggregate import load_records
        from bioreg.results.tables import (PAPER_DIR, SPEC_DIR, build_table, load_paper, load_spec,
                                           render_markdown)
        spec = load_spec("pp4")
        res = build_table(spec, load_records("runs"))
        print("FILE", bioreg.__file__)
        print("PAPER", PAPER_DIR)
        print("SPECS", SPEC_DIR)
        print(render_markdown(res, load_paper(spec)))
    """)
    (outside / "runs").mkdir()
    out = subprocess.run([str(py), "-c", script], cwd=outside, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(ln.split(" ", 1) for ln in out.stdout.splitlines() if ln.split(" ", 1)[0] in
                 ("FILE", "PAPER", "SPECS"))
    for key in ("FILE", "PAPER", "SPECS"):
        assert Path(lines[key]).resolve().is_relative_to(venv.resolve()), (key, lines[key])
    assert "| resnet14 (published) | 4.09 | 5.18 | 10.47 | 18.76 | 59.53 | 77.46 |" in out.stdout
    assert str(ROOT) not in out.stdout
    with zipfile.ZipFile(wheel) as zf:
        assert "bioreg/py.typed" in zf.namelist()  # PEP 561: type checkers read the package's hints
    version = subprocess.run([str(py), "-c", "import bioreg; print(bioreg.__version__)"], cwd=outside,
                             env=env,
                             capture_output=True, text=True, timeout=300).stdout.strip()
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert version == importlib.metadata.version("bioreg") == declared


def test_version_comes_from_the_package_metadata(monkeypatch) -> None:
    import bioreg

    assert bioreg.__version__ == importlib.metadata.version("bioreg")
    assert (Path(bioreg.__file__).parent / "py.typed").is_file()

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    try:
        assert importlib.reload(bioreg).__version__ == "0+unknown"  # a source tree that is not installed
    finally:
        monkeypatch.undo()
        importlib.reload(bioreg)
    assert bioreg.__version__ == importlib.metadata.version("bioreg")


def test_optional_parts_are_not_imported_by_training() -> None:
    """W&B, CVXPY and scikit-learn are extras: building and running the CIFAR training path imports none
    of them (a fresh interpreter, so that nothing imported by other tests counts)."""
    code = textwrap.dedent("""
        import sys
        import bioreg.app.run, bioreg.app.cli, bioreg.layers.noise, bioreg.layers.correlation
        import bioreg.data.cifar10
        from bioreg.layers.noise import CorrelatedGaussian
        CorrelatedGaussian()
        heavy = sorted(m for m in ("wandb", "cvxpy", "sklearn") if m in sys.modules)  # scipy: Lightning's own
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout


def _hide(monkeypatch, module: str) -> None:
    """``importlib.util.find_spec`` finds no ``module`` (as if it were not installed)."""
    import importlib.util

    real = importlib.util.find_spec
    def find_spec(name, *args):
        return None if name == module else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("module,extra,make", [
    ("cvxpy", "cvxpy", lambda: __import__("bioreg.layers.noise", fromlist=["x"]).CorrelatedGaussian(
        ncm_method="cvxpy")),
    ("sklearn", "digits", lambda: __import__("bioreg.data.digits", fromlist=["x"]).DigitsDataModule()),
    ("torchattacks", "attacks",
     lambda: __import__("bioreg.evaluate.attacks", fromlist=["x"]).AdversarialEvaluator()),
])
def test_a_missing_extra_is_one_error_naming_it(monkeypatch, module: str, extra: str, make) -> None:
    from bioreg.errors import MissingExtraError, UserError

    _hide(monkeypatch, module)
    want = rf"not installed: install bioreg's '{extra}' extra \(pip install 'bioreg\[{extra}\]'"
    with pytest.raises(MissingExtraError, match=want) as e:
        make()
    assert isinstance(e.value, UserError)  # train.py: exit status 2, one line


def test_logger_wandb_without_wandb_is_a_start_up_error(monkeypatch, tmp_path) -> None:
    from omegaconf import OmegaConf

    from bioreg.app.run import _loggers
    from bioreg.errors import MissingExtraError

    _hide(monkeypatch, "wandb")
    cfg = OmegaConf.create({"name": "x", "seed": 0, "logger": {"csv": False, "wandb": {"mode": "offline"}}})
    with pytest.raises(MissingExtraError, match=r"logger=wandb needs the package 'wandb'.*bioreg\[wandb\]"):
        _loggers(cfg, type("P", (), {"run_dir": tmp_path})())
