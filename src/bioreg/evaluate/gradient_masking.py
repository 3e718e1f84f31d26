"""The five gradient-masking red flags of Athalye et al. (2018), as listed in Singh (2023, §1.3.6).

Beyond the thesis, which diagnoses gradient masking by eye (§4.2): each flag is decided from the
attack section of a run record (:class:`bioreg.evaluate.attacks.AdversarialEvaluator`), so it can
be recomputed from stored records (``scripts/red_flags.py``). A flag is ``True`` (raised),
``False`` (not raised) or ``None`` (its attacks were not run). "Significantly" means that the two
95 % Wilson intervals do not overlap — conservative, so a raised flag is a strong signal.

1. ``iterative_weaker`` — PGD-CE (iterative) leaves significantly *more* accuracy than FGSM
   (single step), though PGD's first step from x is FGSM with a smaller step.
2. ``blackbox_stronger`` — Square (black-box) leaves significantly *less* accuracy than PGD-CE.
3. ``unbounded_short`` — PGD-CE with an unbounded budget (ε = 1 in L∞ reaches every image) leaves
   any example correctly classified.
4. ``eps_not_increasing`` — along the ε sweep the success rate drops significantly somewhere, or
   the largest ε is not significantly more successful than the smallest while accuracy at the
   largest ε is not yet ~0 (lower interval bound above ``saturation_acc`` %).
5. ``random_search_better`` — random search (Square, random sign noise in the same ε-ball) breaks
   examples that PGD-CE left correct: raised when the lower 95 % bound of that fraction of the n
   examples exceeds ``rs_tol`` %.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioreg.evaluate.stats import acc_entry, significantly_greater

__all__ = ["FLAGS", "RULES", "RedFlagRule", "Thresholds", "evaluate_red_flags", "format_red_flags",
           "run_records"]

Verdict = dict[str, Any]


@dataclass(frozen=True)
class Thresholds:
    """The tolerances of the rules (defaults of :func:`evaluate_red_flags`)."""

    rs_tol: float = 1.0  # flag 5: lower 95 % bound of the random-search-only fraction above this (%)
    saturation_acc: float = 1.0  # flag 4: accuracy at the largest ε counts as ~0 below this (%)
    unbounded_tol: float = 0.0  # flag 3: accuracy an unbounded attack may leave (%)


@dataclass(frozen=True)
class RedFlagRule:
    """One red flag: its record key, its table label, what it checks, where it comes from, and its
    predicate. ``decide(section, thresholds)`` returns ``{flag, evidence, values}``, or ``None`` when
    the attacks it needs (``needs``) are not in the section (the flag is then ``None``)."""

    key: str
    label: str
    checks: str
    reference: str
    needs: str
    decide: Callable[[Mapping[str, Any], Thresholds], Verdict | None]

    def verdict(self, section: Mapping[str, Any], thresholds: Thresholds) -> Verdict:
        got = self.decide(section, thresholds)
        return got if got is not None else _missing(self.needs)


def _fmt(e: Mapping[str, Any]) -> str:
    return f"{e['acc']:.1f} % [{e['ci95'][0]:.1f}, {e['ci95'][1]:.1f}]"


def _missing(what: str) -> Verdict:
    return {"flag": None, "evidence": f"not evaluated ({what} not run)", "values": {}}


def _linf(section: Mapping[str, Any]) -> Mapping[str, Any]:
    return section.get("linf", {}) or {}


def _iterative_weaker(section: Mapping[str, Any], th: Thresholds) -> Verdict | None:
    f, p = _linf(section).get("fgsm"), _linf(section).get("pgd_ce")
    if not (f and p):
        return None
    flag = significantly_greater(p, f)
    return {
        "flag": flag,
        "evidence": (f"PGD-CE acc {_fmt(p)} {'>' if flag else 'not significantly >'} FGSM acc {_fmt(f)}"),
        "values": {"fgsm": f["acc"], "fgsm_ci95": f["ci95"], "pgd_ce": p["acc"], "pgd_ce_ci95": p["ci95"]},
    }


def _blackbox_stronger(section: Mapping[str, Any], th: Thresholds) -> Verdict | None:
    s, p = _linf(section).get("square"), _linf(section).get("pgd_ce")
    if not (s and p):
        return None
    flag = significantly_greater(p, s)
    return {
        "flag": flag,
        "evidence": (f"Square acc {_fmt(s)} {'<' if flag else 'not significantly <'} PGD-CE acc {_fmt(p)}"),
        "values": {"square": s["acc"], "square_ci95": s["ci95"], "pgd_ce": p["acc"],
                   "pgd_ce_ci95": p["ci95"]},
    }


def _unbounded_short(section: Mapping[str, Any], th: Thresholds) -> Verdict | None:
    u = section.get("unbounded")
    if not u:
        return None
    return {
        "flag": float(u["acc"]) > th.unbounded_tol,
        "evidence": (f"PGD-CE L∞ ε={u['eps']:g} ({u['steps']} steps) on {u['n']} images leaves acc {_fmt(u)}"
                     f" (success {100 - u['acc']:.1f} %); an unbounded attack must reach 100 %"),
        "values": {"eps": u["eps"], "acc": u["acc"], "ci95": u["ci95"], "n": u["n"]},
    }


def _eps_reason(drops: list[tuple[float, float]], rising: bool, saturated: bool) -> str:
    if drops:
        return "accuracy rises significantly from ε=" + ", ".join(f"{a * 255:.3g}/255 to {b * 255:.3g}/255"
                                                                 for a, b in drops)
    if not rising and not saturated:
        return "accuracy at the largest ε is not significantly below the smallest and not ~0"
    if saturated and not rising:
        return "already ~0 % accuracy at the largest ε (saturated)"
    return "success rises with ε"


def _eps_not_increasing(section: Mapping[str, Any], th: Thresholds) -> Verdict | None:
    sw = section.get("eps_sweep")
    if not (sw and len(sw.get("eps", [])) >= 2):
        return None
    ents = [{"acc": a, "ci95": c} for a, c in zip(sw["acc"], sw["ci95"], strict=True)]
    drops = [(sw["eps"][i], sw["eps"][j]) for i in range(len(ents)) for j in range(i + 1, len(ents))
             if significantly_greater(ents[j], ents[i])]
    rising = significantly_greater(ents[0], ents[-1])
    saturated = float(ents[-1]["ci95"][0]) <= th.saturation_acc
    curve = ", ".join(f"{e * 255:.3g}/255: {a:.1f} %" for e, a in zip(sw["eps"], sw["acc"], strict=True))
    return {
        "flag": bool(drops) or (not rising and not saturated),
        "evidence": f"PGD-CE acc vs ε (n={int(sw['n'])}): {curve}; {_eps_reason(drops, rising, saturated)}",
        "values": {"eps": sw["eps"], "acc": sw["acc"], "ci95": sw["ci95"], "saturated": saturated},
    }


def _random_search_better(section: Mapping[str, Any], th: Thresholds) -> Verdict | None:
    rs = section.get("random_search") or {}
    if not ("random_search_only" in rs and int(rs.get("n", 0)) > 0):
        return None
    n, k = int(rs["n"]), int(rs["random_search_only"])
    e = acc_entry(k, n)
    parts = [f"{rs[key]} by {name}"
             for key, name in (("square_only", "Square"), ("noise_only", "random noise")) if key in rs]
    return {
        "flag": float(e["ci95"][0]) > th.rs_tol,
        "evidence": (f"random search broke {k}/{n} images ({e['acc']:.1f} %, 95 % CI [{e['ci95'][0]:.1f}, "
                     f"{e['ci95'][1]:.1f}]) that PGD-CE left correct ({', '.join(parts)}); "
                     f"threshold: lower bound > {th.rs_tol:g} %"),
        "values": {k2: v for k2, v in rs.items()} | {"fraction": e["acc"], "ci95": e["ci95"]},
    }


_ATHALYE = "Athalye et al. (2018) §3.1; Singh (2023) §1.3.6, "

#: the five red flags, in the thesis's order (§1.3.6: first ... fifth)
RULES: tuple[RedFlagRule, ...] = (
    RedFlagRule("iterative_weaker", "1 iterative weaker than single-step",
                "PGD-CE (iterative) leaves significantly more accuracy than FGSM (single step)",
                _ATHALYE + "first flag", "fgsm and pgd_ce", _iterative_weaker),
    RedFlagRule("blackbox_stronger", "2 black-box stronger than white-box",
                "Square (black-box) leaves significantly less accuracy than PGD-CE",
                _ATHALYE + "second flag", "square and pgd_ce", _blackbox_stronger),
    RedFlagRule("unbounded_short", "3 unbounded attack < 100 % success",
                "PGD-CE with an unbounded budget leaves more than unbounded_tol % accuracy",
                _ATHALYE + "third flag", "unbounded PGD", _unbounded_short),
    RedFlagRule("eps_not_increasing", "4 success not rising with ε",
                "along the ε sweep the success drops significantly, or is flat while not saturated",
                _ATHALYE + "fourth flag", "eps sweep", _eps_not_increasing),
    RedFlagRule("random_search_better", "5 random search beats gradients",
                "random search breaks a significant fraction of the examples PGD-CE left correct",
                _ATHALYE + "fifth flag", "pgd_ce and random search", _random_search_better),
)

#: key -> table label of each flag (the legend of :func:`format_red_flags`)
FLAGS: dict[str, str] = {r.key: r.label for r in RULES}


def evaluate_red_flags(section: Mapping[str, Any], *, rs_tol: float = 1.0, saturation_acc: float = 1.0,
                       unbounded_tol: float = 0.0) -> dict[str, Any]:
    """Decide the five red flags (:data:`RULES`) from an ``extra.attacks`` section; adds ``any`` (a flag
    raised) and ``raised`` (their keys)."""
    th = Thresholds(rs_tol=rs_tol, saturation_acc=saturation_acc, unbounded_tol=unbounded_tol)
    out: dict[str, Any] = {rule.key: rule.verdict(section, th) for rule in RULES}
    raised = [k for k in FLAGS if out[k]["flag"]]
    out["any"] = bool(raised)
    out["raised"] = raised
    return out


def run_records(results_dir: str | Path, name: str = "*") -> list[dict[str, Any]]:
    """The completed run records under ``results_dir`` whose experiment name matches the glob ``name``,
    ordered by name and seed (what ``make red-flags`` shows)."""
    from bioreg.results.records import RecordStore

    recs = [r for _, r in RecordStore(Path(results_dir)) if r.get("status") == "completed"
            and fnmatch.fnmatch(str(r.get("name", "")), name)]
    recs.sort(key=lambda r: (str(r.get("name")), int(r.get("seed", 0))))
    return recs


def _label(rec: Mapping[str, Any]) -> str:
    return f"{rec.get('name', '?')} s{rec.get('seed', '?')}"


def format_red_flags(records: Iterable[Mapping[str, Any]], fmt: str = "markdown",
                     recompute: bool = False) -> str:
    """Table 3.4 (L∞ robust accuracies with 95 % intervals) beside the five red flags, one row per run.

    ``records``: run records (dicts); those without ``extra.attacks`` are skipped. ``fmt``:
    ``markdown`` or ``rich`` (a rendered rich table). ``recompute``: decide the flags again from
    the stored numbers (default thresholds) instead of reading the stored verdicts (a record
    without stored verdicts is always recomputed).
    """
    if fmt not in ("markdown", "rich"):
        raise ValueError(f"fmt={fmt!r}; choose markdown or rich")
    cols = ["run", "n", "clean", "FGSM", "PGD-CE", "PGD-T", "Square"] + [FLAGS[k].split(" ", 1)[0]
                                                                         for k in FLAGS]
    rows: list[list[str]] = []
    notes: list[str] = []
    for rec in records:
        sec = (rec.get("extra") or {}).get("attacks")
        if not sec:
            continue
        flags = evaluate_red_flags(sec) if recompute or "red_flags" not in sec else sec["red_flags"]
        linf = sec.get("linf", {})

        def cell(e):
            return "–" if not e else f"{e['acc']:.1f} [{e['ci95'][0]:.0f}, {e['ci95'][1]:.0f}]"

        mark = {True: "RAISED", False: "ok", None: "–"}
        rows.append([_label(rec), str(sec.get("n", "?")), cell(sec.get("clean")), cell(linf.get("fgsm")),
                     cell(linf.get("pgd_ce")), cell(linf.get("pgd_t")), cell(linf.get("square"))]
                    + [mark[flags[k]["flag"]] for k in FLAGS])
        for k in FLAGS:
            if flags[k]["flag"]:
                notes.append(f"{_label(rec)} — {FLAGS[k]}: {flags[k]['evidence']}")
    legend = "flags: " + "; ".join(FLAGS.values()) + " (Athalye et al. 2018; Singh 2023 §1.3.6)"
    if not rows:
        return "no run record with an `extra.attacks` section"
    if fmt == "markdown":
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", "L∞ robust accuracy % [95 % Wilson CI] on the first n test images; " + legend]
        if notes:
            lines += ["", *[f"- {s}" for s in notes]]
        return "\n".join(lines)
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    t = Table(title="Table 3.4 (L∞, ε = 8/255) and gradient-masking red flags", caption=legend)
    for c in cols:
        t.add_column(c, justify="left" if c == "run" else "right")
    for r in rows:
        t.add_row(*[f"[bold red]{c}[/]" if c == "RAISED" else c for c in r])
    buf = StringIO()
    con = Console(file=buf, width=200, force_terminal=False)
    con.print(t)
    for s in notes:
        con.print(f"• {s}")
    return buf.getvalue()
