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

from collections.abc import Iterable, Mapping
from typing import Any

from bioreg.evaluate.stats import acc_entry, significantly_greater

__all__ = ["FLAGS", "evaluate_red_flags", "format_red_flags"]

FLAGS: dict[str, str] = {
    "iterative_weaker": "1 iterative weaker than single-step",
    "blackbox_stronger": "2 black-box stronger than white-box",
    "unbounded_short": "3 unbounded attack < 100 % success",
    "eps_not_increasing": "4 success not rising with ε",
    "random_search_better": "5 random search beats gradients",
}


def _fmt(e: Mapping[str, Any]) -> str:
    return f"{e['acc']:.1f} % [{e['ci95'][0]:.1f}, {e['ci95'][1]:.1f}]"


def _missing(what: str) -> dict[str, Any]:
    return {"flag": None, "evidence": f"not evaluated ({what} not run)", "values": {}}


def evaluate_red_flags(section: Mapping[str, Any], *, rs_tol: float = 1.0, saturation_acc: float = 1.0,
                       unbounded_tol: float = 0.0) -> dict[str, Any]:
    """Decide the five red flags from an ``extra.attacks`` section; adds ``any`` (a flag raised)."""
    linf = section.get("linf", {}) or {}
    out: dict[str, Any] = {}

    # 1. iterative vs single step
    f, p = linf.get("fgsm"), linf.get("pgd_ce")
    if f and p:
        flag = significantly_greater(p, f)
        out["iterative_weaker"] = {
            "flag": flag,
            "evidence": (f"PGD-CE acc {_fmt(p)} {'>' if flag else 'not significantly >'} FGSM acc {_fmt(f)}"),
            "values": {"fgsm": f["acc"], "fgsm_ci95": f["ci95"], "pgd_ce": p["acc"], "pgd_ce_ci95": p["ci95"]},
        }
    else:
        out["iterative_weaker"] = _missing("fgsm and pgd_ce")

    # 2. black box vs white box
    s = linf.get("square")
    if s and p:
        flag = significantly_greater(p, s)
        out["blackbox_stronger"] = {
            "flag": flag,
            "evidence": (f"Square acc {_fmt(s)} {'<' if flag else 'not significantly <'} PGD-CE acc {_fmt(p)}"),
            "values": {"square": s["acc"], "square_ci95": s["ci95"], "pgd_ce": p["acc"], "pgd_ce_ci95": p["ci95"]},
        }
    else:
        out["blackbox_stronger"] = _missing("square and pgd_ce")

    # 3. unbounded attack
    u = section.get("unbounded")
    if u:
        flag = float(u["acc"]) > unbounded_tol
        out["unbounded_short"] = {
            "flag": flag,
            "evidence": (f"PGD-CE L∞ ε={u['eps']:g} ({u['steps']} steps) on {u['n']} images leaves acc {_fmt(u)}"
                         f" (success {100 - u['acc']:.1f} %); an unbounded attack must reach 100 %"),
            "values": {"eps": u["eps"], "acc": u["acc"], "ci95": u["ci95"], "n": u["n"]},
        }
    else:
        out["unbounded_short"] = _missing("unbounded PGD")

    # 4. success vs ε
    sw = section.get("eps_sweep")
    if sw and len(sw.get("eps", [])) >= 2:
        n = int(sw["n"])
        ents = [{"acc": a, "ci95": c} for a, c in zip(sw["acc"], sw["ci95"], strict=True)]
        drops = [(sw["eps"][i], sw["eps"][j]) for i in range(len(ents)) for j in range(i + 1, len(ents))
                 if significantly_greater(ents[j], ents[i])]
        first, last = ents[0], ents[-1]
        rising = significantly_greater(first, last)
        saturated = float(last["ci95"][0]) <= saturation_acc
        flag = bool(drops) or (not rising and not saturated)
        curve = ", ".join(f"{e * 255:.3g}/255: {a:.1f} %" for e, a in zip(sw["eps"], sw["acc"], strict=True))
        if drops:
            why = "accuracy rises significantly from ε=" + ", ".join(f"{a * 255:.3g}/255 to {b * 255:.3g}/255"
                                                                    for a, b in drops)
        elif not rising and not saturated:
            why = "accuracy at the largest ε is not significantly below the smallest and not ~0"
        elif saturated and not rising:
            why = "already ~0 % accuracy at the largest ε (saturated)"
        else:
            why = "success rises with ε"
        out["eps_not_increasing"] = {
            "flag": flag, "evidence": f"PGD-CE acc vs ε (n={n}): {curve}; {why}",
            "values": {"eps": sw["eps"], "acc": sw["acc"], "ci95": sw["ci95"], "saturated": saturated},
        }
    else:
        out["eps_not_increasing"] = _missing("eps sweep")

    # 5. random search vs gradients
    rs = section.get("random_search") or {}
    if "random_search_only" in rs and int(rs.get("n", 0)) > 0:
        n, k = int(rs["n"]), int(rs["random_search_only"])
        e = acc_entry(k, n)
        flag = float(e["ci95"][0]) > rs_tol
        parts = [f"{rs[key]} by {name}" for key, name in (("square_only", "Square"), ("noise_only", "random noise"))
                 if key in rs]
        out["random_search_better"] = {
            "flag": flag,
            "evidence": (f"random search broke {k}/{n} images ({e['acc']:.1f} %, 95 % CI [{e['ci95'][0]:.1f}, "
                         f"{e['ci95'][1]:.1f}]) that PGD-CE left correct ({', '.join(parts)}); "
                         f"threshold: lower bound > {rs_tol:g} %"),
            "values": {k2: v for k2, v in rs.items()} | {"fraction": e["acc"], "ci95": e["ci95"]},
        }
    else:
        out["random_search_better"] = _missing("pgd_ce and random search")

    raised = [k for k in FLAGS if out[k]["flag"]]
    out["any"] = bool(raised)
    out["raised"] = raised
    return out


def _label(rec: Mapping[str, Any]) -> str:
    return f"{rec.get('name', '?')} s{rec.get('seed', '?')}"


def format_red_flags(records: Iterable[Mapping[str, Any]], fmt: str = "markdown", recompute: bool = False) -> str:
    """Table 3.4 (L∞ robust accuracies with 95 % intervals) beside the five red flags, one row per run.

    ``records``: run records (dicts); those without ``extra.attacks`` are skipped. ``fmt``:
    ``markdown`` or ``rich`` (a rendered rich table). ``recompute``: decide the flags again from
    the stored numbers (default thresholds) instead of reading the stored verdicts (a record
    without stored verdicts is always recomputed).
    """
    if fmt not in ("markdown", "rich"):
        raise ValueError(f"fmt={fmt!r}; choose markdown or rich")
    cols = ["run", "n", "clean", "FGSM", "PGD-CE", "PGD-T", "Square"] + [FLAGS[k].split(" ", 1)[0] for k in FLAGS]
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
