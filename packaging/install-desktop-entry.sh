#!/usr/bin/env bash
# Put "Chest X-ray Assistant" in the Linux desktop menu for this user
# (~/.local/share/applications + ~/.local/share/icons/hicolor), so it can be
# started from the menu and opens the images or DICOM files given to it
# ("Open with", drag onto the launcher).
#
#     install-desktop-entry.sh                 # the bundle this script sits in, or dist/xray-assistant,
#                                              # or else the `xray-gui` of the active environment
#     install-desktop-entry.sh --exec /path/to/xray-assistant
#     install-desktop-entry.sh --uninstall
#
# Works from a built bundle (dist/xray-assistant/install-desktop-entry.sh, copied
# there by build.sh) and from the repository (packaging/install-desktop-entry.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"
ICONS="$DATA/icons/hicolor"
NAME=xray-assistant
SIZES=(16 32 48 64 128 256)

refresh() {
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS" 2>/dev/null || true
    command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$ICONS" 2>/dev/null || true
    command -v xdg-desktop-menu >/dev/null && xdg-desktop-menu forceupdate 2>/dev/null || true
}

if [[ "${1:-}" == "--uninstall" ]]; then
    rm -f "$APPS/$NAME.desktop" "$ICONS/scalable/apps/$NAME.svg"
    for s in "${SIZES[@]}"; do rm -f "$ICONS/${s}x${s}/apps/$NAME.png"; done
    refresh
    echo "removed $APPS/$NAME.desktop and its icons"
    exit 0
fi

# where the resources are: inside a bundle (_internal/resources) or the repository (resources/)
if [[ -f "$HERE/_internal/resources/$NAME.desktop" ]]; then
    RES="$HERE/_internal/resources"
else
    RES="$(cd "$HERE/.." && pwd)/resources"
fi
[[ -f "$RES/$NAME.desktop" ]] || { echo "install-desktop-entry.sh: $RES/$NAME.desktop not found" >&2; exit 1; }

# which program the launcher starts
EXEC=""
if [[ "${1:-}" == "--exec" ]]; then
    EXEC="${2:?--exec needs a path}"
elif [[ -x "$HERE/$NAME" ]]; then
    EXEC="$HERE/$NAME"
elif [[ -x "$HERE/../dist/$NAME/$NAME" ]]; then
    EXEC="$(cd "$HERE/../dist/$NAME" && pwd)/$NAME"
elif command -v xray-gui >/dev/null; then
    EXEC="$(command -v xray-gui)"
fi
[[ -n "$EXEC" && -x "$EXEC" ]] || {
    echo "install-desktop-entry.sh: no program found: build the bundle (packaging/build.sh) or pass --exec PATH" >&2
    exit 1
}
EXEC="$(cd "$(dirname "$EXEC")" && pwd)/$(basename "$EXEC")"
# Exec= quoting (Desktop Entry spec): "..." with \" \` \$ \\ escaped, then every \ doubled for the file
QEXEC="$EXEC"
if [[ "$EXEC" =~ [^A-Za-z0-9_./+,:@%=-] ]]; then
    q="${EXEC//\\/\\\\}"; q="${q//\"/\\\"}"; q="${q//\`/\\\`}"; q="${q//\$/\\\$}"
    QEXEC="\"${q//\\/\\\\}\""
fi

mkdir -p "$APPS" "$ICONS/scalable/apps"
install -m 644 "$RES/icons/$NAME.svg" "$ICONS/scalable/apps/$NAME.svg"
for s in "${SIZES[@]}"; do
    mkdir -p "$ICONS/${s}x${s}/apps"
    install -m 644 "$RES/icons/$NAME-$s.png" "$ICONS/${s}x${s}/apps/$NAME.png"
done
# the menu's PATH may not have the program: point Exec/TryExec at it
while IFS= read -r line || [[ -n "$line" ]]; do
    case "$line" in
        "Exec=$NAME "*) printf 'Exec=%s %s\n' "$QEXEC" "${line#"Exec=$NAME "}" ;;
        TryExec=*) printf 'TryExec=%s\n' "$EXEC" ;;
        *) printf '%s\n' "$line" ;;
    esac
done < "$RES/$NAME.desktop" > "$APPS/$NAME.desktop.tmp"
chmod 644 "$APPS/$NAME.desktop.tmp"
mv -f "$APPS/$NAME.desktop.tmp" "$APPS/$NAME.desktop"
refresh
echo "installed $APPS/$NAME.desktop (Exec: $EXEC) and icons in $ICONS"
