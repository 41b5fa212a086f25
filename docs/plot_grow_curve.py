"""Plot edge-level faithfulness against the number of edges from a `suggest --grow-edges` draft.

Reads the evidence comments the draft carries ("F with no edges: ...", "step k: + EDGE: F ...")
and writes NAME_curve.png and NAME_curve.json beside the draft. ``--reference F`` draws a
hand-written hypothesis' edge-level faithfulness (with ``--reference-edges N``) for comparison.

    python docs/plot_grow_curve.py docs/examples/grow_smollm2_135m.yaml --reference 0.731 --reference-edges 6
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STEP = re.compile(r"^# step (\d+): \+ (\S+): F (-?[\d.]+) \(gain ([+-][\d.]+)(?:.*; (\d+) edges\))?")
START = re.compile(r"^# F with no edges: (-?[\d.]+)")
SEED = re.compile(r"^# F with the (\d+) starting edges: (-?[\d.]+)")
BAND = re.compile(r"band \[([\d.]+), ([\d.]+)\]")


def read_curve(path: Path) -> dict:
    curve: dict = {"n_edges": [], "edges": [], "faithfulness": [], "gain": [], "band": None}
    for line in path.read_text().splitlines():
        if m := START.match(line):
            curve["n_edges"].append(0)
            curve["edges"].append(None)
            curve["faithfulness"].append(float(m[1]))
            curve["gain"].append(None)
        elif m := SEED.match(line):
            curve["n_edges"].append(int(m[1]))
            curve["edges"].append("the starting edges")
            curve["faithfulness"].append(float(m[2]))
            curve["gain"].append(None)
        elif m := STEP.match(line):
            curve["n_edges"].append(int(m[5]) if m[5] else int(m[1]))
            curve["edges"].append(m[2])
            curve["faithfulness"].append(float(m[3]))
            curve["gain"].append(float(m[4]))
        elif line.startswith("#   with its upstream chain:"):
            curve["edges"][-1] += " (with " + line.split(":", 1)[1].strip() + ")"
        elif (m := BAND.search(line)) and curve["band"] is None:
            curve["band"] = [float(m[1]), float(m[2])]
        elif line.startswith("# stopped:"):
            curve["stopped"] = line.split(":", 1)[1].strip()
        elif line.startswith("# final edge-level F"):
            curve["final"] = line[2:]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("draft", type=Path)
    parser.add_argument("--reference", type=float, default=None)
    parser.add_argument("--reference-edges", type=int, default=None)
    parser.add_argument("--reference-label", default="hand-written hypothesis")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = read_curve(args.draft)
    if args.reference is not None:
        curve["reference"] = {"faithfulness": args.reference, "edges": args.reference_edges,
                              "label": args.reference_label}
    stem = args.draft.with_name(args.draft.stem + "_curve")
    stem.with_suffix(".json").write_text(json.dumps(curve, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(curve["n_edges"], curve["faithfulness"], "o-", label="grown (greedy)")
    if curve["band"]:
        ax.axhspan(*curve["band"], color="green", alpha=0.12, label="band")
    if args.reference is not None:
        ax.axhline(args.reference, color="grey", ls="--", lw=1)
        if args.reference_edges is not None:
            ax.plot([args.reference_edges], [args.reference], "s", color="black", label=args.reference_label)
    ax.set_xlabel("number of edges")
    ax.set_ylabel("edge-level faithfulness F(C)/F(M)")
    ax.set_title(args.draft.stem)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"wrote {stem.with_suffix('.png')} and {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
