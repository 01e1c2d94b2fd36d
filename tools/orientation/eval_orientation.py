"""Evaluate the orientation detector (CNN) and the lung-geometry alternative.

Every film of a set is loaded as the loader would (PNG -> grey float32 in
[0, 1]), then stored in each of the 8 ways (numpy: mirror, then rotate
clockwise) and each copy goes through ``OrientationDetector`` exactly as an
application would call it (resize included).

Sets: external-dev (all 224 films; evaluation only), the ``test`` rows of
/work/main/results/v2/split.csv (737 films) and its ``paper_test`` rows (100).

    OMP_NUM_THREADS=1 python eval_orientation.py cnn        # -> results/cnn_*.npz, results/cnn_metrics.json
    OMP_NUM_THREADS=1 python eval_orientation.py geometry   # thresholds on 300 val films, then the sets
    python eval_orientation.py timing                       # 1 and 2 threads, separate processes
    python eval_orientation.py tables                       # -> results/tables.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from training.model.metrics import wilson  # the project's one Wilson interval

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RES = HERE / "results"
DATA = Path("/work/shared/data")
EXT = DATA / "external-dev"


# --------------------------------------------------------------------------- sets

def set_files(name: str) -> list[Path]:
    import train_orientation as T

    if name == "external-dev":
        with open(EXT / "manifest.csv", newline="") as fh:
            return [EXT / r["path"] for r in csv.DictReader(fh)]
    split = {"v2-test": "test", "v2-paper_test": "paper_test", "v2-val": "val"}[name]
    return [T.film_path(r["dataset"], r["file"]) for r in T.split_rows({split})]


SETS = ("external-dev", "v2-test", "v2-paper_test")


# --------------------------------------------------------------------------- metrics

def decisions_from_p8(p8: np.ndarray, t_rot: float, t_mir: float, pm: np.ndarray | None = None):
    """p8 (..., 8) [+ P(mirrored) pm (...)] -> k_dec, m_dec, k_arg, m_arg."""
    p_rot = p8[..., :4] + p8[..., 4:]
    p_mir = p8[..., 4:].sum(-1) if pm is None else pm
    k_arg = p_rot.argmax(-1)
    k_dec = np.where((k_arg != 0) & (p_rot.max(-1) >= t_rot), k_arg, 0)
    return k_dec, p_mir >= t_mir, k_arg, p_mir >= 0.5


def table_rows(k_dec, m_dec, k_arg, m_arg) -> list[dict]:
    """Per copy type (arrays are (films, 8), column c = k + 4m)."""
    rows = []

    def add(label, cols, what):
        kd, md = k_dec[:, cols].ravel(), m_dec[:, cols].ravel()
        ka, ma = k_arg[:, cols].ravel(), m_arg[:, cols].ravel()
        kt = np.array([c % 4 for c in cols])[None].repeat(len(k_dec), 0).ravel()
        mt = np.array([c // 4 for c in cols])[None].repeat(len(k_dec), 0).ravel()
        n = len(kd)
        rows.append({
            "copies": label, "n": n, "what": what,
            "rot_correct": int((kd == kt).sum()),
            "turned_wrong": int(((kd != kt) & (kd != 0)).sum()),
            "mirror_correct": int((md == (mt == 1)).sum()),
            "flagged": int(md.sum()),
            "both_correct": int(((kd == kt) & (md == (mt == 1))).sum()),
            "argmax_rot": int((ka == kt).sum()), "argmax_mir": int((ma == (mt == 1)).sum()),
        })

    add("upright originals", [0], "untouched")
    for c in (1, 2, 3):
        add(f"rotated {90 * c}", [c], "rotation")
    add("rotated 90/180/270", [1, 2, 3], "rotation")
    add("mirrored (upright)", [4], "mirror")
    for c in (5, 6, 7):
        add(f"mirrored + rotated {90 * (c - 4)}", [c], "both")
    add("all 8 copies", list(range(8)), "both")
    return rows


def pct(k, n):
    return f"{100 * k / n:.1f}" if n else "-"


def pct_ci(k, n):
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f} ({100 * lo:.1f}-{100 * hi:.1f})"


def markdown_table(rows: list[dict]) -> str:
    out = ["| copies | n | rotation decided correctly % | turned to a wrong angle % | mirror decided correctly % "
           "| flagged mirrored % | both correct % | argmax rotation % | argmax mirror % |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = r["n"]
        out.append(f"| {r['copies']} | {n} | {pct(r['rot_correct'], n)} | {pct(r['turned_wrong'], n)} | "
                   f"{pct(r['mirror_correct'], n)} | {pct(r['flagged'], n)} | {pct(r['both_correct'], n)} | "
                   f"{pct(r['argmax_rot'], n)} | {pct(r['argmax_mir'], n)} |")
    return "\n".join(out)


def goal_row(rows: list[dict], method: str, set_name: str) -> dict:
    by = {r["copies"]: r for r in rows}
    up, rot, mir = by["upright originals"], by["rotated 90/180/270"], by["mirrored (upright)"]
    return {"method": method, "set": set_name, "films": up["n"],
            "upright_touched": (up["n"] - up["both_correct"], up["n"]),
            "upright_turned": (up["n"] - up["rot_correct"], up["n"]),
            "upright_flagged": (up["flagged"], up["n"]),
            "rotated_correct": (rot["rot_correct"], rot["n"]),
            "mirrored_flagged": (mir["flagged"], mir["n"]),
            "mirrored_rotated_both": (by["mirrored + rotated 90"]["both_correct"] + by["mirrored + rotated 180"]["both_correct"]
                                      + by["mirrored + rotated 270"]["both_correct"], 3 * up["n"])}


# --------------------------------------------------------------------------- CNN

def run_cnn(args) -> None:
    import orientation as ori
    import torch
    import train_orientation as T

    torch.set_num_threads(1)
    det = ori.OrientationDetector.from_file(args.model)
    RES.mkdir(exist_ok=True)
    metrics = {"model": str(args.model), "thresholds": {"rotation": det.rotation_threshold, "mirror": det.mirror_threshold,
                                                        "mirror_tta": det.mirror_tta}, "sets": {}}
    for name in SETS:
        files = set_files(name)
        t0 = time.time()
        p8 = np.zeros((len(files), 8, 8), np.float32)
        pm = np.zeros((len(files), 8), np.float32)
        for i, f in enumerate(files):
            im = T.load_png(f)
            copies = [ori.apply_orientation(im, ori.ROTATIONS[c % 4], bool(c // 4)) for c in range(8)]
            p8[i], pm[i] = det.probabilities(copies)
        np.savez(RES / f"cnn_{name}.npz", p8=p8, pm=pm, files=np.array([str(f) for f in files]))
        k_dec, m_dec, k_arg, m_arg = decisions_from_p8(p8, det.rotation_threshold, det.mirror_threshold, pm)
        rows = table_rows(k_dec, m_dec, k_arg, m_arg)
        touched = [str(files[i].relative_to(DATA)) + f" (turn {90 * int(k_dec[i, 0])}, mirror {bool(m_dec[i, 0])}, "
                   f"p_rot {np.round(p8[i, 0, :4] + p8[i, 0, 4:], 3).tolist()}, p_mir {pm[i, 0]:.3f})"
                   for i in range(len(files)) if k_dec[i, 0] != 0 or m_dec[i, 0]]
        missed_mirror = [str(files[i].relative_to(DATA)) + f" (p_mir {pm[i, 4]:.3f})"
                         for i in range(len(files)) if not m_dec[i, 4]]
        metrics["sets"][name] = {"films": len(files), "rows": rows, "goal": goal_row(rows, "CNN", name),
                                 "upright_touched_files": touched, "mirrored_not_flagged_files": missed_mirror,
                                 "seconds": round(time.time() - t0, 1)}
        print(name, json.dumps(metrics["sets"][name]["goal"]), f"{time.time() - t0:.0f} s", flush=True)
    (RES / "cnn_metrics.json").write_text(json.dumps(metrics, indent=1))


# --------------------------------------------------------------------------- geometry

def _hyp_index() -> np.ndarray:
    """idx[c_true, k] = class c' such that np.rot90(apply(A, c_true), k) == apply(A, c')."""
    import orientation as ori

    a = np.arange(12).reshape(3, 4)
    app = [ori.apply_orientation(a, ori.ROTATIONS[c % 4], bool(c // 4)) for c in range(8)]
    idx = np.zeros((8, 4), int)
    for c in range(8):
        for k in range(4):
            b = np.rot90(app[c], k)
            idx[c, k] = next(j for j in range(8) if app[j].shape == b.shape and np.array_equal(app[j], b))
    return idx


def geometry_scores(geo, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(films, 8 copies, 8 scores) for the 4-pass and the 1-pass variant.  The
    8 segmentations of each film's D4 copies are computed once and shared:
    the 4 hypotheses of a stored copy are rotations of it, i.e. again D4
    copies of the film (identical inputs, so identical maps)."""
    import orientation as ori
    import train_orientation as T

    idx = _hyp_index()
    s4 = np.zeros((len(files), 8, 8))
    s1 = np.zeros((len(files), 8, 8))
    for i, f in enumerate(files):
        im = T.load_png(f)
        maps = geo.prob_maps([ori.apply_orientation(im, ori.ROTATIONS[c % 4], bool(c // 4)) for c in range(8)])
        for c in range(8):
            s4[i, c] = geo.scores_4pass(maps[idx[c]])
            s1[i, c] = geo.scores_1pass(maps[c])
    return s4, s1


def geometry_decisions(s: np.ndarray, t_rot: float, t_mir: float):
    s_rot = np.maximum(s[..., :4], s[..., 4:])
    k_arg = s_rot.argmax(-1)
    srt = np.sort(s_rot, -1)
    margin = srt[..., -1] - srt[..., -2]
    k_dec = np.where((k_arg != 0) & (margin >= t_rot), k_arg, 0)
    mm = np.take_along_axis(s[..., 4:], k_arg[..., None], -1)[..., 0] - np.take_along_axis(s[..., :4], k_arg[..., None], -1)[..., 0]
    return k_dec, mm >= t_mir, k_arg, mm >= 0


def geometry_thresholds(s: np.ndarray, budget_turn: float = 0.002, film_budget_flag: float = 0.003,
                        copy_budget_flag: float = 0.005) -> dict:
    """Validation rule for the geometry scores: rotation margin = the smallest
    with <= 0.2 % of not-rotated copies turned; mirror margin = the smallest
    with <= 0.3 % of upright originals and <= 0.5 % of not-mirrored copies
    flagged (the CNN's mirror budgets)."""
    s_rot = np.maximum(s[..., :4], s[..., 4:])
    k_arg = s_rot.argmax(-1)
    srt = np.sort(s_rot, -1)
    margin = srt[..., -1] - srt[..., -2]
    mm = np.take_along_axis(s[..., 4:], k_arg[..., None], -1)[..., 0] - np.take_along_axis(s[..., :4], k_arg[..., None], -1)[..., 0]
    kt = np.arange(8)[None].repeat(len(s), 0) % 4
    mt = np.arange(8)[None].repeat(len(s), 0) // 4
    grid = np.linspace(0, 0.5, 501)
    t_rot = next((float(t) for t in grid if ((k_arg != 0) & (margin >= t))[kt == 0].mean() <= budget_turn), 1.0)
    t_mir = next((float(t) for t in grid if (mm[:, 0] >= t).mean() <= film_budget_flag
                  and (mm >= t)[mt == 0].mean() <= copy_budget_flag), 1.0)
    return {"rotation_margin": t_rot, "mirror_margin": t_mir}


def cached_geometry_scores(geo, name: str, files: list[Path]):
    f = RES / f"geo_{name}.npz"
    if f.exists():
        z = np.load(f)
        if z["files"].tolist() == [str(p) for p in files]:
            return z["s4"], z["s1"]
    s4, s1 = geometry_scores(geo, files)
    np.savez(f, s4=s4, s1=s1, files=np.array([str(p) for p in files]))
    return s4, s1


def run_geometry(args) -> None:
    import torch
    from geometry import LungGeometry

    torch.set_num_threads(1)
    geo = LungGeometry()
    RES.mkdir(exist_ok=True)
    out = {"sets": {}}
    rng = np.random.default_rng(0)
    val = set_files("v2-val")
    val = [val[i] for i in sorted(rng.choice(len(val), size=min(args.n_val, len(val)), replace=False))]
    t0 = time.time()
    v4, v1 = cached_geometry_scores(geo, "v2-val", val)
    th = {"4pass": geometry_thresholds(v4), "1pass": geometry_thresholds(v1)}
    out["thresholds"] = th
    out["threshold_films"] = len(val)
    print("val", len(val), th, f"{time.time() - t0:.0f} s", flush=True)
    for name in SETS:
        files = set_files(name)
        if name != "external-dev" and args.max_films and len(files) > args.max_films:
            files = [files[i] for i in sorted(rng.choice(len(files), size=args.max_films, replace=False))]
        t0 = time.time()
        s4, s1 = cached_geometry_scores(geo, name, files)
        out["sets"][name] = {"films_evaluated": len(files)}
        for var, s in (("4pass", s4), ("1pass", s1)):
            t = th[var]
            rows = table_rows(*geometry_decisions(s, t["rotation_margin"], t["mirror_margin"]))
            out["sets"][name][var] = {"rows": rows, "goal": goal_row(rows, f"geometry {var}", name)}
            print(name, var, json.dumps(out["sets"][name][var]["goal"]), flush=True)
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    (RES / "geometry_metrics.json").write_text(json.dumps(out, indent=1))


# --------------------------------------------------------------------------- timing

def _timing_child(args) -> None:
    import orientation as ori
    import torch
    import train_orientation as T

    torch.set_num_threads(args.threads)
    f = set_files("external-dev")[0]
    im299 = T.load_png(f)
    big = T.resize_grey(im299, 2500)[:, :2048].copy()  # a 2500 x 2048 film (typical DR/CR size)
    big = np.ascontiguousarray(np.asarray(
        __import__("torch").nn.functional.interpolate(__import__("torch").from_numpy(im299)[None, None], size=(2500, 2048),
                                                      mode="bilinear", align_corners=False)[0, 0]))
    det = ori.OrientationDetector.from_file(args.model)
    res = {"threads": args.threads, "load_avg_before": os.getloadavg()}

    def bench(fn, n, reps=5):
        for _ in range(max(3, n // 10)):
            fn()
        per, cpu = [], []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            for _ in range(n):
                fn()
            per.append((time.perf_counter() - t) / n * 1000)
            cpu.append((time.process_time() - c) / n * 1000)
        return {"median_ms": float(np.median(per)), "min_ms": float(np.min(per)),
                "cpu_ms_median": float(np.median(cpu)), "runs": reps, "calls_per_run": n}

    res["cnn_299_batch1"] = bench(lambda: det.detect(im299), 200)
    res["cnn_2500x2048_batch1"] = bench(lambda: det.detect(big), 50)
    res["cnn_resize_only_299"] = bench(lambda: ori.to_input(im299, det.size), 200)
    res["cnn_resize_only_2500x2048"] = bench(lambda: ori.to_input(big, det.size), 50)
    batch = [im299] * 32
    r = bench(lambda: det.detect_batch(batch), 10)
    res["cnn_299_batch32_per_image"] = {k: (v / 32 if "ms" in k else v) for k, v in r.items()}
    if args.geometry:
        from geometry import LungGeometry

        g4 = LungGeometry(passes=4)
        g1 = LungGeometry(passes=1)
        g1.template = g4.template
        res["geometry_4pass_299_batch1"] = bench(lambda: g4.detect(im299), 10, reps=3)
        res["geometry_1pass_299_batch1"] = bench(lambda: g1.detect(im299), 20, reps=3)
    # check: the fast large-image path against the exact resize
    import torch.nn.functional as F
    exact = F.interpolate(torch.from_numpy(big)[None, None], size=(det.size, det.size), mode="bilinear",
                          align_corners=False, antialias=True)
    res["large_path_max_abs_diff_vs_exact_resize"] = float((ori.to_input(big, det.size) - exact).abs().max())
    res["load_avg_after"] = os.getloadavg()
    print(json.dumps(res))


def run_timing(args) -> None:
    out = []
    for n in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        cmd = [sys.executable, "-W", "ignore", __file__, "timing-child", "--threads", str(n), "--model", str(args.model)]
        if args.geometry:
            cmd.append("--geometry")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(out[-1], indent=1), flush=True)
    import platform
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    RES.mkdir(exist_ok=True)
    (RES / "timing.json").write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "runs": out}, indent=1))


# --------------------------------------------------------------------------- tables

def run_tables(args) -> None:
    cnn = json.loads((RES / "cnn_metrics.json").read_text())
    geo = json.loads((RES / "geometry_metrics.json").read_text()) if (RES / "geometry_metrics.json").exists() else None
    tim = json.loads((RES / "timing.json").read_text()) if (RES / "timing.json").exists() else None
    L = []
    ms = {}
    if tim:
        for r in tim["runs"]:
            ms[("CNN", r["threads"])] = r["cnn_299_batch1"]["median_ms"]
            ms[("CNN big", r["threads"])] = r["cnn_2500x2048_batch1"]["median_ms"]
            if "geometry_4pass_299_batch1" in r:
                ms[("geometry 4pass", r["threads"])] = r["geometry_4pass_299_batch1"]["median_ms"]
                ms[("geometry 1pass", r["threads"])] = r["geometry_1pass_299_batch1"]["median_ms"]
    L.append("| method | set | films | upright touched % (goal <= 0.5) | upright turned % | upright flagged mirrored % "
             "| rotated copies correct % (goal >= 95) | mirrored copies flagged % (goal >= 95) "
             "| mirrored+rotated both correct % | ms/image 1 thr | ms/image 2 thr |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    goals = [cnn["sets"][s]["goal"] for s in SETS]
    if geo:
        for var in ("4pass", "1pass"):
            goals += [geo["sets"][s][var]["goal"] for s in SETS]
    for g in goals:
        key = "CNN" if g["method"] == "CNN" else g["method"].replace("geometry ", "geometry ")
        t1, t2 = ms.get((key, 1)), ms.get((key, 2))
        L.append(f"| {g['method']} | {g['set']} | {g['films']} | {pct_ci(*g['upright_touched'])} | "
                 f"{pct(*g['upright_turned'])} | {pct(*g['upright_flagged'])} | {pct_ci(*g['rotated_correct'])} | "
                 f"{pct_ci(*g['mirrored_flagged'])} | {pct(*g['mirrored_rotated_both'])} | "
                 f"{'' if t1 is None else f'{t1:.2f}'} | {'' if t2 is None else f'{t2:.2f}'} |")
    L.append("")
    L.append("(95 % Wilson intervals in brackets; times: median, 299 x 299 film, batch 1, resize included.)")
    L.append("")
    for s in SETS:
        L.append(f"### CNN, {s} (thresholds: rotation {cnn['thresholds']['rotation']:.4g}, mirror {cnn['thresholds']['mirror']:.4g})")
        L.append("")
        L.append(markdown_table(cnn["sets"][s]["rows"]))
        L.append("")
        if cnn["sets"][s]["upright_touched_files"]:
            L.append("Upright originals that were turned or flagged: " + "; ".join(cnn["sets"][s]["upright_touched_files"]))
            L.append("")
        if cnn["sets"][s]["mirrored_not_flagged_files"] and len(cnn["sets"][s]["mirrored_not_flagged_files"]) <= 25:
            L.append("Mirrored copies not flagged: " + "; ".join(cnn["sets"][s]["mirrored_not_flagged_files"]))
            L.append("")
    if geo:
        for s in SETS:
            for var in ("4pass", "1pass"):
                t = geo["thresholds"][var]
                L.append(f"### Lung geometry {var}, {s} (margins: rotation {t['rotation_margin']:.3f}, mirror {t['mirror_margin']:.3f})")
                L.append("")
                L.append(markdown_table(geo["sets"][s][var]["rows"]))
                L.append("")
    if tim:
        L.append(f"### Time per image ({tim['cpu']}, {tim['cores']} cores)")
        L.append("")
        L.append("| what | 1 thread: wall median ms (min) | 1 thread: CPU ms | 2 threads: wall median ms (min) | 2 threads: CPU ms (both threads) |")
        L.append("|---|---|---|---|---|")
        keys = [k for k in tim["runs"][0] if isinstance(tim["runs"][0][k], dict)]
        for k in keys:
            a, b = tim["runs"][0][k], tim["runs"][1][k]
            L.append(f"| {k} | {a['median_ms']:.2f} ({a['min_ms']:.2f}) | {a['cpu_ms_median']:.2f} | "
                     f"{b['median_ms']:.2f} ({b['min_ms']:.2f}) | {b['cpu_ms_median']:.2f} |")
        L.append("")
        L.append("Load average during the runs (other jobs on the machine): "
                 + ", ".join(f"{r['threads']} thr: {r['load_avg_before'][0]:.1f} -> {r['load_avg_after'][0]:.1f}" for r in tim["runs"]))
        L.append(f"Fast large-image path vs exact antialiased resize: max abs difference "
                 f"{tim['runs'][0]['large_path_max_abs_diff_vs_exact_resize']:.4f} (grey levels 0-1).")
    (RES / "tables.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["cnn", "geometry", "timing", "timing-child", "tables"])
    ap.add_argument("--model", default=str(HERE / "orientation.safetensors"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--geometry", action="store_true")
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--max-films", type=int, default=0, help="geometry: random subset of the v2 sets (0 = all)")
    a = ap.parse_args(argv)
    {"cnn": run_cnn, "geometry": run_geometry, "timing": run_timing, "timing-child": _timing_child,
     "tables": run_tables}[a.cmd](a)


if __name__ == "__main__":
    main()
