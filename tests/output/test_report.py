"""Reports and the --out folder: every edge and score listed, self-contained HTML, atomic output."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from helpers.sample_result import sample_result

from circuitspec.output import outputs, report
from circuitspec.output.outputs import write_outputs, write_report
from circuitspec.output.report import render_markdown
from circuitspec.results import Result

OUTPUTS = ["circuit.png", "circuit.svg", "report.html", "report.md", "results.json"]


def test_markdown_lists_every_edge_score_and_failure():
    result = sample_result()
    md = render_markdown(result)
    # The headline names every judged score with its verdict; completeness is the gap it is.
    assert ("FAILED: 3 of 5 edges verified; faithfulness (node level) 0.870: verified (claimed); "
            "incompleteness gap 0.190: inconclusive (claimed).") in md
    for e in result.edges:
        row = next(line for line in md.splitlines()
                   if line.startswith(f"| {e.sender} → {e.receiver}") and "[" in line)
        assert f"{e.effect:.3f} [{e.ci[0]:.3f}, {e.ci[1]:.3f}]" in row
        assert f"| {e.verdict} |" in row and e.reason in row
    for name, s in result.circuit.scores().items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {report.score_label(name)} |"))
        assert f"{s.value:.3f} [{s.ci[0]:.3f}, {s.ci[1]:.3f}]" in row
        assert (s.verdict or "reported") in row
    failed = md.split("## What failed")[1].split("##")[0]
    assert "duplicate->s_inhibition.v@S2: refuted" in failed
    assert "previous->induction.k@S1+1: inconclusive" in failed
    assert "claim completeness: inconclusive" in failed
    assert "![circuit diagram](circuit.svg)" in md
    assert "| 3.200 [3.000, 3.400] |" in md  # metric clean with its interval
    assert "## Robustness" in md and "ablation=resample" in md and "| 0.840 |" in md
    assert "transformer_lens" in md and "n_bootstrap" in md and "12.25 s" in md


def test_passing_report_says_nothing_failed():
    r = sample_result(passed=True)
    ok = Result(**{**r.__dict__, "edges": r.edges[:3], "robustness": None,
                   "circuit": None})
    md = render_markdown(ok)
    assert md.startswith("# Circuit verification: ioi-gpt2-small")
    assert "PASSED: 3 of 3 edges verified." in md and "Nothing: every edge" in md
    assert "## Robustness" not in md


def test_a_pass_whose_prompts_are_not_known_to_be_held_out_says_so():
    """With no discovery record held_out is null: the run may pass, but the headline read
    "PASSED: ..." as if held out. It now says held-out was not established."""
    from dataclasses import replace

    r = sample_result(passed=True)
    unknown = replace(r, held_out=None, held_out_info={"held_out": None, "reason": "no discovery"})
    assert "held-out not established" in render_markdown(unknown).splitlines()[2]
    known = replace(r, held_out=True, held_out_info={"held_out": True, "reason": "disjoint"})
    assert "held-out not established" not in render_markdown(known)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v and not v.startswith("#"):
                self.refs.append(f"{tag} {k}={v}")
        if tag == "link":
            self.refs.append("link")


def test_write_report_gives_self_contained_html(tmp_path):
    result = sample_result()
    md, page = write_report(result, tmp_path)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text
    svg = text[text.index("<svg"):text.index("</svg>") + 6]
    ET.fromstring(svg)  # the inlined diagram is well-formed
    parser = _Collector()
    parser.feed(text)
    assert [r for r in parser.refs if "w3.org" not in r] == []  # no external assets
    for e in result.edges:
        assert f"{e.sender} → {e.receiver}" in text
    assert '<td class="refuted">refuted</td>' in text
    assert (tmp_path / "circuit.svg").exists() and md.exists()


def test_write_outputs_writes_all_five_files(tmp_path):
    out = tmp_path / "out"
    paths = write_outputs(sample_result(), out)
    assert sorted(paths) == OUTPUTS
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS  # no staging folder left
    assert Result.load(out / "results.json") == sample_result()
    assert (out / "circuit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ET.parse(out / "circuit.svg")


def test_write_outputs_leaves_nothing_partial_when_a_writer_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous run")

    def crash(result, folder, svg):
        (folder / "report.md").write_text("# half a rep")
        raise RuntimeError("report writer crashed mid-way")

    monkeypatch.setattr(outputs, "_write_reports", crash)
    with pytest.raises(RuntimeError, match="mid-way"):
        write_outputs(sample_result(), out)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert (out / "results.json").read_text() == "previous run"


def test_interval_headers_name_the_level_the_run_used():
    """claims.confidence can set another level (0.95 or more); every header said 95 % regardless."""
    from dataclasses import replace

    r = sample_result()
    higher = replace(r, settings=replace(r.settings, statistics={**(r.settings.statistics or {}), "level": 0.99}))
    md = render_markdown(higher)
    assert "95% CI" not in md and "95% band" not in md and "effect [99% CI]" in md
    assert "value [95% CI]" in render_markdown(replace(r, settings=replace(r.settings, statistics={"level": 0.95})))


def _selected_on_these_prompts():
    """sample_result with completeness and minimality judged, as verify reports them: each
    chose its worst K or weakest head on the prompts it is scored on."""
    from dataclasses import replace

    r = sample_result()
    c = r.circuit
    completeness = replace(c.completeness, verdict="refuted",
                           details={**c.completeness.details, "post_selection": True, "claim": "default"})
    minimality = replace(c.minimality, verdict="verified",
                         details={**c.minimality.details, "post_selection": True, "claim": "claimed"})
    return replace(r, circuit=replace(c, completeness=completeness, minimality=minimality))


def test_the_headline_says_post_selection_next_to_completeness_and_minimality():
    """The score table said "post-selection" next to the value; the headline, where the verdicts
    are stated, did not (review finding 12)."""
    md = render_markdown(_selected_on_these_prompts())
    headline = next(line for line in md.splitlines() if line.startswith("**FAILED"))
    assert "incompleteness gap 0.190 (post-selection): refuted (default)" in headline
    assert "minimality 0.040 (post-selection): verified (claimed)" in headline
    assert "faithfulness (node level) 0.870: verified" in headline  # chosen on nothing


def test_the_console_table_says_post_selection_next_to_the_value(capsys):
    from circuitspec.output.console import print_result

    print_result(_selected_on_these_prompts())
    lines = capsys.readouterr().out.splitlines()
    gap = next(line for line in lines if "incompleteness gap" in line)
    assert "0.190 (post-selection)" in gap
    assert "(post-selection)" not in next(line for line in lines if "faithfulness" in line)
