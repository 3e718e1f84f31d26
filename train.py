#!/usr/bin/env python
"""Train one model, evaluate it on every test set and write its run record.

    python train.py +experiment=corr_gaussian_layer1          # one run
    python train.py -m +sweep=table_2_5                       # a whole thesis table, seeds 0-4
    python train.py --help | --cfg job                        # as in any Hydra app

Thin on purpose: the composed config goes to :func:`bioreg.app.run.run`, which returns the monitored
metric (best validation accuracy, %) so that Hydra sweepers can use it. A mistake in the command
line or the config ends with exit status 2 and one line ``error: …`` (:mod:`bioreg.app.cli`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bioreg.results.sweeps import register_resolvers

CONF = Path(__file__).resolve().parent / "conf"
register_resolvers()  # the sweeps' experiment lists come from the table specs (conf/sweep/)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float:
    from bioreg.app.cli import run_or_explain

    return run_or_explain(cfg)


def cli() -> None:
    """The command: early checks of the overrides, then Hydra and the run."""
    from bioreg.app.cli import precheck_overrides

    precheck_overrides(sys.argv[1:], CONF)
    main()


if __name__ == "__main__":
    cli()
