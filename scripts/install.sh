#!/usr/bin/env bash
# Install everything on a fresh machine: a .venv, torch (the CPU build when there is no NVIDIA GPU), the package
# with all extras, the system tools the tests use, and the embedded default models (checksummed, into
# $AFFECT_LLM_HOME, default ~/.cache/affect-llm). Safe to re-run: finished steps are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    TORCH=${AFFECT_LLM_TORCH:-torch}            # GPU machine: the default (CUDA) build
else
    TORCH=${AFFECT_LLM_TORCH:-torch==2.13.0}    # no GPU: the CPU build (on this workplace's disk)
fi
"${PIP[@]}" "$TORCH"
"${PIP[@]}" -e ".[plot,eval,dev,ray,serve,langchain,openai]" "mediapipe==1.2.2"   # the tested MediaPipe
# the [whisper] extra (openai-whisper backend) without triton, a GPU-only compiler it lists unconditionally
"${PIP[@]}" tiktoken more-itertools numba tqdm
"${PIP[@]}" --no-deps "openai-whisper==20250625"

# espeak-ng makes the speech fixtures of the tests and the media set; wamerican is the English word list the
# explanation check reads (/usr/share/dict/american-english); chromium and its driver run the web page's browser
# tests (tests/web); ffmpeg is not needed (PyAV bundles its own libraries).
NEED=()
command -v espeak-ng >/dev/null 2>&1 || NEED+=(espeak-ng)
[ -f /usr/share/dict/american-english ] || NEED+=(wamerican)
command -v chromium >/dev/null 2>&1 || NEED+=(chromium)
command -v chromedriver >/dev/null 2>&1 || NEED+=(chromium-driver)
if [ ${#NEED[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq "${NEED[@]}" >/dev/null) || echo "warning: could not install ${NEED[*]}; the tests that need them skip" >&2
    else
        echo "warning: ${NEED[*]} not installed (apt-get install ${NEED[*]}); the tests that need them skip" >&2
    fi
fi

.venv/bin/affect-llm models pull

# the vLLM backend's server, in its own environment (see the script)
bash scripts/install_vllm.sh
