#!/usr/bin/env bash
# Screenshots of the main window for docs/screenshots at the two sizes the
# radiologist's review used (1024x700, a laptop; 1600x1000, a reading station),
# with the shipped model, offscreen.  Each shot takes about a minute on 2 cores.
#
#   tools/gui_shots.sh [OUT_DIR]        (default docs/screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/screenshots}
DATA=${XRAY_SHARED:-../shared}/data
PY=${PYTHON:-python}
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export XRAY_SETTINGS=$(mktemp -d)/settings.ini   # a fresh user: default layout and settings
mkdir -p "$OUT"
for size in 1024x700 1600x1000; do
  # a 2k DICOM (DX PA, MONOCHROME1, JPEG 2000 lossless): overlays, orientation, heatmap, scale
  "$PY" -m xray_gui --size "$size" --screenshot "$OUT/dicom_$size.png" \
    "$DATA/dicom-samples/cxr15_dx_966fixed_j2kr_mono1.dcm"
  # a batch of external films: table share, pinned verdict, selected row on screen
  "$PY" -m xray_gui --size "$size" --screenshot "$OUT/batch_$size.png" \
    --screenshot-batch "$DATA/external-dev/COVID"
done
echo "written to $OUT"
