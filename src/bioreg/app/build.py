"""Build the data module and the LitClassifier of a composed config (no training).

Shared by :mod:`bioreg.app.run` (training) and :mod:`bioreg.app.evaluate_checkpoint` (evaluating a saved
run), so that neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bioreg.app.ckpt_io import check_fits, safe_load
from bioreg.errors import ConfigError, instantiate

__all__ = ["build", "load_net_weights", "abs_path"]


def abs_path(p: str) -> str:
    """``p`` relative to the directory train.py was started in (Hydra's original cwd)."""
    try:
        from hydra.utils import to_absolute_path

        return to_absolute_path(str(p))
    except Exception:  # not under Hydra (tests, notebooks)
        import os

        return os.path.abspath(str(p))


def build(cfg: DictConfig):
    """Instantiate datamodule and LitClassifier from a composed config (no training).

    A fine-tuning start point ``cfg.ckpt`` is loaded (safely) and checked against the model here,
    before any trainer exists: a wrong file is a :class:`ConfigError`."""
    from bioreg.lit.module import LitClassifier

    dm = instantiate(cfg.data)
    net = instantiate(cfg.model)
    if cfg.get("ckpt"):
        load_net_weights(net, abs_path(cfg.ckpt))
    lit = LitClassifier(
        net=net, mean=dm.mean, std=dm.std,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        reg=OmegaConf.to_container(cfg.reg, resolve=True) if cfg.get("reg") is not None else None,
        input_shape=tuple(dm.input_shape),
    )
    return dm, lit


def load_net_weights(net: torch.nn.Module, path: str) -> None:
    """Load the network weights of a bioreg checkpoint (or a plain state_dict) into ``net``.

    Inserted regularizers of the checkpoint are dropped: the new run places its
    own (this is how a trained model gets a push-pull first layer, say). The file is loaded with
    ``weights_only=True``; one that is not a checkpoint, or whose keys or shapes do not fit ``net``,
    raises :class:`ConfigError`.
    """
    if not Path(path).is_file():
        raise ConfigError(
            f"ckpt={path!r}: no such file (give a .ckpt written by a bioreg run, e.g. its best.ckpt)")
    blob = safe_load(path, what=f"ckpt={path!r}")
    sd = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(
            f"ckpt={path!r} holds no state_dict of tensors (give a .ckpt written by a bioreg run, "
            "e.g. its best.ckpt, or a plain state_dict)")
    prefix = "model.net." if any(str(k).startswith("model.net.") for k in sd) else ""
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    own = {k: v for k, v in own.items() if not k.startswith("regularizers.")}
    check_fits(net, own, f"ckpt={path!r}")
    net.load_state_dict(own, strict=True)
