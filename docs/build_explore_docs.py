"""Run every exploratory analysis on SmolLM2-135M-Instruct; write docs/img/* and docs/explore.md.

    .venv/bin/python docs/build_explore_docs.py [--n-prompts 16] [--patch-prompts 8]

The attribution, attention, backup and path-patching analyses use --n-prompts
IOI prompts (ABC corruption, seed 0). The activation-patching maps (about 3,200
patched cells) use --patch-prompts prompts of one template, so that every
named position is the same token index in every prompt. The page's sentences
that quote numbers are filled in from the results, so they stay true when the
pictures are regenerated.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
IMG = HERE / "img"
DRAFT = "examples/suggest_smollm2_135m.yaml"


def _top(grid: Any, k: int = 3, *, largest: bool = True, kv: bool = False) -> str:
    """The k largest (or smallest) cells of a head grid; ``kv``: columns are key/value heads."""
    from circuitspec.analyses.grid import head_label, top_heads

    def label(h: tuple[int, int]) -> str:
        return f"L{h[0]} kv-head {h[1]}" if kv else head_label(*h)

    return ", ".join(f"{label(h)} ({float(grid.values[h]):+.2f})" for h in top_heads(grid, k, largest=largest))


def _top_rows(grid: Any, col: int, k: int = 3) -> str:
    order = grid.values[:, col].argsort(descending=True)[:k].tolist()
    return ", ".join(f"{grid.rows[i]} ({float(grid.values[i, col]):.2f})" for i in order)


def _top_abs(grid: Any) -> str:
    """The head of largest magnitude in a head grid, with its signed value."""
    i = int(grid.values.nan_to_num().abs().argmax())
    layer, head = divmod(i, grid.values.shape[1])
    return f"L{layer}H{head} ({float(grid.values[layer, head]):+.2f})"


def _s_writer(g: dict[str, Any]) -> str:
    """The top-DLA head whose END attends more to S2 than to IO, with both numbers."""
    from circuitspec.analyses.grid import head_label, top_heads

    att = g["attention"]
    for h in top_heads(g["dla_heads"], 10):
        row = att.rows.index(head_label(*h))
        s2, io = float(att.values[row, att.cols.index("END->S2")]), float(att.values[row, att.cols.index("END->IO")])
        if s2 > io:
            return f"{head_label(*h)}, DLA {float(g['dla_heads'].values[h]):+.2f}, END->S2 {s2:.2f}, END->IO {io:.2f}"
    return "none among the top ten"


def _top_cells(grid: Any, k: int = 4) -> str:
    """The k cells of largest magnitude, as ``row at col (value)``."""
    flat = grid.values.flatten().nan_to_num().abs().argsort(descending=True)[:k].tolist()
    n = len(grid.cols)
    return ", ".join(f"{grid.rows[i // n]} at {grid.cols[i % n]} ({float(grid.values.flatten()[i]):+.2f})"
                     for i in flat)


def _one_template(model: Any, n: int) -> Any:
    """n prompts of the most common template among 256 (one template: one token layout)."""
    from circuitspec.data.tasks import build_dataset
    from circuitspec.spec.schema import TaskSpec

    pool = build_dataset(TaskSpec(kind="ioi", corruption="abc"), model.tokenizer,
                         prepend_bos=model.info.default_prepend_bos, n_prompts=256, seed=1)
    template, _ = Counter(pool.template).most_common(1)[0]
    return pool.subset([i for i, t in enumerate(pool.template) if t == template][:n])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--patch-prompts", type=int, default=8)
    parser.add_argument("--page-only", action="store_true",
                        help="Rewrite explore.md from the numbers already in docs/img.")
    args = parser.parse_args()
    from circuitspec.analyses.explore import explore, file_stem

    if not args.page_only:
        from circuitspec.bridge.loading import load_model
        from circuitspec.data.tasks import build_dataset
        from circuitspec.spec.schema import TaskSpec

        model = load_model("smollm2-135m-instruct")
        ds = build_dataset(TaskSpec(kind="ioi", corruption="abc"), model.tokenizer,
                           prepend_bos=model.info.default_prepend_bos, n_prompts=args.n_prompts, seed=0)
        small = _one_template(model, args.patch_prompts)
        runs = [
            explore(model, ds, IMG, only=["logit_lens", "dla", "attention", "backup", "path_sweeps"],
                    log=print),
            explore(model, small, IMG, only=["patch_resid", "patch_attn_mlp", "patch_heads",
                                             "patch_heads_by_pos", "patch_qkv"], log=print),
        ]
        (IMG / "explore.json").write_text(json.dumps({
            "seconds": {k: v for run in runs for k, v in run["seconds"].items()},
            "grids": [name for run in runs for name in run["files"]],
            "n_prompts": len(ds), "patch_prompts": len(small), "example": small.clean_text[0],
        }, indent=1) + "\n")
    info = json.loads((IMG / "explore.json").read_text())
    grids = {name: _load(name) for name in info["grids"] if (IMG / f"{file_stem(name)}.json").exists()}
    (HERE / "explore.md").write_text(_page(grids, info))


def _load(name: str) -> Any:
    import torch

    from circuitspec.analyses.explore import file_stem
    from circuitspec.analyses.grid import Grid

    data = json.loads((IMG / f"{file_stem(name)}.json").read_text())
    values = torch.tensor([[float("nan") if v is None else v for v in row] for row in data["values"]])
    return Grid(data["name"], values, tuple(data["rows"]), tuple(data["cols"]), data["row_axis"],
                data["col_axis"], data["note"], data.get("extra", {}))


def _img(name: str) -> str:
    from circuitspec.analyses.explore import file_stem

    return f"![{name}](img/{file_stem(name)}.png)"


def _page(g: dict[str, Any], info: dict[str, Any]) -> str:
    lens = g["logit_lens"]
    first = next(c for c, v in zip(lens.cols, lens.values[0].tolist(), strict=True)
                 if v > 0.5 * float(lens.values[0, -1]))
    resid = g["patch_resid_pre"]
    end_col = resid.cols.index("END")
    moved = next((r for r, row in zip(resid.rows, resid.values.tolist(), strict=True)
                  if row[end_col] > 0.5), "none")
    io, s1 = resid.at("0", "IO"), resid.at("0", "S1")
    sweeps = [name for name in g if name.startswith("path_")]
    backup = g["backup_name_movers"]
    delta = backup.values[:, 1] - backup.values[:, 0]
    riser = int(delta.argmax())
    sweep_lines = []
    for name in sweeps:
        sweep_lines.append(f"- `{name}`: strongest senders {_top(g[name], 3, largest=False)}.")
    return "\n".join([
        "# Exploring a model: `circuitspec explore` and `circuitspec suggest`",
        "",
        "Every analysis of the Pythia IOI notebook is a function in `circuitspec.analyses` that",
        "returns labelled numbers, a PNG writer in `circuitspec.output.plots`, and one command:",
        "",
        "```",
        "circuitspec explore smollm2-135m-instruct --task ioi --n-prompts 16 --patch-prompts 8 --out explore/",
        "circuitspec explore smollm2-135m-instruct --only patch_resid,patch_heads --n-prompts 8",
        "circuitspec suggest smollm2-135m-instruct --task ioi -o draft.yaml",
        "```",
        "",
        "Each analysis writes `NAME.json` (numbers, axis labels and the convention in `note`),",
        "`NAME.csv` and `NAME.png`. Everything below is SmolLM2-135M-Instruct, written by",
        f"`docs/build_explore_docs.py`: {info['n_prompts']} IOI prompts (ABC corruption, seed 0) for",
        f"the attribution, attention and path-patching analyses; {info['patch_prompts']} prompts of",
        f"one template (e.g. \"{info['example']}\") for activation patching, so each named",
        "position is one token index. Seconds per analysis on a shared 2-CPU machine:",
        f"`{json.dumps(info['seconds'])}`.",
        "",
        "## Logit lens",
        "",
        "The logit difference (IO minus S) read from the residual stream at END after each",
        "layer, with the final norm's scale frozen at the clean run (the notebook's",
        "convention; `logit_lens(..., scale=\"recomputed\")` applies the real final norm).",
        f"It passes half its final value ({float(lens.values[0, -1]):.2f}) at {first}.",
        "",
        _img("logit_lens"),
        "",
        "## Direct logit attribution",
        "",
        "Each layer's attention and MLP output, and each head's output, at END projected on",
        "`W_U[:, IO] - W_U[:, S]` through the frozen final norm. Embeddings, heads, attention",
        "biases, MLPs and `b_U` sum exactly to the model's logit difference (checked in",
        "`tests/analyses/test_explore.py` on every tiny architecture and on SmolLM2). On models with",
        "sandwich norms (Gemma 3) each head is attributed through its layer's post-attention",
        "norm at the layer's own scale, which keeps the sum exact.",
        f"Largest positive heads: {_top(g['dla_heads'])}; most negative: "
        f"{_top(g['dla_heads'], 2, largest=False)}.",
        "",
        _img("dla_layers"),
        _img("dla_heads"),
        "",
        "## Attention signatures",
        "",
        "Mean attention END->IO, END->S1, END->S2 (name movers attend to IO, S-inhibition",
        "heads to S2), S2->S1 (duplicate-token heads), S2->S1+1 (induction heads) and",
        "S1+1->S1 (previous-token heads) for every head, and the full patterns of the",
        "top-DLA heads on one prompt. Highest END->IO: "
        f"{_top_rows(g['attention'], g['attention'].cols.index('END->IO'))}; S2->S1+1: "
        f"{_top_rows(g['attention'], g['attention'].cols.index('S2->S1+1'))}.",
        "",
        _img("attention"),
        _img("attention_maps"),
        "",
        "## Activation patching",
        "",
        "Denoising: the corrupted (ABC) run with one clean activation patched in, scored",
        "(patched - corrupted) / (clean - corrupted): 0 = corrupted, 1 = clean. Only the",
        "patched layer onwards, and only positions from the patched one onwards, are",
        "recomputed (`circuitspec.analyses.row_resume`); the tests check this against full",
        "forward passes.",
        "",
        "### Residual stream, attention output and MLP output by layer and position",
        "",
        "Patching the residual at END restores more than half the clean-to-corrupted gap",
        f"from layer {moved} on: that is where the answer has been moved to the last token.",
        "Before that it sits at the name positions. ABC corruption replaces all three names,",
        "so patching one clean name alone gives a prompt mixing both runs' names: at layer 0",
        f"the clean IO token alone scores {io:+.2f} and the clean S1 token alone {s1:+.2f}.",
        "Patching the whole residual stream (`ALL`) restores the clean run at every layer.",
        "",
        _img("patch_resid_pre"),
        _img("patch_attn_out"),
        _img("patch_mlp_out"),
        "",
        "### Every head's output, at all positions and by position",
        "",
        f"Heads whose clean output restores the most: {_top(g['patch_head_out'])}.",
        "By position, one row per head: where in the prompt a head's output matters;",
        f"the largest cells are {_top_cells(g['patch_head_out_by_pos'])}.",
        "",
        _img("patch_head_out"),
        _img("patch_head_out_by_pos"),
        "",
        "### Every head's query, key, value and attention pattern",
        "",
        "Keys and values are patched per key/value head (SmolLM2 has 3, shared by 3 query",
        "heads each): one query head's keys cannot be changed alone at `hook_k`.",
        f"Largest value effects: {_top(g['patch_v'], kv=True)}; query: {_top(g['patch_q'])}.",
        "",
        _img("patch_q"),
        _img("patch_k"),
        _img("patch_v"),
        _img("patch_pattern"),
        "",
        "Output against pattern and against value (the notebook's scatter plots, one point",
        "per head): a head whose output effect is matched by its pattern effect acts through",
        "where it attends, one matched by its value effect through what it reads. With ABC",
        "corruption every name differs between the two runs, so a clean pattern attends to",
        "positions that hold other names in the corrupted run: the heads whose output",
        f"restores most ({_top(g['patch_head_out'], 2)}) restore little or nothing through",
        f"their patterns (largest pattern effect: {_top_abs(g['patch_pattern'])}). Values are",
        "per key/value head, so the three query heads that share one lie on a vertical line.",
        "",
        _img("patch_head_out_vs_pattern"),
        _img("patch_head_out_vs_v"),
        "",
        "## Path-patching sweeps",
        "",
        "The notebook's level-by-level search with the exact path-patching engine",
        "(`circuitspec.patching.fast.FastEngine.sweep`, every sender head alone in one batched pass):",
        "every head into the logits at END; into the top-DLA name movers' queries at END;",
        "into the values at S2 of that sweep's strongest sender (with the second strongest",
        "when it is at least half as strong); into the keys at S1+1 of the strongest",
        "senders of that one. Effect -1 = the whole clean-to-corrupted gap.",
        "",
        *sweep_lines,
        "",
        *[_img(name) for name in sweeps],
        "",
        "## Backup name movers",
        "",
        "Every head's DLA before and after mean-ablating the top-DLA heads "
        f"({', '.join(backup.extra['ablated'])}; hook_z replaced by the corrupted-prompt mean",
        "per template and position). Heads above the diagonal take over: "
        f"{backup.rows[riser]} moves from {float(backup.values[riser, 0]):+.2f} to "
        f"{float(backup.values[riser, 1]):+.2f}. The logit difference falls from "
        f"{backup.extra['logit_diff_before']:.2f} to {backup.extra['logit_diff_after']:.2f}.",
        "",
        _img("backup_name_movers"),
        "",
        "## Suggest",
        "",
        "`circuitspec suggest` drafts a hypothesis from these analyses: name movers (top",
        "positive DLA, END attending to IO at least 0.1 and more than to S), heads with large",
        f"positive DLA that attend to S2 instead (they write \"not S\"; here {_s_writer(g)}) in a",
        "group of their own, negative name movers (most negative DLA), then the same sweeps",
        "as above (screened with the gradient estimate,",
        "the strongest confirmed with the path-patching engine) for S-inhibition heads",
        "(into the name movers' q at END), induction and duplicate-token heads (into the",
        "S-inhibition heads' v at S2, told apart by S2->S1+1 versus S2->S1 attention) and",
        "previous-token heads (into the induction heads' k at S1+1). The evidence for each",
        f"head goes into the YAML as comments. [{DRAFT}]({DRAFT}) is its draft for SmolLM2",
        "(32 prompts); the comments at its end record `circuitspec validate` and",
        "`circuitspec verify` on it.",
        "",
    ])


if __name__ == "__main__":
    main()
