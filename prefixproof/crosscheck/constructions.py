"""The constructions in PyTorch: exported weights run through `verify/crosscheck/torch_model.py` against our numpy evaluator.

For each weights directory (built here with `prefixproof.constructions.io.save_model`,
exactly as `prefixproof build` writes them, or given with `--weights`):

1. float64 logits: our numpy `forward` and the torch module, on every input
   of the directory's prompt (the teacher-forced target for `sequence` mode,
   every user token for `per_token` mode), at every position. Both must lie in
   the sound enclosure of every float64 execution (`verify/certify/layer_loop.py`), so
   |torch - numpy| <= the enclosure's width, the reported tolerance; the
   decoded tokens must be identical and equal the target with a positive margin.
2. generation: torch greedy decoding (the whole sequence re-run every step,
   no cache) against our cached `generate`, and against the target.
3. negative control: the torch module with the implicit 1/sqrt(d_k) scale that
   SDPA uses by default instead of the head's explicit scale. Its logits must
   leave the enclosure.
4. for each lower format (float32, float16, bfloat16): torch's decode in that
   format (correct tokens, minimum margin) next to our interval precision
   path's verdict for the same construction and size (`prefixproof.audit.precision.decode_at`).
   If the interval path CERTIFIED the size, torch must decode correctly.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prefixproof.constructions.alphabet import PRINTABLE_ASCII, encode_text
from prefixproof.constructions.io import exact_prompt, load_model, load_prompt, save_model
from prefixproof.verify.admission import admit_directory
from prefixproof.constructions.model import Model, materialize
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.verify import optional as extras
from prefixproof.verify.certify.layer_loop import TORCH_FLOAT64, EnclosureUnsupported, inside, logits_enclosure
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.semantics.generate import generate
from prefixproof.verify.crosscheck.torch_model import load_torch_model, load_torch_prompt
from prefixproof.userinput import parse_map_spec
from prefixproof.verify.verdict import Record, Verdict
from prefixproof.verify.crosscheck.rows import row

torch = extras.torch()

LOW_FORMATS = ("float32", "float16", "bfloat16")
METHOD = "torch module (SDPA, explicit scale) vs numpy forward"


@dataclass(frozen=True)
class Inputs:
    """What a weights directory is run on: teacher-forced tokens, virtual tokens, and the expected outputs."""

    tokens: np.ndarray  # (B, n_tok)
    soft: np.ndarray  # (B, k, d)
    expected: np.ndarray  # (B, n_out)
    out_pos: np.ndarray  # (n_out,) positions whose logits decode `expected`
    prompt: np.ndarray | None  # (B, n_prompt) generation starts from [soft, prompt]
    steps: int


def default_cases(root: Path) -> list[tuple[str, Path]]:
    """Four exported constructions: Theorem 1 at V=95 (text) and V=7 (N=48); Theorem 2 at V=95 and V=300 (CSR)."""
    cases = []
    text = "Hello ~ prefixproof!"
    for name, V, Y, alphabet in (("theorem1 V=95 N=20", 95, encode_text(text), PRINTABLE_ASCII),
                                 ("theorem1 V=7 N=48", 7, [int(t) for t in np.random.default_rng(0).integers(0, 7, 48)],
                                  None)):
        c = Theorem1(V, len(Y), alphabet)
        d = root / name.replace(" ", "_")
        save_model(materialize(c.model()), d, exact_prompt(c.encode(Y)), {"mode": "sequence", "target_tokens": Y})
        cases.append((name, d))
    for name, V, spec in (("theorem2 V=95", 95, "random:0"), ("theorem2 V=300", 300, "random:1")):
        alphabet = PRINTABLE_ASCII if V == 95 else None
        m = parse_map_spec(spec, alphabet, V)
        c2 = Theorem2(V, alphabet)
        d = root / name.replace(" ", "_")
        save_model(materialize(c2.model()), d, exact_prompt(c2.encode(m)), {"mode": "per_token", "map_tokens": m})
        cases.append((name, d))
    return cases


def inputs_of(model: Model, soft: np.ndarray, info: dict[str, Any]) -> Inputs:
    k = soft.shape[0]
    if info.get("mode") == "per_token":
        V = model.vocab.size
        expected = np.asarray(info.get("map_tokens") or generate(model, np.repeat(soft[None], V, 0),
                                                                  np.arange(V)[:, None], 1).tokens[:, 0])
        users = np.arange(V)[:, None]
        return Inputs(users, np.repeat(soft[None], V, axis=0), expected[:, None], np.array([k]), users, 1)
    Y = info.get("target_tokens")
    if Y is None:
        Y = generate(model, soft[None]).tokens[0]
    Y = np.asarray(Y)[None]
    return Inputs(Y[:, :-1], soft[None], Y, np.arange(k - 1, k - 1 + Y.shape[1]), None, Y.shape[1])


def _decode(logits: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and the target margin (logit of the expected token minus the best other)."""
    choice = np.argmax(logits, axis=-1)
    target = np.take_along_axis(logits, expected[..., None], -1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, expected[..., None], -np.inf, -1)
    return choice, target - others.max(-1)


