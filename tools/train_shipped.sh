#!/usr/bin/env bash
# Train the shipped model v2 and its ablation runs, then evaluate them (GPU or CPU), resumable.
#
#   tools/train_shipped.sh OUT_DIR [--threads N] [--skip-install] [--main-only] [--no-eval]
#
# Every run is a `python -m training.train.model_v2` run folder under OUT_DIR (checkpoint.pt after each
# epoch); running the script again resumes each unfinished run and skips the finished ones.
# CUDA is used when present (fp16 autocast), else the CPU (bf16 where the CPU has it natively).
#   v2_lstm_lesion     ResNet50-LSTM end to end, three classes, lesion decoder, 192 px,
#                      6 epochs x 2,400 source-balanced films, warm start from v1's backbone
#   v2_lstm_lesion_16  the shipped model: that run extended to 16 epochs (--resume --epochs 16: the
#                      cosine schedule stretched to 16 epochs, a warm restart at epoch 7)
#   ab_linear_3class   ablation at a small budget (1 epoch x 1,200): three-class data, linear head
#   ab_linear_lesion   + lesion supervision
#   ab_lstm_lesion     + ResNet50-LSTM end to end (same small budget)
#   v2_linear_lesion   the LSTM head study: a linear head at v2_lstm_lesion's budget (6 x 2,400), same seed
# Then each model file is evaluated through the app's path (python -m training.release.evaluate_v2) into
# results/v2/<run name>/ (per-file predictions.csv + evaluation.json); v1 into results/v2/v1.
set -euo pipefail
OUT=${1:?usage: train_shipped.sh OUT_DIR [--threads N] [--skip-install] [--main-only] [--no-eval]}
shift
THREADS=2
INSTALL=1
MAIN_ONLY=0
EVAL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2;;
    --skip-install) INSTALL=0; shift;;
    --main-only) MAIN_ONLY=1; shift;;
    --no-eval) EVAL=0; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
cd "$(dirname "$0")/.."
REPO=$(pwd)
if [ "$INSTALL" = 1 ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
PY="$REPO/.venv/bin/python"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

train() {  # name, then train_v2 options
  local name=$1; shift
  if [ -f "$OUT/$name/model.safetensors" ]; then
    echo "$name: finished"
  elif [ -f "$OUT/$name/config.json" ]; then
    "$PY" -m training.train.model_v2 --resume "$OUT/$name"
  else
    "$PY" -m training.train.model_v2 --out "$OUT/$name" --threads "$THREADS" "$@"
  fi
}
evaluate() {  # name, what, [--no-explain]
  local name=$1 what=$2; shift 2
  [ "$EVAL" = 1 ] || return 0
  [ -f "$REPO/results/v2/$name/evaluation.json" ] && return 0
  "$PY" -m training.release.evaluate_v2 "$OUT/$name/model.safetensors" --out "$REPO/results/v2/$name" \
    --name "$name" --what "$what" --threads "$THREADS" "$@"
}

train v2_lstm_lesion --epochs 6 --samples-per-epoch 2400 --input-size 192 \
  --name "COVID-19 / pneumonia / Normal ResNet50-LSTM" --version 2
evaluate v2_lstm_lesion "+ ResNet50-LSTM end to end, 6 x 2,400 films"
if [ ! -f "$OUT/v2_lstm_lesion_16/model.safetensors" ]; then
  if [ ! -f "$OUT/v2_lstm_lesion_16/config.json" ]; then  # start from the 6-epoch run's last checkpoint
    mkdir -p "$OUT/v2_lstm_lesion_16"
    cp "$OUT/v2_lstm_lesion/"{checkpoint.pt,best.pt,history.json} "$OUT/v2_lstm_lesion_16/"
    "$PY" -c "import json,sys; p=sys.argv[1]+'/config.json'; d=json.load(open(sys.argv[2])); d['out']=sys.argv[1]; json.dump(d, open(p, 'w'), indent=2)" \
      "$OUT/v2_lstm_lesion_16" "$OUT/v2_lstm_lesion/config.json"
  fi
  "$PY" -m training.train.model_v2 --resume "$OUT/v2_lstm_lesion_16" --epochs 16
fi
evaluate v2_lstm_lesion_16 "+ 10 more epochs: 16 x 2,400 films (the shipped v2)"
if [ "$EVAL" = 1 ] && [ ! -f "$REPO/results/v2/v1/evaluation.json" ]; then
  "$PY" -m training.release.evaluate_v2 "$REPO/resources/models/covid_cxr_v1.safetensors" --out "$REPO/results/v2/v1" \
    --name v1 --what "shipped v1: ResNet50, 224 px, 2 classes, Kaggle data only" --threads "$THREADS"
fi
[ "$MAIN_ONLY" = 1 ] && exit 0
SMALL=(--epochs 1 --samples-per-epoch 1200 --input-size 192)
train ab_linear_3class --head linear --no-lesion "${SMALL[@]}"
evaluate ab_linear_3class "+ three-class data (ResNet50, linear head), 1 x 1,200 films"
train ab_linear_lesion --head linear "${SMALL[@]}"
evaluate ab_linear_lesion "+ lesion supervision, 1 x 1,200 films"
train ab_lstm_lesion --head lstm "${SMALL[@]}"
evaluate ab_lstm_lesion "+ ResNet50-LSTM end to end, 1 x 1,200 films"
# the masked-input experiment (not shipped: worse on every set): 6 epochs from the shipped v2, black outside the lungs
train v2_lstm_lesion_masked --init "$REPO/resources/models/covid_cxr_v2.safetensors" --outside masked --epochs 6 \
  --samples-per-epoch 2400 --input-size 192 --name "COVID-19 / pneumonia / Normal ResNet50-LSTM" --version 2.1
evaluate v2_lstm_lesion_masked "+ black outside the widened lung mask (6 more epochs from v2)"
# the LSTM head study's equal-budget comparison: ResNet50 with a linear head, same data, schedule and seed as
# v2_lstm_lesion (results/v2/lstm_head_study; the 1 x 1,200 variants are in its README)
train v2_linear_lesion --head linear --epochs 6 --samples-per-epoch 2400 --input-size 192 \
  --name "COVID-19 / pneumonia / Normal ResNet50 (linear head)" --version 2-linear
evaluate v2_linear_lesion "ResNet50 with a linear head instead of the LSTM, 6 x 2,400 films (compare v2_lstm_lesion)"
echo "all runs finished: $OUT"
