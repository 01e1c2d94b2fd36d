"""DICOM → Query/Retrieve: search the configured PACS (C-FIND, study root) by
patient ID / name, date range, modality CR/DX and accession; fetch the selected
studies (C-GET) into the node's store, with progress and cancel; the node
classifies them and they appear in the worklist."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ("Patient ID", "Patient name", "Study date", "Accession", "Modalities", "Images", "Description")


class _Progress(QObject):
    changed = Signal(int, int)


def find_task(cfg, peer, query):
    from training.dicom_node.scu import find_studies

    yield ("matches", find_studies(cfg, peer, query))


def retrieve_task(cfg, peer, study_uids, store, on_received, progress, cancel, method="get"):
    from training.dicom_node.scu import retrieve_study

    for uid in study_uids:
        if cancel.is_set():
            break
        res = retrieve_study(cfg, peer, uid, store, method=method, on_received=on_received, progress=progress,
                             cancel=cancel.is_set)
        yield ("retrieved", uid, res)


class QueryRetrieveDialog(QDialog):
    def __init__(self, controller, jobs, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Query/Retrieve from PACS")
        self.resize(860, 520)
        self.controller, self.jobs = controller, jobs
        self.matches = []
        self.cancel_event = threading.Event()
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.patient_id, self.patient_name = QLineEdit(), QLineEdit()
        self.date_from, self.date_to, self.accession = QLineEdit(), QLineEdit(), QLineEdit()
        for w in (self.date_from, self.date_to):
            w.setPlaceholderText("YYYYMMDD")
        self.only_cr_dx = QCheckBox("Only studies with CR or DX images")
        self.only_cr_dx.setChecked(True)
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        dates = QWidget()
        dl = QHBoxLayout(dates)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.date_from)
        dl.addWidget(QLabel("to"))
        dl.addWidget(self.date_to)
        form.addRow("Study date", dates)
        form.addRow("Accession number", self.accession)
        form.addRow("", self.only_cr_dx)
        lay.addLayout(form)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        lay.addWidget(self.search_button)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        lay.addWidget(self.table)
        row = QWidget()
        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        self.use_move = QCheckBox("C-MOVE to this node (the PACS must know it)")
        self.use_move.setToolTip("Default: C-GET, which needs nothing configured on the PACS. C-MOVE makes the PACS "
                                 "send the images to this node's receiving port; Receive Images is turned on.")
        rl.addWidget(self.use_move)
        self.retrieve_button = QPushButton("Retrieve selected studies")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        rl.addWidget(self.retrieve_button)
        rl.addWidget(self.cancel_button)
        rl.addWidget(self.progress, 1)
        lay.addWidget(row)
        self.status = QLabel("")
        self.status.setObjectName("qrStatus")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self._progress = _Progress()
        self._progress.changed.connect(self._on_progress)

    def _peer(self):
        from training.common.errors import XrayError
        from training.dicom_node.config import ROLE_QUERY

        cfg = self.controller.config
        try:
            return cfg, cfg.peer(ROLE_QUERY)
        except XrayError as exc:
            self.status.setText(exc.reason + " (DICOM → Network Settings…)")
            return cfg, None

    def search(self) -> None:
        from training.dicom_node.scu import StudyQuery

        cfg, peer = self._peer()
        if peer is None:
            return
        query = StudyQuery(patient_id=self.patient_id.text(), patient_name=self.patient_name.text(),
                           date_from=self.date_from.text().strip(), date_to=self.date_to.text().strip(),
                           accession=self.accession.text(),
                           modalities=("CR", "DX") if self.only_cr_dx.isChecked() else ())
        self.status.setText(f"Searching {peer.name}…")
        self.search_button.setEnabled(False)

        def on_error(exc) -> bool:
            self.status.setText(getattr(exc, "reason", str(exc)))
            return True

        self.jobs.start("dicom_find", find_task, cfg, peer, query, on_yield=self._show_matches,
                        on_error=on_error, on_done=lambda: self.search_button.setEnabled(True), context="Search")

    def _show_matches(self, item) -> None:
        self.matches = item[1]
        self.table.setRowCount(0)
        for m in self.matches:
            r = self.table.rowCount()
            self.table.insertRow(r)
            vals = (m.patient_id, m.patient_name, m.study_date, m.accession, m.modalities,
                    "" if m.instances is None else str(m.instances), m.description)
            for c, v in enumerate(vals):
                cell = QTableWidgetItem(v)
                cell.setToolTip(m.retrieve_note)  # what a retrieve of this study brings, and what not
                self.table.setItem(r, c, cell)
        nothing = sum(not m.will_retrieve for m in self.matches)
        self.status.setText((f"{len(self.matches)} study(ies) found" + (f"; {nothing} hold nothing this node "
                             "retrieves (hover a row: what a retrieve brings)." if nothing else ".")) if self.matches
                            else "No study matches.")

    def retrieve_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        if not rows:
            self.status.setText("Select one or more studies first.")
            return
        cfg, peer = self._peer()
        method = "move" if self.use_move.isChecked() else "get"
        if peer is None:
            return
        if method == "move" and not self.controller.listening and not self.controller.start_receiving():
            return
        if not self.controller.ensure_worker():
            return
        uids = [self.matches[r].study_uid for r in rows]
        self.cancel_event = threading.Event()
        self.retrieve_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Retrieving {len(uids)} study(ies) from {peer.name}…")
        node = self.controller.node
        messages = []

        def on_item(item):
            messages.append(item[2].message)
            self.status.setText(" ".join(messages))

        def on_error(exc) -> bool:
            self.status.setText(getattr(exc, "reason", str(exc)))
            return True

        def on_done():
            self.retrieve_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.progress.setRange(0, 1)
            self.progress.setValue(1)

        self.jobs.start("dicom_retrieve", retrieve_task, cfg, peer, uids, node.store, lambda _p: node.wake(),
                        self._progress.changed.emit, self.cancel_event, method, on_yield=on_item, on_error=on_error,
                        on_done=on_done, context="Retrieve")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def cancel(self) -> None:
        self.cancel_event.set()
        self.status.setText("Cancelling… images already received are kept.")
