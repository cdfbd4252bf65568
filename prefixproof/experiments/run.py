"""An experiment as independent jobs: one pretraining job per seed, then one job per (cell, seed).

Layout under the output directory OUT (every JSON written atomically, models as safetensors):

    OUT/models/<pretrain-hash>-seed<S>.safetensors   pretrained model, shared by experiments that pretrain alike
    OUT/models/<pretrain-hash>-seed<S>.json          its loss curve and seconds
    OUT/<ID>/config.json                             the experiment's configuration (`--config` reads it back)
    OUT/<ID>/pretrain-seed<S>.json                   the pretrained model's scores
    OUT/<ID>/<cell>-seed<S>.json                     one adaptation run (format: docs/experiments.md)
    OUT/<ID>/<cell>-seed<S>.safetensors              its adapted weights (for Figure 1)

A job whose result exists for the same configuration is not re-run.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

from prefixproof.experiments.config import Experiment, from_json
from prefixproof.output import write_json

RUN_FORMAT = "prefixproof-experiment-run"
FORMAT_VERSION = 1
_PRETRAIN_KEYS = ("model", "pretrain_task", "pretrain_steps", "pretrain_lr", "prefix_len", "batch", "task_token",
                  "n_words", "weight_decay")


def digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def pretrain_hash(exp: Experiment) -> str:
    cfg = exp.to_json()
    return digest({k: cfg[k] for k in _PRETRAIN_KEYS})[:16]


def versions() -> dict[str, str]:
    import numpy
    import torch

    from prefixproof import __version__
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "prefixproof": __version__, "platform": platform.platform()}


def plan(exp: Experiment, seeds: int, out: Path, device: str = "cpu", quiet: bool = False
         ) -> tuple[list[dict], list[dict]]:
    base = {"config": exp.to_json(), "out": str(out), "device": device, "quiet": quiet}
    pre = [dict(base, kind="pretrain", seed=s) for s in range(seeds)]
    adapt = [dict(base, kind="adapt", seed=s, cell=c.name) for s in range(seeds) for c in exp.cells]
    return pre, adapt


def label(spec: dict) -> str:
    return f"{spec['config']['id']} {spec.get('cell', 'pretrain')} seed {spec['seed']}"


def _existing(path: Path, cfg_hash: str) -> dict | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return doc if doc.get("config_sha256") == cfg_hash else None


def run_job(spec: dict) -> dict:
    """One job (top-level, picklable: the process pool and Ray call it). Returns a short summary."""
    exp = from_json(spec["config"])
    out, seed = Path(spec["out"]), int(spec["seed"])
    folder = out / exp.id
    folder.mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    if spec["kind"] == "pretrain":
        return _pretrain_job(exp, seed, out, spec["device"], spec["quiet"])
    return _adapt_job(exp, seed, spec["cell"], out, spec["device"], spec["quiet"])


def _model_paths(exp: Experiment, seed: int, out: Path) -> tuple[Path, Path]:
    stem = out / "models" / f"{pretrain_hash(exp)}-seed{seed}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _pretrain_job(exp: Experiment, seed: int, out: Path, device: str, quiet: bool) -> dict:
    from prefixproof.experiments import train

    path = out / exp.id / f"pretrain-seed{seed}.json"
    cfg_hash = digest(exp.to_json())
    done = _existing(path, cfg_hash)
    if done is not None:
        return {"path": str(path), "cached": True}
    weights, meta = _model_paths(exp, seed, out)
    t0 = time.perf_counter()
    if weights.exists() and meta.exists():
        model = train.load_model(exp, weights, device)
        info = json.loads(meta.read_text(encoding="utf-8"))
    else:
        model, curve = train.pretrain(exp, seed, quiet, device)
        info = {"loss_curve": {"steps": curve.steps, "loss": curve.loss}, "seconds": time.perf_counter() - t0,
                "steps": exp.pretrain_steps, "seed": seed}
        train.save_model(model, weights)
        write_json(meta, info)
    evals = [train.evaluate(model, exp, t, None) for t in dict.fromkeys((exp.pretrain_task, *exp.pretrained_evals))]
    doc = {"format": RUN_FORMAT, "version": FORMAT_VERSION, "experiment": exp.id, "cell": "pretrained",
           "seed": seed, "task": exp.pretrain_task, "method": "pretrain", "accuracy": evals[0]["accuracy"],
           "evaluations": evals, "trainable_params": sum(p.numel() for p in model.parameters()),
           "steps": exp.pretrain_steps, "lr": exp.pretrain_lr, "loss_curve": info["loss_curve"],
           "seconds": info["seconds"], "weights": weights.name, "device": device, "threads": 1,
           "versions": versions(), "config_sha256": cfg_hash}
    write_json(path, doc)
    return {"path": str(path), "accuracy": doc["accuracy"]}


def _adapt_job(exp: Experiment, seed: int, name: str, out: Path, device: str, quiet: bool) -> dict:
    from prefixproof.experiments import measure, train

    cell = next(c for c in exp.cells if c.name == name)
    path = out / exp.id / f"{name}-seed{seed}.json"
    cfg_hash = digest(exp.to_json())
    if _existing(path, cfg_hash) is not None:
        return {"path": str(path), "cached": True}
    weights, _ = _model_paths(exp, seed, out)
    model = train.load_model(exp, weights, device)
    pretrained = train.load_model(exp, weights, device)
    t0 = time.perf_counter()
    adapter, curve, n_params = train.adapt(model, exp, cell, seed, quiet)
    seconds = time.perf_counter() - t0
    ev = train.evaluate(model, exp, cell.task, adapter)
    t1 = time.perf_counter()
    measures = measure.measure(model, pretrained, adapter, exp, cell.task)
    train.save_adapted(model, adapter, out / exp.id / f"{name}-seed{seed}.safetensors")
    doc = {"format": RUN_FORMAT, "version": FORMAT_VERSION, "experiment": exp.id, "cell": name, "seed": seed,
           "task": cell.task, "method": cell.method, "accuracy": ev["accuracy"], "evaluations": [ev],
           "trainable_params": n_params, "steps": cell.steps, "lr": cell.lr,
           "loss_curve": {"steps": curve.steps, "loss": curve.loss}, "seconds": seconds,
           "measure_seconds": time.perf_counter() - t1, "measures": measures, "device": device, "threads": 1,
           "versions": versions(), "config_sha256": cfg_hash}
    write_json(path, doc)
    return {"path": str(path), "accuracy": ev["accuracy"]}


def run_experiment(exp: Experiment, out: Path, seeds: int, *, workers: int = 1, backend: str = "process",
                   address: str | None = None, device: str = "cpu", quiet: bool = False) -> list[dict]:
    """Write the config, run the pretraining jobs and the adaptation jobs (each adaptation starts as soon as its
    seed's pretraining finished); returns their summaries, pretraining first."""
    from prefixproof.jobs import run_jobs

    (out / exp.id).mkdir(parents=True, exist_ok=True)
    write_json(out / exp.id / "config.json", exp.to_json())
    pre, adapt = plan(exp, seeds, out, device, quiet)
    kw = {"workers": workers, "backend": backend, "address": address}
    jobs = pre + adapt
    after = [None] * len(pre) + [a["seed"] for a in adapt]  # pre[s] is seed s's pretraining
    return run_jobs(run_job, jobs, labels=[label(s) for s in jobs], after=after, **kw)
