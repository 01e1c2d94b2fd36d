"""The alternative WITHOUT a trained orientation model: lung-mask geometry
from the project's lung segmenter (MONAI BasicUNet, 256 px,
/work/main/resources/models/lung_segmenter.safetensors, copied to
cache/lung_segmenter.safetensors so that the restructuring of /work/main does
not move it under us).

Template: the mean lung-probability map of upright TRAINING films (``T``, 64 x
64; its left-right asymmetry is the heart: the image-right lung is smaller
and notched).

* ``passes=4``: for each hypothesis k (stored film rotated 90*k clockwise) the
  film is rotated back and segmented; score(k, m) = Pearson correlation of
  that map with ``T`` (m = 0) or with ``T`` mirrored (m = 1).
* ``passes=1``: the stored film is segmented once and its map is compared
  with the 8 rotated / mirrored versions of ``T``.

Rotation = argmax_k max_m score; it is applied only when the margin over the
best other k is >= ``t_rot``.  Mirror = score(k, 1) - score(k, 0) >= ``t_mir``
at the chosen k.  Both thresholds are chosen on validation films.
The segmenter network is rebuilt here from MONAI (same definition as
``training.lungseg.build_segmenter``) so this file does not import the
project's ``training`` package, which is being restructured.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import orientation as ori
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SEG_PATH = HERE / "cache" / "lung_segmenter.safetensors"
TEMPLATE_PATH = HERE / "cache" / "geometry_template.npz"
MAP = 64


def load_segmenter(path: Path = SEG_PATH):
    from monai.networks.nets import BasicUNet
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["xray_lungseg"])
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=tuple(meta["features"]),
                    act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), norm=("instance", {"affine": True}),
                    dropout=0.0)
    net.load_state_dict(load_file(str(path)), strict=True)
    net.eval()
    size = int(meta["input_size"])
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        fwd = torch.jit.freeze(torch.jit.trace(net, torch.zeros(1, 1, size, size)))
        fwd(torch.zeros(1, 1, size, size))
    return fwd, size


def seg_input(image: np.ndarray, size: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t.clamp(0, 1)


def _d4_all(m: np.ndarray) -> np.ndarray:
    """(H, W) -> (8, H, W): class c = k + 4*mirror (apply_orientation)."""
    return np.stack([ori.apply_orientation(m, ori.ROTATIONS[c % 4], bool(c // 4)) for c in range(8)])


def _corr(maps: np.ndarray, templ: np.ndarray) -> np.ndarray:
    """Pearson correlation of each map (N, H, W) with each template (K, H, W) -> (N, K)."""
    a = maps.reshape(len(maps), -1).astype(np.float64)
    b = templ.reshape(len(templ), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-9
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-9
    return a @ b.T


class LungGeometry:
    def __init__(self, passes: int = 4, t_rot: float = 0.0, t_mir: float = 0.0):
        self.fwd, self.size = load_segmenter()
        self.passes = passes
        self.t_rot, self.t_mir = t_rot, t_mir
        self.template = np.load(TEMPLATE_PATH)["template"] if TEMPLATE_PATH.exists() else None

    def prob_maps(self, images: list[np.ndarray]) -> np.ndarray:
        """Lung probability maps (N, MAP, MAP) of the images as given."""
        x = torch.cat([seg_input(im, self.size) for im in images])
        with torch.inference_mode():
            p = torch.sigmoid(self.fwd(x))
        return F.adaptive_avg_pool2d(p, MAP)[:, 0].numpy()

    def scores_4pass(self, maps_back: np.ndarray) -> np.ndarray:
        """maps_back (4, MAP, MAP): map of the stored film rotated back by k -> scores (8,) index k + 4m."""
        t = np.stack([self.template, self.template[:, ::-1]])
        s = _corr(maps_back, t)  # (4, 2)
        return np.concatenate([s[:, 0], s[:, 1]])

    def scores_1pass(self, map_stored: np.ndarray) -> np.ndarray:
        return _corr(map_stored[None], _d4_all(self.template))[0]

    def decide(self, s8: np.ndarray) -> tuple[int, bool, float, float]:
        """scores (8,) -> (k, mirrored, rotation margin, mirror margin)."""
        s_rot = np.maximum(s8[:4], s8[4:])
        k = int(np.argmax(s_rot))
        margin = float(s_rot[k] - np.max(np.delete(s_rot, k)))
        mir_margin = float(s8[k + 4] - s8[k])
        kk = k if (k != 0 and margin >= self.t_rot) else 0
        return kk, mir_margin >= self.t_mir, margin, mir_margin

    def detect(self, image: np.ndarray) -> tuple[int, bool]:
        """Full procedure for one stored film (what is timed)."""
        if self.passes == 4:
            maps = self.prob_maps([np.rot90(image, k) for k in range(4)])
            s8 = self.scores_4pass(maps)
        else:
            s8 = self.scores_1pass(self.prob_maps([image])[0])
        k, m, _, _ = self.decide(s8)
        return ori.ROTATIONS[k], m


def build_template(n: int = 400, seed: int = 0) -> np.ndarray:
    """Mean lung-probability map of ``n`` random upright TRAINING films
    (train rows of results/v2/split.csv)."""
    import train_orientation as T

    rows = T.split_rows({"train"})
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    g = LungGeometry.__new__(LungGeometry)
    g.fwd, g.size = load_segmenter()
    acc = np.zeros((MAP, MAP))
    for i in pick:
        r = rows[int(i)]
        acc += g.prob_maps([T.load_png(T.film_path(r["dataset"], r["file"]))])[0]
    templ = (acc / len(pick)).astype(np.float32)
    np.savez(TEMPLATE_PATH, template=templ, films=np.array([f"{rows[int(i)]['dataset']}/{rows[int(i)]['file']}" for i in pick]))
    return templ


if __name__ == "__main__":
    import time

    t0 = time.time()
    t = build_template()
    print(f"template from 400 training films in {time.time() - t0:.0f} s; "
          f"image-left half mass {t[:, :MAP // 2].sum():.1f}, image-right half {t[:, MAP // 2:].sum():.1f}")
