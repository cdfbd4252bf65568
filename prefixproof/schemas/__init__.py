"""JSON Schemas (draft 2020-12) of the five JSON reports, shipped with the package (docs/report.md).

    from prefixproof.schemas import load, validate
    schema = load("verify")           # the schema as a dict
    validate(doc)                     # picks the schema from doc["format"]; raises jsonschema.ValidationError

`validate` needs the `jsonschema` package (in the dev extra); `load` needs nothing.
"""
from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

KINDS = ("verify", "precision", "fuzz", "crosscheck", "selftest")
# the "format" field of each report -> its schema
FORMATS = {"prefixproof-report": "verify", **{f"prefixproof-{k}": k for k in KINDS if k != "verify"}}


def load(kind: str) -> dict[str, Any]:
    """The schema of one report kind: verify, precision, fuzz, crosscheck or selftest."""
    if kind not in KINDS:
        raise ValueError(f"no schema {kind!r}; the reports are {', '.join(KINDS)}")
    return json.loads(files(__name__).joinpath(f"{kind}.schema.json").read_text(encoding="utf-8"))


def kind_of(doc: Any) -> str:
    """The report kind a document claims to be, from its "format" field."""
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt not in FORMATS:
        raise ValueError(f"not a prefixproof report: format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return FORMATS[fmt]


def validate(doc: Any, kind: str | None = None) -> None:
    """Raise jsonschema.ValidationError unless `doc` conforms to its schema (`kind`, else from doc["format"])."""
    import jsonschema

    schema = load(kind or kind_of(doc))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(doc)
