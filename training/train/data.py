"""Training data: scan class folders, decode once into a uint8 cache, split.

A data folder holds one sub-folder per class (``COVID/`` and ``Normal/``, as
in ``covid-cxr-1000``).  Several data folders can be combined.  Every image is
decoded once per run with the project's one loader, resized to the model's
input size and kept in memory as uint8 (``uint8 / 255`` is the paper's
scaling).  Unreadable or refused images are listed with their reason and
skipped, never a crash.

The split manifest (CSV: ``dataset,file,label,split``) names each image by
its data folder's name and its path inside it, so it can be reused on another
computer (``--split FILE``).  Split names other than train/val/test (e.g.
``paper_test``) are extra evaluation sets, reported separately.
"""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from training.common import atomic
from training.common.constants import CLASS_NAMES, MIN_PER_CLASS, POSITIVE  # noqa: F401  (torch-free home of the names)
from training.common.csv_out import write_csv
from training.common.errors import DataError, ImageRefused
from training.common.formatting import exception_text
from training.imaging.loading import load_image, walk_folder
from training.imaging.resize import resize_grey
from training.train.split_rule import split_counts


@dataclass
class Item:
    dataset: str  # data folder name
    file: str  # path inside it, with '/' separators
    label: int  # 0 Normal, 1 COVID
    path: Path  # absolute path on this computer


@dataclass
class Scan:
    items: list[Item]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def counts(self) -> dict[str, int]:
        c = {name: 0 for name in CLASS_NAMES}
        for it in self.items:
            c[CLASS_NAMES[it.label]] += 1
        return c


def class_of_folder(name: str) -> int | None:
    n = name.strip().lower()
    if "covid" in n:
        return 1
    if n in ("normal", "healthy", "negative", "no finding", "no_finding"):
        return 0
    return None


def scan_folders(data_dirs: Sequence[str | os.PathLike]) -> Scan:
    """Find the images of each class folder.  Raises DataError when a folder
    cannot be used (missing, no class folders, unknown class folder)."""
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    if not data_dirs:
        raise DataError("No data folder given.")
    names = [Path(d).resolve().name for d in data_dirs]
    if len(set(names)) != len(names):
        raise DataError("Two data folders have the same name; the split manifest could not tell them apart.")
    for d in data_dirs:
        root = Path(d)
        if not root.is_dir():
            raise DataError(f"Data folder not found or not a folder: {root}")
        try:
            subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            raise DataError(f"Cannot read the data folder {root}: {exc.strerror or exc}") from exc
        found = {}
        for sd in subdirs:
            cls = class_of_folder(sd.name)
            if cls is None:
                skipped.append((str(sd), f"folder '{sd.name}' is not a class folder (expected COVID and Normal)"))
                continue
            found[cls] = sd
        missing = [CLASS_NAMES[c] for c in (0, 1) if c not in found]
        if missing:
            raise DataError(
                f"{root.name}: no '{'/'.join(missing)}' sub-folder. The data folder needs one sub-folder per "
                "class: COVID/ and Normal/.")
        for cls, sd in sorted(found.items()):
            entries, unreadable = walk_folder(sd)  # the loader's walk: special files and DICOMDIR passed over
            skipped.extend((str(p), why) for p, why in unreadable)
            for p, why in entries:
                if why:
                    skipped.append((str(p), why))
                    continue
                items.append(Item(root.resolve().name, p.relative_to(root).as_posix(), cls, p.resolve()))
    return Scan(items, skipped)


@dataclass
class Cache:
    """Decoded images: ``images`` uint8 (N, S, S); ``labels`` int64 (N,)."""

    items: list[Item]
    images: np.ndarray
    labels: np.ndarray
    skipped: list[tuple[str, str]]
    fallbacks: int = 0  # images whose lungs were not found (the whole image was used)


def _cache_file(cache_dir: str | os.PathLike, items: Sequence[Item], size: int, view_key: str) -> Path:
    h = hashlib.sha256(f"{size}|{view_key}".encode())
    for it in items:
        try:
            st = it.path.stat()
            h.update(f"{it.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{it.path}|missing\n".encode())
    return Path(cache_dir) / f"decoded_{size}px_{h.hexdigest()[:20]}.npz"


