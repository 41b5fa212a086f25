"""pytest integration: hypothesis files collected as test items.

With circuitspec installed, ``pytest hypotheses/`` (or any folder holding
``*.yaml`` hypotheses when ``--circuitspec`` is given, or files listed in the
``circuitspec_hypotheses`` ini option) verifies each hypothesis as one test: it
passes when every claim holds and fails with the verdict table otherwise, so a
team can keep circuits under CI like code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from circuitspec.errors import CircuitClaimFailed, CircuitSpecError
from circuitspec.verification.settings import Options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("circuitspec")
    group.addoption(
        "--circuitspec", action="store_true", default=False,
        help="collect hypothesis YAML files (name: ...; nodes: ...) as circuitspec tests",
    )
    group.addoption("--circuitspec-n-prompts", type=int, default=None,
                    help="override task.n_prompts for collected hypotheses")
    group.addoption("--circuitspec-quick", action="store_true", default=False,
                    help="fewer random circuits and resamples, no edge nulls or robustness panel")
    parser.addini("circuitspec_hypotheses", "hypothesis files to verify as tests", type="paths", default=[])


def _is_hypothesis(path: Path) -> bool:
    if path.suffix not in (".yaml", ".yml"):
        return False
    head = path.read_text(errors="ignore")[:4000]
    return "nodes:" in head and "model:" in head


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> Any:
    config = parent.config
    listed = {Path(p).resolve() for p in config.getini("circuitspec_hypotheses")}
    wanted = file_path.resolve() in listed or (
        config.getoption("--circuitspec") and _is_hypothesis(file_path)
    )
    if wanted:
        return HypothesisFile.from_parent(parent, path=file_path)
    return None


def run_options(config: Any) -> Options:
    """The verify options of a collected hypothesis. ``--circuitspec-quick``: 20 random
    circuits at node and at edge level (faithfulness is judged at either), a number whose
    p-value can reach 0.05 (1/21; with 10 a drawn null left every faithfulness claim judged
    against it inconclusive, and with none at edge level the default claim passed untested),
    fewer resamples, no edge nulls (each edge says so), no robustness panel."""
    opts = Options(n_prompts=config.getoption("--circuitspec-n-prompts"))
    if config.getoption("--circuitspec-quick"):
        opts.n_random, opts.n_null_edges, opts.n_bootstrap, opts.robustness = 20, 0, 200, False
        opts.n_random_edge = 20
    return opts


class HypothesisFile(pytest.File):
    def collect(self) -> Any:
        yield HypothesisItem.from_parent(self, name=self.path.stem)


class HypothesisItem(pytest.Item):
    def runtest(self) -> None:
        # verify pulls in torch: imported when a hypothesis runs, not whenever pytest starts.
        from circuitspec.verification.run import verify

        result = verify(self.path, options=run_options(self.config))
        self.user_properties.append(("passed", result.passed))
        if not result.passed:
            lines = [f"{f}" for f in result.failures()]
            raise CircuitClaimFailed("\n".join(lines))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, CircuitClaimFailed):
            return f"hypothesis {self.path.name} failed:\n{excinfo.value}"
        if isinstance(excinfo.value, CircuitSpecError):
            return f"hypothesis {self.path.name} is invalid:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"circuitspec: {self.path.name}"
