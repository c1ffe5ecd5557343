#!/usr/bin/env bash
# The release check: build the wheel, install it into a fresh venv WITHOUT the dev extra,
# and make sure the CLI starts and finds its packaged files (recipes, templates, viewer).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "== building the wheel"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . 2>/dev/null \
  || "$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" .
WHEEL="$(ls "$WORK"/dist/deepeyes_cli-*.whl)"
echo "   $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"
echo "== installing it into a fresh venv (runtime dependencies only)"
"$PYTHON" -m venv "$WORK/venv"
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }  # pip lists every unused local index
quiet "$WORK/venv/bin/pip" install -q --upgrade pip
quiet "$WORK/venv/bin/pip" install -q -c constraints/cpu.txt "$WHEEL"
if "$WORK/venv/bin/python" -c "import pytest" 2>/dev/null; then
  echo "error: pytest is installed without the dev extra" >&2; exit 1
fi
cd "$WORK"  # away from the checkout: only the installed package may be imported
echo "== deepeyes from the wheel"
"$WORK/venv/bin/deepeyes" --version
"$WORK/venv/bin/deepeyes" --help >/dev/null
"$WORK/venv/bin/deepeyes" ask --help >/dev/null
"$WORK/venv/bin/deepeyes" recipes validate tiny >/dev/null
"$WORK/venv/bin/deepeyes" recipes validate 7b >/dev/null
echo "wheel check passed"
