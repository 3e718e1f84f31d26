"""Run records for the report tests: records that follow a table's published protocol, smoke runs
that do not, failed and foreign files (bioreg.results.report, tests/test_report*.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bioreg.results.protocol import get_protocol

DATA_TARGETS = {"cifar10": "bioreg.data.cifar10.CIFAR10DataModule", "digits": "bioreg.data.digits.DigitsDataModule"}


def set_path(d: dict, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value


def record(name: str, seed: int, follows: str, metrics: Mapping[str, float] | None = None, *, key: str = "k1",
           smoke: Mapping[str, Any] | None = None, **fields: Any) -> dict:
    """A completed record of ``name``/``seed`` whose settings follow ``follows`` (an id of
    specs/protocols.yaml), with ``metrics`` (record paths → values). ``smoke`` changes settings:
    ``{"data": "digits", "config.trainer.max_epochs": 1, ...}`` makes it a smoke run."""
    rec: dict[str, Any] = {"name": name, "seed": seed, "config_key": key, "status": "completed",
                           "config": {"data": {"_target_": DATA_TARGETS["cifar10"]}, "trainer": {}},
                           "git": {"commit": "0123456789abcdef", "dirty": False},
                           "versions": {"python": "3.11.7", "torch": "2.14.1"}, "device": "NVIDIA H100",
                           "wall_time_s": 3600.0}
    for s in get_protocol(follows).settings:
        if s.data is not None:
            rec["config"]["data"]["_target_"] = DATA_TARGETS[s.data]
        else:
            set_path(rec, s.path, s.value)
    for path, v in dict(smoke or {}).items():
        if path == "data":
            rec["config"]["data"]["_target_"] = DATA_TARGETS[v]
        else:
            set_path(rec, path, v)
    for path, v in dict(metrics or {}).items():
        set_path(rec, path, v)
    rec.update(fields)
    return rec


DIGITS_SMOKE = {"data": "digits", "config.trainer.max_epochs": 1, "metrics.test.n": 359}
