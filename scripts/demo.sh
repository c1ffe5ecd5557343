#!/usr/bin/env bash
# The demo: the whole pipeline on the tiny model, offline, on a CPU (README.demo.md).
#   curate (scripted teacher) -> counting-task data -> protocol-valid before -> sft -> protocol-valid after -> rl
#   -> bench base vs trained (+ compare) -> serve + one question through the openai client -> index page
# Every figure it prints is read back from the JSON the stages wrote in this run.
# DEMO_OUT=runs/demo (the output folder, cleared first); DEEPEYES=.venv/bin/deepeyes; PYTHON=.venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
DE="${DEEPEYES:-.venv/bin/deepeyes}"
PY="${PYTHON:-.venv/bin/python}"
OUT="${DEMO_OUT:-runs/demo}"
STEPS="scripts/demo/steps.py"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
# The task of SFT warm start, RL and bench (testing/rl_task.py): "how many colours are in the image?", where one
# short code cell prints the answer; its own short prompts and only the code tool (benchmarks/rl_tiny_learning.py)
mapfile -t RL_ARGS < <($PY -c 'import sys; sys.path.insert(0, "benchmarks"); from rl_tiny_learning import RL_ARGS; print("\n".join(RL_ARGS))')
mapfile -t TASK_ARGS < <($PY -c 'from deepeyes_cli.testing.rl_task import AGENT_ARGS; print("\n".join(AGENT_ARGS))')
RL_STEPS="${DEMO_RL_STEPS:-16}"
SFT_N="${DEMO_COUNT_SFT:-2048}"
SFT_EPOCHS="${DEMO_SFT_EPOCHS:-5}"

SERVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 ]]; then
    printf '\n\033[1;31mdemo FAILED (exit %s) in step: %s\033[0m\nlogs: %s/logs/\n' "$rc" "${CURRENT:-?}" "$OUT" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START=$SECONDS
T0=$SECONDS
CURRENT=""
step() {
  [[ -n "$CURRENT" ]] && printf '{"step": "%s", "seconds": %s}\n' "$CURRENT" $((SECONDS - T0)) >>"$OUT/timings.jsonl"
  CURRENT="$1"; T0=$SECONDS
  printf '\n\033[1m== [%s s] %s\033[0m\n' $((SECONDS - START)) "$*"
}

rm -rf "$OUT"
mkdir -p "$OUT/logs"

step "build the tiny random-weight Qwen2.5-VL (cached after the first run)"
$DE model build-tiny

step "curate: 24 generated-image questions; the tiny model as base, the scripted oracle as the strong teacher"
$DE curate run -r tiny -o "$OUT/data" curate.synthetic.n=24 curate.difficulty.k=1

step "SFT data through the real loop (scripted policy, live sandbox): $SFT_N counting-task trajectories, the code tool in half of them"
$PY $STEPS count-sft "$OUT/count-sft.jsonl" --n "$SFT_N" --p-tool 0.5
$PY $STEPS count-bench "$OUT/count-bench.parquet" --n 32

step "protocol-valid rate of the base tiny model on held-out counting prompts (the real agent loop, greedy)"
$PY $STEPS valid builtin:tiny "$OUT/valid_before.json"

# The warm start of benchmarks/rl_tiny_learning.py, as it is: with curate's 17 trajectories mixed in, the
# 2-layer model did not learn to copy the tool's output in the same steps (README "What make demo shows")
step "SFT the tiny model on the counting trajectories (lr 6e-3, batch 8, $SFT_EPOCHS epochs)"
$DE sft -r tiny "sft.datasets=[$OUT/count-sft.jsonl]" "sft.epochs=$SFT_EPOCHS" \
  sft.learning_rate=6e-3 sft.per_device_batch_size=8 "sft.max_samples=$SFT_N" sft.save_steps=100000 \
  "sft.report_to=[]" --run-dir "$OUT/sft"

step "protocol-valid rate of the SFT'd model on the same held-out prompts"
$PY $STEPS valid "$OUT/sft/export" "$OUT/valid_after.json"

# 8 prompts x 4 rollouts a step: with 4 prompts the step mean swings +-0.2 with which answers were drawn
step "RL (GRPO, live code tool) from the SFT'd model: $RL_STEPS steps of 8 prompts x 4 rollouts on the counting task, where the tool pays"
$DE rl -r tiny "rl.init_from=$OUT/sft/export" "rl.rollout.max_steps=$RL_STEPS" "rl.save_freq=$RL_STEPS" "rl.validation.datasets=[]" \
  rl.train_batch_size=8 rl.ppo_mini_batch_size=4 rl.learning_rate=2e-4 "${RL_ARGS[@]}" --run-dir "$OUT/rl"

step "bench: the base tiny model and the trained one on a mini benchmark file of 32 counting questions, tools live"
TRAINED="$(ls -d "$OUT"/rl/checkpoints/step-*/hf | sort -V | tail -1)"
$DE bench heldout -r tiny --data "$OUT/count-bench.parquet" "${TASK_ARGS[@]}" --run-dir "$OUT/bench-base"
$DE bench heldout -r tiny --data "$OUT/count-bench.parquet" "${TASK_ARGS[@]}" --model "$TRAINED" --run-dir "$OUT/bench-trained"
$DE bench compare "$OUT/bench-base" "$OUT/bench-trained"
$DE bench compare "$OUT/bench-base" "$OUT/bench-trained" --json >"$OUT/compare.json"

step "serve the trained model and ask one counting question through the official openai client"
$DE serve -r tiny --port 0 "model.path=$TRAINED" "${TASK_ARGS[@]}" --run-dir "$OUT/serve" >"$OUT/logs/serve.log" 2>&1 &
SERVER_PID=$!
URL=""
for _ in $(seq 1 240); do
  URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*/v1' "$OUT/logs/serve.log" | head -1 || true)"
  [[ -n "$URL" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/logs/serve.log" >&2; echo "error: the server exited" >&2; exit 1; }
  sleep 1
done
[[ -n "$URL" ]] || { cat "$OUT/logs/serve.log" >&2; echo "error: the server did not start in 240 s" >&2; exit 1; }
echo "server up at $URL"
ASK_IMAGE="$(ls "$OUT"/count-bench.images/*.png | head -1)"
$PY $STEPS ask "$URL" "$ASK_IMAGE" "How many colours are in the image?" "$OUT/serve.json"
kill -TERM "$SERVER_PID"
# uvicorn drains, then re-raises the SIGTERM it caught: 143 is a clean stop, anything else is not
rc=0; wait "$SERVER_PID" || rc=$?
[[ $rc -eq 0 || $rc -eq 143 ]] || { echo "error: the server did not stop cleanly (exit $rc)" >&2; exit 1; }
SERVER_PID=""
echo "server stopped cleanly"

step "the index page"
printf '{"step": "total", "seconds": %s}\n' $((SECONDS - START)) >>"$OUT/timings.jsonl"
CURRENT="index"
$PY $STEPS index "$OUT"
printf '\nopen %s/index.html in a browser (%s s in all)\n' "$OUT" $((SECONDS - START))
