"""Reading the files of a weights directory and users' JSON files: JSON and safetensors only, never pickle.

Every failure is one line naming the file: missing, not UTF-8, not JSON, nested too deeply, or a number too
long to read (Python refuses integers of more than 4300 digits).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def read_json(path: Path, error: type[Exception], missing: str, label: str | None = None,
              object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """The JSON content of `path` (JSON only, never pickle); `error(missing)` when there is no such file and a
    one-line `error` naming `label` (default: the path) when the bytes are not UTF-8 JSON, are nested too
    deeply, or hold an integer too large to read."""
    if not path.is_file():
        raise error(missing)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{label or path} is not valid JSON (not UTF-8: {e.reason})") from None
    except OSError as e:
        raise error(f"cannot read {label or path}: {e.strerror}") from None
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as e:
        raise error(f"{label or path} is not valid JSON ({e})") from None
    except RecursionError:
        raise error(f"{label or path} is nested too deeply to be read; flatten it") from None
    except ValueError as e:  # an integer of more than 4300 digits (a hook's own error passes through)
        if type(e) is not ValueError:
            raise
        raise error(f"{label or path} holds a number too long to read; numbers in it must be small integers "
                    f"(token ids, sizes)") from None
