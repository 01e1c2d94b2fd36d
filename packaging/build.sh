#!/usr/bin/env bash
# Build the double-clickable one-folder bundle: dist/xray-assistant/xray-assistant
#
#     bash packaging/build.sh              # uses .venv/ (or $PYTHON)
#
# Installs PyInstaller into the environment if it is missing, builds from
# packaging/xray-assistant.spec into dist/ (work files in build/), copies the
# launcher installer next to the executable and prints the bundle's size.
# Environment: PYTHON (default .venv/bin/python), PYINSTALLER_VERSION (pip spec,
# default ">=6.10,<7"), BUILD_NICE=1 to build at low CPU priority.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
    echo "build.sh: no Python at $PY (make the venv: python3 -m venv .venv && .venv/bin/pip install -e .)" >&2
    exit 2
fi
NICE=()
[[ "${BUILD_NICE:-0}" == 1 ]] && NICE=(nice -n 10)

if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    echo "build.sh: installing PyInstaller into $("$PY" -c 'import sys; print(sys.prefix)')"
    "$PY" -m pip install --quiet "pyinstaller${PYINSTALLER_VERSION:->=6.10,<7}"
fi
"$PY" -c "import xray_gui, training" 2>/dev/null || {
    echo "build.sh: the project is not importable from $PY (run: $PY -m pip install -e .)" >&2
    exit 2
}

start=$(date +%s)
"${NICE[@]}" "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
    "$ROOT/packaging/xray-assistant.spec"

BUNDLE="$ROOT/dist/xray-assistant"
install -m 755 "$ROOT/packaging/install-desktop-entry.sh" "$BUNDLE/install-desktop-entry.sh"
echo "build.sh: built $BUNDLE/xray-assistant in $(( $(date +%s) - start )) s; size $(du -sh "$BUNDLE" | cut -f1)"
echo "build.sh: add it to the desktop menu with: $BUNDLE/install-desktop-entry.sh"
