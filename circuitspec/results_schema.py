"""JSON Schema of ``results.json``: the contract fields other tools read.

It pins the verdict-side names of issue 15 (``held_out``, ``settings.ablation_level``,
``settings.mean_pool``, ``settings.bootstrap_unit``, the ``per_prompt`` values, the
faithfulness band and normalised score) and the top-level shape; everything else is
allowed through (``additionalProperties`` stays open so newer files still validate).
"""

from __future__ import annotations

from typing import Any

__all__ = ["results_json_schema"]

_NUM = {"type": ["number", "null"]}
_NUMS = {"type": "array", "items": _NUM}
_CI = {"type": ["array", "null"], "items": _NUM, "minItems": 2, "maxItems": 2}
_VERDICT = {"enum": ["verified", "refuted", "inconclusive", None]}

_SCORE: dict[str, Any] = {
    "type": "object",
    "required": ["value", "ci", "verdict", "reason", "details"],
    "properties": {
        "value": _NUM, "ci": _CI, "verdict": _VERDICT, "reason": {"type": "string"},
        "details": {"type": "object", "properties": {
            "claim": {"enum": ["claimed", "default", "off", "reported"],
                      "description": "Where the bar came from: written in the file, a default, or turned off."},
            "band": {"type": "array", "items": _NUM, "description": "Faithfulness [min, max] judged against."},
            "normalised": {"type": "object", "description": "(F(C) - F(empty)) / (F(M) - F(empty))",
                           "properties": {"value": _NUM, "ci": _CI}},
            "power": {"type": "object", "description": "Half-width reached; prompts a +-0.1 interval needs.",
                      "properties": {"half_width": _NUM, "n_prompts": {"type": "integer"},
                                     "n_prompts_needed": {"type": ["integer", "null"]},
                                     "n_prompts_needed_is": {"type": "string", "description": (
                                         "exact under 1/sqrt(n) scaling, or a lower bound when the "
                                         "interval resamples template clusters")},
                                     "n_clusters": {"type": "integer"}}},
            "nonfinite_resamples": {"type": "integer"},
            "post_selection": {"type": "boolean", "description": (
                "The number is the worst K (completeness) or weakest head (minimality) chosen on the "
                "prompts it is scored on; the verdict needs every K's (every head's) interval to clear "
                "the bar.")},
            "null": {"type": "object", "description": (
                "This level's circuit null (layer-matched random circuits); a verified verdict whose "
                "null is not beaten (p > alpha) is inconclusive.")},
            "by_order": {"type": "object", "description": "The score on BABA and ABBA prompts apart."},
        }},
        "per_prompt": {"type": "object", "description": "Faithfulness: F(C), F(M), F(empty) per prompt.",
                       "properties": {"circuit": _NUMS, "model": _NUMS, "empty": _NUMS}},
    },
}

_MEAN_POOL = {
    "type": ["object", "null"],
    "description": "How the mean-ablation means were made, disjoint from the scored prompts.",
    "required": ["n", "per_template_min", "seed", "built", "sufficient"],
    "properties": {"n": {"type": "integer"}, "per_template_min": {"type": "integer"},
                   "smallest_mean": {"type": "integer"}, "seed": {"type": ["integer", "null"]},
                   "grouping": {"type": "string"}, "counts": {"type": "object"},
                   "key": {"type": "string", "description": "What a mean is keyed by: layout "
                           "(token length and named positions)."},
                   "n_means": {"type": "integer"}, "per_mean": {"type": "integer"},
                   "excluded": {"type": "integer"},
                   "disjoint": {"type": "boolean"}, "sufficient": {"type": "boolean"},
                   "built": {"type": "string"}},
}


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a ``results.json`` validates against."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "circuitspec results.json",
        "type": "object",
        "required": ["hypothesis", "model", "task", "metric", "edges", "circuit", "passed", "settings"],
        "properties": {
            "passed": {"type": "boolean"},
            "held_out": {"type": ["boolean", "null"],
                         "description": "Verification prompts disjoint from the discovery prompts; "
                                        "null when the hypothesis records no discovery."},
            "held_out_info": {"type": "object", "properties": {
                "overlap": {"type": "integer"}, "n_discovery": {"type": ["integer", "null"]},
                "templates_disjoint": {"type": ["boolean", "null"]}, "in_sample": {"type": "boolean"},
                "reason": {"type": "string"}}},
            "metric": {"type": "object", "required": ["clean", "corrupt"], "properties": {
                "clean": _NUM, "corrupt": _NUM,
                "per_prompt": {"type": "object", "required": ["clean", "corrupt", "template"],
                               "properties": {"clean": _NUMS, "corrupt": _NUMS,
                                              "template": {"type": "array", "items": {"type": "integer"}}}}}},
            "edges": {"type": "array", "items": {"type": "object", "required": [
                "from", "to", "via", "at", "metric_patched", "effect", "ci", "verdict", "per_head"],
                "properties": {"effect": _NUM, "ci": _CI, "verdict": _VERDICT,
                               "per_prompt": {**_NUMS, "description": "Patched metric per prompt."}}}},
            "circuit": {"type": ["object", "null"], "properties": {
                "faithfulness": _SCORE, "faithfulness_edge_level": _SCORE,
                "faithfulness_mib": {**_SCORE, "description": (
                    "graph: mib only: MIB's (m(C) - m(empty)) / (m(M) - m(empty)) with the input "
                    "and every MLP as graph nodes; details.m_circuit, m_empty, m_model, n_edges")},
                "completeness": _SCORE, "minimality": _SCORE}},
            "breakdown": {"type": "object", "description": (
                "Every score with per-prompt values (edge effects, faithfulness at both levels) split "
                "by_order (BABA vs ABBA) and by_template, each {n, value, ci, unit}; unit: what the "
                "interval resamples (template clusters by order when the run's bootstrap did, else prompts)."),
                "properties": {"by_order": {"type": "object"}, "by_template": {"type": "object"}}},
            "robustness": {"type": "array", "description": (
                "Faithfulness re-measured under every ablation, aggregation and the alternate corruption "
                "(s_swap), each with interval and verdict; edge effects under both semantics."),
                "items": {"type": "object", "required": ["setting"]}},
            "settings": {"type": "object", "required": ["ablation", "ablation_level"], "properties": {
                "ablation_level": {"enum": ["node", "edge"],
                                   "description": "The level the faithfulness claim was judged at."},
                "mean_pool": _MEAN_POOL,
                "edge_positions": {"enum": ["at", "every"], "description": (
                    "Where an edge carries signal in the edge-level run: at its `at` position (default), "
                    "or at every position.")},
                "bootstrap_unit": {"type": "string",
                                   "description": "template (clusters) or prompt, with the reason for a fallback."},
                "statistics": {"type": ["object", "null"], "description": (
                    "The bootstrap and null seed, confidence level, null draw counts, completeness "
                    "search settings, template override, in_sample and quick, as used."),
                    "properties": {"seed": {"type": "integer"}, "level": _NUM,
                                   "n_null_edges": {"type": "integer"}}}}},
        },
    }
