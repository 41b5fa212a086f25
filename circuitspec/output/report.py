"""Human-readable reports of a verification: ``report.md`` and a self-contained ``report.html``.

Both are built from one list of blocks (headings, paragraphs, tables, lists), so
they always say the same thing. The Markdown embeds ``circuit.svg`` beside it;
the HTML inlines the SVG and its CSS, so it can be mailed or attached to a CI
run as a single file.

:func:`write_outputs` writes the whole ``--out`` folder (``results.json``,
``circuit.svg``, ``circuit.png``, ``report.md``, ``report.html``) into a staging
folder first and moves the files in only when all of them are written.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from circuitspec.output.interactive import render_interactive
from circuitspec.results import EdgeResult, NullDistribution, Result, Score, as_json

__all__ = ["html_body", "render_html", "render_markdown", "render_report_page"]

SVG_NAME = "circuit.svg"


@dataclass(frozen=True)
class _Block:
    kind: str  # h1 | h2 | p | table | list | figure
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _with_ci(x: float | None, ci: Sequence[float | None] | None, digits: int = 3) -> str:
    if ci is None:
        return _num(x, digits)
    return f"{_num(x, digits)} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _survives(result: Result) -> list[_Block]:
    """One sentence: under which robustness settings the faithfulness verdict holds."""
    rows = [r for r in result.robustness or () if r.verdict is not None]
    if not rows:
        return []
    held = [r.setting for r in rows if r.verdict == "verified"]
    failed = [f"{r.setting} ({r.verdict})" for r in rows if r.verdict != "verified"]
    if not failed:
        return [_Block("p", f"The faithfulness claim survives every choice in the panel ({len(rows)} settings).")]
    return [_Block("p", f"The faithfulness claim holds under {len(held)} of {len(rows)} settings; it does not "
                        f"survive: {'; '.join(failed)}.")]


def _pct(result: Result) -> str:
    """The interval level the run used, as a percentage (``claims.confidence``; 95 % unless
    the file says otherwise): a header saying 95 % over 80 % intervals overstated them."""
    level = (result.settings.statistics or {}).get("level", 0.95)
    return f"{100 * float(level):g}%"


def _breakdown(result: Result) -> list[_Block]:
    """Every score with per-prompt values on the BABA and ABBA prompts apart, and per template."""
    split = result.breakdown or {}
    by_order, by_template = split.get("by_order") or {}, split.get("by_template") or {}
    if not by_order:
        return []
    out = [_Block("h2", "By prompt order and template"),
           _Block("p", "Each score recomputed on the BABA prompts and on their ABBA mirrors apart, then per "
                       "template (by order, intervals resample templates as clusters when the run's did, each "
                       "template's resample its prompts; the table per template shows values only)."),
           _Block("table", header=("score", f"BABA [{_pct(result)} CI]", "n", f"ABBA [{_pct(result)} CI]", "n"),
                  rows=tuple((name, *(x for o in ("BABA", "ABBA") for x in (
                      _with_ci(parts.get(o, {}).get("value"), parts.get(o, {}).get("ci")),
                      str(parts.get(o, {}).get("n", 0))))) for name, parts in by_order.items()))]
    templates = sorted({t for parts in by_template.values() for t in parts}, key=int)
    if templates:
        out.append(_Block("table", header=("score", *(f"t{t}" for t in templates)),
                          rows=tuple((name, *(_num((parts.get(t) or {}).get("value"), 2) for t in templates))
                                     for name, parts in by_template.items())))
    return out


def _edge_title(e: EdgeResult) -> str:
    at = ",".join(e.at) if isinstance(e.at, tuple) else e.at
    where = " @ ".join(x for x in (e.via, at) if x)
    return f"{e.sender} → {e.receiver}" + (f" ({where})" if where else "")


SCORE_LABELS = {"faithfulness": "faithfulness (node level)", "faithfulness_edge_level":
                "faithfulness (edge level)", "faithfulness_mib": "faithfulness (MIB's graph)",
                "completeness": "incompleteness gap",
                "minimality": "minimality"}


def score_label(name: str) -> str:
    """What a score is called on the page: ``completeness`` is an *incompleteness* gap
    (larger is worse), so it is printed as one."""
    return SCORE_LABELS.get(name, name)


def post_selection(score: Score) -> str:
    """" (post-selection)" for a score whose value was chosen on the prompts it is scored on."""
    return " (post-selection)" if score.details.get("post_selection") else ""


def headline_scores(result: Result) -> list[str]:
    """Every judged or turned-off score with its verdict and where its bar came from
    (claimed in the file, a default, or off), "post-selection" next to a value chosen on the
    prompts it is scored on (completeness' worst K, minimality's weakest head); the
    faithfulness level not judged is left out."""
    out = []
    for name, score in (result.circuit.scores().items() if result.circuit else ()):
        source = score.details.get("claim")
        if score.verdict is None and source != "off":
            continue
        word = "off" if source == "off" else f"{score.verdict} ({source or 'claimed'})"
        out.append(f"{score_label(name)} {_num(score.value)}{post_selection(score)}: {word}")
    return out


def _summary(result: Result) -> str:
    n_ok = sum(e.verdict == "verified" for e in result.edges)
    text = f"{n_ok} of {len(result.edges)} edges verified"
    scores = headline_scores(result)
    if scores:
        text += "; " + "; ".join(scores)
    if result.held_out is False:
        text += "; in-sample prompts" + ("" if (result.held_out_info or {}).get("in_sample") else
                                          " (cannot pass without --in-sample)")
    if result.held_out is None and result.held_out_info is not None:
        # No discovery record: a pass says nothing about whether these were the prompts the
        # circuit was found on, so the headline says so rather than implying held out.
        text += "; held-out not established (no discovery record, or own prompts it cannot name)"
    if result.mode == "quick":
        fewer = (result.settings.statistics or {}).get("quick_prompts")
        return ("QUICK CHECK, NOT A VERIFICATION (edges and faithfulness only, small nulls"
                + ("" if fewer is None else f", {fewer}") + f"; cannot pass): {text}.")
    return ("PASSED: " if result.passed else "FAILED: ") + text + "."


def _null_cell(null: NullDistribution | None) -> str:
    if null is None:
        return "-"
    return f"[{_num(null.low)}, {_num(null.high)}] ({null.n}), p = {_num(null.p_value)}"


def _levels_text(result: Result) -> str:
    """What each faithfulness level tests, and which one the claim was judged at."""
    return ("Node level (`faithfulness`) ablates every head outside the circuit and lets circuit "
            "heads read each other freely: it depends only on *which heads* are in the circuit, "
            "not on the edges. Edge level (`faithfulness_edge_level`) lets clean signal travel "
            "between circuit heads only along the hypothesis' edges: it tests the *wiring*. "
            f"The faithfulness claim was judged at **{result.settings.ablation_level} level**.")


def _blocks(result: Result) -> list[_Block]:
    m, t = result.model, result.task
    out = [
        _Block("h1", f"Circuit verification: {result.hypothesis.name}"),
        _Block("p", f"**{_summary(result)}**"),
    ]
    if result.hypothesis.description:
        out.append(_Block("p", result.hypothesis.description))
    out.append(_Block("p", f"Model `{m.name}` (from `{m.reference}`"
                      + (f", revision `{m.revision}`" if m.revision else "")
                      + f"; {m.n_layers} layers, {m.n_heads} heads, {m.n_kv_heads} key/value heads). "
                      f"Task `{t.kind}`: {t.n_prompts} prompts, seed {t.seed}, corruption "
                      f"`{t.corruption}`, BOS {'prepended' if t.prepend_bos else 'not prepended'}."
                      + (f" {t.notes}" if t.notes else "")
                      + (f" Hypothesis file: `{result.hypothesis.path}`." if result.hypothesis.path
                         else "")))
    if result.held_out_info is not None:
        word = {True: "yes", False: "**no, in-sample**", None: "unknown"}[result.held_out]
        out.append(_Block("p", f"Held-out prompts: {word}. {result.held_out_info.get('reason', '')}."))
    out.append(_Block("figure", SVG_NAME))

    mt = result.metric
    gap = None if mt.clean is None or mt.corrupt is None else mt.clean - mt.corrupt
    out += [_Block("h2", f"Metric: {mt.name}"),
            _Block("table", header=("run", f"value [{_pct(result)} CI]"),
                   rows=(("clean", _with_ci(mt.clean, mt.clean_ci)),
                         ("corrupt", _with_ci(mt.corrupt, mt.corrupt_ci)),
                         ("clean - corrupt", _num(gap))))]

    out += [_Block("h2", "Edges"),
            _Block("p", "effect = (M_patched - M_clean) / (M_clean - M_corrupt): 0 is no effect, "
                   "-1 the whole clean-to-corrupt gap."),
            _Block("table", header=("edge", f"effect [{_pct(result)} CI]", "expected", "null band (n), p", "verdict",
                                    "reason"),
                   rows=tuple((_edge_title(e), _with_ci(e.effect, e.ci),
                               f"{e.expect.sign or 'any'}, |effect| ≥ {_num(e.expect.min_effect, 2)}",
                               _null_cell(e.null), e.verdict, e.reason) for e in result.edges))]
    heads = tuple((_edge_title(e), h.head, _with_ci(h.effect, h.ci))
                  for e in result.edges for h in e.per_head)
    if heads:
        out += [_Block("h2", "Per-head breakdown"),
                _Block("table", header=("edge", "sender head", f"effect [{_pct(result)} CI]"), rows=heads)]

    c = result.circuit
    if c is not None:
        rows = tuple((score_label(k), _with_ci(s.value, s.ci) + post_selection(s),
                      (s.verdict or ("off" if s.details.get("claim") == "off" else "reported"))
                      + (f" ({s.details['claim']})" if s.details.get("claim") in ("claimed", "default") else ""),
                      s.reason)
                     for k, s in c.scores().items())
        out += [_Block("h2", "Circuit scores"), _Block("p", _levels_text(result)),
                _Block("table", header=("score", f"value [{_pct(result)} CI]", "verdict", "reason"), rows=rows)]
        nulls = tuple((level, str(n.n), _num(n.mean), f"[{_num(n.low)}, {_num(n.high)}]",
                       _num(None if n.fraction_beaten is None else 100 * n.fraction_beaten, 0),
                       _num(n.p_value))
                      for level, n in (("node", c.null), ("edge", c.null_edge_level)) if n is not None)
        if nulls:
            out += [_Block("p", "Layer-matched random circuits: every head mapped onto a random head of "
                           "its own layer outside the hypothesis (at edge level, wired like it); a "
                           "random circuit counts against the hypothesis when its faithfulness is at "
                           "least as close to 1; p = (1 + that count) / (1 + n)."),
                    _Block("table", header=("level", "n", "mean", f"{_pct(result)} band", "% beaten", "p"), rows=nulls)]
        extra = [f"F(M) = {_num(c.f_model)}" if c.f_model is not None else "",
                 f"F(C) = {_num(c.f_circuit)}" if c.f_circuit is not None else "",
                 f"F(∅) = {_with_ci(c.f_empty, c.f_empty_ci)} (every head ablated)" if c.f_empty is not None else ""]
        for name, score in c.scores().items():
            pw = score.details.get("power")
            if pw and pw.get("n_prompts_needed") is not None:
                extra.append(f"{name}: interval half-width {_num(pw['half_width'])} with "
                             f"{pw['n_prompts']} prompts; a ±{pw['target_half_width']} interval "
                             f"would need {'at least ' if pw.get('n_clusters') else 'about '}"
                             f"{pw['n_prompts_needed']} prompts"
                             + (f" (the interval resamples {pw['n_clusters']} template clusters, so more "
                                "prompts of the same templates shrink it less than 1/√n)"
                                if pw.get("n_clusters") else ""))
            norm = score.details.get("normalised")
            if norm:
                extra.append(f"{name}, normalised (F(C) - F(∅)) / (F(M) - F(∅)): "
                             f"{_with_ci(norm['value'], norm['ci'])}")
            split = score.details.get("by_order") or {}
            if split:
                extra.append(f"{name} by prompt order: " + ", ".join(
                    f"{k} {_with_ci(x['value'], x['ci'])} (n = {x['n']})" for k, x in split.items()))
            ratio = score.details.get("mean_of_per_prompt_ratios")
            if ratio is not None:
                extra.append(f"{name}, mean of per-prompt ratios: "
                             f"{_with_ci(ratio, score.details.get('mean_of_per_prompt_ratios_ci'))}")
        if any(extra):
            out.append(_Block("p", "; ".join(x for x in extra if x) + "."))

    failures = result.failures()
    out.append(_Block("h2", "What failed"))
    out.append(_Block("list", rows=tuple((str(f),) for f in failures)) if failures
               else _Block("p", "Nothing: every edge and every claim verified."))

    if result.robustness:
        names = list(dict.fromkeys(k for r in result.robustness for k in r.edge_effects))
        out += [_Block("h2", "Robustness"),
                _Block("table", header=("setting", f"faithfulness [{_pct(result)} CI]", "verdict", *names),
                       rows=tuple((r.setting, _with_ci(r.faithfulness, r.ci), r.verdict or "",
                                   *(_num(r.edge_effects.get(n)) for n in names))
                                  for r in result.robustness))]
        out += _survives(result)

    out += _breakdown(result)

    s, v = result.settings, result.versions
    out += [_Block("h2", "Run"),
            _Block("table", header=("setting", "value"),
                   rows=tuple((k, str(x)) for k, x in as_json(s).items())
                   + tuple((f"version: {k}", str(x)) for k, x in as_json(v).items()))]
    out += _cost(result)
    return out


def _cost(result: Result) -> list[_Block]:
    """Where the run's time and work went, stage by stage."""
    stages = list(dict.fromkeys([*result.timings, *result.work]))
    if not stages:
        return []
    def secs(x: float | None) -> str:
        return "-" if x is None else f"{_num(x, 2)} s"

    rows = tuple((k, secs(result.timings.get(k)), _num(result.work.get(k), 2) if k in result.work else "-")
                 for k in stages)
    total = (sum(x for x in result.timings.values() if x is not None),
             sum(x for x in result.work.values() if x is not None))
    return [_Block("h2", "Cost"),
            _Block("p", "Wall time and work per stage. Work is in forward-equivalents: token-layers "
                   "recomputed divided by those of one full forward pass over the run's prompts "
                   "(a stage nested in another is counted once, in itself)."),
            _Block("table", header=("stage", "seconds", "forward-equivalents"),
                   rows=rows + (("total", secs(total[0]), _num(total[1], 2)),))]


