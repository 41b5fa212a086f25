#!/bin/sh
# docs/formats.md's end-to-end example: SmolLM2 heads scored by path patching and written as an
# EAP-IG graph, imported as a hypothesis, verified, and the verified circuit exported back.
#   sh docs/examples/formats/end_to_end.sh OUT_DIR
set -e
out=${1:-out/formats}
mkdir -p "$out"
python docs/examples/formats/score_eap_ig.py "$out/scores.json" 12
circuitspec import "$out/scores.json" --format eap-ig --model smollm2-135m-instruct \
  --top-k 7 --roles docs/examples/formats/roles.yaml --n-prompts 12 -o "$out/imported.yaml"
circuitspec validate "$out/imported.yaml"
# exit 1 (a claim not verified) still writes the results; only 2 (bad input) stops here
circuitspec verify "$out/imported.yaml" --out "$out/run" --n-prompts 12 --n-random 5 \
  --n-null-edges 0 --n-bootstrap 200 --no-robustness || test $? -eq 1
circuitspec export "$out/run/results.json" --format eap-ig -o "$out/verified.json"
