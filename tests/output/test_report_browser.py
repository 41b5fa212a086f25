"""report.html opened in a real headless Chromium (Debian's package, driven by Playwright).

Skipped only when no browser is installed (`make test` installs one with apt-get).
The page must render with no console errors or warnings, show every node and edge of
results.json, show an edge's numbers when the edge is clicked and a group's heads when
the group is clicked. Screenshots go to $CIRCUITSPEC_SCREENSHOTS when it is set (that
is how docs/img/report_interactive.png is made), else to the test's folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from helpers.paths import ROOT

from circuitspec.output.interactive import edge_id, render_interactive
from circuitspec.output.report import render_report_page
from circuitspec.results import Result

RESULTS = ROOT / "docs" / "circuits" / "ioi_smollm2_135m" / "results.json"
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")]


def _with_new_fields(d: dict) -> dict:
    """The real results plus the per-prompt fields newer runs write (values made up, seeded)."""
    rng = random.Random(0)
    n = d["task"]["n_prompts"]
    clean = [d["metric"]["clean"] + rng.gauss(0, 1.5) for _ in range(n)]
    d["metric"]["per_prompt"] = {"clean": clean, "corrupt": [d["metric"]["corrupt"] + rng.gauss(0, 1) for _ in clean],
                                 "template": [i % 4 for i in range(n)]}
    gap = d["metric"]["clean"] - d["metric"]["corrupt"]
    for e in d["edges"]:
        e["per_prompt"] = [c + e["effect"] * gap + rng.gauss(0, 0.5) for c in clean]
        e["null"] = dict(e["null"], kind="layer_matched", p_value=0.0909)
    d["circuit"]["faithfulness"]["per_prompt"] = {"circuit": [c + rng.gauss(0, 1) for c in clean], "model": clean}
    return d


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # Playwright gives the browser a fresh temporary profile (--user-data-dir) itself.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: problems.append(f"network: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return page, problems


def _click(page, selector_js: str) -> None:
    """A real mouse click on the rendered middle of a graph element."""
    x, y = page.evaluate(f"""() => {{ const cy = window.circuitspecReport.cy; const el = {selector_js};
        const box = cy.container().getBoundingClientRect();
        const p = el.isEdge() ? el.renderedMidpoint() : el.renderedPosition();
        return [p.x + box.left, p.y + box.top]; }}""")
    page.mouse.click(x, y)


def _screenshot(page, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CIRCUITSPEC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / name)
    return folder / name


def test_report_renders_every_node_and_edge_and_clicks_show_numbers(browser, tmp_path: Path):
    result = Result.load(RESULTS)
    svg = (RESULTS.parent / "circuit.svg").read_text(encoding="utf-8")
    path = tmp_path / "report.html"
    path.write_text(render_report_page(result, svg), encoding="utf-8")
    page, problems = _open(browser, path)
    data = json.loads(RESULTS.read_text())

    graph = page.evaluate("""() => { const cy = window.circuitspecReport.cy;
        const box = cy.extent();
        return { nodes: cy.nodes().map((n) => n.id()), edges: cy.edges().map((e) => e.data("name")),
                 inside: cy.elements().every((el) => { const b = el.boundingBox();
                     return b.x1 >= box.x1 - 1 && b.x2 <= box.x2 + 1 && b.y1 >= box.y1 - 1 && b.y2 <= box.y2 + 1; }) }; }""")
    for node in data["hypothesis"]["nodes"]:
        assert f"g:{node['name']}" in graph["nodes"]
        for head in node["heads"]:
            assert f"h:{node['name']}:{head}" in graph["nodes"]
    assert "logits" in graph["nodes"]
    assert sorted(graph["edges"]) == sorted(edge_id(e) for e in data["edges"])
    assert graph["inside"], "some of the graph is outside the visible area"
    table = page.inner_text("#edges-table")
    for e in data["edges"]:
        assert edge_id(e) in table

    edge = data["edges"][1]
    _click(page, f'cy.edges().filter((e) => e.data("name") === {json.dumps(edge_id(edge))})[0]')
    details = page.inner_text("#details")
    assert f"Edge {edge_id(edge)}" in details
    assert f"effect {edge['effect']:+.3f}" in details
    assert f"[{edge['ci'][0]:+.3f}, {edge['ci'][1]:+.3f}]" in details
    assert f"{edge['per_head'][0]['effect']:+.3f}" in details
    assert f"[{edge['null']['low']:+.3f}, {edge['null']['high']:+.3f}]" in details
    direct = next(r for r in data["robustness"] if r["setting"].startswith("direct"))
    assert f"{direct['edge_effects'][edge_id(edge)]:+.3f}" in details
    _screenshot(page, "report_interactive.png", tmp_path)

    group = data["hypothesis"]["nodes"][0]
    _click(page, f'cy.getElementById("h:{group["name"]}:{group["heads"][0]}")')
    details = page.inner_text("#details")
    assert f"Group {group['name']}" in details
    weakest = data["circuit"]["minimality"]["details"]["per_head"]
    for head in group["heads"]:
        assert head in details and f"{weakest[head]:.3f}" in details

    page.click("#collapse-all")
    assert page.evaluate("window.circuitspecReport.cy.nodes().length") == len(data["hypothesis"]["nodes"]) + 1
    page.click("#expand-all")
    assert page.evaluate("window.circuitspecReport.cy.nodes().length") == len(graph["nodes"])
    page.click("#robustness-rows th:nth-child(2)")  # sort by faithfulness
    column = page.eval_on_selector_all("#robustness-rows tbody tr td:nth-child(2)", "tds => tds.map(t => t.dataset.key)")
    values = [float(v) for v in column if v]
    assert values == sorted(values)
    assert problems == []


def test_report_shows_the_fields_newer_runs_add(browser, tmp_path: Path):
    data = _with_new_fields(json.loads(RESULTS.read_text()))
    path = tmp_path / "report.html"
    path.write_text(render_interactive(data), encoding="utf-8")
    page, problems = _open(browser, path)
    assert page.inner_text("#dist-missing") == ""
    traces = page.evaluate("""() => ["forest", "dist-edges", "dist-metric", "dist-scores"].map(
        (id) => (document.getElementById(id).data || []).length)""")
    # Two strips (F(C), F(M)) per faithfulness score with per-prompt values: the one added here,
    # and those the shipped run wrote itself (the held-out run writes the edge level's too).
    scored = [sc for sc in data["circuit"].values()
              if isinstance(sc, dict) and ((sc.get("per_prompt") or {}).get("circuit") or [])]
    assert traces[0] >= 2 and traces[1] == len(data["edges"]) and traces[2] == 2 and traces[3] == 2 * len(scored)
    templates = page.inner_text("#template-table")
    n = data["task"]["n_prompts"]
    assert all(f"{t} ({n // 4})" in templates for t in range(4))
    edge = data["edges"][0]
    _click(page, f'cy.edges().filter((e) => e.data("name") === {json.dumps(edge_id(edge))})[0]')
    details = page.inner_text("#details")
    assert "0.0909" in details and "layer_matched" in details and "template" in details
    page.screenshot(path=tmp_path / "with_new_fields.png", full_page=True)  # made-up values: never docs
    assert problems == []
