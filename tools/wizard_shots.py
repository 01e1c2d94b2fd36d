"""Screenshots of every wizard page during a real run (used for docs/WIZARD.md).

    xvfb-run -s '-screen 0 1400x900x24' python tools/wizard_shots.py OUT_DIR \\
        --data ../shared/data/covid-cxr-1000 --input-size 64 --batch-size 32 --epochs 2

Drives the wizard like a user would (no test framework): each step waits for
what the page shows, then saves ``page.grab()`` (the whole wizard window).
Writes ``wizard_1_data.png`` … ``wizard_5_finish.png`` into OUT_DIR; the run
folder is OUT_DIR/run unless ``--run`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/wizard_shots.py")
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--run", type=Path)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["resnet50", "lstm", "resnet50_lstm"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--size", default="1120x800")
    a = ap.parse_args(argv)
    os.environ.setdefault("XRAY_SETTINGS", str(Path(tempfile.mkdtemp(prefix="xray-wiz-")) / "settings.ini"))
    a.out.mkdir(parents=True, exist_ok=True)
    run = (a.run or a.out / "run").resolve()

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from xray_gui.main_window import MainWindow
    from xray_gui.wizard.wizard import TrainingWizard

    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(dialogs=False)
    wiz = TrainingWizard(win, notifier=win.notifier, use_model=win.open_model, dialogs=False)
    w, _, h = a.size.partition("x")
    wiz.resize(int(w), int(h))
    wiz.show()
    t0 = time.monotonic()

    def shot(name: str) -> None:
        app.processEvents()
        path = a.out / name
        wiz.grab().save(str(path))
        print(f"{time.monotonic() - t0:7.1f} s  {path}", flush=True)

    dp, sp, tp, rp, fp = wiz.data_page, wiz.setup_page, wiz.train_page, wiz.results_page, wiz.finish_page

    def thumbs_done():
        return dp.scan is not None and not dp.scanning and wiz.state.decode_s is not None

    def script():
        dp.set_folder(a.data)
        yield thumbs_done
        yield 0.5
        shot("wizard_1_data.png")
        wiz.next()
        yield lambda: sp.cuda_available is not None
        sp.input_size.setValue(a.input_size)
        sp.batch_size.setValue(a.batch_size)
        sp.epochs.setValue(a.epochs)
        sp.threads.setValue(a.threads)
        sp.out_dir.setText(str(run))
        for arch, cb in sp.model_checks.items():
            cb.setChecked(arch in a.models)
        sp.start_estimate()
        yield lambda: not sp._estimating
        shot("wizard_2_setup.png")
        wiz.next()
        last = a.models[-1]
        yield lambda: any(e.kind == "epoch" and e.model == last for e in tp.events) or not tp.running and tp.done
        if len(a.models) > 1:  # show a finished model's full curves while the last one trains
            tp.tabs.setCurrentIndex(0)
        shot("wizard_3_training.png")
        yield lambda: not tp.running and (tp.done or tp.failed or tp.cancelled)
        if not tp.done:
            print("training did not finish:", tp.message.text(), file=sys.stderr)
            shot("wizard_3_training_failed.png")
            app.exit(1)
            return
        shot("wizard_3_training_done.png")
        wiz.next()
        yield 0.5
        shot("wizard_4_results.png")
        rp.tabs.setCurrentIndex(rp.tabs.count() - 1)
        yield 0.3
        shot("wizard_4_results_curves.png")
        rp.tabs.setCurrentIndex(0)
        wiz.next()
        fp.export(a.out / "exported_report.html")
        yield 0.3
        shot("wizard_5_finish.png")
        print(f"done in {time.monotonic() - t0:.0f} s; run folder {run}", flush=True)
        app.exit(0)

    steps = script()
    state = {"wait": None, "until": 0.0}

    def tick():
        now = time.monotonic()
        w_ = state["wait"]
        if callable(w_) and not w_():
            return
        if isinstance(w_, float) and now < state["until"]:
            return
        try:
            nxt = next(steps)
        except StopIteration:
            timer.stop()
            return
        state["wait"] = float(nxt) if isinstance(nxt, (int, float)) else nxt
        state["until"] = now + (nxt if isinstance(nxt, (int, float)) else 0)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    code = app.exec()
    win.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
