#!/usr/bin/env bash
# The demo: everything here runs offline on a CPU in under a minute.
set -euo pipefail
DE=".venv/bin/deepeyes"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build the tiny random-weight Qwen2.5-VL (cached after the first run)"
$DE model build-tiny

step "the tiny recipe, fully resolved"
$DE recipes show tiny

step "load it through the same loader as the 7B and generate"
$DE model check --recipe tiny --max-new-tokens 16
