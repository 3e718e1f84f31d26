"""bioreg: brain-inspired stochastic regularizers for CNNs, reproduced with Hydra + PyTorch Lightning.

Layers, from the bottom: ``errors``, ``io`` → ``layers``, ``models``, ``data`` → ``lit`` →
``evaluate`` → ``config`` → ``results`` → ``app`` (docs/interfaces.md, "Layout").
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__: str = _version("bioreg")
except PackageNotFoundError:  # a source tree on sys.path that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