# --- Markdown -------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Result) -> str:
    """The report as Markdown; the diagram is referenced as ``circuit.svg`` beside it."""
    lines: list[str] = []
    for b in _blocks(result):
        if b.kind == "h1":
            lines += [f"# {b.text}", ""]
        elif b.kind == "h2":
            lines += [f"## {b.text}", ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "figure":
            lines += [f"![circuit diagram]({b.text})", ""]
        elif b.kind == "list":
            lines += [f"- {_md_cell(r[0])}" for r in b.rows] + [""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(b.header) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
    return "\n".join(lines)


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
code { background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
figure { margin: 1em 0; overflow-x: auto; } figure svg { max-width: 100%; height: auto; }
.verified { color: #00795A; font-weight: 600; } .refuted { color: #B34A00; font-weight: 600; }
.inconclusive { color: #A86E00; font-weight: 600; }
.passed { color: #00795A; } .failed { color: #B34A00; }
"""


def _inline(text: str) -> str:
    """Escape text, then turn Markdown's **bold** and `code` into HTML."""
    out = html.escape(text)
    for mark, tag in (("**", "strong"), ("`", "code")):
        parts = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return out


def _cell(text: str) -> str:
    if text in ("verified", "refuted", "inconclusive"):
        return f'<td class="{text}">{text}</td>'
    return f"<td>{_inline(text)}</td>"


def render_html(result: Result, svg: str | None) -> str:
    """The text report as one self-contained HTML page, with ``svg`` (the diagram's text) inlined."""
    title = html.escape(f"circuitspec: {result.hypothesis.name}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + html_body(result, svg) + "\n</body>\n</html>\n")


def html_body(result: Result, svg: str | None) -> str:
    """The text report's blocks as HTML elements (no page around them)."""
    body: list[str] = []
    for b in _blocks(result):
        if b.kind == "h1":
            body.append(f"<h1>{html.escape(b.text)}</h1>")
        elif b.kind == "h2":
            body.append(f"<h2>{html.escape(b.text)}</h2>")
        elif b.kind == "p":
            cls = ' class="passed"' if b.text.startswith("**PASSED") else (
                ' class="failed"' if b.text.startswith("**FAILED") else "")
            body.append(f"<p{cls}>{_inline(b.text)}</p>")
        elif b.kind == "figure" and svg:
            body.append(f"<figure>{svg[svg.find('<svg'):]}</figure>")  # drop XML prolog/doctype
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(r[0])}</li>" for r in b.rows) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return "\n".join(body)


def render_report_page(result: Result, svg: str | None) -> str:
    """``report.html``: the interactive page, with the text report (and diagram) at its end."""
    appendix = ("<details><summary>The text report (as report.md)</summary>"
                + html_body(result, svg) + "</details>")
    return render_interactive(result.to_json(), appendix=appendix)
