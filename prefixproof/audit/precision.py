"""Precision report: where a construction stops being certified in a floating-point format.

For each format the construction's weights are rounded to the format, the
encoder's values are rounded as the encoder writes them, and every activation
and accumulation is modelled with that format's unit roundoff
(docs/certificates.md, "Executed arithmetic"). The decode obligation is run at
growing sizes. The report gives the largest size certified and the first size
that is not, and what happens there: FALSIFIED (a concrete input, run in the
emulated format, decodes wrongly, confirmed by incremental generation) or
UNKNOWN (the certificate fails and no counterexample was found).

The certified frontier is searched by doubling, then bisection between the
last certified and the first failing size; certification is not proven
monotone in the size, so sizes between those probes are not all certified.
Above it every size is scanned in turn for a counterexample
(prefixproof/audit/precision_scan.py) under every execution the format names
(verify/semantics/executions.py: numpy's own kernels, and the fused execution). The
first size with one is reported as the *first counterexample* when every size
scanned below it was checked over all its inputs, else as the *smallest found*;
the sizes scanned are listed. When the linear scan's budget runs out, doubling
and bisection continue, and the answer is "smallest found" too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from prefixproof.output import render_table
from prefixproof.theorems import THEOREMS
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.audit.precision_scan import SCAN_SIZES, linear_scan
from prefixproof.theorems.obligations.runner import run_obligation
from prefixproof.verify.verdict import Record, Verdict

V_CAP = 65536
N_CAP = 1024


@dataclass
class Frontier:
    axis: str  # "V" or "N"
    fixed: dict[str, int]
    largest_ok: int | None  # largest certified size probed
    first_fail: int | None  # smallest failing size probed above it
    fail_record: Record | None
    probes: list[tuple[int, str]] = field(default_factory=list)
    first_falsified: int | None = None  # smallest size probed with a confirmed counterexample
    falsified_record: Record | None = None
    scan: dict[str, Any] = field(default_factory=dict)  # how first_falsified was searched (precision_scan)
    below_all_probed: bool = False  # every size below first_fail was certified (not only the doubling probes)

    @property
    def falsified_label(self) -> str:
        """"first" when every size below it was either certified or checked over all its inputs, else
        "smallest found"."""
        first = self.below_all_probed and self.scan.get("every_input_below") and self.scan.get("linear")
        return "first" if first else "smallest found"

    @property
    def ratio(self) -> float | None:
        """largest certified / first counterexample: how close the certified frontier is to the real failure."""
        if self.largest_ok is None or self.first_falsified is None:
            return None
        return round(self.largest_ok / self.first_falsified, 3)

    def to_json(self) -> dict[str, Any]:
        rec = self.fail_record
        return {
            "axis": self.axis, "fixed": self.fixed, "largest_certified": self.largest_ok,
            "first_not_certified": self.first_fail,
            "every_size_below_first_not_certified_probed": self.below_all_probed,
            "verdict_there": None if rec is None else rec.verdict_text,
            "counterexample": None if rec is None else rec.counterexample,
            "first_falsified": self.first_falsified,
            "certified_to_first_counterexample": self.ratio,
            "first_falsified_is": None if self.first_falsified is None else self.falsified_label,
            "counterexample_scan": self.scan,
            "falsified_counterexample": None if self.falsified_record is None else self.falsified_record.counterexample,
            "probes": [{"size": s, "verdict": v} for s, v in self.probes],
        }


# The sizes each claim's report sweeps: (axis, fixed parameters, cap).
SWEEPS: dict[str, list[tuple[str, dict[str, int], int]]] = {
    "theorem1": [("V", {"N": N}, V_CAP) for N in (1, 4, 20, 64, 256)] + [("N", {"V": 95}, N_CAP)],
    "theorem2": [("V", {}, V_CAP)],
    "long_response": [("V", {"R": 10}, 1024)],
    "multi_token": [("V", {"L": 2}, 128)],
    "conditional": [("V", {"L": 2, "R": 2}, 64)],
    "multi_token_packing": [("V", {"L": 2}, 24)],
}


def decode_at(theorem_id: str, params: dict[str, int], dtype: str, seed: int = 0, search: bool = False) -> Record:
    """The decode obligation at one size: the certificate alone, or (search) also hunting a counterexample."""
    theorem = THEOREMS[theorem_id]
    ob = next(o for o in theorem.obligations if o.id == "decode")
    ctx = RunContext(params=theorem.resolve(params), samples=32, seed=seed, dtype=dtype,
                     levels=frozenset({"certify"}), extra={"cross_checks": search})
    return run_obligation(theorem, ob, ctx)


def _probe(out: Frontier, theorem_id: str, dtype: str, axis: str, fixed: dict[str, int], size: int, search: bool,
           say: Callable[[str], None]) -> Record:
    rec = decode_at(theorem_id, {**fixed, axis: size}, dtype, search=search)
    out.probes.append((size, rec.verdict_text))
    where = ", ".join(f"{k}={v}" for k, v in fixed.items())
    say(f"  {theorem_id} {dtype} {axis}={size} ({where}){' counterexample search' if search else ''}: "
        f"{rec.verdict.name} in {rec.seconds:.2f}s")
    return rec


def _search(probe: Callable[[int], Record], start: int, below: int | None, cap: int,
            bad: Callable[[Record], bool]) -> tuple[int | None, int | None, Record | None]:
    """Doubling from `start`, then bisection: (largest good size, smallest bad size, its record).

    `below` is a size already known good (or None). Sizes between probes are not all checked.
    """
    size, good, hit = start, below, None
    while size <= cap:
        rec = probe(size)
        if bad(rec):
            hit = rec
            break
        good = size
        if size == cap:
            break
        size = min(size * 2, cap)
    if hit is None:
        return good, None, None
    worst = size
    while good is not None and worst - good > 1:
        mid = (good + worst) // 2
        rec = probe(mid)
        if bad(rec):
            worst, hit = mid, rec
        else:
            good = mid
    return good, worst, hit


def frontier(theorem_id: str, dtype: str, axis: str, fixed: dict[str, int], cap: int,
             say: Callable[[str], None] = lambda s: None) -> Frontier:
    """Largest certified size along `axis` (V or N) with the other parameters `fixed`, then the first
    size with a confirmed counterexample."""
    out = Frontier(axis, dict(fixed), None, None, None)
    out.largest_ok, out.first_fail, out.fail_record = _search(
        lambda n: _probe(out, theorem_id, dtype, axis, fixed, n, False, say), 2 if axis == "V" else 1, None, cap,
        lambda rec: rec.verdict is not Verdict.CERTIFIED)
    if out.first_fail is not None:
        # Doubling and bisection leave sizes below the first failure unprobed, and certification is not proven
        # monotone in the size: certify every one of them (cheap at these sizes), so that "first" means first.
        start = 2 if axis == "V" else 1
        probed = {n for n, _ in out.probes}
        gaps = [n for n in range(start, out.first_fail) if n not in probed]
        if len(gaps) <= SCAN_SIZES:
            for n in gaps:
                rec = _probe(out, theorem_id, dtype, axis, fixed, n, False, say)
                if rec.verdict is not Verdict.CERTIFIED:
                    # the frontier is the largest size with every size up to it certified (a larger size
                    # certified by the doubling probes stays in `probes`: certification is not monotone)
                    out.first_fail, out.fail_record, out.largest_ok = n, rec, n - 1 if n > start else None
                    break
            out.below_all_probed = True
        search = lambda n: _probe(out, theorem_id, dtype, axis, fixed, n, True, say)
        out.first_falsified, out.falsified_record, out.scan = linear_scan(
            theorem_id, dtype, axis, fixed, out.first_fail, cap, search, say)
        out.scan["linear"] = True
        if out.first_falsified is None and out.scan["sizes_scanned"] and out.scan["sizes_scanned"][-1] < cap:
            last = out.scan["sizes_scanned"][-1]
            _, out.first_falsified, out.falsified_record = _search(search, min(2 * last, cap), last, cap,
                                                                   lambda rec: rec.verdict is Verdict.FALSIFIED)
            out.scan["linear"] = False
            out.scan["then"] = "doubling and bisection above the linear scan (sizes in between not all checked)"
    return out


def precision_report(theorem_id: str, dtypes: list[str], say: Callable[[str], None]) -> dict[str, list[Frontier]]:
    """Frontiers per format: Theorem 1 along V for several N and along N at V=95; Theorem 2 along V."""
    report: dict[str, list[Frontier]] = {}
    for dtype in dtypes:
        report[dtype] = [frontier(theorem_id, dtype, axis, fixed, cap, say) for axis, fixed, cap in SWEEPS[theorem_id]]
    return report


def sentence(theorem_id: str, dtype: str, f: Frontier) -> str:
    """One plain sentence for one sweep: how far the claim is certified in the format, and where it breaks."""
    fixed = ", ".join(f"{k}={v}" for k, v in f.fixed.items())
    where = f"{theorem_id} in {dtype}, {f.axis} growing" + (f" at {fixed}" if fixed else "")
    cap = dict((a, c) for a, fx, c in SWEEPS.get(theorem_id, []) if fx == f.fixed).get(f.axis, V_CAP)
    if f.first_fail is None:
        return (f"{where}: certified for every input at every size tried, up to {f.axis}={f.largest_ok}"
                + (" (the search stops there)." if f.largest_ok == cap else "."))
    every = "every size" if f.below_all_probed else "the sizes probed"
    if f.largest_ok is None:
        text = f"{where}: not certified even at the smallest size tried ({f.axis}={f.first_fail})"
    else:
        text = (f"{where}: certified for every input at {every} up to {f.axis}={f.largest_ok} (a sound bound on "
                f"every {dtype} execution: any rounding order, fused or not); not certified from "
                f"{f.axis}={f.first_fail}")
    if f.first_falsified is None:
        sizes = f.scan.get("sizes_scanned") or []
        text += (", but no input that really decodes wrongly was found" +
                 (f" at sizes {sizes[0]} to {sizes[-1]}" if sizes else "") +
                 ", so there the claim is undecided, not false")
    else:
        which = "the first size" if f.falsified_label == "first" else \
            "the smallest size found (smaller sizes were not all checked over every input)"
        text += f"; a real {dtype} run decodes wrongly at {f.axis}={f.first_falsified}, {which}"
    return text + "."


def to_json(theorem_id: str, report: dict[str, list[Frontier]], command: list[str]) -> dict[str, Any]:
    """The precision report (docs/report.md, "precision"). The sweeps are deterministic: `seed` is the seed of
    every counterexample search (always 0)."""
    from prefixproof.report import provenance

    return {"format": "prefixproof-precision", "format_version": 1, **provenance(command, list(report)),
            "exit_status": 0, "theorem": theorem_id, "seed": 0,
            "formats": {d: [{**f.to_json(), "summary": sentence(theorem_id, d, f)} for f in fs]
                        for d, fs in report.items()}}


def render(theorem_id: str, report: dict[str, list[Frontier]], quiet: bool = False) -> str:
    """The precision report for the terminal; `quiet`: the plain sentences only. Wrapped to the terminal."""
    import textwrap

    from prefixproof.output import terminal_width

    width = terminal_width()
    lines: list[str] = []

    def say(text: str, indent: str = "") -> None:
        lines.extend(textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "    ",
                                   break_long_words=True, break_on_hyphens=False) or [""])

    if quiet:
        for dtype, frontiers in report.items():
            for f in frontiers:
                say(sentence(theorem_id, dtype, f))
        return "\n".join(lines)
    say(f"Precision report for {theorem_id}: weights, encodings, activations and accumulations rounded to the "
        "format (docs/certificates.md)")
    lines.append("")
    head = ("format", "axis", "fixed", "largest certified", "first not certified", "first counterexample",
            "certified / first cx", "sizes scanned")
    rows, notes = [], []
    for dtype, frontiers in report.items():
        for f in frontiers:
            fixed = ", ".join(f"{k}={v}" for k, v in f.fixed.items()) or "-"
            cap = dict((a, c) for a, fx, c in SWEEPS.get(theorem_id, []) if fx == f.fixed).get(f.axis, V_CAP)
            largest = "-" if f.largest_ok is None else (f">= {cap} (search cap)" if f.first_fail is None
                                                        and f.largest_ok == cap else str(f.largest_ok))
            rows.append((dtype, f.axis, fixed, largest, "-" if f.first_fail is None else str(f.first_fail),
                         "-" if f.first_falsified is None else
                         (str(f.first_falsified) if f.falsified_label == "first" else f"{f.first_falsified} (smallest found)"),
                         "-" if f.ratio is None else f"{f.ratio:.0%}",
                         _scanned(f.scan)))
            notes.append(None if f.fail_record is None else
                         f"verdict at {f.axis}={f.first_fail}: {f.fail_record.verdict_text}")
    lines += render_table(head, rows, width=width, notes=notes).split("\n")
    for dtype, frontiers in report.items():
        for f in frontiers:
            rec = f.falsified_record
            if rec is not None and rec.counterexample:
                ce = rec.counterexample
                what = {k: ce[k] for k in ("target", "map", "input", "expected", "failing_position") if k in ce}
                say(f"{dtype} {f.axis}={f.first_falsified}: counterexample {what} in "
                    f"{ce.get('execution', dtype)}; confirmed by "
                    f"{ce['confirmation']['method']} -> {ce['confirmation'].get('generated')!r}", "  ")
    lines.append("")
    say("first counterexample: a linear scan of every size above the certified frontier, each size run by "
        "the certificate's counterexample search and an adversarial sweep of every (row, value) box, in every "
        "execution the format names (numpy's own kernels, and fused rounding). \"smallest found\": some size "
        "scanned below it was not checked over all its inputs, so it is not proven the first.")
    lines += ["", "In plain words:"]
    for dtype, frontiers in report.items():
        for f in frontiers:
            say(sentence(theorem_id, dtype, f), "  ")
    return "\n".join(lines)


def _scanned(scan: dict[str, Any]) -> str:
    sizes = scan.get("sizes_scanned") or []
    if not sizes:
        return "-"
    text = f"{sizes[0]}..{sizes[-1]}" if sizes == list(range(sizes[0], sizes[-1] + 1)) else ", ".join(map(str, sizes))
    return text + ("" if scan.get("linear", True) else " then doubling")
