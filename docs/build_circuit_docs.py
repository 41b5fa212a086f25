"""Regenerate the circuit pages under docs/circuits/ from `circuitspec verify` output.

    .venv/bin/python docs/build_circuit_docs.py [--n-prompts 64] [hypotheses/ioi_smollm2_135m.yaml ...]
    .venv/bin/python docs/build_circuit_docs.py --from-results   # reports only, from results.json

For each hypothesis it runs the full verification, writes the usual outputs
(results.json, report.md, report.html, circuit.svg, circuit.png) into
docs/circuits/<stem>/, and copies the diagram to docs/img/<stem>.png for the README.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
DEFAULT = [ROOT / "hypotheses" / "ioi_smollm2_135m.yaml", ROOT / "hypotheses" / "ioi_gemma3_270m.yaml"]


def build(path: Path, n_prompts: int | None, n_random: int) -> bool:
    from circuitspec.output.console import print_result
    from circuitspec.output.report import write_outputs
    from circuitspec.verification.run import Options, verify

    result = verify(path, options=Options(n_prompts=n_prompts, n_random=n_random))
    out = DOCS / "circuits" / path.stem
    write_outputs(result, out)
    (DOCS / "img").mkdir(exist_ok=True)
    shutil.copyfile(out / "circuit.png", DOCS / "img" / f"{path.stem}.png")
    print_result(result, out)
    return result.passed


def rebuild_reports(path: Path) -> bool:
    """Redraw report.md/report.html from the committed results.json (no model run)."""
    from circuitspec.output.report import write_report
    from circuitspec.results import Result

    out = DOCS / "circuits" / path.stem
    if not (out / "results.json").exists():
        return True
    write_report(Result.load(out / "results.json"), out)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hypotheses", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--n-prompts", type=int, default=None)
    parser.add_argument("--n-random", type=int, default=100)
    parser.add_argument("--from-results", action="store_true",
                        help="only redraw the reports from each page's results.json")
    args = parser.parse_args()
    if args.from_results:
        return 0 if all(rebuild_reports(p) for p in args.hypotheses) else 1
    ok = [build(p, args.n_prompts, args.n_random) for p in args.hypotheses if p.exists()]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
