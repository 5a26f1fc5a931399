#!/usr/bin/env bash
# Retrain the shipped MELD reasoner (adapters/reasoner-meld) and refit its fusion (adapters/fusion-meld.json):
#   1. K out-of-fold context models (runs/oof/, not committed): each trained like adapters/context-meld on the train
#      dialogues outside one fold, so the reasoner's training examples get a dialogue reading (D1) from a model that
#      never saw them, as on new data;
#   2. the reasoner: MELD text examples (D1 out of fold, the soft prompt from the shipped context model) plus
#      media-shaped examples (training/synthetic.py);
#   3. its evaluation on MELD dev (scripts/eval_reasoner.py) and the fusion refit on the new reasoner's scores.
# Every stage whose output exists is skipped, and the reasoner resumes from its checkpoint, so a killed run is
# continued by running this again (stage marks in runs/oof/). Usage: bash scripts/retrain_reasoner.sh [DATA_DIR]   (2 CPU cores: ~2 h with the two fold models, ~85 min without)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/meld}
PY=${PY:-.venv/bin/python}
K=${K:-2}
OOF=${OOF:-runs/oof}
# the fold models are trained like the shipped context model; scripts/retrain_all.sh passes its settings here
CONTEXT_ARGS=${CONTEXT_ARGS:---epochs 4 --max-minutes 12 --batch 4 --lr 1e-3 --weight-decay 0.05 --dropout 0.3 --label-smoothing 0.1 --past 2 --aux-sentiment 0.5 --seed 0}
mkdir -p "$OOF"
folds=()
pids=()
for ((f = 0; f < K; f++)); do
  dir=$OOF/context-meld-fold${f}of${K}
  folds+=("$dir")
  if [[ ! -f $dir/training.json ]]; then
    # the fold models train side by side, one CPU thread each (on 2 cores faster than one after the other)
    # shellcheck disable=SC2086
    $PY -m affect_llm.cli train context --dataset meld --data-dir "$DATA" --out "$dir" --folds "$K" --fold "$f" \
      $CONTEXT_ARGS --threads 1 --resume > "$OOF/fold$f.log" 2>&1 &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || { echo "a fold model failed: see $OOF/fold*.log" >&2; exit 1; }; done
[[ ${FOLDS_ONLY:-0} == 1 ]] && exit 0

OUT=adapters/reasoner-meld
if ! $PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rec = out / "training.json"
meta = out / "reasoner.json"
from affect_llm.context.model import fingerprint  # a reasoner trained on another context model is not done
current = meta.is_file() and json.loads(meta.read_text()).get("context_fingerprint") == fingerprint("adapters/context-meld")
done = rec.is_file() and json.loads(rec.read_text()).get("oof_context") and not (out / "checkpoint").exists() and current
sys.exit(0 if done else 1)
PY
then
  oof_args=()
  for dir in "${folds[@]}"; do oof_args+=(--oof-context "$dir"); done
  $PY -m affect_llm.cli train reasoner --dataset meld --data-dir "$DATA" --out "$OUT" \
    --samples 2000 --explain-share 0.35 --media-examples 300 "${oof_args[@]}" --batch 8 --lr 0.0004 \
    --projector-lr 0.001 --lora-r 8 --soft-tokens 4 --max-minutes 240 --seed 0 --threads 2
  rm -f "$OOF/fusion.done" "$OOF/eval.done"
fi
# the fusion is fitted on the new reasoner's label scores (the cache is keyed by the models' weights)
[[ -f $OOF/fusion.done ]] || {
  $PY -m affect_llm.cli train fusion --dataset meld --data-dir "$DATA"
  touch "$OOF/fusion.done"
}
[[ -f $OOF/eval.done ]] || {
  $PY scripts/eval_reasoner.py --data-dir "$DATA" --reasoners tuned --out "$OUT/eval.json"
  touch "$OOF/eval.done"
}
