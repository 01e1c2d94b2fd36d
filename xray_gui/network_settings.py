"""DICOM network settings: the dialog (this node, its peers, "Test connection")
and where they are kept (QSettings key ``network/config``, the same TOML text
``xray-node --config`` reads, so a tested set-up can be copied to a server)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

SETTINGS_KEY = "network/config"
COLUMNS = ("Name", "AE title", "Host", "Port", "Query/retrieve", "Results", "TLS")


def default_store() -> Path:
    from PySide6.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation) or str(Path.home())
    return Path(base) / "dicom-node"


def load_network_config(settings):
    """The saved NodeConfig (defaults when nothing, or something unusable, was saved)."""
    import tomllib

    from training.dicom_node.config import ConfigError, NodeConfig, config_from_dict

    text = settings.store.value(SETTINGS_KEY, "")
    if text:
        try:
            return config_from_dict(tomllib.loads(str(text)))
        except (ConfigError, tomllib.TOMLDecodeError, TypeError):
            pass
    return NodeConfig(store=default_store())


def save_network_config(settings, config) -> None:
    settings.store.setValue(SETTINGS_KEY, config.to_toml())
    settings.sync()


class NetworkSettingsDialog(QDialog):
    """Edits a NodeConfig; ``config()`` returns the edited one (ConfigError when a field is wrong)."""

    def __init__(self, config, jobs=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("DICOM Network Settings")
        self.resize(760, 720)
        self._base = config
        self.jobs = jobs
        lay = QVBoxLayout(self)
        form = self._node_form(config)
        self._tls_rows(form, config)
        lay.addLayout(form)
        lay.addWidget(QLabel("Peers (PACS, archives):"))
        self._build_peers(lay, config)
        self.result = QLabel("")
        self.result.setObjectName("echoResult")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.result)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self._update_note()

    def _node_form(self, config) -> QFormLayout:
        """This node: AE title, address, port, store, allowed callers, sending results."""
        form = QFormLayout()
        self.ae_title = QLineEdit(config.ae_title)
        self.ae_title.setMaxLength(16)
        self.host = QLineEdit(config.host)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(config.port or 11112)
        self.store = QLineEdit(str(config.store))
        self.callers = QLineEdit(", ".join(config.allowed_calling_ae_titles))
        self.callers.setPlaceholderText("e.g. MODALITY1, CR_ROOM2")
        self.any_caller = QCheckBox("Accept images from any calling AE title (not recommended)")
        self.any_caller.setChecked(config.accept_any_calling_ae)
        self.auto_send = QCheckBox("Send results to the results destination automatically after classification")
        self.auto_send.setChecked(config.auto_send)
        self.listen_note = QLabel()
        self.listen_note.setWordWrap(True)
        self.host.textChanged.connect(self._update_note)
        form.addRow("This node's AE title", self.ae_title)
        form.addRow("Listen on address", self.host)
        form.addRow("", self.listen_note)
        form.addRow("Port", self.port)
        form.addRow("Local store folder", self.store)
        form.addRow("Allowed calling AE titles", self.callers)
        form.addRow("", self.any_caller)
        form.addRow("", self.auto_send)
        return form

    def _tls_rows(self, form: QFormLayout, config) -> None:
        """DICOM over TLS (docs/DICOM_NODE.md): this node's certificate and key, the CAs it trusts."""
        self.tls = QCheckBox("Also listen with TLS (mutual TLS: callers need a certificate from a trusted CA)")
        self.tls.setChecked(config.tls)
        self.tls_port = QSpinBox()
        self.tls_port.setRange(1, 65535)
        self.tls_port.setValue(config.tls_port or 2762)
        self.tls_cert = QLineEdit(str(config.tls_certificate or ""))
        self.tls_key = QLineEdit(str(config.tls_private_key or ""))
        self.tls_ca = QLineEdit(str(config.tls_ca_bundle or ""))
        for edit, hint in ((self.tls_cert, "this node's certificate (PEM)"), (self.tls_key, "its private key (PEM)"),
                           (self.tls_ca, "CA bundle (PEM): the CAs whose certificates are trusted")):
            edit.setPlaceholderText(hint)
        self.tls_client_cert = QCheckBox("Require client certificates (mutual TLS)")
        self.tls_client_cert.setChecked(config.tls_require_client_certificate)
        form.addRow("", self.tls)
        form.addRow("TLS port", self.tls_port)
        form.addRow("TLS certificate", self.tls_cert)
        form.addRow("TLS private key", self.tls_key)
        form.addRow("TLS CA bundle", self.tls_ca)
        form.addRow("", self.tls_client_cert)

    def _build_peers(self, lay: QVBoxLayout, config) -> None:
        """The peers' table and its buttons (add, remove, Test connection)."""
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        for p in config.peers:
            self.add_peer(p.name, p.ae_title, p.host, p.port, "query_retrieve" in p.roles, "results" in p.roles,
                          tls=p.tls)
        lay.addWidget(self.table)
        row = QWidget()
        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        add, remove = QPushButton("Add peer"), QPushButton("Remove peer")
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Send a DICOM echo (C-ECHO) to the selected peer")
        add.clicked.connect(lambda: self.add_peer("PACS", "PACS", "127.0.0.1", 104, True, True))
        remove.clicked.connect(self._remove_peer)
        self.test_button.clicked.connect(self.test_connection)
        for b in (add, remove, self.test_button):
            rl.addWidget(b)
        rl.addStretch(1)
        lay.addWidget(row)

    def _update_note(self) -> None:
        host = self.host.text().strip()
        if host in ("127.0.0.1", "localhost", "::1"):
            text = ("Listens on 127.0.0.1 only: programs on this computer can send images, other computers cannot. "
                    "Enter this computer's network address (or 0.0.0.0) to receive from a modality or PACS.")
        else:
            text = (f"Listens on {host or 'all addresses'}: other computers on the network can connect; only the "
                    "allowed calling AE titles may send images.")
        self.listen_note.setText(text)

    def add_peer(self, name, ae, host, port, query, results, tls=False) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, v in enumerate((name, ae, host, str(port))):
            self.table.setItem(r, c, QTableWidgetItem(str(v)))
        for c, on in ((4, query), (5, results), (6, tls)):
            item = QTableWidgetItem()
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.table.setItem(r, c, item)
        self.table.selectRow(r)

    def _remove_peer(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for r in rows:
            self.table.removeRow(r)

    def peers(self):
        from training.dicom_node.config import Peer

        out = []
        for r in range(self.table.rowCount()):
            cell = [self.table.item(r, c).text() if self.table.item(r, c) else "" for c in range(4)]
            roles = tuple(role for c, role in ((4, "query_retrieve"), (5, "results"))
                          if self.table.item(r, c).checkState() == Qt.CheckState.Checked)
            tls = self.table.item(r, 6) is not None and self.table.item(r, 6).checkState() == Qt.CheckState.Checked
            out.append(Peer(name=cell[0], ae_title=cell[1], host=cell[2], port=cell[3], roles=roles, tls=tls))
        return out

    def config(self):
        from dataclasses import replace

        callers = [c.strip() for c in self.callers.text().replace(";", ",").split(",") if c.strip()]
        return replace(self._base, ae_title=self.ae_title.text(), host=self.host.text().strip(),
                       port=self.port.value(), store=Path(self.store.text().strip() or default_store()),
                       allowed_calling_ae_titles=callers, accept_any_calling_ae=self.any_caller.isChecked(),
                       auto_send=self.auto_send.isChecked(), peers=self.peers(), tls=self.tls.isChecked(),
                       tls_port=self.tls_port.value(), tls_certificate=self.tls_cert.text().strip() or None,
                       tls_private_key=self.tls_key.text().strip() or None,
                       tls_ca_bundle=self.tls_ca.text().strip() or None,
                       tls_require_client_certificate=self.tls_client_cert.isChecked())

    def _accept(self) -> None:
        from training.common.errors import XrayError

        try:
            self.config()
        except XrayError as exc:
            self.result.setText(exc.reason)
            return
        self.accept()

    def test_connection(self) -> None:
        """C-ECHO to the selected peer (the first when none is selected), off the GUI thread."""
        from training.common.errors import XrayError

        try:
            cfg = self.config()
        except XrayError as exc:
            self.result.setText(exc.reason)
            return
        if not cfg.peers:
            self.result.setText("Add a peer first (its AE title, host and port).")
            return
        rows = [i.row() for i in self.table.selectedIndexes()]
        peer = cfg.peers[rows[0] if rows else 0]
        self.result.setText(f"Testing {peer.name} at {peer.address}…")
        self.test_button.setEnabled(False)

        def done(item):
            self.result.setText(item[1])

        def finished():
            self.test_button.setEnabled(True)

        if self.jobs is None:
            from training.dicom_node.scu import echo

            done(("echo", echo(cfg, peer).message))
            finished()
        else:
            self.jobs.start("echo", echo_task, cfg, peer, on_yield=done, on_done=finished, context="Test connection")


def echo_task(cfg, peer):
    from training.dicom_node.scu import echo

    yield ("echo", echo(cfg, peer).message)
