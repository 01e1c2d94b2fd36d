"""Compare models on (a) external-dev, all 8 copies (as eval_orientation.py cnn), (b) the 20 cropped-sideways
films (first 10 COVID + first 10 Normal of covid-cxr-1000, left 200 of 299 columns, rotated 90 cw),
(c) the same 20 crops upright; plus (extra, report only) external-dev films cut to 2/3 of their width or
height from each side, in 4 rotations.  Writes results/crop_eval.json.

    OMP_NUM_THREADS=1 python eval_crop.py orientation.safetensors orientation_crop.safetensors
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import eval_orientation as E  # noqa: E402
import orientation as ori  # noqa: E402
import train_orientation as T  # noqa: E402

torch.set_num_threads(1)
C1000 = Path("/work/shared/data/covid-cxr-1000")


def crop20():
    # first 10 of each class in sorted file-name order (COVID-10.png is the first COVID file)
    files = sorted((C1000 / "COVID").glob("*.png"))[:10] + sorted((C1000 / "Normal").glob("*.png"))[:10]
    return files


def main():
    models = sys.argv[1:]
    ext = E.set_files("external-dev")
    ext_ims = [T.load_png(f) for f in ext]
    c_files = crop20()
    out = {"crop20_files": [str(f.relative_to(C1000)) for f in c_files]}
    src = []
    for f in c_files:
        from PIL import Image
        with Image.open(f) as im:
            src8 = np.asarray(im.convert("L"))
        src.append(src8)
    assert np.array_equal(ori.apply_orientation(np.arange(6.).reshape(2, 3), 90, False), np.rot90(np.arange(6.).reshape(2, 3), -1))
    for mp in models:
        det = ori.OrientationDetector.from_file(HERE / mp)
        t0 = time.time()
        r = {"thresholds": {"rotation": det.rotation_threshold, "mirror": det.mirror_threshold}}
        # (a)
        p8 = np.zeros((len(ext), 8, 8), np.float32); pm = np.zeros((len(ext), 8), np.float32)
        for i, im in enumerate(ext_ims):
            copies = [ori.apply_orientation(im, ori.ROTATIONS[c % 4], bool(c // 4)) for c in range(8)]
            p8[i], pm[i] = det.probabilities(copies)
        kd, md, ka, ma = E.decisions_from_p8(p8, det.rotation_threshold, det.mirror_threshold, pm)
        rows = E.table_rows(kd, md, ka, ma)
        g = E.goal_row(rows, "CNN", "external-dev")
        r["external_dev_goal"] = g
        r["external_dev_rows"] = rows
        r["external_dev_upright_turned_files"] = [str(ext[i]) for i in range(len(ext)) if kd[i, 0] != 0]
        # (b) / (c)
        sideways, upright = [], []
        for f, s8 in zip(c_files, src):
            x = s8[:, :200].astype(np.float32) / 255
            rb = det.detect(np.ascontiguousarray(np.rot90(x, -1)))
            rc = det.detect(x)
            sideways.append({"file": f.name, "rotation_deg": rb.rotation_deg, "p90": round(rb.p_rotation[1], 4),
                             "mirrored": rb.mirrored})
            upright.append({"file": f.name, "rotation_deg": rc.rotation_deg, "p0": round(rc.p_rotation[0], 4),
                            "mirrored": rc.mirrored})
        r["crop20_sideways_turned_back"] = sum(s["rotation_deg"] == 90 for s in sideways)
        r["crop20_sideways_flagged_mirrored"] = sum(s["mirrored"] for s in sideways)
        r["crop20_upright_turned"] = sum(s["rotation_deg"] != 0 for s in upright)
        r["crop20_upright_flagged_mirrored"] = sum(s["mirrored"] for s in upright)
        r["COVID-10_sideways"] = next(s for s in sideways if s["file"] == "COVID-10.png")
        r["crop20_sideways"] = sideways
        r["crop20_upright"] = upright
        # extra: external-dev cut to 2/3 from each of 4 sides, 4 rotations each
        n_ok = n_rot = n_up_turn = n_up = 0
        for im in ext_ims:
            h, w = im.shape
            cuts = [im[:, : (2 * w) // 3], im[:, w - (2 * w) // 3:], im[: (2 * h) // 3], im[h - (2 * h) // 3:]]
            for cim in cuts:
                copies = [ori.apply_orientation(cim, k, False) for k in ori.ROTATIONS]
                q8, _ = det.probabilities(copies)
                kd2, _, _, _ = E.decisions_from_p8(q8, det.rotation_threshold, 1.1)
                n_up += 1; n_up_turn += int(kd2[0] != 0)
                n_rot += 3; n_ok += int((kd2[1:] == np.array([1, 2, 3])).sum())
        r["external_dev_cut_to_2_3"] = {"upright_turned": [n_up_turn, n_up], "rotated_turned_back": [n_ok, n_rot]}
        r["seconds"] = round(time.time() - t0, 1)
        out[mp] = r
        print(mp, json.dumps({k: v for k, v in r.items() if k not in ("external_dev_rows", "crop20_sideways", "crop20_upright")}), flush=True)
    (HERE / "results" / ("crop_eval_" + "_".join(Path(m).stem for m in models) + ".json")).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