def decode_all(items: Sequence[Item], size: int, *, threads: int = 4,
               progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               view: Callable[[np.ndarray], tuple[np.ndarray, bool]] | None = None,
               cache_dir: str | os.PathLike | None = None, view_key: str = "") -> Cache:
    """Decode and resize every item once.  Refused/broken images are skipped
    with their reason.  ``check_header`` stays on, so a CT slice in the
    training folder is reported, not learned from.

    ``view`` turns loader pixels into the model's view (``training.model.lung_input.
    model_view``: lung crop, intensity normalisation) and says whether the
    lungs were found.  With ``cache_dir`` the result is kept in an ``.npz``
    named by the files, the size and ``view_key`` and reused by the next run."""
    cached = _cache_file(cache_dir, items, size, view_key) if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                out, keep, fallbacks = z["images"], z["keep"], int(z["fallbacks"])
                skipped = [tuple(x) for x in z["skipped"].tolist()]
            if progress is not None:
                progress(len(items), len(items))
            kept_items = [it for it, k in zip(items, keep) if k]
            return Cache(kept_items, out[keep], np.array([it.label for it in kept_items], dtype=np.int64),
                         skipped, fallbacks)
        except Exception:  # a damaged cache file is rebuilt
            pass

    def one(it: Item):
        try:
            img = load_image(it.path)
            pixels, found = img.pixels, True
            if view is not None:
                pixels, found = view(pixels)
        except ImageRefused as exc:
            return None, exc.reason, True
        except Exception as exc:  # the loader promises not to, but never crash a run on one file
            return None, exception_text(exc), True
        # the model's resize, stored as uint8 (4x less memory than float32; ``uint8 / 255`` is the paper's scaling)
        return np.rint(resize_grey(pixels, size) * np.float32(255.0)).astype(np.uint8), None, found

    out = np.empty((len(items), size, size), dtype=np.uint8)
    keep = np.zeros(len(items), dtype=bool)
    skipped: list[tuple[str, str]] = []
    fallbacks = 0
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for i, (arr, reason, found) in enumerate(pool.map(one, items)):
            if arr is None:
                skipped.append((str(items[i].path), reason))
            else:
                out[i] = arr
                keep[i] = True
                fallbacks += int(not found)
            if progress is not None and (i % 50 == 0 or i == len(items) - 1):
                progress(i + 1, len(items))
            if should_stop is not None and should_stop():
                from training.common.errors import TrainingCancelled
                raise TrainingCancelled("Cancelled while reading the images.")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        sk = np.array(skipped, dtype=str).reshape(-1, 2)

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, images=out, keep=keep, fallbacks=fallbacks, skipped=sk)

        atomic.write_with(cached, write)
    kept_items = [it for it, k in zip(items, keep) if k]
    labels = np.array([it.label for it in kept_items], dtype=np.int64)
    return Cache(kept_items, out[keep], labels, skipped, fallbacks)


def stratified_split(labels: Sequence[int], fractions=(0.8, 0.1, 0.1), seed: int = 42) -> list[str]:
    """Assign 'train'/'val'/'test' per index, stratified by label, seeded."""
    labels = np.asarray(labels)
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise DataError(f"Split fractions {fractions} must be positive and add up to 1.")
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for cls in sorted(set(labels.tolist()) | {0, 1}):  # every class present (the classifier's two at least)
        idx = np.flatnonzero(labels == cls)
        if len(idx) < MIN_PER_CLASS:
            name = CLASS_NAMES[cls] if cls in (0, 1) else f"class {cls}"
            raise DataError(
                f"Only {len(idx)} usable {name} images; at least {MIN_PER_CLASS} per class are needed "
                "to split into training, validation and test sets.")
        idx = idx[rng.permutation(len(idx))]
        n_train, n_val, n_test = split_counts(len(idx), fractions)
        out[idx[:n_train]] = "train"
        out[idx[n_train:n_train + n_val]] = "val"
        out[idx[n_train + n_val:]] = "test"
    return list(out)


MANIFEST_COLUMNS = ("dataset", "file", "label", "split")


def write_manifest(path: str | os.PathLike, items: Sequence[Item], splits: Sequence[str]) -> None:
    write_csv(path, MANIFEST_COLUMNS, ({"dataset": it.dataset, "file": it.file, "label": CLASS_NAMES[it.label],
                                        "split": s} for it, s in zip(items, splits)))


def read_manifest(path: str | os.PathLike) -> dict[tuple[str, str], tuple[int, str]]:
    """(dataset, file) -> (label, split)."""
    p = Path(path)
    try:
        rows = list(csv.DictReader(p.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise DataError(f"Cannot read the split file {p}: {exc.strerror or exc}") from exc
    need = set(MANIFEST_COLUMNS)
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{p.name} is not a split file (needs columns {', '.join(sorted(need))}).")
    out = {}
    for r in rows:
        if r["label"] not in CLASS_NAMES:
            raise DataError(f"{p.name}: unknown label {r['label']!r}.")
        out[(r["dataset"], r["file"])] = (CLASS_NAMES.index(r["label"]), r["split"])
    return out


def apply_manifest(items: Sequence[Item], manifest: dict[tuple[str, str], tuple[int, str]]) -> tuple[list[Item], list[str], list[str]]:
    """Keep the items the manifest names; return (items, splits, missing files)."""
    by_key = {(it.dataset, it.file): it for it in items}
    kept, splits, missing = [], [], []
    for key, (label, split) in manifest.items():
        it = by_key.get(key)
        if it is None:
            missing.append("/".join(key))
            continue
        if it.label != label:
            raise DataError(f"The split file says {key[1]} is {CLASS_NAMES[label]}, but it is in the "
                            f"{CLASS_NAMES[it.label]} folder.")
        kept.append(it)
        splits.append(split)
    return kept, splits, missing
