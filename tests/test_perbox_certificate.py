"""Certificate version 2, step perbox (docs/certificate-format.md): low-precision claims certified one rounding per
operation get a certificate that `check` accepts; tampering with the step is rejected naming it; the checker's own
per-operation bounds lie below real executions, and round-to-nearest variants of it are caught by that comparison."""
from __future__ import annotations

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from prefixproof import certificate
from prefixproof.checker import iv, perbox
from prefixproof.checker.files import claim_rows, fingerprint, read_weights
from test_certificate_check import _check, _edit, _load, _save, assert_tamper_rejected, run_cli
from test_directed import _theorem2_real


@pytest.fixture(scope="module")
def f16(tmp_path_factory):
    """Theorem 2 at V=12 in float16 (certified only per operation): weights directory and certificate."""
    d = tmp_path_factory.mktemp("perbox")
    assert run_cli(["build", "theorem2", "--map", "identity", "--vocab", "12", "--out", d / "w"])[0] == 0
    code, out = run_cli(["verify", "--weights", d / "w", "--claim", "theorem2", "--level", "certify", "--dtype",
                         "float16", "--certificate", d / "c.cert"])
    assert code == 0 and "wrote certificate" in out, out
    # p.cert: the same certificate with every block moved to step perbox (each value an entry with its block's
    # margin), so that the tampering below reaches that step
    head, arrays = _load(d / "c.cert")
    certificate._to_perbox(head, arrays, np.ones(len(arrays["blocks.row"]), dtype=bool))
    _save(d / "p.cert", head, arrays)
    return d


@pytest.mark.parametrize("name", ["c.cert", "p.cert"])
def test_float16_certificate_is_accepted_and_uses_the_per_box_step(f16, capsys, name):
    head, arrays = _load(f16 / name)
    assert head["version"] == 2 and head["execution"] == {"format": "float16"}
    pairs = set(zip(arrays["perbox.row"].tolist(), arrays["perbox.y"].tolist()))
    assert len(pairs) == len(arrays["perbox.row"]) > 0
    assert (len(arrays["blocks.row"]) == 0) == (name == "p.cert")
    code, out = _check(capsys, f16 / name, f16 / "w")
    assert code == 0 and "ACCEPTED" in out and "perbox:" in out, out
    assert head["margin"] == min(arrays["perbox.margin"].min(), arrays["blocks.margin"].min(initial=np.inf)) > 0


def test_bfloat16_certificate_at_its_frontier_is_accepted(tmp_path, capsys):
    assert run_cli(["build", "theorem2", "--map", "identity", "--vocab", "7", "--out", tmp_path / "w"])[0] == 0
    code, out = run_cli(["verify", "--weights", tmp_path / "w", "--claim", "theorem2", "--level", "certify",
                         "--dtype", "bfloat16", "--certificate", tmp_path / "c.cert"])
    assert code == 0 and "wrote certificate" in out, out
    assert _load(tmp_path / "c.cert")[0]["version"] == 2
    code, out = _check(capsys, tmp_path / "c.cert", tmp_path / "w")
    assert code == 0 and "ACCEPTED" in out, out


def _bounds(weights: Path, V: int, fmt: str, grid=perbox.Grid) -> np.ndarray:
    """The checker's per-operation bound of every (user token u, value y) box of Theorem 2: shape (V, V)."""
    w = read_weights(weights)
    F = ml_dtypes.bfloat16 if fmt == "bfloat16" else np.dtype(fmt)
    rows = claim_rows("theorem2", {"V": V}, w.config)
    tau = (np.arange(V) / V).astype(F).astype(np.float64)
    u, eta, exp_u = iv.FORMATS[fmt]
    r, y = np.repeat(np.arange(V), V), np.tile(np.arange(V), V)
    net = perbox.network(lambda name: w.tensors[name].astype(F).astype(np.float64), w.config)
    return perbox.bounds(grid(fmt, u, eta), net, rows, r, y, tau, exp_u).reshape(V, V)


class _Nearest(perbox.Grid):
    """Negative control: each operation's float64 result rounded to nearest, no allowance for the order of sums,
    wider accumulators or rounded products."""

    def out(self, lo, hi):
        return self.rn(lo), self.rn(hi)

    def dot(self, p, bias=None):
        b = 0.0 if bias is None else bias
        return self.rn(p[0].sum(-1) + b), self.rn(p[1].sum(-1) + b)


class _NearestRoot(perbox.Grid):
    """Negative control: the sum's internal roundings and the wider format dropped (only the root rounds)."""

    def wide(self, s, d):
        return s

    def err(self, t, n):
        return 0.0, 0.0


@pytest.mark.parametrize("V,fmt,fails", [(19, "float16", True), (10, "bfloat16", True), (7, "bfloat16", False)])
def test_checker_bounds_lie_below_real_executions_and_nearest_rounding_is_caught(tmp_path, V, fmt, fails):
    """V=19 float16 and V=10 bfloat16 really fail (numpy's own kernels); V=7 bfloat16 is the certified frontier."""
    assert run_cli(["build", "theorem2", "--map", "identity", "--vocab", str(V), "--out", tmp_path / "w"])[0] == 0
    _, real = _theorem2_real(V, fmt)  # extreme maps, both executions of the class
    mine = _bounds(tmp_path / "w", V, fmt)
    assert np.all(mine <= real)
    assert (real.min() <= 0) == fails and (mine.min() > 0) == (not fails)  # no pass where it really fails
    if fmt == "bfloat16":
        assert np.any(_bounds(tmp_path / "w", V, fmt, _Nearest) > real)
    if V == 10:
        assert np.any(_bounds(tmp_path / "w", V, fmt, _NearestRoot) > real)


