"""The hypothesis format: parsing, located errors, and the runtime circuit graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paths import ROOT

from circuitspec.bridge.loading import PACKAGED
from circuitspec.errors import HypothesisError
from circuitspec.spec.circuit import Edge
from circuitspec.spec.heads import parse_member
from circuitspec.spec.load import check_against_model, load_hypothesis
from circuitspec.spec.schema import json_schema


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "h.yaml"
    path.write_text(text)
    return path


HEADER = "name: t\nmodel: smollm2-135m-instruct\ntask: {kind: ioi}\n"


def test_members_parse_in_both_head_spellings_and_mlps():
    assert parse_member("L9H9") == parse_member("9.9") == ("head", 9, 9)
    assert parse_member("MLP3") == ("mlp", 3, None)
    with pytest.raises(ValueError, match="L9H9"):
        parse_member("H9L9")


def test_circuit_graph_from_the_gpt2_hypothesis():
    hyp = load_hypothesis(ROOT / "hypotheses" / "ioi_gpt2_small.yaml")
    circuit = hyp.circuit()
    assert circuit.nodes["name_movers"].heads == ((9, 9), (9, 6), (10, 0))
    names = [e.name for e in circuit.edges]
    assert "s_inhibition->name_movers.q@END" in names and "name_movers->logits@END" in names
    by_name = {e.name: e for e in circuit.edges}
    assert by_name["negative_name_movers->logits@END"].sign == "positive"
    assert by_name["name_movers->logits@END"] == Edge("name_movers", "logits", None, "END")
    assert (10, 7) in circuit.heads()
    assert hyp.resolve_prepend_bos(True) is True and hyp.metric == "logit_diff"


def test_edge_defaults_come_from_claims_and_expect(tmp_path):
    hyp = load_hypothesis(write(tmp_path, HEADER + """\
nodes:
  a: {role: induction, heads: [L3H1, MLP4]}
  b: {role: name_mover, heads: ["5.0"]}
edges:
  - {from: a, to: b, via: k, at: S1+1}
  - {from: b, to: logits, expect: {sign: any, min_effect: 0.2}}
claims: {edges: {min_effect: 0.1}}
"""))
    first, second = hyp.circuit().edges
    assert (first.sign, first.min_effect, second.sign, second.min_effect) == ("negative", 0.1, "any", 0.2)
    assert second.at == "END" and hyp.circuit().nodes["a"].mlps == (4,)


def test_mlp_in_layer_l_feeds_heads_from_layer_l_plus_1(tmp_path):
    body = HEADER + "nodes:\n  a: {role: other, heads: [MLP4]}\n  b: {role: name_mover, heads: [L%dH0]}\n" \
        "edges:\n  - {from: a, to: b, via: q}\n"
    load_hypothesis(write(tmp_path, body % 5))
    with pytest.raises(HypothesisError, match="backward"):
        load_hypothesis(write(tmp_path, body % 4))


def test_all_problems_are_reported_with_locations(tmp_path):
    path = write(tmp_path, HEADER + """\
nodes:
  a: {role: induction, heads: [L3H1]}
  b: {role: name_mover, heads: []}
edges:
  - {from: a, to: bb, via: q}
  - {from: a, to: logits, via: v}
""")
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(path)
    found = {(p.field, p.line) for p in info.value.problems}
    assert found == {("nodes.b.heads", 6), ("edges[0].to", 8), ("edges[1].via", 9)}
    assert "did you mean 'b'" in str(info.value)


def test_check_against_model_names_the_valid_range(tmp_path):
    hyp = load_hypothesis(write(tmp_path, HEADER + "nodes:\n  a: {role: other, heads: [L1H1, L31H2]}\n"))
    with pytest.raises(HypothesisError) as info:
        check_against_model(hyp, PACKAGED["smollm2-135m-instruct"].info)
    (problem,) = info.value.problems
    assert problem.line == 5 and problem.field == "nodes.a.heads[1]"
    assert "L31H2: smollm2-135m-instruct has layers 0-29" in problem.message


def test_model_mapping_and_prompt_file_relative_to_the_hypothesis(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.jsonl").write_text(
        '{"clean": "When John and Mary went out, John gave it to", '
        '"corrupted": "When John and Mary went out, Mary gave it to", '
        '"correct": " Mary", "incorrect": " John"}\n'
    )
    hyp = load_hypothesis(write(tmp_path, """\
name: t
model: {name: EleutherAI/pythia-1.4b, revision: step143000}
task: {kind: prompts, file: data/p.jsonl}
nodes: {a: {role: name_mover, heads: [L1H1]}}
edges: [{from: a, to: logits, at: END}]
"""))
    assert hyp.model_name == "EleutherAI/pythia-1.4b" and hyp.model_spec.revision == "step143000"
    assert Path(hyp.task.file) == tmp_path / "data" / "p.jsonl"


def test_python_tags_are_rejected_not_constructed(tmp_path):
    path = write(tmp_path, HEADER.replace("name: t", "name: !!python/object/apply:os.getcwd []"))
    with pytest.raises(HypothesisError, match="python/object"):
        load_hypothesis(path)


def test_json_schema_uses_the_yaml_spelling():
    schema = json_schema()
    edge = schema["$defs"]["EdgeSpec"]
    assert {"from", "to"} <= set(edge["required"])
    assert edge["additionalProperties"] is False
    assert edge["properties"]["from"]["description"]


def test_a_confidence_below_95_percent_is_refused_where_it_is_written(tmp_path):
    """claims.confidence sets every interval's level and every null's alpha (1 - confidence):
    0.5 made 50 % intervals and alpha 0.5, lowering every bar (review finding 14)."""
    nodes = "nodes:\n  a: {role: other, heads: [L1H1]}\n"
    for ok in (0.95, 0.99):
        hyp = load_hypothesis(write(tmp_path, HEADER + nodes + f"claims: {{confidence: {ok}}}\n"))
        assert hyp.claims.confidence == ok
    for low in (0.5, 0.9, 0.949):
        with pytest.raises(HypothesisError) as info:
            load_hypothesis(write(tmp_path, HEADER + nodes + f"claims:\n  confidence: {low}\n"))
        (problem,) = info.value.problems
        assert (problem.field, problem.line) == ("claims.confidence", 7)
        assert "would lower every bar" in problem.message
    claims = json_schema()["$defs"]["Claims"]["properties"]["confidence"]
    assert claims["minimum"] == 0.95
