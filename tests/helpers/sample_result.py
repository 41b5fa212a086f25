"""A small IOI-like Result built by hand: three verified edges, one refuted, one inconclusive."""

from __future__ import annotations

from circuitspec.results import (
    CircuitScores,
    EdgeResult,
    Expectation,
    HeadEffect,
    HypothesisInfo,
    MetricResult,
    ModelInfo,
    NodeInfo,
    NullDistribution,
    Result,
    RobustnessRow,
    Score,
    Settings,
    TaskInfo,
    Versions,
)

NODES = (
    NodeInfo("name_movers", "name_mover", ("L9H9", "L9H6", "L10H0")),
    NodeInfo("backup", "backup_name_mover", ("L10H10", "L10H6")),
    NodeInfo("s_inhibition", "s_inhibition", ("L7H3", "L7H9", "L8H6", "L8H10")),
    NodeInfo("induction", "induction", ("L5H5", "L5H8", "L5H9", "L6H9")),
    NodeInfo("duplicate", "duplicate_token", ("L0H1", "L0H10", "L3H0")),
    NodeInfo("previous", "previous_token", ("L2H2", "L4H11"), mlps=(3,)),
)


def _edge(sender, receiver, via, at, effect, ci, verdict, reason="", heads=()):
    return EdgeResult(
        sender, receiver, via, at, metric_patched=3.2 * (1 + effect), effect=effect, ci=ci,
        verdict=verdict, reason=reason, expect=Expectation("negative", 0.05),
        per_head=tuple(HeadEffect(h, effect / len(heads), (ci[0] / len(heads), ci[1] / len(heads)))
                       for h in heads),
    )


def sample_result(passed: bool = False) -> Result:
    """A small IOI-like result: three verified edges, one refuted, one inconclusive."""
    edges = (
        _edge("name_movers", "logits", None, "END", -0.62, (-0.70, -0.55), "verified",
              "interval below -0.05", ("L9H9", "L9H6", "L10H0")),
        _edge("s_inhibition", "name_movers", "q", "END", -0.41, (-0.48, -0.35), "verified",
              "interval below -0.05", ("L7H3", "L7H9", "L8H6", "L8H10")),
        _edge("induction", "s_inhibition", "v", "S2", -0.18, (-0.24, -0.12), "verified",
              "interval below -0.05"),
        _edge("duplicate", "s_inhibition", "v", "S2", 0.02, (-0.01, 0.04), "refuted",
              "interval lies above -0.05: no negative effect"),
        _edge("previous", "induction", "k", "S1+1", -0.06, (-0.11, 0.00), "inconclusive",
              "interval straddles -0.05"),
    )
    circuit = CircuitScores(
        faithfulness=Score(0.87, (0.80, 0.93), "verified", "lower bound 0.80 >= 0.8",
                           {"f_model": 3.2, "f_circuit": 2.78}),
        completeness=Score(0.19, (0.12, 0.26), "inconclusive", "interval straddles max_gap 0.15",
                           {"worst_subset": ["backup", "name_movers"]}),
        minimality=Score(0.04, (0.01, 0.07), None, "no claim"),
        null=NullDistribution(0.05, -0.02, 0.13, 100), f_model=3.2, f_circuit=2.78,
    )
    return Result(
        hypothesis=HypothesisInfo("ioi-gpt2-small", "hypotheses/ioi.yaml", "IOI, Wang et al.", NODES),
        model=ModelInfo("gpt2", "openai-community/gpt2", None, 12, 12, 12),
        task=TaskInfo("ioi", 128, 0, "abc", True, None),
        metric=MetricResult("logit_diff", 3.2, -0.4, (3.0, 3.4), (-0.6, -0.2)),
        edges=edges, circuit=circuit, passed=passed,
        settings=Settings("path", "mean", False, "fast", 1000),
        versions=Versions("0.1.0", "2.13.0", "4.3.0", "5.24.0", "3.11.7"),
        timings={"load_model": 1.5, "edges": 12.25},
        robustness=(RobustnessRow("ablation=resample", 0.84, {edges[0].name: -0.6}),
                    RobustnessRow("corruption=s_swap", 0.79, {edges[0].name: -0.58})),
    )
