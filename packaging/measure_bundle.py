"""Measure the built bundle: size, what the size is made of, and start-up times.

    .venv/bin/python packaging/measure_bundle.py --model M [--image FILE] [--runs 2] [--cold]

Start-up: runs ``dist/xray-assistant/xray-assistant --screenshot`` with a bare
environment (no venv on PATH, QT_QPA_PLATFORM=offscreen) and
XRAY_STARTUP_TIMING=1, and reports when the window was shown, when the event
loop first ran (window usable), when the model was ready and the whole run
(prediction + Grad-CAM + screenshot).  ``--cold`` first evicts the bundle's files
from the page cache (posix_fadvise DONTNEED on each file: only this bundle's
pages, nothing else on the machine), so the first run reads everything from disk.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "dist" / "xray-assistant"


def du(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def evict(path: Path) -> int:
    n = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def sizes(top: int) -> None:
    internal = BUNDLE / "_internal"
    total = du(BUNDLE)
    nfiles = sum(1 for p in BUNDLE.rglob('*') if p.is_file())
    print(f"bundle: {BUNDLE} {total / 2**30:.2f} GiB ({nfiles} files)")
    groups: dict[str, int] = {}
    for child in internal.iterdir():
        if child.name in ("nvidia", "torch"):  # one level deeper: these are the bulk
            for sub in child.iterdir():
                key = f"{child.name}/{sub.name}"
                if child.name == "torch" and sub.name != "lib":
                    key = "torch/ (Python code and data)"
                groups[key] = groups.get(key, 0) + du(sub)
        else:
            groups[child.name] = du(child)
    print(f"top {top} parts of _internal/:")
    for name, size in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {size / 2**20:8.0f} MiB  {name}")
    print("largest single files:")
    files = sorted((p for p in internal.rglob("*") if p.is_file() and not p.is_symlink()),
                   key=lambda p: -p.stat().st_size)[:top]
    for p in files:
        print(f"  {p.stat().st_size / 2**20:8.0f} MiB  {p.relative_to(internal)}")


def run_once(model: Path, image: Path, out: Path) -> dict[str, float]:
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "QT_QPA_PLATFORM": "offscreen",
           "XRAY_STARTUP_TIMING": "1", "LANG": "C.UTF-8"}
    t0 = time.monotonic()
    r = subprocess.run([str(BUNDLE / "xray-assistant"), "--screenshot", str(out), str(image), "--model", str(model),
                        "--device", "cpu"], env=env, capture_output=True, text=True, timeout=1200)
    total = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"the bundle failed (rc={r.returncode}):\n{r.stderr[-3000:]}")
    found = {m.group(1): float(m.group(2))
             for m in re.finditer(r"startup-timing: (.+?) ([\d.]+) s after the process started", r.stderr)}
    found["whole --screenshot run"] = total
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--image", type=Path,
                   default=ROOT.parent / "shared/data/dicom-samples/cxr01_rsna_normal-2_jpegbaseline.dcm")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--cold", action="store_true", help="evict the bundle from the page cache before the first run")
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args()
    if not (BUNDLE / "xray-assistant").is_file():
        sys.exit(f"no bundle at {BUNDLE}: run packaging/build.sh")
    sizes(a.top)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.runs):
            label = "warm"
            if i == 0 and a.cold:
                print(f"evicted {evict(BUNDLE)} files of the bundle from the page cache")
                label = "cold"
            t = run_once(a.model, a.image, Path(tmp) / f"shot{i}.png")
            print(f"run {i + 1} ({label}): " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
