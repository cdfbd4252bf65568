"""Short deterministic training runs (torch extra): each asserts a real learning outcome on a tiny model.

One tiny pretraining (1 layer, 1 head, width 32, ascending sort, 100 steps, ~4 s of CPU) is shared by the module.
"""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from prefixproof.experiments import measure, train  # noqa: E402
from prefixproof.experiments.config import Cell, ConfigError, Experiment, ModelConfig  # noqa: E402
from prefixproof.experiments.methods import lora_count, make_adapter, prefix_count  # noqa: E402

PRETRAIN_LOSS_BELOW = 0.5  # from ln(15) = 2.71 at initialisation (measured: 2.63 -> 0.28)


def _exp(**kw) -> Experiment:
    base = dict(id="T", title="tiny", model=ModelConfig(1, 1, 32), pretrain_task="ascending", pretrain_steps=100,
                pretrain_lr=5e-3, cells=(), prefix_len=2, batch=32, test_size=64)
    base.update(kw)
    return Experiment(**base)


@pytest.fixture(scope="module")
def pretrained():
    exp = _exp()
    model, curve = train.pretrain(exp, seed=0, quiet=True)
    return exp, model, curve


def test_pretraining_drives_the_loss_down(pretrained):
    _, _, curve = pretrained
    assert curve.loss[0] > 2.0, curve.loss[:3]  # it starts near chance...
    assert curve.loss[-1] < PRETRAIN_LOSS_BELOW, curve.loss[-5:]  # ...and learns


def test_training_is_deterministic():
    exp = _exp(pretrain_steps=5)
    _, a = train.pretrain(exp, seed=3, quiet=True)
    _, b = train.pretrain(exp, seed=3, quiet=True)
    _, c = train.pretrain(exp, seed=4, quiet=True)
    assert a.loss == b.loss
    assert a.loss != c.loss


def _adapt(pretrained, cell):
    exp, model, _ = pretrained
    exp = _exp(cells=(cell,))
    tuned = copy.deepcopy(model)
    adapter, curve, n = train.adapt(tuned, exp, cell, seed=0, quiet=True)
    return exp, model, tuned, adapter, curve, n


def test_a_prefix_tuned_model_passes_the_identities_and_keeps_the_attention_order(pretrained):
    cell = Cell("prefix", "descending", "prefix", 30, 3e-2)
    exp, model, tuned, adapter, curve, n = _adapt(pretrained, cell)
    assert curve.loss[-1] < curve.loss[0]  # the prefix did train
    m = measure.measure(tuned, model, adapter, exp, "descending", n_inputs=8)
    assert m["identities_checked"] and m["identities_ok"], m["worst"]
    assert m["measures"] >= 5  # rescale, argmax, bias, bias W_O per head + torch agreement
    assert m["tau_min"] > 0.999, m["tau_min"]


def test_lora_changes_the_attention_order_and_the_measure_flags_it(pretrained):
    """Negative control of the attention-order measure: a LoRA on the queries and keys reorders attention."""
    cell = Cell("lora", "descending", "lora", 30, 5e-2, lora_rank=2, lora_targets=("q", "k"))
    exp, model, tuned, adapter, curve, n = _adapt(pretrained, cell)
    m = measure.measure(tuned, model, adapter, exp, "descending", n_inputs=8)
    assert not m["identities_checked"]
    assert m["tau_mean"] < 0.95, m["tau_mean"]


def test_a_lora_on_neither_queries_nor_keys_keeps_every_layers_attention_order(pretrained):
    """E4's LoRA targets (o, fc1, fc2, as the companion code): the weights change and the loss falls, yet each
    layer's attention on a given input is the pretrained one, so tau is 1 by construction (the report says so;
    the q, k test above is the control that the measure does see a change)."""
    cell = Cell("lora", "descending", "lora", 30, 5e-2, lora_rank=1, lora_targets=("o", "fc1", "fc2"))
    exp, model, tuned, adapter, curve, n = _adapt(pretrained, cell)
    assert curve.loss[-1] < curve.loss[0] and any(float(b.detach().abs().max()) > 0 for b in adapter.lora.B.values())
    m = measure.measure(tuned, model, adapter, exp, "descending", n_inputs=8)
    assert m["tau_min"] > 1 - 1e-12, m["tau_min"]  # scipy's tau of two identical orders, up to rounding


def test_lora_parameter_count_equals_the_prefix_count(pretrained):
    exp, model, _ = pretrained
    # width 32, 1 layer, P = 6: prefix 6 * 32 = 192; rank 1 on q, k, v: 3 * (32 + 32) = 192
    cell = Cell("lora", "descending", "lora", 1, 1e-3, lora_rank=1, lora_targets=("q", "k", "v"), match_prefix=True)
    tuned = copy.deepcopy(model)
    adapter, params = make_adapter(tuned, cell, 6, torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in params) == prefix_count(tuned, 6) == lora_count(tuned, 1, ("q", "k", "v")) == 192
    pre, pre_params = make_adapter(tuned, Cell("p", "descending", "prefix", 1, 1e-3), 6, torch.Generator())
    assert sum(p.numel() for p in pre_params) == 192
    with pytest.raises(ConfigError, match="change lora_rank"):  # a mismatch is an error, not a silent run
        make_adapter(tuned, cell, 5, torch.Generator().manual_seed(0))


def test_every_registered_lora_cell_matches_its_prefix_at_both_sizes():
    from prefixproof.experiments.registry import BUILDERS, get

    checked = 0
    for eid in BUILDERS:
        for paper in (False, True):
            exp = get(eid, paper)
            for cell in exp.cells:
                if cell.match_prefix:
                    model = train.new_model(exp)
                    _, params = make_adapter(model, cell, exp.prefix_len, torch.Generator().manual_seed(0))
                    assert sum(p.numel() for p in params) == prefix_count(model, exp.prefix_len)
                    checked += 1
    assert checked >= 4  # E4 and E5, CPU and paper (12,288 at paper size)


def test_learning_rate_schedule_warm_up_then_cosine_and_the_old_default_unchanged(monkeypatch):
    import math

    import numpy as np

    from prefixproof.experiments import tasks
    steps = 100
    # warmup 0 is the schedule of every earlier run: cosine from 1 to 0.1 over all steps
    assert [train.lr_factor(s, steps) for s in (0, 50, 100)] == [1.0, 0.55, 0.1]
    assert train.lr_factor(25, steps) == 0.1 + 0.45 * (1 + math.cos(math.pi / 4))
    # warmup 10: 0.1, 0.2, ... 1.0 over the first ten steps, then the cosine over the other 90
    assert [round(train.lr_factor(s, steps, 10), 12) for s in (0, 4, 9, 10, 55, 100)] == [0.1, 0.5, 1.0, 1.0, 0.55, 0.1]
    # what the optimizer really uses: fit() on one parameter, its learning rate read at every step
    seen: list[float] = []
    orig = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    p = torch.nn.Parameter(torch.zeros(2))
    batch = tasks.Batch(np.zeros((2, 3), dtype=np.int64), 1)
    train.fit(lambda b: p.sum() + torch.zeros(2, 2, tasks.VOCAB), [p], lambda: batch, 20, 0.5, 0.0,
              train.Progress("t", 20, quiet=True), warmup=4)
    assert len(seen) == 20 and seen[:5] == [0.125, 0.25, 0.375, 0.5, 0.5]
    assert seen[-1] == 0.5 * train.lr_factor(19, 20, 4) and 0.05 < seen[-1] < 0.06
