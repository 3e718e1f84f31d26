"""Test helpers: composing the real Hydra config tree without running train.py."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def compose(overrides: list[str] | tuple[str, ...] = ()):
    """The config ``train.py`` would see with these overrides (hydra.* resolved, not run)."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return _compose(config_name="config", overrides=list(overrides), return_hydra_config=False)


def experiments() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.endswith("_base"))
