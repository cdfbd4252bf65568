"""The packing certificate (version 2, step kind "error recursion"; docs/certificate-format.md): `verify
--certificate` writes one for multi_token_packing, `check` accepts it, and every tampering of the new step (the
recursion's M and e, the saturation decisions, rows, layers, decode pairs, the weights of every packing tensor, the
claim's V and L) is rejected with exit status 1, naming the failing step."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clirun import run
from prefixproof.checker.files import fingerprint, read_weights
from test_certificate_check import _check, _load, _save, assert_tamper_rejected, run_cli

V, L = 3, 2
D = V ** (L - 1)
LAYERS = 2 * D + 4  # hidden layers; Dense layers 0..2D+4, the last the decoder


@pytest.fixture(scope="module")
def pk(tmp_path_factory):
    """multi_token_packing at V=3, L=2 (a random map): weights directory and its certificate."""
    d = tmp_path_factory.mktemp("pack")
    assert run_cli(["build", "multi_token_packing", "--map", "random:5", "--vocab", V, "--out", d / "w"])[0] == 0
    code, out = run_cli(["verify", "--weights", d / "w", "--claim", "multi_token_packing", "--level", "certify",
                         "--certificate", d / "p.cert"])
    assert code == 0 and "CERTIFIED" in out and "wrote certificate" in out, out
    return d


def test_packing_certificate_is_accepted_and_covers_every_row_and_pair(pk, capsys):
    code, out = _check(capsys, pk / "p.cert", pk / "w")
    assert code == 0 and "ACCEPTED" in out, out
    head, arrays = _load(pk / "p.cert")
    assert head["version"] == 2 and head["params"] == {"V": V, "L": L} and head["layers"] == LAYERS
    assert f"margin >= {head['margin']:.6g}" in out and 0 < head["margin"] < 1 / V**2
    for k in range(LAYERS):  # every row of the claim (all V^L inputs) has bounds at every layer
        assert arrays[f"recursion.e.{k}"].shape[0] == V**L == arrays[f"recursion.M.{k}"].shape[0]
    assert len(arrays["decode.margin"]) == V**L * V * (V - 1)
    assert np.all(arrays["decode.margin"] >= head["margin"])


def test_checker_reference_is_the_construction(pk):
    """The checker rebuilds W*, b* from (V, L) alone; they must be the construction's exact weights (here compared
    with constructions/packing.py, which the checker never imports)."""
    from fractions import Fraction

    from prefixproof.checker.packing import layout, reference
    from prefixproof.constructions.packing import Packing

    for v, l in ((2, 2), (3, 2), (4, 2), (2, 3), (3, 3)):
        layer = Packing(v, l).model().layers[0]
        assert layout(v, l) == [list(h.labels) for h in layer.hidden]
        for k, (W, b) in enumerate(reference(v, l), start=1):
            mine = {key: Fraction(int(q.p), int(q.q)) for key, q in W.items() if q != 0}
            assert mine == {key: Fraction(x) for key, x in layer.mlp[k].W.entries.items() if x != 0}, (v, l, k)
            mine_b = {key: Fraction(int(q.p), int(q.q)) for key, q in b.items() if q != 0}
            assert mine_b == {key[0]: Fraction(x) for key, x in layer.mlp[k].b.entries.items() if x != 0}, (v, l, k)
    # negative control: a construction with a different wiring is told apart
    assert reference(3, 2)[2][0] != reference(4, 2)[2][0]


def _scale(name, idx, factor):
    def tamper(head, arrays):
        arrays[name] = arrays[name].copy()
        arrays[name][idx] *= factor
    return tamper


def _set(name, idx, value):
    def tamper(head, arrays):
        arrays[name] = arrays[name].copy()
        arrays[name][idx] = value
    return tamper


def _drop_row(head, arrays):
    for x in "Me":
        arrays[f"recursion.{x}.4"] = arrays[f"recursion.{x}.4"][:-1]


def _drop_layer(head, arrays):
    del arrays["recursion.M.6"], arrays["recursion.e.6"]


def _drop_pair(head, arrays):
    for k in ("row", "y", "j", "margin"):
        arrays[f"decode.{k}"] = np.delete(arrays[f"decode.{k}"], 7)


def _header(key, value):
    def tamper(head, arrays):
        if isinstance(value, dict):
            head[key] = {**head[key], **value}
        else:
            head[key] = value
    return tamper


TAMPERS = {
    "M lowered": (_scale("recursion.M.1", (4, 0), 0.5), "recursion[layer 1, row 4, unit x]"),
    "first-layer M lowered": (_set("recursion.M.0", (0, 0), 0.0), "recursion[layer 0, row 0, unit select:0]"),
    "e lowered": (_scale("recursion.e.5", (2, 3), 0.5), "recursion[layer 5, row 2, unit idx:0]"),
    "first-layer e lowered": (_scale("recursion.e.0", (3, 1), 0.9), "recursion[layer 0, row 3, unit select:1]"),
    "value error lowered": (_scale(f"recursion.e.{LAYERS - 1}", (8, 0), 0.99), f"recursion[layer {LAYERS - 1}, row 8"),
    "saturation decision flipped": (_set("recursion.off.5", (6, 1), 0), "recursion[layer 5, row 6, unit H:1]"),
    "threshold error at 1/2": (_set("recursion.e.4", (1, 0), 0.5), "saturation[layer 4, row 1, inv:0]"),
    "saturation decision out of range": (_set("recursion.off.3", (0, 0), 2), "saturation[layer 3]"),
    "row dropped": (_drop_row, "coverage[layer 4]"),
    "layer dropped": (_drop_layer, "coverage[layer 6]"),
    "decode pair removed": (_drop_pair, "coverage[decode]"),
    "decode bound raised": (_scale("decode.margin", 10, 1.01), "decode[row 1, y 2, j 0]"),
    "header margin": (_header("margin", 0.5), "margin"),
    "demanded margin above the bound": (_header("demanded_margin", 0.5), "decode[row 0, y 0, j 1]"),
    "wrong V": (_header("params", {"V": V + 1}), "claim"),
    "wrong L": (_header("params", {"L": L + 1}), "claim"),
    "version 1": (_header("version", 1), "header"),
    "attention narrowed": (_scale("attention.hi", (0, 2, 0), 0.999), "attention[head 0, row 2"),
    "form edited": (_scale("forms.c_hi", 1, 0.5), "form[row"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_packing_certificate_is_rejected_naming_the_step(pk, tmp_path, capsys, name):
    assert_tamper_rejected(capsys, tmp_path, pk / "p.cert", pk / "w", *TAMPERS[name])


def _forged(pk, tmp_path, edit) -> tuple[Path, Path]:
    """A copy of the weights with `edit` applied and a certificate whose fingerprint is forged to match."""
    w = tmp_path / "w"
    shutil.copytree(pk / "w", w)
    tensors = load_file(str(w / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(w / "model.safetensors"))
    head, arrays = _load(pk / "p.cert")
    head["weights_fingerprint"] = fingerprint(read_weights(w))
    _save(tmp_path / "forged.cert", head, arrays)
    return tmp_path / "forged.cert", w


# every Dense layer of the MLP, weights and bias: the first layer through the forms, layers 1..2D+3 against the
# checker's reference (|W - W*|, |b - b*|), the decoder through the pair inequalities
DENSE = [(k, part) for k in range(2 * D + 5) for part in ("W", "b")]


def _step_of(k: int, part: str) -> str:
    if k == 0:
        return "form[row"
    return "decode[row" if k == 2 * D + 4 else f"[layer {k}"


@pytest.mark.parametrize("k,part", DENSE)
def test_edited_packing_weight_is_rejected_by_reasoning(pk, tmp_path, capsys, k, part):
    name = f"layers.0.mlp.{k}.{part}"

    def edit(t):
        key = name if name in t else f"{name}.data"
        a = t[key]
        # the last non-zero entry: in every layer it carries an error-bearing unit (x, idx, acc, value); the
        # saturating pairs' weights W[H_j, inv_j] may move a little without changing the proof (H_j is exactly
        # 0 or 1 either way), so they are not the entry edited here
        i = int(np.flatnonzero(a.ravel() != 0)[-1]) if np.any(a != 0) else 0
        a.flat[i] += 0.05 if k in (0, 2 * D + 4) else 1e-6
    cert, w = _forged(pk, tmp_path, edit)
    code, out = _check(capsys, cert, w)
    assert code == 1, out
    assert _step_of(k, part) in out.split("REJECTED at step ", 1)[1].split(":")[0], out


def test_positive_saturation_weight_cannot_claim_the_off_case(pk, tmp_path, capsys):
    """H_j's off case needs the model's own weight W[H_j, inv_j] < 0; made positive, the decision is refused."""
    head, _ = _load(pk / "p.cert")

    def edit(t):
        key = "layers.0.mlp.3.W" if "layers.0.mlp.3.W" in t else "layers.0.mlp.3.W.data"
        a = t[key]
        if key.endswith(".data"):
            a[np.flatnonzero(a == -1)[0]] = 1.0
        else:
            a[0, 0] = 1.0  # H:0 <- inv:0
    cert, w = _forged(pk, tmp_path, edit)
    code, out = _check(capsys, cert, w)
    assert code == 1 and "REJECTED at step saturation[layer 3, row 0, H:0]" in out, out


def test_packing_certificate_needs_the_claim_to_be_certified(tmp_path, capsys):
    """Demanding a margin above the certified one: nothing is written (exit 2, one line)."""
    assert run_cli(["build", "multi_token_packing", "--map", "random:5", "--vocab", "2", "--out", tmp_path / "w"])[0] == 0
    code, out, err = run(capsys, "verify", "--weights", tmp_path / "w", "--claim", "multi_token_packing", "--level",
                         "certify", "--min-margin", "1", "--certificate", tmp_path / "c.cert")
    assert code == 2 and "nothing certified to write" in err and not (tmp_path / "c.cert").exists()


def _executed_and_exact(V: int, L: int, table: np.ndarray):
    """Per row (u_1..u_L): the hidden layers of one float64 execution (numpy, softmax attention, from
    docs/semantics.md) and of the exact construction (hardmax: select:u_1 = r, keep<l>:b = [u_l = b]; then the
    construction's exact rational weights), as lists over layers of (rows, width) arrays."""
    from fractions import Fraction
    from itertools import product

    from prefixproof.constructions.model import materialize
    from prefixproof.constructions.packing import Packing

    c = Packing(V, L)
    exact, m = c.model(), materialize(c.model())
    layer, ex_layer = m.layers[0], exact.layers[0]
    arr = lambda w: np.asarray(w.toarray() if hasattr(w, "toarray") else w, dtype=np.float64)  # noqa: E731
    r = c.pack(table)
    virtual = c.encode(table)[0]
    runs, ideals = [], []
    for u in product(range(V), repeat=L):
        X = np.stack([virtual] + [arr(m.embed)[t] for t in u]) + arr(m.pos)[:L + 1]
        out = 0.0
        for h in layer.heads:
            s = h.scale * (arr(h.W_K) @ X.T).T @ (arr(h.W_Q) @ X[L])
            a = np.exp(s - s.max())
            out = out + arr(h.W_O) @ ((a / a.sum()) @ (arr(h.W_V) @ X.T).T)
        acts = [np.maximum(arr(layer.mlp[0].W) @ out + arr(layer.mlp[0].b), 0.0)]
        for d in layer.mlp[1:-1]:
            acts.append(np.maximum(arr(d.W) @ acts[-1] + arr(d.b), 0.0))
        runs.append(acts)
        first = [Fraction(0)] * (L * V)
        first[u[0]] = r[u[0]]
        for l in range(2, L + 1):
            first[(l - 1) * V + u[l - 1]] = Fraction(1)
        ideal = [first]
        for d in ex_layer.mlp[1:-1]:
            z = [Fraction(d.b.entries.get((i,), 0)) for i in range(d.W.shape[0])]
            for (i, j), w in d.W.entries.items():
                z[i] += Fraction(w) * ideal[-1][j]
            ideal.append([max(x, Fraction(0)) for x in z])
        ideals.append(ideal)
    return ([np.stack([run[k] for run in runs]) for k in range(len(runs[0]))],
            [np.array([[float(x) for x in row[k]] for row in ideals]) for k in range(len(ideals[0]))],
            [[row[k] for row in ideals] for k in range(len(ideals[0]))])


def test_certificate_bounds_hold_on_real_executions(pk):
    """What the file claims, on concrete inputs: for every row, layer and unit, |executed - exact| <= e and
    |exact| <= M, the executed run being numpy float64 with softmax attention, the exact one the construction in
    rationals; and the decoded answer is m(u). Negative control: with e lowered to 0 the same comparison fails."""
    from fractions import Fraction

    _, arrays = _load(pk / "p.cert")
    rng = np.random.default_rng(11)
    tables = [np.zeros(V**L, np.int64), np.full(V**L, V - 1)] + [rng.integers(0, V, V**L) for _ in range(4)]
    worst, violations_at_zero = 0.0, 0
    for table in tables:
        runs, ideal_f, ideal_q = _executed_and_exact(V, L, table)
        for k in range(LAYERS):
            e, M = arrays[f"recursion.e.{k}"], arrays[f"recursion.M.{k}"]
            diff = np.array([[abs(Fraction(float(a)) - b) for a, b in zip(ra, rb)]
                             for ra, rb in zip(runs[k], ideal_q[k])], dtype=object)
            assert all(diff[i, j] <= Fraction(float(e[i, j])) for i, j in np.ndindex(e.shape)), (k, table)
            assert np.all(np.abs(ideal_f[k]) <= M), (k, table)
            worst = max(worst, max(float(d) for d in diff.ravel()))
            violations_at_zero += int(sum(diff[i, j] > 0 for i, j in np.ndindex(e.shape)))
        assert np.allclose(ideal_f[-1][:, 0], table / V)  # the exact value is m(u)/V (the lemma the checker trusts)
    assert worst > 0 and violations_at_zero > 0  # executions do differ from the exact construction: e = 0 would fail


@pytest.mark.parametrize("fmt", ["float32", "float16"])
def test_low_precision_packing_certificate_is_confirmed_by_the_checker_and_accepted(pk, tmp_path, capsys, fmt):
    """In a low-precision format the writer runs the independent checker on its draft first (needs --weights).
    float16: V=2, the only V the engine certifies there (its threshold stages leave little room)."""
    w = pk / "w"
    if fmt == "float16":
        w = tmp_path / "w2"
        assert run_cli(["build", "multi_token_packing", "--map", "random:0", "--vocab", 2, "--out", w])[0] == 0
    code, out = run_cli(["verify", "--weights", w, "--claim", "multi_token_packing", "--level", "certify",
                         "--dtype", fmt, "--certificate", tmp_path / "c.cert"])
    assert code == 0 and "CERTIFIED" in out and "wrote certificate" in out, out
    assert _load(tmp_path / "c.cert")[0]["execution"] == {"format": fmt}
    code, out = _check(capsys, tmp_path / "c.cert", w)
    assert code == 0 and "ACCEPTED" in out, out