def _torch_logits(tm: Any, inp: Inputs) -> np.ndarray:
    with torch.no_grad():
        out = tm(torch.from_numpy(inp.tokens), torch.from_numpy(inp.soft).to(tm.dtype))
    return out.to(torch.float64).numpy()


def check_directory(name: str, directory: Path, low: tuple[str, ...] = LOW_FORMATS) -> list[Record]:
    t0 = time.perf_counter()
    admit_directory(directory)  # what config.json declares, before the loader allocates it
    model = load_model(directory)
    soft, info = load_prompt(directory, model)
    inp = inputs_of(model, soft, info)
    tm = load_torch_model(directory, "float64")
    if not np.array_equal(load_torch_prompt(directory).numpy(), soft):
        raise RuntimeError("the torch and numpy loaders read different virtual tokens")
    numpy_logits = forward(model, inp.tokens, inp.soft).logits
    torch_logits = _torch_logits(tm, inp)
    rows = [_logit_row(name, model, inp, numpy_logits, torch_logits, time.perf_counter() - t0)]
    rows.append(_generation_row(name, model, tm, inp))
    rows.append(_scale_control(name, model, directory, inp))
    for fmt in low:
        rows.append(_low_precision_row(name, model, directory, inp, fmt))
    return rows


def _logit_row(name: str, model: Model, inp: Inputs, ln: np.ndarray, lt: np.ndarray, seconds: float) -> Record:
    err = float(np.abs(lt - ln).max())
    try:
        lo, hi = logits_enclosure(model, inp.tokens, inp.soft, TORCH_FLOAT64)
    except EnclosureUnsupported as e:
        return row("construction", name, "float64 logits", Verdict.UNKNOWN, METHOD, "float64", max_error=err,
                   reason=str(e))
    tol = float((hi - lo).max())
    pos = inp.out_pos
    dn, mn = _decode(ln[:, pos], inp.expected)
    dt, mt = _decode(lt[:, pos], inp.expected)
    n_out = inp.expected.size
    note = f"{n_out} outputs; decoded identical: {bool((dn == dt).all())}; min margin {mt.min():.3g}"
    extra = {"numpy_in_enclosure": inside(ln, lo, hi), "torch_in_enclosure": inside(lt, lo, hi),
             "decoded_identical": bool((dn == dt).all()), "min_margin_numpy": float(mn.min()),
             "exec_model": TORCH_FLOAT64.name}
    if not (extra["numpy_in_enclosure"] and extra["torch_in_enclosure"]):
        verdict, reason = Verdict.ERROR, "numpy and torch disagree beyond the float64 enclosure"
    elif not extra["decoded_identical"]:
        verdict, reason = Verdict.ERROR, "numpy and torch decode different tokens"
    elif not ((dt == inp.expected).all() and (mt > 0).all()):
        verdict, reason = Verdict.FALSIFIED, None
    else:
        verdict, reason = Verdict.CHECKED, None
    ce = None
    if verdict is Verdict.FALSIFIED:
        b, p = np.argwhere((dt != inp.expected) | ~(mt > 0))[0]
        ce = {"input": int(b), "position": int(pos[p]), "expected": int(inp.expected[b, p]), "decoded": int(dt[b, p]),
              "confirmation": {"method": "numpy forward (a second evaluator) decodes the same"}}
    return row("construction", name, "float64 logits", verdict, METHOD, "float64", max_error=err, tol=tol,
               note=note, reason=reason, counterexample=ce, seconds=seconds, min_margin=float(mt.min()), extra=extra)


