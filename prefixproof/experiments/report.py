"""The comparison table of `prefixproof experiment report`: each cell's accuracy over seeds (mean ± sd),
the paper's figure, the prefix identities and the attention order (Kendall tau), and whether the
experiment's qualitative claim (`expect`) was reproduced. Reads only the JSON results (no torch).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from prefixproof.experiments.config import Experiment, load


def _pct(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = 100 * statistics.fmean(xs)
    sd = 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f}"


def collect(folder: Path) -> tuple[Experiment, dict[str, list[dict]]]:
    exp = load(folder / "config.json")
    runs: dict[str, list[dict]] = {}
    for p in sorted(folder.glob("*-seed*.json")):
        doc = json.loads(p.read_text(encoding="utf-8"))
        if doc.get("format") == "prefixproof-experiment-run":
            runs.setdefault(doc["cell"], []).append(doc)
    return exp, runs


def _identities(docs: list[dict]) -> str:
    checked = [d["measures"] for d in docs if d.get("measures", {}).get("identities_checked")]
    if not checked:
        return "-"
    ok = sum(1 for m in checked if m["identities_ok"])
    worst = max(float(m["worst"]["ratio"]) for m in checked)
    return f"{ok}/{len(checked)}, {worst:.0e}"


def _tau(docs: list[dict]) -> str:
    taus = [d["measures"]["tau_mean"] for d in docs if d.get("measures", {}).get("tau_mean") is not None]
    mins = [d["measures"]["tau_min"] for d in docs if d.get("measures", {}).get("tau_min") is not None]
    return f"{statistics.fmean(taus):.3f} / {min(mins):.2f}" if taus else "-"


def rows(folder: Path) -> tuple[Experiment, list[list[Any]], list[str]]:
    exp, runs = collect(folder)
    out: list[list[Any]] = []
    pre = runs.get("pretrained", [])
    if pre:
        tasks = [e["task"] for e in pre[0]["evaluations"]]
        for t in tasks:
            accs = [e["accuracy"] for d in pre for e in d["evaluations"] if e["task"] == t]
            out.append(["pretrained", t, "pretrain", "-", _pct(accs), len(accs),
                        exp.paper_pretrained.get(t, "-"), "-", "-"])
    means: dict[str, float] = {}
    for c in exp.cells:
        docs = runs.get(c.name, [])
        accs = [d["accuracy"] for d in docs]
        if accs:
            means[c.name] = 100 * statistics.fmean(accs)
        params = docs[0]["trainable_params"] if docs else "-"
        out.append([c.name, c.task, c.method, params, _pct(accs), len(accs), c.paper or "-",
                    _identities(docs), _tau(docs)])
    verdicts = []
    for hi, lo, gap in exp.expect:
        if hi in means and lo in means:
            ok = means[hi] - means[lo] >= gap
            verdicts.append(f"{exp.id}: {hi} - {lo} = {means[hi] - means[lo]:.1f} points (claim: >= {gap:g}): "
                            f"{'reproduced' if ok else 'NOT reproduced'}")
        else:
            verdicts.append(f"{exp.id}: {hi} vs {lo}: not run yet")
    return exp, out, verdicts


HEADER = ("cell", "task", "method", "params", "accuracy %", "seeds", "paper",
          "identities hold, worst/tol", "tau mean / min")
NOTE = ("accuracy: exact match on the fixed test set (memorisation: recall of the memorised pairs), mean ± sd over "
        "seeds; identities: prefix_rescale and prefix_bias at every layer and head, runs that hold / runs checked, "
        "and the worst error as a fraction of its tolerance; tau: Kendall tau of the content attention order, "
        "pretrained vs adapted layer on the same input (1 = order unchanged; a LoRA on neither q nor k, as E4's on "
        "o, fc1, fc2, leaves every layer's attention weights as they were, so its tau is 1 by construction)")
