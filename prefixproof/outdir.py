"""Output directories that cannot lose data: `build --out DIR` is written beside DIR, then renamed into place.

The steps of `publish` and what a crash (power loss, SIGKILL) at each moment leaves:

1. Every file is written into a fresh temporary directory `.NAME.tmp-<random suffix>` beside DIR (same parent, so
   the rename below is atomic), each file fsynced, then the temporary directory itself.
   A crash here leaves DIR untouched (the old model, or nothing) plus a stray `.NAME.tmp-*` directory.
2. DIR does not exist or is an empty directory: one rename(2) of the temporary directory onto DIR.
   DIR is a prefixproof model directory (replaced only with `--force`): on Linux the two directories are
   swapped in one atomic `renameat2(RENAME_EXCHANGE)`; DIR is then the new model and the temporary name
   holds the old one. Where that call is not available, the swap is two renames: DIR -> `.NAME.old-<random suffix>`,
   then the temporary directory -> DIR; a crash between the two leaves no DIR, the old model whole under
   `.NAME.old-*` and the new model whole under `.NAME.tmp-*` (rename either back).
   Either way DIR is at every moment the whole old model or the whole new one, never a mix.
3. The parent directory is fsynced, and the old model (now under the temporary or backup name) is deleted.
   A crash here leaves the new model in DIR plus a stray hidden directory holding the old one.

Stray hidden directories are never read by prefixproof; delete them at leisure.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from prefixproof.usage import UsageError, check_parent

MODEL_FILES = frozenset({"config.json", "model.safetensors", "prompt.safetensors",
                         "adapter_config.json", "adapter_model.safetensors"})  # files a build may write
MODEL_FORMAT = "prefixproof-model"


def check_out_dir(out: str, force: bool, flag: str = "--out") -> Path:
    """Refuse, before any work, an --out that would lose data; returns it as a Path (not resolved)."""
    if not out or not out.strip():
        raise UsageError(f"{flag} is empty; give the path of a new directory, e.g. {flag} my-model")
    p = Path(out)
    if p.is_symlink():
        raise UsageError(f"{flag} {out} is a symbolic link; prefixproof never writes through links: give the "
                         f"real directory path")
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {out} is an existing file, not a directory; give a new directory path")
    check_parent(p, flag, out)
    if p.is_dir():
        _check_replaceable(p, out, force, flag)
    return p


def _check_replaceable(p: Path, out: str, force: bool, flag: str) -> None:
    try:
        entries = list(os.scandir(p))
    except OSError as e:
        raise UsageError(f"cannot read {flag} {out}: {e.strerror}") from None
    if not entries:
        return
    links = [e.name for e in entries if e.is_symlink()]
    if links:
        raise UsageError(f"{flag} {out} contains the symbolic link {links[0]!r}; prefixproof never writes through "
                         f"links: remove it or choose a new directory")
    foreign = sorted(e.name for e in entries if e.name not in MODEL_FILES or not e.is_file(follow_symlinks=False))
    if foreign or not is_model_dir(p):
        what = f"files prefixproof did not write ({', '.join(foreign[:3])})" if foreign else \
            "files that are not a prefixproof model directory"
        raise UsageError(f"{flag} {out} is not empty and holds {what}; choose a new or empty directory")
    if not force:
        raise UsageError(f"{flag} {out} already holds a prefixproof model; add --force to replace it")


def is_model_dir(p: Path) -> bool:
    """A directory whose config.json is a regular file declaring the prefixproof-model format."""
    cfg = p / "config.json"
    if cfg.is_symlink() or not cfg.is_file():
        return False
    try:
        with open(cfg, "rb") as f:
            head = f.read(1 << 24)
        doc = json.loads(head)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("format") == MODEL_FORMAT


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh temporary directory beside `out`, deleted again unless `publish` moved it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.absolute().name}.tmp-", dir=out.absolute().parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a built directory gets the usual permissions
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def fsync_tree(d: Path) -> None:
    """fsync every regular file directly in `d`, then `d` itself."""
    for entry in os.scandir(d):
        if entry.is_file(follow_symlinks=False):
            _fsync(entry.path, os.O_RDONLY)
    _fsync(str(d), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, out: Path, force: bool, flag: str = "--out") -> None:
    """Move the finished `tmp` into place as `out` (module docstring: what a crash at each step leaves)."""
    check_out_dir(str(out), force, flag)  # again: the directory may have changed during the build
    fsync_tree(tmp)
    parent = out.absolute().parent
    target = out.absolute()
    if target.is_dir() and any(os.scandir(target)):
        old = _exchange(tmp, target)
        _fsync(str(parent), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)  # onto nothing, or onto an empty directory
        _fsync(str(parent), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _exchange(tmp: Path, target: Path) -> Path:
    """Swap `tmp` and `target`; returns where the old directory now is."""
    if _renameat2_exchange(tmp, target):
        return tmp
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    os.rename(tmp, target)
    return old


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with Linux renameat2(RENAME_EXCHANGE); False when not supported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))
