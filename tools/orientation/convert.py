"""Convert the research scripts' orientation file (train_orientation.py) into the project's model-file format
(training.gate.orientation) and check both give the same probabilities:

    .venv/bin/python tools/orientation/convert.py orientation.safetensors resources/models/orientation.safetensors
"""
import json
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import orientation as helper  # the helper's standalone module

from training.gate.orientation import OrientationDetector, OrientationInfo
from training.gate.orientation_net import save_orientation

src, dst = sys.argv[1], sys.argv[2]
nets, meta = helper.load_model(src)
keys = {"input_size", "widths", "hidden", "n_out"}
info = OrientationInfo(
    rotation={k: v for k, v in meta["rotation"].items() if k in keys},
    mirror={k: v for k, v in meta.get("mirror", {}).items() if k in keys},
    thresholds={k: v for k, v in meta.get("thresholds", {}).items() if k in ("rotation", "mirror", "mirror_tta", "mirror_combine")},
    training={k: v for k, v in meta.items() if k not in ("rotation", "mirror", "thresholds", "format", "format_version", "metrics", "validation_metrics")},
    metrics=meta.get("validation_metrics", {}),
)
save_orientation(nets, info, dst)
det = OrientationDetector.from_file(dst)
ref = helper.OrientationDetector.from_file(src)
import numpy as np

rng = np.random.default_rng(0)
imgs = [rng.random((300, 260), dtype=np.float32) for _ in range(4)]
a = det.probabilities(imgs)
b = ref.probabilities(imgs)
print("max diff p8", float(np.abs(a[0]-b[0]).max()), "pm", float(np.abs(a[1]-b[1]).max()))
print(json.dumps(info.thresholds), info.rotation, info.mirror)
print(sorted(meta.keys()))
