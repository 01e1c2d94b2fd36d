#!/usr/bin/env bash
# Train the shipped model v1 and its ablations in one go (GPU or CPU), resumable.
#
#   tools/train_v1.sh OUT_DIR [--threads N] [--epochs N] [--final-epochs N] [--skip-install]
#
# Every run is an ordinary `xray-train` run folder under OUT_DIR; running the
# script again resumes each unfinished run from its last epoch and skips the
# finished ones.  All runs: the shipped split (results/shipped/
# split.csv, the paper's 100 test images held out), warm start from the interim
# model's ResNet50 backbone, class-balanced sampling, bf16 autocast where the
# CPU has native bf16 (AMX / AVX-512 BF16), fp16 AMP on CUDA.
#   v1_resnet50_224      224 px, lung crop + CLAHE + source-breaking augmentation (the candidate)
#   v1_lstm_224          ResNet50-LSTM on that backbone (frozen): the shipped architecture
#   ab112_lungs_clahe_source  the same recipe at 112 px            } ablation rows,
#   ab112_lungs_basic         lung crop only                       } 112 px, 2 epochs
#   ab112_lungs_clahe_basic   lung crop + CLAHE                    }
#   ab112_whole_basic         whole image, as the interim model    } (fine-tuning alone)
# Then: python -m training.release.ablation OUT_DIR (external-dev, calibration, table).
set -euo pipefail
OUT=${1:?usage: train_v1.sh OUT_DIR [--threads N] [--epochs N] [--final-epochs N] [--skip-install]}
shift
THREADS=2
EPOCHS=2
FINAL_EPOCHS=5
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2;;
    --epochs) EPOCHS=$2; shift 2;;
    --final-epochs) FINAL_EPOCHS=$2; shift 2;;
    --skip-install) INSTALL=0; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
cd "$(dirname "$0")/.."
REPO=$(pwd)
DATA=$(cd "$REPO/../shared/data" && pwd)
if [ "$INSTALL" = 1 ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
PY="$REPO/.venv/bin/python"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WARM="$REPO/resources/models/covid_resnet50_lstm_interim.safetensors"
[ -f "$WARM" ] || { echo "the interim model (warm start) is missing: $WARM" >&2; exit 2; }
COMMON=(--data "$DATA/covid-cxr-1000" "$DATA/covid-cxr-extra-3000" --recipe shipped
        --split "$REPO/results/shipped/split.csv" --batch-size 32
        --threads "$THREADS" --cache-dir "$OUT/cache" --quiet)

train() {  # name, then xray-train options
  local name=$1; shift
  if [ -f "$OUT/$name/config.json" ]; then
    "$PY" -m training.cli.train --resume "$OUT/$name" --quiet
  else
    "$PY" -m training.cli.train "${COMMON[@]}" --out "$OUT/$name" "$@"
  fi
}

FT=(--models resnet50 --init "$WARM" --lr 3e-4 --warmup-epochs 0 --early-stopping 0)
train v1_resnet50_224 "${FT[@]}" --input-size 224 --epochs "$FINAL_EPOCHS" \
  --region lungs --intensity clahe --augment-level source
train v1_lstm_224 --models resnet50_lstm --init "$OUT/v1_resnet50_224/models/resnet50.safetensors" --lstm-init "" \
  --input-size 224 --epochs 3 --lr 1e-3 --warmup-epochs 0 --early-stopping 0 --freeze-backbone-epochs 3 \
  --region lungs --intensity clahe --augment-level source
train ab112_lungs_clahe_source "${FT[@]}" --input-size 112 --epochs "$EPOCHS" \
  --region lungs --intensity clahe --augment-level source
train ab112_lungs_basic "${FT[@]}" --input-size 112 --epochs "$EPOCHS" --region lungs --intensity none --augment-level basic
train ab112_lungs_clahe_basic "${FT[@]}" --input-size 112 --epochs "$EPOCHS" --region lungs --intensity clahe --augment-level basic
train ab112_whole_basic "${FT[@]}" --input-size 112 --epochs "$EPOCHS" --region whole --intensity none --augment-level basic
echo "all runs finished: $OUT"
