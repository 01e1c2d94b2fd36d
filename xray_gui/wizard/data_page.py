"""Page 1 - Data: a folder with one sub-folder per class.

Shows the class counts (``training.train.data.scan_folders``), a few thumbnails per
class (decoded in a worker with ``training.imaging.loading.load_image``) and the files
that will be skipped, with the reason.  Next stays disabled, with the reason
shown, while the folder cannot be used."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWizardPage,
)

from training.common.constants import MIN_PER_CLASS  # noqa: E402  (the core's rule, torch-free)

from .common import JOB_SCAN, MessageLabel, error_text, esc
from .tasks import THUMB_PX, scan_task

CLASSES = ("COVID", "Normal")


class DataPage(QWizardPage):
    def __init__(self, wiz):
        super().__init__()
        self.wiz = wiz
        self.setTitle("1. Training images")
        self.setSubTitle("Choose a folder with one sub-folder per class: COVID/ and Normal/ "
                         "(sub-folders inside them are read too). PNG, JPEG, BMP, TIFF and DICOM files are used.")
        self.scan = None
        self.error = ""
        self.scanning = False
        self._scanned_path = ""

        self.folder = QLineEdit()
        self.folder.setObjectName("dataFolder")
        self.folder.setPlaceholderText("e.g. …/covid-cxr-1000")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.choose_folder)
        row = QHBoxLayout()
        row.addWidget(QLabel("Data folder:"))
        row.addWidget(self.folder, 1)
        row.addWidget(browse)

        self.message = MessageLabel()
        self.message.setObjectName("dataMessage")

        counts_box = QGroupBox("Images per class")
        cl = QGridLayout(counts_box)
        self.count_labels: dict[str, QLabel] = {}
        self.thumb_rows: dict[str, QHBoxLayout] = {}
        for r, cls in enumerate(CLASSES):
            name = QLabel(f"<b>{cls}</b>")
            n = QLabel("–")
            n.setMinimumWidth(90)
            self.count_labels[cls] = n
            thumbs = QHBoxLayout()
            thumbs.setSpacing(4)
            thumbs.addStretch(1)
            self.thumb_rows[cls] = thumbs
            cl.addWidget(name, r, 0)
            cl.addWidget(n, r, 1)
            cl.addLayout(thumbs, r, 2)
        cl.setColumnStretch(2, 1)

        skip_box = QGroupBox("Files that will be skipped")
        self.skip_box = skip_box
        sl = QVBoxLayout(skip_box)
        self.skipped = QListWidget()
        self.skipped.setObjectName("skippedList")
        sl.addWidget(self.skipped)
        sl.addWidget(QLabel("<span style='color:#666'>Images that cannot be read are also skipped (and listed) "
                            "when training starts.</span>"))

        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.message)
        lay.addWidget(counts_box)
        lay.addWidget(skip_box, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self.rescan)
        self.folder.textChanged.connect(lambda _t: self._debounce.start())
        self.folder.returnPressed.connect(self.rescan)
        self._clear()

    # -- folder -----------------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.folder.text().strip() or str(Path.home())
        d = QFileDialog.getExistingDirectory(self, "Folder with COVID/ and Normal/ sub-folders", start)
        if d:
            self.set_folder(d)

    def set_folder(self, path) -> None:
        """Set the folder and scan it now (also used by tests)."""
        self.folder.setText(str(path))
        self.rescan()

    def data_dir(self) -> str:
        return self._scanned_path

    def rescan(self) -> None:
        self._debounce.stop()
        path = self.folder.text().strip()
        if not path:
            self._clear()
            self.message.show_message("Choose a data folder.", "muted")
            self.completeChanged.emit()
            return
        self._clear()
        self.scanning = True
        self._scanned_path = path
        self.message.show_message("Reading the folder…", "muted")
        self.completeChanged.emit()
        self.wiz.jobs.start(JOB_SCAN, scan_task, path, on_yield=self._on_item, on_error=self._on_error,
                            on_done=self._on_done)

    def _clear(self) -> None:
        self.scan = None
        self.error = ""
        self.wiz.state.decode_s = None
        self.thumb_count = 0
        for cls in CLASSES:
            self.count_labels[cls].setText("–")
            row = self.thumb_rows[cls]
            while row.count() > 1:
                item = row.takeAt(0)
                if item.widget() is not None:
                    item.widget().deleteLater()
        self.skipped.clear()
        self.skip_box.setTitle("Files that will be skipped")

    # -- worker results -----------------------------------------------------------
    def _on_item(self, item) -> None:
        kind = item[0]
        if kind == "scan":
            self._show_scan(item[1])
        elif kind == "thumb":
            _, cls, path, qimg, reason = item
            lab = QLabel()
            lab.setFixedSize(QSize(THUMB_PX, THUMB_PX))
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setStyleSheet("background: black; color: #e66; font-size: 9px;")
            if qimg is not None:
                lab.setPixmap(QPixmap.fromImage(qimg))
                lab.setToolTip(Path(path).name)
            else:
                lab.setText("cannot\nread")
                lab.setToolTip(f"{Path(path).name}: {reason}")
            row = self.thumb_rows[cls]
            row.insertWidget(row.count() - 1, lab)
            self.thumb_count += 1
        elif kind == "decode_time":
            self.wiz.state.decode_s = item[1]

    def _show_scan(self, scan) -> None:
        self.scan = scan
        counts = scan.counts()
        for cls in CLASSES:
            n = counts.get(cls, 0)
            self.count_labels[cls].setText(f"{n} image{'s' if n != 1 else ''}")
        self.skipped.clear()
        for path, reason in scan.skipped:
            self.skipped.addItem(f"{Path(path).name} — {reason}")
            self.skipped.item(self.skipped.count() - 1).setToolTip(path)
        if not scan.skipped:
            self.skipped.addItem("(none)")
        self.skip_box.setTitle(f"Files that will be skipped ({len(scan.skipped)})")
        few = [f"{cls} has {counts.get(cls, 0)}" for cls in CLASSES if counts.get(cls, 0) < MIN_PER_CLASS]
        if few:
            self.error = (f"Too few images: {' and '.join(few)}. At least {MIN_PER_CLASS} images per class are "
                          "needed to split them into training, validation and test sets.")
            self.message.show_message(esc(self.error), "error")
        else:
            total = sum(counts.values())
            ratio = max(counts.values()) / max(1, min(counts.values()))
            text = f"{total} images will be used ({', '.join(f'{c} {counts[c]}' for c in CLASSES)})."
            if ratio > 1.5:
                text += (f" The classes are imbalanced ({ratio:.1f} : 1); the 'shipped' recipe samples them "
                         "evenly.")
            self.message.show_message(esc(text), "ok")
        self.completeChanged.emit()

    def _on_error(self, exc) -> bool:
        self.error = error_text(exc)
        self.message.show_message(f"This folder cannot be used: {esc(self.error)}", "error")
        self.completeChanged.emit()
        return True

    def _on_done(self) -> None:
        self.scanning = False
        self.completeChanged.emit()

    # -- QWizardPage --------------------------------------------------------------
    def isComplete(self) -> bool:  # noqa: N802
        return self.scan is not None and not self.error and not self.scanning_blocks()

    def scanning_blocks(self) -> bool:
        """Next waits for the scan itself, not for the thumbnails."""
        return self.scan is None and self.scanning

    def validatePage(self) -> bool:  # noqa: N802
        if not self.isComplete():
            return False
        if self.folder.text().strip() != self._scanned_path:  # edited, not yet re-read
            self.rescan()
            return False
        self.wiz.state.data_dir = str(Path(self._scanned_path).resolve())
        self.wiz.state.counts = self.scan.counts()
        return True
