"""Run the exploratory analyses on SmolLM2-135M-Instruct and write docs/img/*.png + docs/explore.md.

    .venv/bin/python docs/build_explore_docs.py [--n-prompts 16] [--patch-prompts 8]

The cheap analyses use --n-prompts; the activation-patching maps (hundreds of
patched forward passes each) use the first --patch-prompts of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).parent
SECTIONS = (
    ("Logit lens", ["logit_lens"], "Logit difference (IO minus S) read from the residual stream at END "
     "after each layer, final-norm scale frozen at the clean run (the notebook's convention); "
     "`scale=\"recomputed\"` applies the real final norm instead."),
    ("Direct logit attribution", ["dla_layers", "dla_heads"], "Each layer's attention and MLP output, and "
     "each head's `hook_result`, at END projected on W_U[:, IO] - W_U[:, S] with the frozen scale. "
     "Embeddings + heads + attention biases + MLPs + b_U sum exactly to the logit difference."),
    ("Attention signatures", ["attention", "attention_maps"], "Mean attention END->IO/S1/S2, S2->S1 "
     "(duplicate-token), S2->S1+1 (induction), S1+1->S1 (previous-token) for every head, and the full "
     "patterns of the top-DLA heads on one prompt."),
    ("Activation patching", ["patch_resid_pre", "patch_attn_out", "patch_mlp_out", "patch_head_out"],
     "Denoising: the corrupted (ABC) run with one clean activation patched in, scored "
     "(patched - corrupted) / (clean - corrupted): 0 = corrupted, 1 = clean. Positions are the task's "
     "named positions (prompts of different templates have different lengths) plus ALL."),
    ("Path-patching sweeps", ["path_logits@END"], "Every head alone as the sender into the logits "
     "(effect -1 = the whole clean-to-corrupted gap), here with the gradient screen "
     "(`--sweep-method attribution`)."),
    ("Backup name movers", ["backup_name_movers"], "Every head's DLA before and after mean-ablating the "
     "top-DLA heads (their hook_z replaced by the corrupted-prompt mean per template and position)."),
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--patch-prompts", type=int, default=8)
    args = parser.parse_args()
    from circuitspec.explore import explore
    from circuitspec.models import load_model
    from circuitspec.spec import TaskSpec
    from circuitspec.tasks import build_dataset

    model = load_model("smollm2-135m-instruct")
    ds = build_dataset(TaskSpec(kind="ioi", corruption="abc"), model.tokenizer,
                       prepend_bos=model.info.default_prepend_bos, n_prompts=args.n_prompts, seed=0)
    img = HERE / "img"
    log = print
    cheap = explore(model, ds, img, only=["logit_lens", "dla", "attention", "backup"], log=log)
    sweep = explore(model, ds, img, only=["path_sweeps"], sweep_method="attribution", log=log)
    small = ds.subset(range(min(args.patch_prompts, len(ds))))
    patch = explore(model, small, img, only=["patch_resid", "patch_attn_mlp", "patch_heads"], log=log)
    seconds = {**cheap["seconds"], **sweep["seconds"], **patch["seconds"]}
    lines = ["# Exploring a model: `circuitspec explore`", "",
             "Every analysis of the Pythia IOI notebook as a function returning labelled numbers "
             "(`circuitspec.analyses`), a PNG writer (`circuitspec.plots`) and a command:", "",
             "```", "circuitspec explore smollm2-135m-instruct --task ioi --n-prompts 32 --out explore/",
             "circuitspec explore --hypothesis hypotheses/ioi_smollm2_135m.yaml --only dla,attention",
             "circuitspec suggest smollm2-135m-instruct --task ioi -o draft.yaml", "```", "",
             f"Pictures below: SmolLM2-135M-Instruct, {len(ds)} IOI prompts (ABC corruption, seed 0); "
             f"activation patching on the first {len(small)}. Seconds per analysis on this 2-CPU "
             f"machine: `{json.dumps(seconds)}`.", ""]
    for title, names, text in SECTIONS:
        lines += [f"## {title}", "", text, ""]
        lines += [f"![{n}](img/{n.replace('+', '_')}.png)" for n in names] + [""]
    lines += ["## Suggest", "", "`circuitspec suggest` picks name movers (top positive DLA, END attends "
              "IO more than S), negative name movers (most negative DLA), then screens every earlier "
              "head into the name movers' q at END, the S-inhibition heads' v at S2 and the induction "
              "heads' k at S1+1 with the gradient estimate, confirms the strongest with the "
              "path-patching engine, and writes a hypothesis whose comments hold the evidence.", ""]
    (HERE / "explore.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
