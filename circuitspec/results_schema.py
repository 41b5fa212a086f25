"""JSON Schema of ``results.json``, generated from the result types (``circuitspec schema --results``).

It is the schema of what :meth:`circuitspec.results.Result.load` accepts, from the same
pydantic adapter that reads and writes the file: every field with its type and its
docstring as the description, the verdict words and setting choices as enums, numbers as
number-or-null. Objects stay open (``additionalProperties`` is not closed), so files from
newer versions still validate. The references between records are inlined, so a reader
finds ``properties.settings.properties.ablation_level`` where it sits in the file.
"""

from __future__ import annotations

from typing import Any

from circuitspec.results import result_adapter

__all__ = ["results_json_schema"]


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a ``results.json`` validates against."""
    schema = result_adapter().json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return inline(defs[ref.removeprefix("#/$defs/")]) | inline(rest)
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "circuitspec results.json"} | inline({k: v for k, v in schema.items() if k != "title"})
