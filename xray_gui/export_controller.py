"""File → Export: the PDF report of the current image, the batch results as CSV,
and DICOM results (SR + secondary capture), with the dialogs that ask where.
The writing itself is the core's and ``report_pdf``'s; this only chooses what
is written and says how it went (the window's ``reportWritten`` and
``dicomExported`` signals, the notifier)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from .image_controller import report_content

CLASSIFY_FIRST = "Classify an image first: the report is about the current image."


class ExportController:
    """The exports of MainWindow ``window`` (its images, batch, models, notifier, jobs)."""

    def __init__(self, window):
        self.w = window
        self._pending_report: Path | None = None  # waits for the heatmap

    # -- dialogs ------------------------------------------------------------------------
    def choose_report(self) -> None:
        w = self.w
        if w.images.pred is None:
            w.notifier.warning(CLASSIFY_FIRST)
            return
        name = (w.images.path.stem if w.images.path else "report") + "_report.pdf"
        f, _ = QFileDialog.getSaveFileName(w, "Export report", str(Path(w.start_dir()) / name), "PDF (*.pdf)")
        if f:
            self.export_report(f if f.lower().endswith(".pdf") else f + ".pdf")

    def choose_csv(self) -> None:
        w = self.w
        if not w.batch_panel.model.rows:
            w.notifier.warning("There are no batch results to export yet.")
            return
        f, _ = QFileDialog.getSaveFileName(w, "Export batch results", str(Path(w.start_dir()) /
                                           "results.csv"), "CSV (*.csv)")
        if f:
            self.export_csv(f)

    def choose_dicom_export(self) -> None:
        from training.dicom_out.export import has_dicom_source
        from training.dicom_out.source import NEEDS_DICOM_SOURCE

        w = self.w
        preds = self.dicom_candidates()
        if not preds:
            w.notifier.warning("Classify images first: there are no results of the current model to export.")
            return
        if not any(has_dicom_source(p) for p in preds):
            kind = (getattr(preds[0].meta, "kind", "") or "non-DICOM") if preds[0].meta is not None else "non-DICOM"
            w.notifier.warning(NEEDS_DICOM_SOURCE.format(kind=kind.upper()))
            return
        d = QFileDialog.getExistingDirectory(w, "Export DICOM results into a folder", w.start_dir())
        if d:
            self.export_dicom(d, preds)

    # -- DICOM --------------------------------------------------------------------------
    def dicom_candidates(self) -> list:
        """What "Export DICOM results" writes: the batch rows shown (results of the
        current model), else the current image's result."""
        panel = self.w.batch_panel
        model = panel.model
        rows = [model.rows[i] for i in panel.visible_source_rows()]
        preds = [r.pred for r in rows if r.pred is not None and not model.is_stale(r)]
        if preds:
            return preds
        return [self.w.images.pred] if self.w.images.pred is not None else []

    def export_dicom(self, folder, preds=None) -> bool:
        """Write SR + secondary capture for ``preds`` (default: ``dicom_candidates``) in a worker."""
        from .tasks import dicom_export_task

        w = self.w
        clf = w.models.classifier
        preds = self.dicom_candidates() if preds is None else list(preds)
        if clf is None or not preds:
            w.notifier.warning("Nothing to export: load a model and classify images first.")
            return False
        results: list = []

        def on_item(item):
            _, i, written, reason = item
            results.append((preds[i], written, reason))

        def on_done():
            done = [x for _, x, _ in results if x is not None]
            n_sc = sum(x.sc is not None for x in done)
            text = f"DICOM results written to {folder}: {len(done)} SR, {n_sc} secondary capture(s)"
            reasons: dict[str, int] = {}
            for _, x, why in results:
                if x is None:
                    reasons[why] = reasons.get(why, 0) + 1
            if reasons:
                text += "; not written: " + "; ".join(f"{n} × {why}" for why, n in reasons.items())
            (w.notifier.info if done else w.notifier.warning)(text)
            w.dicomExported.emit(results)

        w.notifier.info(f"Writing DICOM results for {len(preds)} result(s)…")
        return w.jobs.start("dicom", dicom_export_task, clf, preds, str(folder), on_yield=on_item,
                            on_done=on_done, context="DICOM export") is not None

    # -- CSV and PDF ----------------------------------------------------------------------
    def export_csv(self, path) -> Path | None:
        try:
            out = self.w.batch.export_csv(path)
        except OSError as exc:
            self.w.notifier.error(f"Could not write {path}: {exc.strerror or exc}")
            return None
        self.w.notifier.info(f"Batch results written to {out}")
        return out

    def export_report(self, path) -> None:
        """Write the PDF; computes the heatmap first when it is not cached."""
        images = self.w.images
        if images.pred is None:
            self.w.notifier.warning(CLASSIFY_FIRST)
            return
        self._pending_report = Path(path)
        if images.heatmap() is None and images.compute_heatmap():
            self.w.notifier.info("Computing the heatmap for the report…")
            return
        self.write_pending_report()

    def write_pending_report(self, *_args) -> None:
        """The report waiting for the heatmap (ready or failed), if any, is written now."""
        if self._pending_report is None:
            return
        target, self._pending_report = self._pending_report, None
        from .report_pdf import write_report

        w = self.w
        patient = w.meta_panel.patient_items() if w.meta_panel.patient_visible() else None
        content = report_content(w.images, patient=patient)
        if content is None:
            return
        try:
            write_report(target, content)
        except OSError as exc:
            w.notifier.error(f"Could not write the report {target}: {exc.strerror or exc}")
            return
        w.notifier.info(f"Report written to {target}")
        w.reportWritten.emit(str(target))
