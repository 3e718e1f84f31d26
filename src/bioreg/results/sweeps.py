"""Each thesis table's sweep, generated from its table spec: one experiment list per table.

A sweep file ``conf/sweep/table_<id>.yaml`` does not list experiments; it asks the table spec
(``src/bioreg/results/specs/table_<id>.yaml``, the list the table is built from) through two OmegaConf
resolvers::

    hydra:
      sweeper:
        params:
          +experiment: ${bioreg.table_experiments:table_2_5,${sweep_ablations}}
          seed: ${bioreg.table_seeds:table_2_5}

Hydra instantiates its sweeper from ``hydra.sweeper`` when a multirun starts, which resolves both:
the spec's experiments (rows, columns and ``cells:`` entries, in order) and seeds. With
``sweep_ablations=false`` (top-level key, default true) the experiments that only ablation rows or
columns of the spec name (``compare_to`` or ``ablation: true``) are left out: a table without its
ablations. Command-line sweeps still override the file's (``seed=0,1``, ``+experiment=a,b``; the Make
variables ``SEEDS``/``EXPERIMENTS``).

:func:`register_resolvers` must run before Hydra composes (``train.py`` calls it at import);
:func:`sweep_params` resolves a sweep file without Hydra (``scripts/plan.py``, tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

__all__ = ["RESOLVERS", "register_resolvers", "table_experiments", "table_seeds", "sweep_params"]


def _spec(stem: str):
    """The table spec of sweep ``table_<id>`` (``table_2_5`` → table ``2.5``, ``table_n3_1`` → ``n3.1``)."""
    from bioreg.results.tables import load_spec  # pandas & co: only when a sweep starts

    stem = str(stem)
    if not stem.startswith("table_"):
        raise ValueError(f"{stem!r} is not a table sweep (table_<id>, e.g. table_2_5)")
    return load_spec(stem[len("table_"):].replace("_", "."))


def table_experiments(stem: str, ablations: Any = True) -> str:
    """The experiments of table ``stem`` as a sweep value ``"a,b,c"`` (without ablation runs if
    ``ablations`` is false)."""
    if isinstance(ablations, str):
        ablations = ablations.strip().lower() not in ("false", "0", "no")
    return ",".join(_spec(stem).sweep_experiments(bool(ablations)))


def table_seeds(stem: str) -> str:
    """The seeds of table ``stem`` as a sweep value ``"0,1,2,3,4"``."""
    return ",".join(str(s) for s in _spec(stem).seeds)


RESOLVERS = {"bioreg.table_experiments": table_experiments, "bioreg.table_seeds": table_seeds}


def register_resolvers() -> None:
    """Register the sweep resolvers with OmegaConf (once per process)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def sweep_params(path: str | Path, ablations: bool = True) -> dict[str, str]:
    """``hydra.sweeper.params`` of a sweep file, resolved (``{"+experiment": "a,b", "seed": "0,1", …}``),
    with ``sweep_ablations`` set to ``ablations``."""
    register_resolvers()
    node = OmegaConf.merge({"sweep_ablations": ablations}, OmegaConf.load(Path(path)))
    params = OmegaConf.to_container(node.hydra.sweeper.params, resolve=True)
    return {str(k): str(v) for k, v in params.items()}
