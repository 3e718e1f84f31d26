"""The wheels an offline GPU node lacks, for its Python and platform (``make wheelhouse``).

Runs where the package registry is reachable (and ``uv`` is installed, as for ``make install``):

1. resolves bioreg's runtime dependencies (``[project].dependencies``, no extras) plus ``pytest``
   (the ``gpu``-marked tests) together with what the node already has (``--have``, default a
   PyTorch-only node: ``torch==2.11.0 torchvision==0.26.0 lightning==2.6.6``, the versions of this
   project's GPU machines) for ``--python-version`` and ``--platform``: ``uv pip compile``, resolution
   only, nothing the size of torch is downloaded;
2. resolves the ``--have`` set alone: what the node's own packages bring (numpy, jinja2, ...);
3. downloads the difference, one wheel per package (``pip download --no-deps --only-binary=:all:``);
   a package published only as a source archive (``antlr4-python3-runtime``, Hydra's parser) is
   built into a wheel here, and must be pure Python (``py3-none-any``);
4. reports the folder's size (target: <= 40 MB) and writes ``.whl/MANIFEST.txt``.

``scripts/gpu_check.sh`` installs them there with ``pip install --no-index --no-deps --target``.

    python3 scripts/wheelhouse.py [--python-version 3.12] [--platform manylinux_2_28_x86_64]
        [--have "torch==2.11.0 torchvision==0.26.0 lightning==2.6.6"] [--dest .whl]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HAVE = "torch==2.11.0 torchvision==0.26.0 lightning==2.6.6"
EXTRA = ["pytest>=8"]  # the gpu-marked tests run on the node
TARGET_MB = 40.0


def uv() -> str:
    found = shutil.which("uv")
    if not found:
        raise SystemExit("error: make wheelhouse needs uv for the resolution (pip install uv)")
    return found


def resolve(requirements: list[str], python: str, platform: str) -> dict[str, str]:
    """name -> version of the whole closure of ``requirements`` on that Python and platform."""
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text("\n".join(requirements) + "\n")
        out = subprocess.run(
            [
                uv(),
                "pip",
                "compile",
                str(req),
                "--python-version",
                python,
                "--python-platform",
                uv_platform(platform),
                "--no-header",
                "--no-annotate",
                "--quiet",
            ],
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        raise SystemExit(f"error: resolution failed:\n{out.stderr}")
    pins = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def uv_platform(platform: str) -> str:
    """``manylinux_2_28_x86_64`` -> uv's ``x86_64-manylinux_2_28``."""
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(x86_64|aarch64)", platform)
    if not m:
        raise SystemExit(
            f"error: --platform {platform!r}: give a manylinux_2_N_<arch> tag (x86_64 or aarch64)"
        )
    return f"{m.group(3)}-manylinux_{m.group(1)}_{m.group(2)}"


def pip_platforms(platform: str) -> list[str]:
    """Every manylinux tag a ``manylinux_2_N`` system accepts (pip matches tags exactly)."""
    n, arch = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform).groups()
    tags = [f"manylinux_2_{k}_{arch}" for k in range(int(n), 4, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


def runtime_requirements() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib

    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def download(name: str, version: str, args, dest: Path) -> Path:
    """One wheel into ``dest`` (built here from the source archive when none is published)."""
    plat = [x for t in pip_platforms(args.platform) for x in ("--platform", t)]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        "--python-version",
        args.python_version,
        "--implementation",
        "cp",
        *plat,
        f"{name}=={version}",
    ]
    before = set(dest.glob("*.whl"))
    if subprocess.run(cmd).returncode != 0:  # no wheel: build one (pure Python only)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(dest),
                f"{name}=={version}",
            ],
            check=True,
        )
    new = sorted(set(dest.glob("*.whl")) - before)
    if len(new) != 1:
        raise SystemExit(f"error: {name}=={version}: expected one wheel, got {[p.name for p in new]}")
    if (
        "-none-any" not in new[0].name
        and f"cp{args.python_version.replace('.', '')}" not in new[0].name
        and "abi3" not in new[0].name
    ):
        raise SystemExit(f"error: {new[0].name} does not fit CPython {args.python_version}")
    return new[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python-version", default="3.12")
    ap.add_argument("--platform", default="manylinux_2_28_x86_64")
    ap.add_argument(
        "--have", default=DEFAULT_HAVE, help="requirements the node has (space or comma separated)"
    )
    ap.add_argument("--dest", default=str(REPO / ".whl"))
    args = ap.parse_args(argv)
    have = [h for h in re.split(r"[\s,]+", args.have) if h]
    full = resolve(runtime_requirements() + EXTRA + have, args.python_version, args.platform)
    present = resolve(have, args.python_version, args.platform)
    missing = {n: v for n, v in sorted(full.items()) if n not in present}
    dest = Path(args.dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    wheels = [download(n, v, args, dest) for n, v in missing.items()]
    size = sum(w.stat().st_size for w in wheels) / 2**20
    (dest / "MANIFEST.txt").write_text(
        f"# wheels for CPython {args.python_version} on {args.platform}, "
        f"for a node that has: {' '.join(have)}\n"
        + "".join(f"{w.name}\t{w.stat().st_size}\n" for w in wheels)
    )
    for w in sorted(wheels, key=lambda w: -w.stat().st_size):
        print(f"{w.stat().st_size / 2**20:7.2f} MB  {w.name}")
    print(
        f"RESULT wheelhouse wheels={len(wheels)} size_mb={size:.1f} target_mb={TARGET_MB:g} "
        f"python={args.python_version} platform={args.platform} dest={dest}"
    )
    return 0 if size <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
