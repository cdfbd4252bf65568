"""`prefixproof selftest`: the verifier against mechanical mutants of every lookup claim's weights directory.

For each of the six lookup claims a small directory is built with `prefixproof
build` (the CLI code), and every mutant of `prefixproof/audit/mutate_dir.py` is written
next to it. Each mutant is then judged twice, in float64 and in float32:

- **truth** (`prefixproof/audit/plain_truth.py`): an independent plain-numpy reader runs
  greedy generation on every input of the claim (weights mutants) or on the
  stored prompt (prompt mutants), in real arrays of that dtype. It shares no
  code with the certificates or `verify/semantics/forward.py`;
- **verdict**: `verify --weights DIR --claim C --dtype D` at the default level,
  through `prefixproof.cli.main` (the code the command line runs).

A truly broken mutant must end FALSIFIED or UNKNOWN (`killed`, `unknown`); a
one-line input rejection (exit 2) counts as `rejected`; ERROR is counted
separately and is not a pass; PROVED, CERTIFIED, CHECKED or SAMPLED is a
**false pass** and makes the self-test fail. Mutants that truth finds correct
on every input are `equivalent`.

Controls: the unedited directories must be correct (truth) and pass (float64
verdict); demanding 1.001 x the certified margin must not pass and 0.999 x
must; the reader must agree with `verify/semantics/generate.py` on the stored prompt.

Longer than 300 lines on purpose: the run, the judging and its table and JSON are one report whose categories
must stay in step.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from prefixproof.output import render_table
from prefixproof.audit.mutate_dir import MutantSpec, Parts, apply, specs_for
from prefixproof.audit.plain_reader import from_parts
from prefixproof.audit.plain_truth import Truth, claim_cases, claim_truth, recorded_output, stored_generation, stored_prompt_truth

CLAIMS: dict[str, tuple[list[str], dict[str, int]]] = {  # build arguments (after --out DIR) and claim parameters
    "theorem1": (["theorem1", "--tokens", "3,0,2", "--vocab", "4"], {"V": 4, "N": 3}),
    "theorem2": (["theorem2", "--map-file", "{mapfile}", "--vocab", "4"], {"V": 4}),
    "long_response": (["long_response", "--map", "random:1", "--vocab", "3", "--length", "2"], {"V": 3, "R": 2}),
    "multi_token": (["multi_token", "--map", "random:1", "--vocab", "2", "--inputs", "2"], {"V": 2, "L": 2}),
    "conditional": (["conditional", "--map", "random:1", "--vocab", "2", "--inputs", "2", "--length", "2"],
                    {"V": 2, "L": 2, "R": 2}),
    "multi_token_packing": (["multi_token_packing", "--map", "random:1", "--vocab", "2", "--inputs", "2"],
                            {"V": 2, "L": 2}),
}
DTYPES = ("float64", "float32")
PASS_WORDS = ("PROVED", "CERTIFIED", "CHECKED", "SAMPLED")
CATEGORIES = ("killed", "unknown", "rejected", "error", "equivalent", "false pass")



@dataclass(frozen=True)
class Judgement:
    verdict: str  # the claim's verdict word, or REJECTED (exit 2, bad input)
    detail: str
    margin: float | None = None  # the decode obligation's certified margin, when one is reported


Verifier = Callable[[str, str, str, float], Judgement]  # (dir, claim, dtype, min_margin) -> judgement


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`prefixproof ARGV` in this process: (exit status, stdout, stderr)."""
    from prefixproof.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def cli_verifier(directory: str, claim: str, dtype: str, min_margin: float = 0.0) -> Judgement:
    """The claim verdict of `prefixproof verify --weights DIR --claim C --dtype D` (default level)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        argv = ["verify", "--weights", directory, "--claim", claim, "--dtype", dtype, "--json", str(report)]
        if min_margin:
            argv += ["--min-margin", repr(min_margin)]
        code, _, err = run_cli(argv)
        if code == 2:
            return Judgement("REJECTED", err.strip().splitlines()[-1] if err.strip() else "exit 2")
        if not report.is_file():
            return Judgement("ERROR", f"exit {code}, no report: {err.strip()[-300:]}")
        doc = json.loads(report.read_text())
    c = doc["claims"][0]
    obs = c["obligations"]
    detail = "; ".join(f"{o['obligation']}: {o['verdict']}" + (f" ({o['reason']})" if o.get("reason") else "")
                       for o in obs)
    margins = [o["min_margin"] for o in obs if o["obligation"] == "decode" and isinstance(o.get("min_margin"), float)]
    return Judgement(str(c["verdict"]).split("(")[0], detail, margins[0] if margins else None)


def lenient_verifier(directory: str, claim: str, dtype: str, min_margin: float = 0.0) -> Judgement:
    """Negative control: a fake verifier that certifies everything. The self-test must report its false passes."""
    return Judgement("CERTIFIED", "lenient fake verifier (negative control)")


def category(truth: Truth, verdict: str) -> str:
    if not truth.broken:
        return "equivalent"
    if verdict in PASS_WORDS:
        return "false pass"
    return {"FALSIFIED": "killed", "UNKNOWN": "unknown", "REJECTED": "rejected"}.get(verdict, "error")


@dataclass
class Row:
    claim: str
    mutant: str
    kind: str
    edit: str
    dtype: str
    truth: str
    broken: bool
    verdict: str
    detail: str
    category: str


@dataclass
class Control:
    name: str
    ok: bool
    detail: str


@dataclass
class Result:
    rows: list[Row] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    params: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def false_passes(self) -> list[Row]:
        return [r for r in self.rows if r.category == "false pass"]

    @property
    def ok(self) -> bool:
        return not self.false_passes and all(c.ok for c in self.controls)


_CASES: dict[tuple[str, str], list] = {}


def _cases(claim: str, params: dict[str, int], parts: Parts) -> list:
    key = (claim, json.dumps(params, sort_keys=True))
    if key not in _CASES:
        _CASES[key] = list(claim_cases(claim, params, from_parts(parts.config, parts.tensors, parts.prompt)))
    return _CASES[key]


def _truth64(claim: str, params: dict[str, int]) -> Callable[[Parts], bool]:
    def broken(p: Parts) -> bool:
        m = from_parts(p.config, p.tensors, p.prompt)
        return claim_truth(m, claim, params, np.float64, _cases(claim, params, p)).broken
    return broken


def _job(args: tuple) -> list[Row]:
    """Make one mutant, judge it by truth and by the verifier in every dtype."""
    claim, params, spec, base_dir, out_dir, seed, verifier, reference = args
    base = Parts.read(Path(base_dir))
    parts, edit = apply(spec, base, claim, params, seed, _truth64(claim, params))
    if parts.same_as(base):
        return []
    parts.write(Path(out_dir))
    rows = []
    for dtype in DTYPES:
        np_dtype = getattr(np, dtype)
        if spec.truth == "prompt":
            truth = stored_prompt_truth(out_dir, np.asarray(reference), np_dtype)
        else:
            truth = claim_truth(out_dir, claim, params, np_dtype, _cases(claim, params, parts))
        try:
            j = verifier(out_dir, claim, dtype, 0.0)
        except Exception as e:  # noqa: BLE001 - a crashing verifier is ERROR, never a pass
            j = Judgement("ERROR", f"{type(e).__name__}: {e}")
        rows.append(Row(claim, spec.name, spec.kind, edit, dtype, truth.text(), truth.broken, j.verdict, j.detail,
                        category(truth, j.verdict)))
    return rows


def _group(spec: MutantSpec) -> str:
    """The tensor kind a mutant edits (embed, pos, W_Q, ..., mlp W, mlp b), or scale / structure / prompt."""
    if spec.truth == "prompt":
        return "prompt"
    if spec.kind.startswith("scale"):
        return "scale"
    t = spec.target
    if t in ("embed", "pos", "unembed"):
        return t
    if ".heads." in t:
        return t.rsplit(".", 1)[1]
    if ".mlp." in t:
        return "mlp " + t.rsplit(".", 1)[1]
    return "structure"


def quick_subset(specs: list[MutantSpec], seed: int, per_group: int = 2) -> list[MutantSpec]:
    """A deterministic subset: `per_group` mutants of every tensor kind (and of the scales, the structure and the
    prompt), drawn with the seed."""
    groups: dict[str, list[MutantSpec]] = {}
    for s in specs:
        groups.setdefault(_group(s), []).append(s)
    rng = np.random.default_rng(seed)
    out = []
    for group in groups.values():
        pick = sorted(rng.choice(len(group), size=min(per_group, len(group)), replace=False))
        out += [group[i] for i in pick]
    return out


def build_base(claim: str, root: Path) -> Path:
    argv, _ = CLAIMS[claim]
    out = root / claim / "base"
    out.parent.mkdir(parents=True, exist_ok=True)
    mapfile = root / "theorem2-map.json"
    mapfile.write_text("[1, 3, 0, 2]")
    code, _, err = run_cli(["build", *[a.replace("{mapfile}", str(mapfile)) for a in argv], "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"building the {claim} directory failed: {err.strip()}")
    return out


def _controls(claim: str, params: dict[str, int], base: Path, verifier: Verifier) -> list[Control]:
    from prefixproof.constructions.io import load_model, load_prompt
    from prefixproof.verify.semantics.ops import NumpyOps
    from prefixproof.verify.semantics.generate import generate

    out = []
    for dtype in DTYPES:
        truth = claim_truth(base, claim, params, getattr(np, dtype))
        out.append(Control(f"{claim}: unedited directory correct on every input ({dtype} truth)", not truth.broken,
                           truth.text()))
    j = verifier(str(base), claim, "float64", 0.0)
    out.append(Control(f"{claim}: unedited directory passes (float64)", j.verdict in PASS_WORDS,
                       f"{j.verdict}: {j.detail}"))
    j32 = verifier(str(base), claim, "float32", 0.0)
    out.append(Control(f"{claim}: unedited directory in float32 (reported, not required)", True,
                       f"{j32.verdict}: {j32.detail}"))
    if j.margin:
        for factor, should_pass in ((1.001, False), (0.999, True)):
            d = verifier(str(base), claim, "float64", j.margin * factor)
            out.append(Control(f"{claim}: demanding {factor} x the certified margin "
                               f"{'passes' if should_pass else 'does not pass'}",
                               (d.verdict in PASS_WORDS) == should_pass, f"{d.verdict}: {d.detail}"))
    # the oracle itself: the plain reader and verify/semantics/generate.py agree on the stored prompt
    model = load_model(base)
    soft, info = load_prompt(base, model)
    for dtype in DTYPES:
        ref = _generate_stored(model, soft, info, NumpyOps(getattr(np, dtype)), generate)
        mine = stored_generation(base, getattr(np, dtype))
        out.append(Control(f"{claim}: plain reader agrees with verify/semantics/generate.py on the stored prompt ({dtype})",
                           mine is not None and np.array_equal(mine, ref),
                           f"reader {None if mine is None else mine.tolist()}, generate {ref.tolist()}"))
    return out


def _generate_stored(model: Any, soft: np.ndarray, info: dict[str, Any], ops: Any, generate: Callable) -> np.ndarray:
    """verify/semantics/generate.py on the stored prompt, in the layout of plain_truth.stored_generation."""
    from prefixproof.audit.plain_truth import _digits

    V = model.vocab.size
    if info.get("mode") == "sequence":
        g = generate(model, soft=soft[None], ops=ops)
    else:
        L, R = (1, 1) if info.get("mode") == "per_token" else (int(info["inputs"]), int(info["steps"]))
        inputs = _digits(np.arange(V ** L), V, L)
        g = generate(model, soft=np.repeat(soft[None], len(inputs), axis=0), prompt=inputs, steps=R, ops=ops)
    return np.where(g.margins > 0, g.tokens, -1)


def run_selftest(claims: Iterable[str] = tuple(CLAIMS), quick: bool = False, seed: int = 0,
                 verifier: Verifier = cli_verifier, workers: int = 1, workdir: str | None = None,
                 say: Callable[[str], None] = lambda s: None) -> Result:
    """Build, mutate, judge; see the module docstring."""
    t0 = time.perf_counter()
    result = Result()
    with tempfile.TemporaryDirectory(prefix="prefixproof-selftest-") as tmp:
        root = Path(workdir or tmp)
        jobs = []
        for claim in claims:
            params = CLAIMS[claim][1]
            result.params[claim] = params
            base = build_base(claim, root)
            result.controls += _controls(claim, params, base, verifier)
            reference = recorded_output(base)
            generated = stored_generation(base, np.float64)
            if reference is None:
                reference = generated
            else:
                result.controls.append(Control(f"{claim}: the unedited stored prompt generates what config.json "
                                               "records (plain reader)", np.array_equal(generated, reference),
                                               f"generated {generated.tolist()}, recorded {reference.tolist()}"))
            specs = specs_for(Parts.read(base), claim)
            if quick:
                specs = quick_subset(specs, seed)
            jobs += [(claim, params, s, str(base), str(root / claim / f"m{i:04d}"), seed, verifier, reference)
                     for i, s in enumerate(specs)]
        say(f"selftest: {len(jobs)} mutants over {len(result.params)} claims, {len(DTYPES)} dtypes each")
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                done = pool.map(_job, jobs)
                for k, rows in enumerate(done, 1):
                    _note(say, k, len(jobs), rows)
                    result.rows += rows
        else:
            for k, job in enumerate(jobs, 1):
                rows = _job(job)
                _note(say, k, len(jobs), rows)
                result.rows += rows
    result.seconds = time.perf_counter() - t0
    return result


def _note(say: Callable[[str], None], k: int, n: int, rows: list[Row]) -> None:
    if rows:
        flags = ", ".join(f"{r.dtype} {r.verdict} ({'broken' if r.broken else 'equivalent'})"
                          + (" FALSE PASS" if r.category == "false pass" else "") for r in rows)
        say(f"[{k}/{n}] {rows[0].claim}: {rows[0].mutant}: {flags}")


def counts(result: Result) -> dict[str, dict[str, dict[str, int]]]:
    """claim -> dtype -> {mutants, killed, unknown, rejected, error, equivalent, false pass}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for r in result.rows:
        c = out.setdefault(r.claim, {}).setdefault(r.dtype, {"mutants": 0, **{k: 0 for k in CATEGORIES}})
        c["mutants"] += 1
        c[r.category] += 1
    return out


