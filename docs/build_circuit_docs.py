"""Regenerate the circuit pages under docs/circuits/ from `circuitspec verify` on each file as written.

    .venv/bin/python docs/build_circuit_docs.py [hypotheses/ioi_smollm2_135m.yaml ...]
    .venv/bin/python docs/build_circuit_docs.py --from-results   # pages only, from results.json

The run uses exactly the hypothesis file's settings (its prompts, seed, templates, claims and
verify's default nulls): there are no options to lighten it, so a page's numbers are the
numbers `circuitspec verify FILE` gives. It writes results.json, report.md, report.html and
circuit.svg/png into docs/circuits/<stem>/, copies the diagram to docs/img/<stem>.png, and
then, from results.json alone (no model):

- docs/circuits/<stem>/README.md, the page: the verdict and what fails by how much, the
  checkpoint's quantisation, the held-out split, the per-template and BABA/ABBA tables
  (computed here from the per-prompt values and template ids), the robustness panel, and
  the curve of edge-level faithfulness against the number of edges where the file has one;
- the generated block at the top of the hypothesis file (between its markers), and the
  "Verified circuits" table of the top-level README.md (between its markers), so no header
  or table quotes a number by hand.

A results.json that was not produced from the file as it now reads (other prompts, seed,
templates, claims, edges or heads) makes the page and the header say "stale", with why.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

from circuit_page import (  # noqa: E402
    by_order,
    checkpoint,
    header,
    per_template,
    robustness_table,
    shortfall,
    split_table,
    summary,
    write_header,
)

DEFAULT = [ROOT / "hypotheses" / "ioi_smollm2_135m.yaml", ROOT / "hypotheses" / "ioi_gemma3_270m.yaml"]
# Edge-discovery curves (docs/plot_grow_curve.py output) drawn on a page, by hypothesis stem.
CURVES = {"ioi_smollm2_135m": DOCS / "examples" / "grow_smollm2_135m_curve.json",
          "ioi_gemma3_270m": DOCS / "examples" / "grow_gemma3_270m_curve.json"}


# Why a page was left stale this round, by hypothesis stem (said on the page beside "stale").
NOT_RERUN: dict[str, str] = {}



def _noted_templates(notes: str | None) -> list[int] | None:
    """The templates a results.json written before ``task.templates`` existed names in its notes
    (``templates=[0, 4, ...]``, the dataset's own record of its draw)."""
    import re

    found = re.search(r"templates=\[([\d, ]*)\]", notes or "")
    return None if found is None else [int(t) for t in found.group(1).split(",") if t.strip()]


def page_dir(path: Path) -> Path:
    return DOCS / "circuits" / path.stem


def run(path: Path) -> None:
    """`circuitspec verify PATH` with the file's own settings, its outputs into the page folder."""
    from circuitspec.output.console import print_result
    from circuitspec.output.outputs import write_outputs
    from circuitspec.verification.run import verify

    result = verify(path)
    out = page_dir(path)
    write_outputs(result, out)
    (DOCS / "img").mkdir(exist_ok=True)
    shutil.copyfile(out / "circuit.png", DOCS / "img" / f"{path.stem}.png")
    print_result(result, out)


def stale_reasons(path: Path, result: dict[str, Any]) -> list[str]:
    """Why ``result`` is not a run of the file as it now reads (empty: it is)."""
    from circuitspec.spec.load import load_hypothesis

    hyp = load_hypothesis(path)
    task, settings = result["task"], result.get("settings") or {}
    why = []
    if settings.get("statistics") is None or result["metric"].get("per_prompt") is None:
        why.append("the run predates held-out, edge-level verification (no per-prompt values in results.json)")
    want_n = hyp.task.n_prompts or 128
    if task.get("n_prompts") != want_n:
        why.append(f"the run used {task.get('n_prompts')} prompts, the file asks for {want_n}")
    if task.get("seed") != hyp.task.seed:
        why.append(f"the run used seed {task.get('seed')}, the file says {hyp.task.seed}")
    ran_templates = (settings.get("statistics") or {}).get("templates") or task.get("templates") \
        or _noted_templates(task.get("notes"))
    if hyp.task.templates is not None and sorted(ran_templates or []) != sorted(hyp.task.templates):
        why.append(f"the run's templates {ran_templates} are not the file's {hyp.task.templates}")
    want_edges = sorted(e.name for e in hyp.circuit().edges)
    from circuit_page import edge_name

    if sorted(edge_name(e) for e in result["edges"]) != want_edges:
        why.append("the run's edges are not the file's")
    heads = sorted(f"L{lay}H{h}" for n in hyp.circuit().nodes.values() for lay, h in n.heads)
    ran_heads = sorted(h for n in result["hypothesis"].get("nodes", []) for h in n.get("heads", []))
    if ran_heads and ran_heads != heads:
        why.append("the run's heads are not the file's")
    from circuitspec.verification.settings import Options

    ran, default = settings.get("statistics") or {}, Options()
    for opt in ("n_random", "n_random_edge", "n_null_edges", "n_subsets", "greedy_steps", "quick"):
        if opt in ran and ran[opt] != getattr(default, opt):
            why.append(f"the run used {opt}={ran[opt]}, verify's default is {getattr(default, opt)}")
    if settings.get("n_bootstrap") not in (None, hyp.claims.n_bootstrap):
        why.append(f"the run used {settings.get('n_bootstrap')} bootstrap resamples, the file {hyp.claims.n_bootstrap}")
    return why


def curve_png(path: Path, result: dict[str, Any], stale: bool) -> str | None:
    """Edge-level F against the number of edges: the discovery curve (in sample) and this run."""
    src = CURVES.get(path.stem)
    if src is None or not src.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = json.loads(src.read_text())
    score = (result.get("circuit") or {}).get("faithfulness_edge_level") or {}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    from circuitspec.spec.load import load_hypothesis

    claimed = load_hypothesis(path).claims.faithfulness
    lo, hi = curve["band"] if claimed is None else (
        claimed.min, claimed.max if claimed.max is not None else 2 - claimed.min)
    ax.axhspan(lo, hi, color="tab:green", alpha=0.12, label=f"claimed band [{lo}, {hi}]")
    if list(curve["band"]) != [lo, hi]:  # growth aimed inside the claimed band
        for y in curve["band"]:
            ax.axhline(y, color="tab:blue", ls=":", lw=1)
        ax.plot([], [], color="tab:blue", ls=":", lw=1, label=f"growth target [{curve['band'][0]}, {curve['band'][1]}]")
    ax.plot(curve["n_edges"], curve["faithfulness"], "o-", color="tab:blue",
            label="edge discovery, 32 discovery prompts (in sample)")
    ref = curve.get("reference")
    if ref:
        ax.plot([ref["edges"]], [ref["faithfulness"]], "s", color="tab:gray", label=f"{ref['label']} (in sample)")
    if score.get("value") is not None and not stale:  # a stale run is another file's point
        n = len(result["edges"])
        ci = score.get("ci") or [score["value"], score["value"]]
        ax.errorbar([n], [score["value"]], yerr=[[score["value"] - ci[0]], [ci[1] - score["value"]]], fmt="D",
                    color="tab:red", capsize=4,
                    label=f"this file, {result['task']['n_prompts']} held-out prompts (95% CI)")
    ax.set_xlabel("edges in the hypothesis")
    ax.set_ylabel("edge-level faithfulness F(C)/F(M)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(page_dir(path) / "curve.png", dpi=120)
    plt.close(fig)
    return "curve.png"


def held_out_lines(path: Path, result: dict[str, Any]) -> list[str]:
    from circuitspec.spec.load import load_hypothesis

    hyp = load_hypothesis(path)
    info = result.get("held_out_info") or {}
    reason = info.get("reason")
    out = [f"Held out: **{summary(result)['held_out']}**" + (f". {reason}." if reason else ".")]
    if hyp.discovery is not None:
        d = hyp.discovery
        out.append(f"Discovery: the first {d.n_prompts} `{d.corruption}` prompts of seed {d.seed}"
                   + ("" if d.templates is None else f", templates {d.templates}") + ".")
    ran = sorted(set(result["metric"].get("per_prompt", {}).get("template") or [])) or "not recorded"
    out.append(f"This run: {result['task']['n_prompts']} prompts of seed {result['task']['seed']}, templates {ran}. "
               f"The file asks for {hyp.task.n_prompts} prompts of seed {hyp.task.seed}"
               + ("" if hyp.task.templates is None else f", templates {hyp.task.templates} only") + ".")
    return out


def write_page(path: Path) -> bool:
    """README.md of the page folder and the file's generated header, from results.json."""
    out = page_dir(path)
    results = out / "results.json"
    rel = out.relative_to(ROOT)
    if not results.exists():
        write_header(path, header(None, f"{rel}/ (none yet)"))
        return False
    result = json.loads(results.read_text())
    stale = stale_reasons(path, result)
    write_header(path, header(result, f"{rel}/README.md", stale))
    s = summary(result)
    title = result["hypothesis"]["name"]
    lines = [f"# {title}", ""]
    if stale:
        lines += ["**Stale: this page is not a run of the file as it now reads, and the file is not "
                  "re-verified as written.** " + "; ".join(stale) + ".", ""]
    if stale:
        lines += [f"The run below is an older one ({s['n']} prompts, {s['held_out']}), which then "
                  f"said **{s['verdict']}**; it is not this file's verdict. "
                  + NOT_RERUN.get(path.stem, ""), ""]
    else:
        lines += [f"`circuitspec verify {path.relative_to(ROOT)}` (the file's own settings): "
                  f"**{s['verdict']}**, {s['n']} prompts ({s['held_out']})."]
    unit = (result.get("settings") or {}).get("bootstrap_unit")
    lines += [
        "Full report: [report.md](report.md), interactive: [report.html](report.html).", "",
        "| edges verified | faithfulness, edge level [95% CI] | faithfulness, node level [95% CI] | "
        "completeness gap [95% CI] | verdict |", "|---|---|---|---|---|",
        f"| {s['edges']} | {s['edge']} | {s['node']} | {s['gap']} | {s['verdict']} |", "",
        ("Intervals resample whole templates (cluster bootstrap)" if unit == "template" else
         f"Intervals resample {unit or 'prompts'}")
        + "; completeness and minimality are judged after a search over subsets of the circuit "
        "(post-selection).", "",
        "## What does not hold", "",
        *(shortfall(result) or ["Nothing: every edge and every claim verified"
                                + (" (in that older run)." if stale else ".")]), "",
        "## Checkpoint", "", checkpoint(result["model"].get("name") or ""), "",
        "## Prompts", "", *held_out_lines(path, result), "",
    ]
    png = curve_png(path, result, bool(stale))
    if png:
        note = json.loads(CURVES[path.stem].read_text()).get("note")  # how the curve was made, if it says
        lines += ["## Edge-level faithfulness against the number of edges", "",
                  "The blue curve is edge discovery (`suggest --grow-edges`) on the discovery prompts, "
                  "in sample" + ("." if stale else "; the red point is this file on its held-out prompts.")
                  + (f" {note}" if note else ""),
                  "", f"![edge-level faithfulness against edges]({png})", ""]
    if result["metric"].get("per_prompt") is None:
        lines += ["## BABA and ABBA prompts, per template", "",
                  "Not available: this results.json has no per-prompt values.", "",
                  "## Robustness", "", *robustness_table(result), ""]
        (out / "README.md").write_text("\n".join(lines))
        return not stale
    lines += ["## BABA and ABBA prompts", "",
              "Computed from results.json's per-prompt values: F is the ratio of mean logit "
              "differences within the rows; an edge's effect is (mean patched - mean clean) / "
              "(mean clean - mean corrupted) within the rows. No intervals (a few templates each).", "",
              *split_table(by_order(result), "order"), "",
              "## Per template", "", *split_table(per_template(result), "template"), "",
              "## Robustness", "", *robustness_table(result), ""]
    (out / "README.md").write_text("\n".join(lines))
    return not stale


TABLE_BEGIN = "<!-- verified circuits: generated by docs/build_circuit_docs.py from each page's results.json -->"
TABLE_END = "<!-- end of verified circuits -->"


def readme_table(paths: list[Path]) -> list[str]:
    """The README's "Verified circuits" rows, one per hypothesis, from its page's results.json."""
    out = [TABLE_BEGIN,
           "| hypothesis | model | prompts | faithfulness, edge level [95% CI] | faithfulness, node level "
           "[95% CI] | completeness gap [95% CI] | edges verified | verdict | page |",
           "|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        results = page_dir(path) / "results.json"
        page = f"[{page_dir(path).relative_to(ROOT)}]({page_dir(path).relative_to(ROOT)}/README.md)"
        name = f"`{path.relative_to(ROOT)}`"
        if not results.exists():
            out.append(f"| {name} | | | | | | | not run | {page} |")
            continue
        result = json.loads(results.read_text())
        s, stale = summary(result), stale_reasons(path, result)
        verdict = "**not re-verified** (stale: an older run, see the page)" if stale else f"**{s['verdict']}**"
        prompts = f"{s['n']}, {s['held_out']}" + (", older run" if stale else "")
        if any("edges" in why or "heads" in why for why in stale):  # another circuit's numbers
            s = dict(s, edge="n/a", node="n/a", gap="n/a", edges="n/a")
            prompts = "not run as written"
        out.append(f"| {name} | {result['model'].get('name')} | {prompts} | {s['edge']} | {s['node']} | "
                   f"{s['gap']} | {s['edges']} | {verdict} | {page} |")
    return [*out, TABLE_END]


def write_readme_table(paths: list[Path]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return
    before, rest = text.split(TABLE_BEGIN, 1)
    after = rest.split(TABLE_END, 1)[1]
    readme.write_text(before + "\n".join(readme_table(paths)) + after)


def rebuild_reports(path: Path) -> None:
    """Redraw report.md/report.html from the committed results.json (no model run)."""
    from circuitspec.output.outputs import write_report
    from circuitspec.results import Result

    results = page_dir(path) / "results.json"
    if results.exists():
        write_report(Result.load(results), page_dir(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hypotheses", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--from-results", action="store_true",
                        help="no model run: redraw the reports and pages from each page's results.json")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.hypotheses if p.exists()]
    for path in paths:
        if args.from_results:
            rebuild_reports(path)
        else:
            run(path)
    ok = all([write_page(p) for p in paths])
    write_readme_table([p for p in DEFAULT if p.exists()])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