def _first(key):
    return lambda a: (a.__setitem__(0, key(a[0])), a)[1]


def _drop(head, arrays):
    for k in ("row", "y", "margin"):
        arrays[f"perbox.{k}"] = arrays[f"perbox.{k}"][1:]


def _swap(head, arrays):
    for k in ("row", "y", "margin"):
        arrays[f"perbox.{k}"][[0, 1]] = arrays[f"perbox.{k}"][[1, 0]]


def _nearest_margins(weights: Path):
    """The claimed margins replaced by the round-to-nearest control's bounds where those are larger."""
    def tamper(head, arrays):
        near = _bounds(weights, head["values"], "float16", _Nearest)[arrays["perbox.row"], arrays["perbox.y"]]
        arrays["perbox.margin"] = np.maximum(arrays["perbox.margin"], near * (1 - 2.0**-20))
        head["margin"] = float(arrays["perbox.margin"].min())
    return tamper


TAMPERS = {
    "margin raised": (_edit("perbox.margin", lambda a: a * 64), "perbox[row 0, value 0]"),
    "margin negative": (_edit("perbox.margin", _first(lambda m: -m)), "perbox[row 0, value 0]"),
    "margin NaN": (_edit("perbox.margin", _first(lambda m: np.nan)), "arrays"),
    "entry dropped": (_drop, "coverage[row 0]"),
    "entries swapped": (_swap, "coverage[perbox]"),
    "value duplicated": (_edit("perbox.y", lambda a: (a.__setitem__(1, a[0]), a)[1]), "coverage[perbox]"),
    "value out of range": (_edit("perbox.y", lambda a: (a.__setitem__(-1, 12), a)[1]), "coverage[row 11]"),
    "row out of range": (_edit("perbox.row", lambda a: (a.__setitem__(slice(-12, None), 12), a)[1]), "coverage[row"),
    "value as float": (_edit("perbox.y", lambda a: a.astype(np.float64)), "arrays"),
    "step removed in version 2": (lambda h, a: [a.pop(f"perbox.{k}") for k in ("row", "y", "margin")], "arrays"),
    "version 1 with the step": (_edit(None, lambda h: h.__setitem__("version", 1)), "arrays"),
    "demanded margin above": (_edit(None, lambda h: h.__setitem__("demanded_margin", 0.01)), "perbox[row 0, value 0]"),
    "format float64": (_edit(None, lambda h: h.__setitem__("execution", {"format": "float64"})), "perbox"),
    "header margin": (_edit(None, lambda h: h.__setitem__("margin", h["margin"] * 2)), "margin"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS) + ["round-to-nearest margins"])
def test_tampered_perbox_step_is_rejected_naming_it(f16, tmp_path, capsys, name):
    tamper, step = TAMPERS.get(name, (_nearest_margins(f16 / "w"), "perbox[row"))
    assert_tamper_rejected(capsys, tmp_path, f16 / "p.cert", f16 / "w", tamper, step)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("seed", [0, 1])
def test_checker_bounds_lie_below_real_executions_on_random_lookup_models(tmp_path, dtype, seed):
    """Free content positions (the embedding's hull), a two-wide decoder input (one run), random weights."""
    from box_margins import point_margins
    from models import random_lookup_model
    from prefixproof.constructions.io import save_model
    from prefixproof.theorems.obligations.encoding import LookupEncoding
    from prefixproof.theorems.theorem1 import Theorem1Inputs

    rng = np.random.default_rng(seed)
    model = random_lookup_model(rng, V=5, N=3, weight_scale=float(rng.uniform(0.3, 3.0)))
    save_model(model, tmp_path / "w")
    w = read_weights(tmp_path / "w")
    F = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    rows = claim_rows("theorem1", {"V": 5, "N": 3}, w.config)
    u, eta, exp_u = iv.FORMATS[dtype]
    r, y = np.repeat(np.arange(3), 5), np.tile(np.arange(5), 3)
    net = perbox.network(lambda name: w.tensors[name].astype(F).astype(np.float64), w.config)
    mine = perbox.bounds(perbox.Grid(dtype, u, eta), net, rows, r, y, (np.arange(5) / 5).astype(F).astype(np.float64),
                         exp_u)
    problem = Theorem1Inputs(LookupEncoding.of(model, "target"))
    real = [point_margins(model, problem, int(a), int(b), rng, 6, dtype).min() for a, b in zip(r, y)]
    assert np.all(mine <= np.array(real))
    assert np.isfinite(mine).sum() >= 5, mine  # the comparison is not vacuous


@pytest.mark.parametrize("tensor", ["layers.0.mlp.0.b", "layers.0.mlp.1.b", "layers.0.mlp.2.b"])
def test_forged_fingerprint_with_an_edited_bias_is_rejected_by_the_perbox_step(f16, tmp_path, capsys, tensor):
    """The per-box step reads the weights themselves: a bias raised by 0.05 at one unit of each Dense layer,
    with the fingerprint forged to match, fails a box (the claimed margins are below 1e-2)."""
    w = tmp_path / "w"
    shutil.copytree(f16 / "w", w)
    tensors = load_file(str(w / "model.safetensors"))
    tensors[tensor].flat[min(3, tensors[tensor].size - 1)] += 0.05
    save_file(tensors, str(w / "model.safetensors"))
    head, arrays = _load(f16 / "p.cert")
    head["weights_fingerprint"] = fingerprint(read_weights(w))
    arrays["forms.c_lo"], arrays["forms.c_hi"] = arrays["forms.c_lo"] - 0.1, arrays["forms.c_hi"] + 0.1  # forged too
    _save(tmp_path / "forged.cert", head, arrays)
    code, out = _check(capsys, tmp_path / "forged.cert", w)
    assert code == 1 and "REJECTED at step perbox[row" in out, out
