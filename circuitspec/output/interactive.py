"""The interactive ``report.html``: the verified graph is the page.

:func:`render_interactive` takes the parsed ``results.json`` (a plain dict) and
returns one self-contained HTML page: the data, the page's own script and style,
and the vendored cytoscape.js (graph) and plotly.js (plots) are all inlined, so
the file opens from disk with no network. Groups are boxes that expand to their
heads; edges are coloured by verdict and sized by effect; clicking an edge or a
group shows its numbers; panels hold the circuit scores at both levels, the
robustness table, per-template tables and plots of intervals and per-prompt values.

The page draws only what the file holds. Fields that newer runs add (``edges[].null``
with a p-value, per-prompt values, ``circuit.faithfulness_edge_level``, ``timings``)
are read when present and skipped when not, so older results files still render.
Python prepares a small *view* (:func:`view`) of the numbers the page shows,
including the derived per-template effects; the script only lays it out.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

__all__ = ["render_interactive", "view"]

_VENDOR = ("cytoscape.min.js", "plotly-basic.min.js")
_SCORES = (("faithfulness", "faithfulness"), ("faithfulness_edge_level", "faithfulness (edge level)"),
           ("faithfulness_node_level", "faithfulness (node level)"),
           ("faithfulness_mib", "faithfulness (MIB's graph)"),
           ("completeness", "completeness"), ("minimality", "minimality"))


def _asset(*parts: str) -> str:
    return resources.files("circuitspec.output").joinpath(*parts).read_text(encoding="utf-8")


def _num(x: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, a string)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _ci(x: Any) -> list[float | None] | None:
    if isinstance(x, Sequence) and not isinstance(x, str) and len(x) == 2:
        return [_num(x[0]), _num(x[1])]
    return None


def _dict(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else []


def _numbers(x: Any) -> list[float | None]:
    return [_num(v) for v in _list(x)]


def edge_id(e: Mapping[str, Any]) -> str:
    """``sender->receiver.via@at``, as ``EdgeResult.name`` spells it."""
    at = e.get("at")
    at = ",".join(map(str, at)) if isinstance(at, list | tuple) else at
    return (f"{e.get('from')}->{e.get('to')}" + (f".{e['via']}" if e.get("via") else "")
            + (f"@{at}" if at else ""))


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _per_template(patched: list[float | None], metric: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Effect per template: (mean patched - mean clean) / (mean clean - mean corrupt) within it."""
    pp = _dict(metric.get("per_prompt"))
    clean, corrupt, template = _numbers(pp.get("clean")), _numbers(pp.get("corrupt")), _list(pp.get("template"))
    if not (len(patched) == len(clean) == len(corrupt) == len(template)) or not patched:
        return []
    rows = []
    for t in sorted(set(map(str, template)), key=lambda s: (len(s), s)):
        idx = [i for i, x in enumerate(template) if str(x) == t
               and None not in (patched[i], clean[i], corrupt[i])]
        p, c, k = (_mean([v[i] for i in idx]) for v in (patched, clean, corrupt))  # type: ignore[misc]
        gap = None if c is None or k is None else c - k
        effect = None if p is None or c is None or not gap else (p - c) / gap
        rows.append({"template": t, "n": len(idx), "effect": effect})
    return rows


def _per_prompt_effect(patched: list[float | None], metric: Mapping[str, Any]) -> list[float]:
    """Each prompt's (patched - clean), over the mean clean-to-corrupt gap (the effect's scale)."""
    pp = _dict(metric.get("per_prompt"))
    clean = _numbers(pp.get("clean"))
    gap = None
    if _num(metric.get("clean")) is not None and _num(metric.get("corrupt")) is not None:
        gap = metric["clean"] - metric["corrupt"]
    if not gap or len(clean) != len(patched):
        return []
    return [(p - c) / gap for p, c in zip(patched, clean, strict=True) if p is not None and c is not None]


def _semantics(robustness: list[Any]) -> dict[str, dict[str, float | None]]:
    """Edge effects under each semantics, from the robustness rows that carry them."""
    out: dict[str, dict[str, float | None]] = {}
    for row in robustness:
        row = _dict(row)
        setting = str(row.get("setting", ""))
        if "semantics" in setting:
            name = setting.split(" semantics")[0].strip()
            for edge, value in _dict(row.get("edge_effects")).items():
                out.setdefault(edge, {})[name] = _num(value)
    return out


def _edge(e: Mapping[str, Any], metric: Mapping[str, Any], semantics: Mapping[str, Any]) -> dict[str, Any]:
    eid = edge_id(e)
    patched = _numbers(e.get("per_prompt"))
    null = _dict(e.get("null"))
    return {
        "id": eid, "from": e.get("from"), "to": e.get("to"), "via": e.get("via"), "at": e.get("at"),
        "effect": _num(e.get("effect")), "ci": _ci(e.get("ci")), "verdict": e.get("verdict"),
        "reason": e.get("reason"), "metric_patched": _num(e.get("metric_patched")),
        "per_head": [{"head": _dict(h).get("head"), "effect": _num(_dict(h).get("effect")),
                      "ci": _ci(_dict(h).get("ci"))} for h in _list(e.get("per_head"))],
        "null": {k: (null[k] if k == "kind" else _num(null[k]))
                 for k in ("n", "kind", "mean", "low", "high", "p_value") if k in null} or None,
        "semantics": dict(semantics.get(eid, {})),
        "per_template": _per_template(patched, metric),
        "per_prompt_effect": _per_prompt_effect(patched, metric),
    }


