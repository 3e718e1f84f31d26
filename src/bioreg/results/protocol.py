"""The published protocol of each table, and whether a run followed it.

A table's numbers can only be compared with the printed ones when its runs were made the way the
source made them: the same data set, the same training length or stopping rule, the same
evaluation budget (the whole test set, every CIFAR-10-C corruption and severity, the attack images
and queries …). ``specs/protocols.yaml`` writes each protocol down as a list of :class:`Setting`;
each table spec names its protocol (``protocol: dutta2019_ch2_occlusion``). :func:`differences`
compares one run record with it: no difference = the run follows the published protocol and its
cells get a verdict; any difference makes it a *smoke run* (shown, greyed, labelled with what
differs, never given a verdict).

The *reading* of a run (issue 17) is a separate axis: a record may carry
``protocol: {reading: thesis | authors, selected_on: validation | test}`` (absent = the thesis's
reading, model selected on the validation split); runs of different readings are never put in one
cell (:func:`reading_of`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from bioreg.results.aggregate import dataset_of

__all__ = ["Setting", "Protocol", "Difference", "load_protocols", "get_protocol", "differences",
           "reading_of", "Reading", "DEFAULT_READING", "data_name", "record_value"]

#: display names of the data sets (``dataset_of``)
DATA_NAMES = {"cifar10": "CIFAR-10", "digits": "digits"}
_MISSING = object()


def data_name(key: str) -> str:
    return DATA_NAMES.get(key, key)


@dataclass(frozen=True)
class Setting:
    """One published setting: the record value at ``path`` (or the data set) must equal ``value``."""

    label: str
    path: str = ""  # dotted record path; empty for the data set
    value: Any = None
    data: str | None = None  # the data set (``dataset_of``) instead of a path
    text: str = ""  # the published value in words
    override: str | None = None  # the Hydra key that sets it
    source: str = ""

    @property
    def expected(self) -> str:
        if self.data is not None:
            return data_name(self.data)
        return self.text or _show(self.value)

    def actual(self, record: Mapping[str, Any]) -> Any:
        """The run's value (``_MISSING`` when the record does not have it)."""
        if self.data is not None:
            return dataset_of(record)
        return record_value(record, self.path)

    def matches(self, value: Any) -> bool:
        if value is _MISSING:
            return False
        if self.data is not None:
            return value == self.data
        return _equal(value, self.value)


@dataclass(frozen=True)
class Protocol:
    id: str
    title: str  # one line for headings: data set · epochs · evaluation
    source: str
    settings: tuple[Setting, ...]

    @property
    def data(self) -> str:
        return next((data_name(s.data) for s in self.settings if s.data is not None), "?")


@dataclass(frozen=True)
class Difference:
    """A setting in which a run departs from the published protocol."""

    label: str
    actual: str  # the run's value in words ("not recorded" when the record lacks it)
    expected: str
    override: str | None = None  # ``key=value`` that sets the run's value, where it can be said

    def __str__(self) -> str:
        return f"{self.label} {self.actual} (published {self.expected})"


def record_value(record: Mapping[str, Any], path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def _show(v: Any) -> str:
    if v is _MISSING:
        return "not recorded"
    if v is None:
        return "not set"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _override_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_override_value(x) for x in v) + "]"
    return _show(v)


def differences(protocol: Protocol, record: Mapping[str, Any]) -> list[Difference]:
    """The settings of ``protocol`` that ``record`` does not follow (empty: it follows them all)."""
    out = []
    for s in protocol.settings:
        v = s.actual(record)
        if s.matches(v):
            continue
        shown = data_name(str(v)) if s.data is not None else _show(v)
        if s.data is not None:
            ov = f"data={v}" if v not in ("?", _MISSING) else None
        else:
            ov = f"{s.override}={_override_value(v)}" if s.override and v is not _MISSING else None
        out.append(Difference(s.label, shown, s.expected, ov))
    return out


def _setting(d: Mapping[str, Any], where: str) -> Setting:
    keys = {"label", "path", "value", "data", "text", "override", "source"}
    if set(d) - keys or "label" not in d or ("path" in d) == ("data" in d):
        raise ValueError(f"{where}: setting {dict(d)!r} needs 'label' and one of 'path' or 'data'; "
                         f"valid keys: {sorted(keys)}")
    return Setting(label=str(d["label"]), path=str(d.get("path", "")), value=d.get("value"),
                   data=d.get("data"), text=str(d.get("text", "")), override=d.get("override"),
                   source=str(d.get("source", "")))


@cache
def _load(path: str) -> dict[str, Protocol]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    common = tuple(_setting(s, f"{path}: common") for s in raw.get("common") or [])
    out = {}
    for pid, p in (raw.get("protocols") or {}).items():
        own = tuple(_setting(s, f"{path}: {pid}") for s in p.get("settings") or [])
        out[str(pid)] = Protocol(id=str(pid), title=str(p.get("title", pid)), source=str(p.get("source", "")),
                                 settings=own + common)
    return out


def load_protocols(path: Path | None = None) -> dict[str, Protocol]:
    """Every protocol of ``specs/protocols.yaml`` (or ``path``), by id."""
    from importlib import resources

    return _load(str(path or Path(str(resources.files("bioreg.results") / "specs" / "protocols.yaml"))))


def get_protocol(protocol_id: str | None, path: Path | None = None) -> Protocol | None:
    """The protocol a spec names (``None`` when it names none); an unknown id names the valid ones."""
    if not protocol_id:
        return None
    known = load_protocols(path)
    if protocol_id not in known:
        raise ValueError(f"unknown protocol {protocol_id!r}; valid: {', '.join(sorted(known))}")
    return known[protocol_id]


# ----------------------------------------------------------------------------- readings (issue 17)


@dataclass(frozen=True, order=True)
class Reading:
    """How a run read its source: the thesis's text or the authors' code, and where it chose its model."""

    reading: str = "thesis"
    selected_on: str = "validation"

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_READING

    @property
    def label(self) -> str:
        who = {"thesis": "the thesis's protocol", "authors": "the authors' protocol"}.get(
            self.reading, f"reading {self.reading!r}")
        where = ("model selected on the validation split" if self.selected_on == "validation" else
                 f"model selected on the {self.selected_on} set"
                 + (" (optimistic)" if self.selected_on == "test" else ""))
        return f"{who}, {where}"


DEFAULT_READING = Reading()


def reading_of(record: Mapping[str, Any]) -> Reading:
    p = record.get("protocol")
    if not isinstance(p, Mapping):
        return DEFAULT_READING
    return Reading(str(p.get("reading") or "thesis"), str(p.get("selected_on") or "validation"))


def common_differences(diffs: Sequence[Sequence[Difference]]) -> list[str]:
    """The differences shared by a group of runs, as text, in first-seen order."""
    seen: dict[str, None] = {}
    for ds in diffs:
        for d in ds:
            seen.setdefault(str(d))
    return list(seen)
