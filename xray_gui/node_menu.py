"""The DICOM menu of the main window and the worklist of received images:
Network Settings…, Receive Images (on/off), Query/Retrieve from PACS…, Retry
Sending Results.  Received and retrieved images, once classified by the node,
are shown in the batch table grouped by patient › study › series."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction

from .node_controller import NodeController


class DicomNetworkUi:
    def __init__(self, window):
        self.w = window
        self.received: list[tuple[object, object]] = []  # (image path in the store, Prediction)
        self.controller = NodeController(window.settings, window.notifier, lambda: window.models.classifier, window)
        self.controller.imageClassified.connect(self._on_classified)
        self.controller.receivingChanged.connect(self._on_receiving)
        window.models.changed.connect(self.controller.model_changed)
        self._refresh = QTimer(window)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(300)
        self._refresh.timeout.connect(self.refresh_worklist)
        self.qr_dialog = None
        menu = window.menuBar().addMenu("&DICOM")
        help_menu = next((a for a in window.menuBar().actions() if a.text() == "&Help"), None)
        if help_menu is not None:
            window.menuBar().insertMenu(help_menu, menu)
        A = window.actions_by_name

        def act(key, text, slot, tip, checkable=False):
            a = QAction(text, window)
            a.setStatusTip(tip)
            a.setCheckable(checkable)
            a.triggered.connect(slot)
            menu.addAction(a)
            A[key] = a
            return a

        act("network_settings", "&Network Settings…", self.show_settings,
            "This node's AE title and port, the PACS and results destination, Test connection")
        act("receive", "&Receive Images", self.toggle_receive,
            "Accept CR/DX images sent to this node (Storage SCP) and classify them", checkable=True)
        act("query_retrieve", "&Query/Retrieve from PACS…", self.show_query_retrieve,
            "Search the PACS and fetch studies into the worklist")
        act("send_study", "&Send Results of the Selected Study", self.send_selected_study,
            "Send the SR and secondary captures of the study selected in the worklist now")
        act("retry_send", "Re&try Sending Results", lambda: self.controller.send(self.w.jobs),
            "Send every SR and secondary capture still waiting in the local store")

    # -------------------------------------------------------------- actions
    def show_settings(self):
        from .network_settings import NetworkSettingsDialog, save_network_config

        dlg = NetworkSettingsDialog(self.controller.config, self.w.jobs, self.w)
        if dlg.exec():
            save_network_config(self.w.settings, dlg.config())
            if self.controller.node is not None:  # apply: restart with the new settings
                self.controller._start(listen=self.controller.listening)
        return dlg

    def toggle_receive(self, on: bool) -> None:
        if on:
            self.controller.start_receiving()
        else:
            self.controller.stop()

    def selected_study_key(self) -> str | None:
        """The store key of the study of the worklist row selected (None: no received image selected)."""
        ctrl = self.controller
        row = self.w.batch_panel._source_row(self.w.batch_panel.view.currentIndex())
        if row is None or row >= len(self.w.batch_panel.model.rows) or ctrl.store is None:
            return None
        path = self.w.batch_panel.model.rows[row].path
        images = (ctrl.store.root / "images").resolve()
        return path.parent.name if path.parent.parent.resolve() == images else None

    def send_selected_study(self) -> None:
        key = self.selected_study_key()
        if key is None:
            self.w.notifier.info("Select an image received or retrieved by the DICOM node in the worklist first.")
            return
        self.controller.send(self.w.jobs, key)

    def _on_receiving(self, on: bool) -> None:
        self.w.actions_by_name["receive"].setChecked(on)

    def show_query_retrieve(self):
        from .query_dialog import QueryRetrieveDialog

        if self.qr_dialog is None:
            self.qr_dialog = QueryRetrieveDialog(self.controller, self.w.jobs, self.w)
        self.qr_dialog.show()
        self.qr_dialog.raise_()
        return self.qr_dialog

    # ------------------------------------------------------------- worklist
    def _on_classified(self, path, pred) -> None:
        self.received.append((path, pred))
        self._refresh.start()

    def refresh_worklist(self) -> None:
        """Show every image received this session with its result, grouped by study."""
        if self.w.batch.running:  # a folder batch owns the table now; try again later
            self._refresh.start(2000)
            return
        from training.imaging.study_info import read_study_info
        from training.model.audit import model_stamp

        clf = self.w.models.classifier
        panel = self.w.batch_panel
        files = [p for p, _ in self.received]
        if clf is not None:
            panel.model.batch_stamp = model_stamp(clf.loaded)
            panel.model.set_current_model(panel.model.batch_stamp)
        panel.start(files, [], [read_study_info(p) for p in files])
        for i, (_, pred) in enumerate(self.received):
            panel.model.set_result(i, pred, None)
        panel.set_progress(len(files), len(files), 0.0)
        panel.finish(f"{len(files)} received image(s) classified")
        self.w.batch.classifier = clf
        self.w.batch_dock.show()

    def shutdown(self) -> None:
        self.controller.stop()


def install_dicom_network(window) -> DicomNetworkUi:
    return DicomNetworkUi(window)