def _score(key: str, label: str, s: Mapping[str, Any]) -> dict[str, Any]:
    details = _dict(s.get("details"))
    pp = _dict(s.get("per_prompt"))
    return {"key": key, "label": label, "value": _num(s.get("value")), "ci": _ci(s.get("ci")),
            "verdict": s.get("verdict"), "reason": s.get("reason"),
            "threshold": _num(details.get("threshold")),
            "per_prompt": {k: _numbers(pp.get(k)) for k in ("circuit", "model") if k in pp}}


def _label(key: str, label: str, results: Mapping[str, Any]) -> str:
    """``faithfulness`` is node level, ``faithfulness_edge_level`` edge level; the one at the
    level the settings name is the one judged: say which. (The node-level card used to be
    called "edge level, judged" in an edge-level run.)"""
    level = _dict(results.get("settings")).get("ablation_level") or "node"
    own = {"faithfulness": "node", "faithfulness_edge_level": "edge"}.get(key)
    if own is None:
        return label
    return f"faithfulness ({own} level{', judged' if own == level else ''})"


def view(results: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the page shows, read defensively from a ``results.json`` dict."""
    hyp, model, task = (_dict(results.get(k)) for k in ("hypothesis", "model", "task"))
    metric, circuit = _dict(results.get("metric")), _dict(results.get("circuit"))
    robustness = _list(results.get("robustness"))
    semantics = _semantics(robustness)
    edges = [_edge(_dict(e), metric, semantics) for e in _list(results.get("edges"))]
    groups = []
    for n in _list(hyp.get("nodes")):
        n = _dict(n)
        groups.append({"id": str(n.get("name")), "role": n.get("role"),
                       "heads": [str(h) for h in _list(n.get("heads"))],
                       "mlps": [str(m) for m in _list(n.get("mlps"))]})
    known = {g["id"] for g in groups}
    for e in edges:  # an edge end missing from hypothesis.nodes still gets a node
        for end in (e["from"], e["to"]):
            if end is not None and str(end) not in known and end != "logits":
                known.add(str(end))
                groups.append({"id": str(end), "role": None, "heads": [], "mlps": []})
    minimality = _dict(_dict(circuit.get("minimality")).get("details"))
    null = _dict(circuit.get("null"))
    pp = _dict(metric.get("per_prompt"))
    return {
        "title": str(hyp.get("name") or "circuit"), "description": hyp.get("description"),
        "passed": results.get("passed"),
        "model": {k: model.get(k) for k in ("reference", "name", "revision", "n_layers", "n_heads",
                                            "n_kv_heads")},
        "task": {k: task.get(k) for k in ("kind", "n_prompts", "seed", "corruption", "prepend_bos")},
        "settings": dict(_dict(results.get("settings"))),
        "metric": {"name": metric.get("name"), "clean": _num(metric.get("clean")),
                   "corrupt": _num(metric.get("corrupt")), "clean_ci": _ci(metric.get("clean_ci")),
                   "corrupt_ci": _ci(metric.get("corrupt_ci")),
                   "per_prompt": {k: _numbers(pp.get(k)) for k in ("clean", "corrupt") if k in pp},
                   "template": [str(t) for t in _list(pp.get("template"))]},
        "groups": groups, "edges": edges,
        "scores": [_score(k, _label(k, label, results), _dict(circuit[k])) for k, label in _SCORES
                   if isinstance(circuit.get(k), Mapping)],
        "circuit_null": {k: (null[k] if k == "kind" else _num(null[k]))
                         for k in ("n", "kind", "mean", "low", "high", "real", "fraction_beaten", "p_value")
                         if k in null} or None,
        "f_empty": _num(circuit.get("f_empty")), "f_empty_ci": _ci(circuit.get("f_empty_ci")),
        "minimality": {str(h): _num(v) for h, v in _dict(minimality.get("per_head")).items()},
        "robustness": [{"setting": _dict(r).get("setting"),
                        "faithfulness": _num(_dict(r).get("faithfulness")),
                        "edge_effects": {k: _num(v) for k, v in _dict(_dict(r).get("edge_effects")).items()}}
                       for r in robustness],
        "timings": {str(k): _num(v) for k, v in _dict(results.get("timings")).items()},
    }


def _plain(x: Any) -> Any:
    """JSON-ready: non-finite floats become null, anything unknown its text."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x if x is None or isinstance(x, str | int | bool) else str(x)


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' that HTML could read."""
    text = json.dumps(_plain(data), allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_interactive(results: Mapping[str, Any], appendix: str = "") -> str:
    """The whole page for one ``results.json`` dict; ``appendix`` is HTML put at its end
    (the text report, so the page says everything report.md says)."""
    data = view(results)
    vendor = "\n".join(f"<script>/* {name} */\n{_asset('vendor', name)}\n</script>" for name in _VENDOR)
    title = html.escape(f"circuitspec: {data['title']}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{_asset('static', 'report.css')}</style>\n</head>\n<body>\n"
        f"{_asset('static', 'report.html')}\n"
        f'<section id="appendix">{appendix}</section>\n'
        f'<script type="application/json" id="circuitspec-data">{_script_json(data)}</script>\n'
        f"{vendor}\n<script>\n{_asset('static', 'report.js')}</script>\n</body>\n</html>\n"
    )
