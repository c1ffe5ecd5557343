#!/usr/bin/env bash
# The demo: everything here runs offline on a CPU in about a minute, with real tools
# (an isolated Jupyter sandbox and a local search index) and the tiny random model.
set -euo pipefail
cd "$(dirname "$0")/.."
DE=".venv/bin/deepeyes"
OUT="runs/demo"
PHOTO="tests/data/street_sign.jpg"
mkdir -p "$OUT"
rm -f "$OUT/trajectories.jsonl" "$OUT/scored.jsonl"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build the tiny random-weight Qwen2.5-VL (cached after the first run)"
$DE model build-tiny

step "the tiny recipe, fully resolved"
$DE recipes show tiny

step "load it through the same loader as the 7B and generate"
$DE model check --recipe tiny --max-new-tokens 16 --run-dir "$OUT/model-check"

step "run a cell in the isolated sandbox: crop the sign and return the image"
$DE sandbox run --recipe tiny -i "$PHOTO" -o "$OUT/sandbox" \
  "print(image_1.size); image_1.crop((385, 180, 485, 280)).resize((200, 200))"

step "search the offline demo index (the 7b recipe searches Google through SerpAPI)"
$DE search text "red octagon traffic sign" --recipe tiny -k 2 --run-dir "$OUT/search"

step "the agent with a scripted policy and real tools: code, then search, then answer"
$DE ask "$PHOTO" "What does the sign next to the tree say?" --answer STOP --recipe tiny --backend scripted \
  policy.script=scripts/demo/turns.json agent.max_tokens_per_turn=1024 --save "$OUT/trajectories.jsonl" --run-dir "$OUT/ask-scripted"

step "the agent with the tiny random model (its answers are noise; the loop is the real one)"
$DE ask "$PHOTO" "What does the sign next to the tree say?" --answer STOP --recipe tiny \
  --save "$OUT/trajectories.jsonl" --run-dir "$OUT/ask-tiny"

step "score both trajectories: format rules and answer matching (no judge needed here)"
$DE judge "$OUT/trajectories.jsonl" --recipe tiny -o "$OUT/scored.jsonl" --run-dir "$OUT/judge"

step "a page to read them turn by turn"
$DE view "$OUT/scored.jsonl" -o "$OUT/trajectories.html"
printf '\nopen %s in a browser\n' "$OUT/trajectories.html"
