"""Re-score the growth path of hypotheses/ioi_gemma3_270m.yaml with verify's separate mean pool.

The 14-edge wiring was grown while `suggest --grow-edges` still took its means from the discovery
prompts' own corrupted partners. This evaluates each step's wiring (and the pruned file) on the
same 32 discovery prompts (seed 0) with the pool verify uses (seed 7919), and writes the rows
docs/examples/grow_gemma3_270m_curve.json was made from. Needs the Gemma-3-270M model fetched;
takes a few minutes on the CPU.

    git show 443d311:hypotheses/ioi_gemma3_270m.yaml > /tmp/hand.yaml   # the hand-written groups
    .venv/bin/python docs/examples/rescore_gemma3_270m_growth.py OUT.json /tmp/hand.yaml
"""
import json
import sys
from pathlib import Path

from circuitspec.ablation.mean_pool import build_mean_pool, pool_seed
from circuitspec.ablation.node import AblationRunner
from circuitspec.analyses.grow import GrowEdge, _Evaluator
from circuitspec.bridge.loading import load_model
from circuitspec.data.tasks import build_dataset
from circuitspec.spec.load import load_hypothesis
from circuitspec.spec.schema import TaskSpec

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "hypotheses" / "ioi_gemma3_270m.yaml"
OLD = Path(sys.argv[2])  # the hand-written file the growth started from
m = load_model("gemma-3-270m")
ds = build_dataset(TaskSpec(kind="ioi", corruption="abc"), m.tokenizer, prepend_bos=True, n_prompts=32, seed=0)
pool = build_mean_pool(m, ds, generate=True, seed=pool_seed(0))
runner = AblationRunner(m, ds, "mean", mean_pool=pool)
ev = _Evaluator(runner, False)
def groups_of(path):
    c = load_hypothesis(path).circuit()
    return {n.name: (n.role, [tuple(x) for x in n.heads]) for n in c.nodes.values()}
hand = groups_of(str(OLD))
final = groups_of(str(FILE))
fh = load_hypothesis(str(FILE))
def E(s):
    return GrowEdge(*s.split())
e1 = [E("name_movers logits"), E("negative_name_movers logits")]
up = ["s_inhibition name_movers q END", "induction name_movers k S2", "induction name_movers v S2",
      "duplicate name_movers k S2", "duplicate name_movers v S2", "duplicate induction q S2",
      "previous induction k S1+1", "induction s_inhibition q S2", "induction s_inhibition k S2",
      "induction s_inhibition v S2", "duplicate s_inhibition q S2", "duplicate s_inhibition v S2"]
step3 = e1 + [E("name_movers negative_name_movers q END")] + [E(x) for x in up]
step4 = step3 + [E("s_inhibition negative_name_movers q END")]
finals = [GrowEdge(e.sender, e.receiver, e.via, e.at) for e in fh.edges]
rows = [("no edges", 0, ev(hand, [])), ("+ name_movers->logits@END", 1, ev(hand, e1[:1])),
        ("+ negative_name_movers->logits@END", 2, ev(hand, e1)),
        ("+ name_movers->negative_name_movers.q@END (with its upstream chain)", 15, ev(hand, step3)),
        ("+ s_inhibition->negative_name_movers.q@END", 16, ev(hand, step4)),
        ("pruned (the file)", 14, ev(final, finals))]
for r in rows:
    print(r, flush=True)
Path(sys.argv[1]).write_text(json.dumps(rows))
