"""The README's Python example runs as written (with a lighter verify)."""

from __future__ import annotations

import re

import pytest
from helpers.paths import ROOT


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


@pytest.mark.real
def test_readme_python_example_runs(tmp_path, monkeypatch, smollm2):
    import circuitspec as cs
    from circuitspec.bridge import loading as models
    from circuitspec.verification import run as verification
    full_verify = verification.verify

    def light_verify(hypothesis, model=None, **overrides):
        # The example's 32 prompts with every score take minutes; the API calls are the point.
        overrides.update(n_prompts=4, n_random=2, n_random_edge=0, n_null_edges=1, n_bootstrap=50, robustness=False,
                         n_subsets=1, greedy_steps=0, mean_pool_min=20)
        return full_verify(hypothesis, model or smollm2, **overrides)

    monkeypatch.setattr(verification, "verify", light_verify)
    loads = []
    monkeypatch.setattr(models, "load_model", lambda ref, **kw: loads.append(ref) or smollm2)
    (tmp_path / "hypotheses").symlink_to(ROOT / "hypotheses")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_python(), "README.md", "exec"), scope)
    assert scope["result"].task.n_prompts == 4
    assert (tmp_path / "circuit.svg").stat().st_size > 1000
    assert scope["edge"].ci[1] < 0  # one S-inhibition head into one name mover's q: small, but it hurts
    assert cs.verify is light_verify
    assert loads == ["smollm2-135m-instruct"]  # cs.load_model reached the stand-in, not a second load
