"""The error policy: every error class in errors.py, bad arguments are CircuitSpecErrors that
are also ValueErrors, and loading a model leaves the caller's logging alone."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import circuitspec as cs
from circuitspec.errors import CircuitSpecError, InvalidArgument
from circuitspec.spec.heads import parse_head, parse_member

PACKAGE = Path(cs.__file__).parent


def _raises_kind(node: ast.ClassDef) -> bool:
    names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
    return any(n.endswith(("Error", "Exception", "Failed", "Unsupported", "Argument")) for n in names)


def test_every_error_class_is_in_errors_py():
    elsewhere = [
        f"{path.relative_to(PACKAGE.parent)}: {node.name}"
        for path in PACKAGE.rglob("*.py") if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and _raises_kind(node)
    ]
    assert not elsewhere, f"error classes outside circuitspec/errors.py: {elsewhere}"


def test_a_bad_head_label_is_an_invalid_argument_and_a_value_error():
    for bad in ("L9", "head 9", "MLPx"):
        with pytest.raises(InvalidArgument, match="L9H9"):
            parse_member(bad)
    with pytest.raises(ValueError, match="not a head"):  # callers catching ValueError keep working
        parse_head("MLP3")
    assert parse_head("9.9") == parse_head("L9H9") == (9, 9)


def test_an_unknown_verify_option_fails_before_anything_loads(tmp_path):
    with pytest.raises(CircuitSpecError, match="n_promts.*did you mean 'n_prompts'"):
        cs.verify(tmp_path / "absent.yaml", n_promts=8)


def test_loading_a_model_leaves_the_root_logger_level_alone(tiny_model_dirs):
    from circuitspec.bridge.loading import load_model

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        load_model(str(tiny_model_dirs["gpt2"]))
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)


def test_select_engine_refuses_an_unknown_engine(tiny_models):
    from circuitspec.data.ioi import build_ioi
    from circuitspec.patching.engine import select_engine

    model = tiny_models["gpt2"]
    ds = build_ioi(model.tokenizer, n_prompts=2, seed=0, corruption="abc", prepend_bos=False)
    with pytest.raises(InvalidArgument, match="'turbo'.*auto, fast, reference"):
        select_engine(model, ds, "turbo")  # type: ignore[arg-type]
