"""Shared test helpers: tiny-model factories, prompt sets, slow references and sample results.

On the import path through pytest's ``pythonpath = ["tests"]`` (pyproject.toml), so a test
module imports ``helpers.x`` and never another test module.
"""
