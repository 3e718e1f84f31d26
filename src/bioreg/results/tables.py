"""Thesis tables from run records: declarative specs, cell aggregation, Markdown/LaTeX/CSV output.

A table is one YAML spec in ``src/bioreg/results/specs/table_<id>.yaml`` (``2.3`` →
``table_2_3.yaml``, ``n3.1`` → ``table_n3_1.yaml``, ``pp3`` → ``table_pp3.yaml``)::

    id: "2.5"
    title: AllConvNet, no Dropout, test set and CIFAR-10-C
    source: Dutta (2019), Table 2.5
    paper: dutta2019_table_2_5.csv      # under results/paper/ (optional)
    paper_format: tidy                  # tidy (table,row,column,mean,std) | wide
    paper_index: null                   # wide only: the column(s) holding the row labels; a list
                                        # (e.g. [model, h, alpha]) names a row by its values joined with ","
    seeds: [0, 1, 2, 3, 4]
    protocol: dutta2019_ch2_corruption  # its published protocol (specs/protocols.yaml): who gets a verdict
    number_format: ".1f"
    rows:                               # printed order, top to bottom
      - {label: Test Set, metric: summary.test_acc}
      ...
    columns:                            # printed order, left to right
      - {label: Baseline, experiment: allconvnet_baseline}
      ...

An axis may carry ``paper: <label>`` when the paper CSV names it differently (e.g. the column
``err_var_0.0001`` of the push-pull Table 4 CSV is printed here as ``sigma^2=1e-4``).
Every cell takes its experiment from its row or its column, and its metric from
the other one (Singh's tables have experiments as rows, Dutta's as columns).
An *ablation* row or column (``compare_to: <printed label>``, e.g. ``{label: UG (std = a),
experiment: uncorr_gaussian_std_layer1, compare_to: UG}``) is not printed in the paper: it is
placed after the printed ones and compared with the printed cells of ``compare_to`` (another
reading of the same model), and claims leave it out unless they name it. An axis with ``ablation:
true`` (and every ``compare_to`` axis) is an *ablation run*: the table's sweep (conf/sweep/,
:mod:`bioreg.results.sweeps`) trains it unless ``sweep_ablations=false``. An axis with ``reading:
authors`` takes its experiment's runs under the authors' protocol (records whose ``protocol`` field
says ``authors``, selected on the test set; e.g. ``{label: "Baseline (authors' protocol)", experiment:
vgg16_baseline_authors, reading: authors, compare_to: Baseline}``); every other axis takes the runs of
the table's reading (``build_table(..., reading=)``, ``make table-<id> PROTOCOL=authors``; default
``thesis``). Runs of another reading are never mixed into a cell; the notes list them. (The spec-level
``protocol:`` key is another thing: the *published* protocol a run must follow to get a verdict,
:mod:`bioreg.results.protocol`.)
A cell that follows neither axis is listed under ``cells:`` (``{row, column, experiment?,
metric?}``; what it gives replaces the axes' value), e.g. Table 3.2's Linear Exponential column.
Metrics are record paths or small expressions, see :class:`bioreg.results.aggregate.Metric`.
Row and column labels are the printed ones, so a table joins the thesis CSV cell by cell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bioreg.io import atomic_write_text
from bioreg.results.aggregate import (
    STD_DDOF,
    CellStats,
    Metric,
    Records,
    Selection,
    add_record_options,
    cell_stats,
    parse_metric,
    records_from_args,
    select_runs,
)
from bioreg.results.records import PROTOCOLS

__all__ = [
    "SPEC_DIR", "PAPER_DIR", "PAPER_DIR_ENV", "default_paper_dir", "Axis", "TableSpec", "TableResult",
    "spec_path", "load_spec", "all_specs",
    "table_ids", "build_table", "render_markdown", "render_latex", "render_csv", "write_table",
    "format_cell", "load_paper", "PROTOCOL_BANNER",
]

#: environment variable naming a folder of published-table CSVs that replaces the default one
PAPER_DIR_ENV = "BIOREG_PAPER_DIR"


def _package_dir(name: str) -> Path:
    """A data folder of this package (``importlib.resources``; the package is installed unzipped)."""
    return Path(str(resources.files("bioreg.results") / name))


def default_paper_dir() -> Path:
    """Where the published tables (``results/paper/*.csv``) are read from.

    1. ``$BIOREG_PAPER_DIR`` when set (an explicit setting, e.g. your own transcriptions);
    2. the copy shipped inside the installed package (``bioreg/results/paper``, put there by the
       wheel build: ``[tool.hatch.build.targets.wheel.force-include]`` in ``pyproject.toml``);
    3. ``results/paper`` of the source checkout this module lives in (editable install, tests).
    """
    env = os.environ.get(PAPER_DIR_ENV)
    if env:
        return Path(env)
    shipped = _package_dir("paper")
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[3] / "results" / "paper"


SPEC_DIR = _package_dir("specs")
PAPER_DIR = default_paper_dir()
DASH = "–"


@dataclass(frozen=True)
class Axis:
    """One printed row or column: its label and the experiment and/or metric it fixes."""

    label: str
    experiment: str | None = None
    metric: Metric | None = None
    # ablation: the printed row/column whose published cells it is compared with
    compare_to: str | None = None
    paper: str | None = None  # its label in the paper CSV when that differs from ``label``
    ablation: bool = False  # an ablation run (also every compare_to axis): left out by sweep_ablations=false
    reading: str | None = None  # the runs' protocol reading (thesis | authors); None = the table's

    @property
    def is_ablation(self) -> bool:
        return self.ablation or self.compare_to is not None


@dataclass(frozen=True)
class TableSpec:
    id: str
    title: str
    rows: tuple[Axis, ...]
    columns: tuple[Axis, ...]
    source: str = ""
    paper: str | None = None
    paper_format: str = "tidy"
    paper_index: str | tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    number_format: str = ".1f"
    description: str = ""
    #: how the table is drawn (``bioreg.results.figures``): ``{kind:
    # auto|bars|panels|curves|grouped_stats|none,
    #: ...}``; empty = chosen from the table's shape
    figure: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: explicit cells ``(row label, column label, experiment or None, metric or None)`` that replace
    #: what their axes would give (e.g. Table 3.2's Linear Exponential column reads another section)
    overrides: tuple[tuple[str, str, str | None, Metric | None], ...] = ()
    #: the published protocol its runs must follow to be compared (an id of ``specs/protocols.yaml``,
    #: :mod:`bioreg.results.protocol`); ``None``: every run is compared
    protocol: str | None = None

    def __post_init__(self) -> None:
        if self.paper_format not in ("tidy", "wide"):
            raise ValueError(f"table {self.id}: paper_format={self.paper_format!r}; valid: 'tidy', 'wide'")
        if self.paper_format == "wide" and self.paper and not self.paper_index:
            raise ValueError(f"table {self.id}: a wide paper table needs paper_index (its row-label column)")
        if not self.rows or not self.columns:
            raise ValueError(f"table {self.id}: needs at least one row and one column")
        for kind, axis in (("row", self.rows), ("column", self.columns)):
            labels = [a.label for a in axis]
            dup = sorted({x for x in labels if labels.count(x) > 1})
            if dup:
                raise ValueError(f"table {self.id}: duplicate {kind} labels {dup}")
            printed = [a.label for a in axis if not a.compare_to]
            if labels[:len(printed)] != printed:
                raise ValueError(
                    f"table {self.id}: ablation {kind}s (compare_to) must come after the printed ones; "
                    f"order: {labels}")
            for a in axis:
                if a.compare_to is not None and a.compare_to not in printed:
                    raise ValueError(
                        f"table {self.id}: {kind} {a.label!r} has compare_to={a.compare_to!r}, which is "
                        f"not a printed {kind} label; valid: {printed}")
        try:
            format(1.0, self.number_format)
        except ValueError as e:
            raise ValueError(f"table {self.id}: number_format={self.number_format!r} is not a float format "
                             "spec (e.g. '.1f', '.3g')") from e
        if self.protocol is not None:
            from bioreg.results.protocol import get_protocol

            try:
                get_protocol(self.protocol)
            except ValueError as e:
                raise ValueError(f"table {self.id}: {e}") from None
        self._check_readings()
        rl, cl = {a.label for a in self.rows}, {a.label for a in self.columns}
        for row, col, _, _ in self.overrides:
            if row not in rl or col not in cl:
                raise ValueError(
                    f"table {self.id}: cells entry ({row!r}, {col!r}) names no printed cell; rows: "
                    f"{sorted(rl)}, columns: {sorted(cl)}")
        for r in self.rows:
            for c in self.columns:
                self.cell(r, c)  # raises on an under- or over-determined cell

    def _check_readings(self) -> None:
        """Known readings, and one per experiment (a cell's runs must be of one reading)."""
        seen: dict[str, str | None] = {}
        for a in (*self.rows, *self.columns):
            if a.reading is not None and a.reading not in PROTOCOLS:
                raise ValueError(f"table {self.id}: axis {a.label!r} has reading={a.reading!r}; valid: "
                                 f"{', '.join(PROTOCOLS)}")
            if a.experiment and seen.setdefault(a.experiment, a.reading) != a.reading:
                raise ValueError(f"table {self.id}: experiment {a.experiment!r} is named with two protocols; "
                                 "give the other reading its own experiment (e.g. <name>_authors)")

    def axis_readings(self) -> dict[str, str]:
        """Experiment -> its fixed reading, for the experiments of axes with a ``reading`` of their own."""
        return {a.experiment: a.reading for a in (*self.rows, *self.columns) if a.experiment and a.reading}

    def readings(self, reading: str = "thesis") -> dict[str, str]:
        """Experiment -> the protocol its runs are taken from under the table reading ``reading``."""
        return {**{e: reading for e in self.experiments}, **self.axis_readings()}

    def cell(self, row: Axis, col: Axis) -> tuple[str, Metric]:
        """The (experiment, metric) of one cell; exactly one axis must give each, unless a ``cells``
        entry of the spec gives it for this cell."""
        exps = [a.experiment for a in (row, col) if a.experiment]
        mets = [a.metric for a in (row, col) if a.metric is not None]
        for r, c, exp, met in self.overrides:
            if (r, c) == (row.label, col.label):
                exps = [exp] if exp else exps
                mets = [met] if met is not None else mets
        if len(exps) != 1 or len(mets) != 1:
            raise ValueError(
                f"table {self.id}: cell ({row.label!r}, {col.label!r}) has {len(exps)} experiment(s) and "
                f"{len(mets)} metric(s); each cell needs exactly one of each (one from its row, the other "
                "from its column)")
        return exps[0], mets[0]

    def paper_label(self, label: str) -> str:
        """The printed row/column label whose published cells the row/column ``label`` is compared with."""
        for a in (*self.rows, *self.columns):
            if a.label == label and a.compare_to:
                return a.compare_to
        return label

    @property
    def ablations(self) -> list[Axis]:
        """Rows and columns that are not printed in the paper (``compare_to`` set)."""
        return [a for a in (*self.rows, *self.columns) if a.compare_to]

    @property
    def experiments(self) -> list[str]:
        seen: dict[str, None] = {}
        for a in (*self.rows, *self.columns):
            if a.experiment:
                seen.setdefault(a.experiment)
        for _, _, exp, _ in self.overrides:
            if exp:
                seen.setdefault(exp)
        return list(seen)

    def sweep_experiments(self, ablations: bool = True) -> list[str]:
        """:attr:`experiments` in order; without ``ablations``, those only ablation axes name are left out."""
        if ablations:
            return self.experiments
        needed = {a.experiment for a in (*self.rows, *self.columns) if a.experiment and not a.is_ablation}
        needed |= {exp for _, _, exp, _ in self.overrides if exp}
        return [e for e in self.experiments if e in needed]

    @property
    def stem(self) -> str:
        return spec_stem(self.id)


def spec_stem(table_id: str) -> str:
    """``2.3`` → ``table_2_3``; ``n3.1`` → ``table_n3_1``; ``pp3`` → ``table_pp3``."""
    return "table_" + str(table_id).replace(".", "_")


def spec_path(table_id: str) -> Path:
    return SPEC_DIR / f"{spec_stem(table_id)}.yaml"


_SPEC_KEYS = {"id", "title", "source", "paper", "paper_format", "paper_index", "seeds", "number_format",
              "rows",
              "columns", "description", "figure", "cells", "protocol"}
_CELL_KEYS = {"row", "column", "experiment", "metric"}
_AXIS_KEYS = {"label", "experiment", "metric", "compare_to", "paper", "ablation", "reading"}


def spec_from_dict(d: Mapping[str, Any]) -> TableSpec:
    unknown = set(d) - _SPEC_KEYS
    if unknown:
        raise ValueError(
            f"table spec {d.get('id')!r}: unknown keys {sorted(unknown)}; valid: {sorted(_SPEC_KEYS)}")

    def axis(items: Any, what: str) -> tuple[Axis, ...]:
        out = []
        for it in items or []:
            bad = set(it) - _AXIS_KEYS
            if bad or "label" not in it:
                raise ValueError(
                    f"table spec {d.get('id')!r}: {what} entry {dict(it)!r} needs 'label' and may have "
                    f"{sorted(_AXIS_KEYS - {'label'})}")
            out.append(Axis(label=str(it["label"]), experiment=it.get("experiment"),
                            metric=parse_metric(it["metric"]) if it.get("metric") is not None else None,
                            compare_to=None if it.get("compare_to") is None else str(it["compare_to"]),
                            paper=None if it.get("paper") is None else str(it["paper"]),
                            ablation=bool(it.get("ablation", False)),
                            reading=None if it.get("reading") is None else str(it["reading"])))
        return tuple(out)

    overrides = []
    for it in d.get("cells") or []:
        if not isinstance(it, Mapping) or set(it) - _CELL_KEYS or not {"row", "column"} <= set(it) \
                or not ({"experiment", "metric"} & set(it)):
            raise ValueError(f"table spec {d.get('id')!r}: cells entry {it!r} needs 'row', 'column' and "
                             "'experiment' and/or 'metric'")
        overrides.append((str(it["row"]), str(it["column"]), it.get("experiment"),
                          parse_metric(it["metric"]) if it.get("metric") is not None else None))

    return TableSpec(
        id=str(d["id"]), title=str(d.get("title", "")), source=str(d.get("source", "")),
        description=str(d.get("description", "")),
        paper=d.get("paper"), paper_format=str(d.get("paper_format", "tidy")),
        paper_index=(tuple(map(str, d["paper_index"])) if isinstance(d.get("paper_index"), list)
                     else d.get("paper_index")),
        seeds=tuple(int(s) for s in d.get("seeds", (0, 1, 2, 3, 4))),
        number_format=str(d.get("number_format", ".1f")),
        rows=axis(d.get("rows"), "row"), columns=axis(d.get("columns"), "column"), overrides=tuple(overrides),
        figure=_figure_options(d.get("figure"), d.get("id")),
        protocol=None if d.get("protocol") is None else str(d["protocol"]),
    )


def _figure_options(value: Any, table_id: Any) -> dict[str, Any]:
    """The spec's ``figure:`` entry: a mapping, or a bare kind (``figure: curves``), checked by
    :func:`bioreg.results.figures.figure_options` (unknown kinds and keys name the valid ones)."""
    from bioreg.results.figures import figure_options

    if value is None:
        return {}
    if isinstance(value, (str, Mapping)):
        return figure_options({"kind": value} if isinstance(value, str) else value, str(table_id))
    raise ValueError(f"table spec {table_id!r}: figure={value!r} must be a kind (e.g. 'bars') or a mapping "
                     "{kind: ..., ...}")


@cache
def _load_spec_file(path: str) -> TableSpec:
    return spec_from_dict(yaml.safe_load(Path(path).read_text()))


def table_ids(spec_dir: Path = SPEC_DIR) -> list[str]:
    """Ids of every spec in ``spec_dir``, in file-name order (Dutta 2.x, 4.x, Singh n3.x, push-pull)."""
    return [_load_spec_file(str(p)).id for p in sorted(Path(spec_dir).glob("table_*.yaml"))]


def load_spec(table_id: str, spec_dir: Path = SPEC_DIR) -> TableSpec:
    p = Path(spec_dir) / f"{spec_stem(table_id)}.yaml"
    if not p.is_file():
        raise ValueError(f"unknown table {table_id!r}; valid: {', '.join(table_ids(spec_dir))} (or 'all')")
    spec = _load_spec_file(str(p))
    if spec.id != str(table_id):
        raise ValueError(f"{p.name} declares id {spec.id!r}, expected {table_id!r}")
    return spec


def all_specs(spec_dir: Path = SPEC_DIR) -> list[TableSpec]:
    return [load_spec(i, spec_dir) for i in table_ids(spec_dir)]


def parse_table_args(ap: Any,
                     argv: Sequence[str] | None) -> tuple[Any, list[TableSpec], Records, dict[str, str]]:
    """Add ``--tables`` and the record options (:func:`bioreg.results.aggregate.add_record_options`) to
    the table scripts' parser, parse ``argv`` and load the specs (all when ``--tables`` is empty), the
    records and the pins: ``(args, specs, records, pins)``. Bad input ends the script with exit code 2
    and one ``error:`` line."""
    ap.add_argument("--tables", nargs="*", default=None, help="table ids (default: all)")
    add_record_options(ap)
    args = ap.parse_args(argv)
    try:
        specs = [load_spec(i) for i in (args.tables or table_ids())]
        records, pins = records_from_args(args)
    except ValueError as e:
        ap.exit(2, f"error: {e}\n")
    return args, specs, records, pins


# ----------------------------------------------------------------------------- building


@dataclass
class TableResult:
    spec: TableSpec
    cells: pd.DataFrame  # row, column, experiment, metric, mean, std, n, n_expected, seeds, values
    selection: Selection
    missing_metrics: list[str] = field(default_factory=list)
    #: the per-seed values behind each cell, ``{(row, column): {seed: value}}`` (what the mean and std
    #: summarise; the seed-level statistics of ``bioreg.results.claim_stats`` read them)
    per_seed: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    #: the table's reading: ``thesis`` (the default) or ``authors`` (axes with their own ``reading`` aside)
    reading: str = "thesis"

    @property
    def notes(self) -> list[str]:
        return self.selection.notes() + self.missing_metrics

    def stats(self, row: str, col: str) -> CellStats:
        r = self.cells[(self.cells["row"] == row) & (self.cells["column"] == col)].iloc[0]
        return CellStats(_none(r["mean"]), _none(r["std"]), int(r["n"]), int(r["n_expected"]),
                         tuple(int(s) for s in str(r["seeds"]).split(";") if s != ""))

    def values(self, row: str, col: str) -> dict[int, float]:
        """The per-seed values of one cell, ``{seed: value}`` (what its mean and std are taken over)."""
        return dict(self.per_seed.get((row, col), {}))

    def text_grid(self, latex: bool = False) -> pd.DataFrame:
        grid = pd.DataFrame(index=[r.label for r in self.spec.rows],
                            columns=[c.label for c in self.spec.columns],
                            dtype=object)
        for _, r in self.cells.iterrows():
            grid.loc[r["row"], r["column"]] = format_cell(
                CellStats(_none(r["mean"]), _none(r["std"]), int(r["n"]), int(r["n_expected"]), ()),
                self.spec.number_format, latex=latex)
        return grid


def _none(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def build_table(spec: TableSpec, records: Records, pins: Mapping[str, str] | None = None,
                reading: str = "thesis") -> TableResult:
    """Aggregate the records into the cells of ``spec`` (mean ± std over the table's seeds), from the runs
    of the reading ``reading`` (axes with their own ``reading`` aside)."""
    sel = select_runs(records, spec.experiments, spec.seeds, pins, spec.readings(reading))
    cache: dict[tuple[str, int], dict[str, float]] = {}
    missing: dict[tuple[str, str], list[int]] = {}
    rows = []
    per_seed: dict[tuple[str, str], dict[int, float]] = {}
    for r in spec.rows:
        for c in spec.columns:
            exp, metric = spec.cell(r, c)
            vals: dict[int, float] = {}
            for seed in spec.seeds:
                key = sel.chosen.get((exp, seed))
                if key is None:
                    continue
                if (exp, seed) not in cache:
                    cache[(exp, seed)] = records.metrics(exp, key, seed)
                v = metric(cache[(exp, seed)])
                if v is None:
                    missing.setdefault((exp, str(metric)), []).append(seed)
                else:
                    vals[seed] = v
            st = cell_stats(vals, len(spec.seeds))
            per_seed[(r.label, c.label)] = vals
            rows.append({"row": r.label, "column": c.label, "experiment": exp, "metric": str(metric),
                         "mean": st.mean, "std": st.std, "n": st.n, "n_expected": st.n_expected,
                         "seeds": ";".join(str(s) for s in st.seeds), "values": vals})
    cells = pd.DataFrame(rows,
                         columns=["row", "column", "experiment", "metric", "mean", "std", "n", "n_expected",
                                        "seeds", "values"]).astype({"mean": "float64", "std": "float64"})
    notes = [f"missing metric: {m} not in the completed record(s) of {exp} seed(s) "
             f"{', '.join(str(s) for s in sorted(set(seeds)))}"
             for (exp, m), seeds in sorted(missing.items())]
    return TableResult(spec=spec, cells=cells, selection=sel, missing_metrics=notes, per_seed=per_seed,
                       reading=reading)


# ----------------------------------------------------------------------------- rendering


def format_cell(st: CellStats, number_format: str = ".1f", latex: bool = False) -> str:
    """``84.1 ± 0.3``; ``84.1 ± 0.3 (3/5)`` with fewer seeds than asked; ``84.1 (1/5)``; a dash when empty."""
    if st.n == 0 or st.mean is None:
        return "--" if latex else DASH
    pm = r" $\pm$ " if latex else " ± "
    text = format(st.mean, number_format)
    if st.std is not None:
        text += pm + format(st.std, number_format)
    if st.n < st.n_expected:
        text += f" ({st.n}/{st.n_expected})"
    return text


def _md_escape(s: str) -> str:
    return str(s).replace("|", r"\|")


#: the line a table of another reading starts with (its cells are not the thesis protocol's)
PROTOCOL_BANNER = {
    "authors": "**Protocol: the authors' code** (`protocol=authors`): trained on all training images, "
               "the best epoch chosen on the TEST set (optimistic), the authors' "
               "augmentation/schedule/initialisation; not the thesis protocol (docs/decisions/protocols.md).",
}


def render_markdown(res: TableResult, paper: pd.DataFrame | None = None) -> str:
    """The table as Markdown; with ``paper`` (:func:`load_paper`) each row is followed by a
    ``<row> (published)`` line holding the printed numbers of that row, so both can be read together."""
    spec = res.spec
    grid = res.text_grid()
    printed: dict[tuple[str, str], str] = {}
    if paper is not None:
        for _, p in paper.iterrows():
            if str(p["mean_text"]).strip():
                printed[(p["row"], p["column"])] = str(p["mean_text"]) + (
                    f" ± {p['std_text']}" if str(p["std_text"]).strip() else "")
    head = ["", *[c.label for c in spec.columns]]
    lines = [f"### Table {spec.id}: {spec.title}", ""]
    if res.reading != "thesis":
        lines += [PROTOCOL_BANNER.get(res.reading, f"Protocol: {res.reading}."), ""]
    if spec.source:
        lines += [f"Source: {spec.source}.", ""]
    if spec.description:
        lines += [spec.description, ""]
    if spec.ablations:
        lines += ["Ablations (not in the paper, compared with the printed " + ", ".join(
            f"{a.label} → {a.compare_to}" for a in spec.ablations) + ").", ""]
    lines += [
        f"Cells: mean ± sample std (ddof={STD_DDOF}) over seeds {', '.join(map(str, spec.seeds))}; "
        f"`(k/{len(spec.seeds)})` = only k seeds have a value; {DASH} = none.", "",
        "| " + " | ".join(_md_escape(h) for h in head) + " |",
        "|" + "|".join(["---"] + ["--:"] * len(spec.columns)) + "|",
    ]
    for r in spec.rows:
        lines.append("| "
                     + " | ".join([_md_escape(r.label), *[grid.loc[r.label, c.label] for c in spec.columns]])
                     + " |")
        if any((r.label, c.label) in printed for c in spec.columns):
            lines.append("| " + " | ".join([_md_escape(f"{r.label} (published)"),
                                            *[printed.get((r.label, c.label), DASH) for c in spec.columns]])
                         + " |")
    lines.append("")
    notes = res.notes
    lines += ["**Notes**", ""] + ([f"- {_md_escape(n)}" for n in notes] if notes else ["- none"])
    return "\n".join(lines) + "\n"


def render_latex(res: TableResult) -> str:
    """A ``table`` environment via pandas ``Styler.to_latex`` (labels escaped); notes as comments after it."""
    spec = res.spec
    grid = res.text_grid(latex=True)
    styler = grid.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    tex = styler.to_latex(
        caption=f"{_tex_escape(spec.title)} (mean $\\pm$ std over {len(spec.seeds)} seeds"
                f"{'' if res.reading == 'thesis' else '; the authors protocol, selected on the test set'})",
        label=f"tab:{spec.stem.replace('_', '-')}", hrules=True, position="htbp", position_float="centering",
        column_format="l" + "r" * len(spec.columns),
    )
    notes = res.notes
    if notes:
        tex += "".join(f"% note: {n}\n" for n in notes)
    return tex


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("%", r"\%"), ("_", r"\_"), ("&", r"\&"), ("#", r"\#"),
                 ("$", r"\$")):
        s = s.replace(a, b)
    return s


def render_csv(res: TableResult) -> str:
    """Tidy CSV in the layout of ``results/paper`` (``table,row,column,mean,std``) plus
    ``n,n_expected,seeds``."""
    df = res.cells.assign(
        table=res.spec.id)[["table", "row", "column", "mean", "std", "n", "n_expected", "seeds"]]
    return df.to_csv(index=False, float_format="%.6g")


def write_table(res: TableResult, out_dir: str | Path, paper: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write ``<stem>.md`` (with the published rows when ``paper`` is given), ``.tex`` and ``.csv``
    atomically under ``out_dir`` (``<stem>_authors.*`` for a table of the authors' protocol)."""
    out = Path(out_dir)
    stem = res.spec.stem + ("" if res.reading == "thesis" else f"_{res.reading}")
    return {
        "md": atomic_write_text(out / f"{stem}.md", render_markdown(res, paper)),
        "tex": atomic_write_text(out / f"{stem}.tex", render_latex(res)),
        "csv": atomic_write_text(out / f"{stem}.csv", render_csv(res)),
    }


# ----------------------------------------------------------------------------- the thesis' numbers


def load_paper(spec: TableSpec, paper_dir: Path = PAPER_DIR) -> pd.DataFrame | None:
    """The published cells of ``spec``: ``row, column, mean, std`` and the printed ``mean_text, std_text``.

    ``None`` when the spec names no paper CSV.
    """
    if not spec.paper:
        return None
    p = Path(paper_dir) / spec.paper
    if not p.is_file():
        raise ValueError(
            f"table {spec.id}: published table {spec.paper} not found in {paper_dir}; the package ships "
            f"results/paper/ (reinstall it) or set {PAPER_DIR_ENV} to a folder that holds it")
    raw = pd.read_csv(p, dtype=str, keep_default_na=False)
    if spec.paper_format == "tidy":
        df = raw[["row", "column", "mean", "std"]].copy()
    else:
        index = [spec.paper_index] if isinstance(spec.paper_index, str) else list(spec.paper_index or ())
        bad = [c for c in index if c not in raw.columns]
        if bad:
            raise ValueError(f"table {spec.id}: paper_index {bad!r} is not a column of {p.name}; "
                             f"columns: {list(raw.columns)}")
        # several index columns (e.g. model, h, alpha) name a row by their values joined with ","
        raw = raw.assign(row=raw[index].agg(",".join, axis=1)).drop(columns=index)
        df = raw.melt(id_vars=["row"], var_name="column", value_name="mean")
        df["std"] = ""
    # rows/columns whose printed label differs from the spec's (``paper:`` of an axis) get the spec's label
    df["row"] = df["row"].replace({a.paper: a.label for a in spec.rows if a.paper is not None})
    df["column"] = df["column"].replace({a.paper: a.label for a in spec.columns if a.paper is not None})
    df["mean_text"] = df["mean"]
    df["std_text"] = df["std"]
    df["mean"] = pd.to_numeric(df["mean"].replace("", math.nan))
    df["std"] = pd.to_numeric(df["std"].replace("", math.nan))
    return df[["row", "column", "mean", "std", "mean_text", "std_text"]].reset_index(drop=True)


def paper_matrix(spec: TableSpec, paper: pd.DataFrame | None) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {(r.label, c.label): None for r in spec.rows
                                                for c in spec.columns}
    if paper is not None:
        for _, p in paper.iterrows():
            if (p["row"], p["column"]) in out:
                out[(p["row"], p["column"])] = _none(p["mean"])
    return out


def result_matrix(res: TableResult) -> dict[tuple[str, str], float | None]:
    return {(r["row"], r["column"]): _none(r["mean"]) for _, r in res.cells.iterrows()}


def labels(axis: Sequence[Axis]) -> list[str]:
    return [a.label for a in axis]