def _generation_row(name: str, model: Model, tm: Any, inp: Inputs) -> Record:
    if not all(layer.causal for layer in model.layers):
        return row("construction", name, "float64 greedy generation", Verdict.UNKNOWN, "-", "float64",
                   reason="greedy generation needs causal attention in every layer")
    soft = torch.from_numpy(inp.soft)
    prompt = None if inp.prompt is None else torch.from_numpy(inp.prompt)
    with torch.no_grad():
        gt = tm.generate(soft, prompt, inp.steps)
    gn = generate(model, inp.soft, inp.prompt, inp.steps)
    tokens = gt.tokens.numpy()
    same = bool(np.array_equal(tokens, gn.tokens))
    right = bool(np.array_equal(tokens, inp.expected)) and bool((gt.margins > 0).all())
    verdict = Verdict.CHECKED if same and right else (Verdict.ERROR if not same else Verdict.FALSIFIED)
    reason = "torch and numpy generate different tokens" if not same else None
    ce = None if verdict is not Verdict.FALSIFIED else {"generated": tokens.tolist()[:4],
                                                        "confirmation": {"method": "numpy cached generation"}}
    note = f"{tokens.size} tokens; torch (no cache) == numpy (cached): {same}; == target: {right}"
    return row("construction", name, "float64 greedy generation", verdict, "torch re-run per step vs numpy cached",
               "float64", note=note, reason=reason, counterexample=ce, min_margin=float(gt.margins.min()))


def _scale_control(name: str, model: Model, directory: Path, inp: Inputs) -> Record:
    tm = load_torch_model(directory, "float64")
    for layer in tm.layers:
        for head in layer.heads:
            head.scale = head.W_Q.shape[0] ** -0.5
    lt = _torch_logits(tm, inp)
    lo, hi = logits_enclosure(model, inp.tokens, inp.soft, TORCH_FLOAT64)
    outside = float(np.maximum(lo - lt, lt - hi).max())
    flagged = not inside(lt, lo, hi)
    dt, mt = _decode(lt[:, inp.out_pos], inp.expected)
    note = f"implicit 1/sqrt(d_k) scale: {int((dt == inp.expected).sum())} of {inp.expected.size} decoded right"
    return row("construction", name, "control: implicit 1/sqrt(d_k) scale", Verdict.FALSIFIED if flagged else
               Verdict.ERROR, METHOD, "float64", max_error=float(np.abs(lt - lo).max()), tol=float((hi - lo).max()),
               control=True, note=note, reason=None if flagged else "negative control not flagged",
               counterexample={"largest distance outside the enclosure": outside} if flagged else None)


def _interval_verdict(spec: dict[str, Any], fmt: str) -> tuple[Verdict | None, str]:
    """Our interval precision path's verdict for the construction named in the weights' config."""
    from prefixproof.audit.precision import decode_at

    theorem, params = spec.get("construction"), spec.get("params")
    if theorem not in ("theorem1", "theorem2") or not isinstance(params, dict):
        return None, (f"nothing compared: the interval precision path covers theorem1 and theorem2, not "
                      f"{theorem or 'this construction'}")
    try:
        rec = decode_at(theorem, dict(params), fmt)
    except Exception as e:  # noqa: BLE001 - the interval path's failure is reported, never a pass
        return None, f"nothing compared: the interval path raised {type(e).__name__}: {e}"
    return rec.verdict, f"interval path: {rec.verdict_text}"


def _low_precision_row(name: str, model: Model, directory: Path, inp: Inputs, fmt: str) -> Record:
    tm = load_torch_model(directory, fmt)
    lt = _torch_logits(tm, inp)
    dt, mt = _decode(lt[:, inp.out_pos], inp.expected)
    good = int(((dt == inp.expected) & (mt > 0)).sum())
    interval, text = _interval_verdict(dict(model.info), fmt)
    note = f"torch decodes {good}/{inp.expected.size}, min margin {mt.min():.3g}" + ("" if interval is None else f"; {text}")
    if interval is None:
        verdict, reason = Verdict.UNKNOWN, text
    elif interval is Verdict.CERTIFIED and good < inp.expected.size:
        verdict, reason = Verdict.ERROR, "the interval path certified this size but torch decodes wrongly"
    else:
        verdict, reason = Verdict.CHECKED, None
    return row("construction", name, f"{fmt} decode vs precision report", verdict,
               "torch module in the format; interval certificate (prefixproof.audit.precision.decode_at)", fmt,
               max_error=float(np.abs(lt - forward(model, inp.tokens, inp.soft).logits).max()), note=note,
               reason=reason, min_margin=float(mt.min()),
               extra={"decoded_right": good, "outputs": int(inp.expected.size), "interval_verdict": text})


def construction_rows(directories: list[tuple[str, Path]] | None, low: tuple[str, ...]) -> list[Record]:
    """Cross-check the given directories, or the four default constructions built in a temporary directory."""
    if directories:
        return [r for name, d in directories for r in check_directory(name, d, low)]
    with tempfile.TemporaryDirectory(prefix="prefixproof-xcheck-") as tmp:
        return [r for name, d in default_cases(Path(tmp)) for r in check_directory(name, d, low)]