def render(result: Result, quiet: bool = False) -> str:
    """The table per claim and dtype, then the false passes, errors and controls; `quiet`: no table."""
    head = ("claim", "dtype", "mutants", *CATEGORIES)
    lines = []
    for claim, by in counts(result).items():
        for dtype, c in by.items():
            lines.append((claim, dtype, *(str(c[k]) for k in ("mutants", *CATEGORIES))))
    text = [] if quiet else render_table(head, lines).split("\n") + [""]
    fp = result.false_passes
    text.append(f"false passes: {len(fp)}" + ("" if not fp else " (a truly broken mutant the verifier passed)"))
    for r in fp:
        text.append(f"  FALSE PASS {r.claim} [{r.dtype}] {r.mutant} ({r.edit}): {r.verdict} - {r.detail}; "
                    f"truth: {r.truth}")
    errors = [r for r in result.rows if r.category == "error"]
    for r in errors:
        text.append(f"  ERROR {r.claim} [{r.dtype}] {r.mutant}: {r.detail}; truth: {r.truth}")
    bad = [c for c in result.controls if not c.ok]
    text.append(f"controls: {len(result.controls) - len(bad)}/{len(result.controls)} as expected")
    for c in bad:
        text.append(f"  CONTROL FAILED {c.name}: {c.detail}")
    text.append(f"selftest {'passed' if result.ok else 'FAILED'} in {result.seconds:.1f}s")
    return "\n".join(text)


def to_json(result: Result, quick: bool, seed: int, command: list[str] | None = None) -> dict[str, Any]:
    from prefixproof.report import provenance

    return {"format": "prefixproof-selftest", "format_version": 1,
            **provenance(command or ["prefixproof", "selftest"], DTYPES),
            "exit_status": 0 if result.ok else 1,
            "quick": quick, "seed": seed, "seconds": round(result.seconds, 2),
            "ok": result.ok, "params": result.params, "counts": counts(result),
            "mutants": [asdict(r) for r in result.rows], "controls": [asdict(c) for c in result.controls]}
