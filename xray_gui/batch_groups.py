"""The batch table as the user sees it: DICOM inputs under patient > study >
series group rows, other files as plain rows, over the flat sort/filter proxy.

``GroupedBatchModel`` is rebuilt from the proxy's rows whenever their order
or set changes (sorting, filtering, a new batch): a group appears where its
first image is in the proxy's order, and holds its images in that order, so
sorting and filtering keep working across groups (sorted by P(COVID), the
group of the highest score comes first and each series is sorted inside).
Result updates are forwarded as ``dataChanged`` without a rebuild.

Patient group rows name the patient only while identifiers are shown
(``set_show_identifiers``); otherwise they read "Patient 1", "Patient 2"...
in order of appearance."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

GROUP_BRUSH = QBrush(QColor(55, 65, 80))
GROUP_TEXT = QBrush(QColor(235, 240, 250))


class Node:
    __slots__ = ("kind", "key", "info", "children", "flat_row", "source_row", "parent", "row", "number")

    def __init__(self, kind: str, parent: "Node | None", key: str = "", info=None, flat_row: int = -1,
                 source_row: int = -1):
        self.kind, self.key, self.info, self.flat_row, self.parent = kind, key, info, flat_row, parent
        self.source_row = source_row  # the table model's row, fixed when the tree is built
        self.children: list[Node] = []
        self.row = 0
        self.number = 0

    def add(self, child: "Node") -> "Node":
        child.row = len(self.children)
        self.children.append(child)
        return child


class GroupedBatchModel(QAbstractItemModel):
    def __init__(self, proxy, table, parent=None):
        super().__init__(parent)
        self.proxy, self.table = proxy, table
        self.show_identifiers = False
        self.root = Node("root", None)
        self._by_flat: dict[int, Node] = {}
        for sig in (proxy.modelReset, proxy.layoutChanged, proxy.rowsInserted, proxy.rowsRemoved):
            sig.connect(self.rebuild)
        proxy.dataChanged.connect(self._forward)
        self.rebuild()

    # -- structure ------------------------------------------------------------------
    def rebuild(self, *_args) -> None:
        self.beginResetModel()
        root = Node("root", None)
        by_flat: dict[int, Node] = {}
        groups: dict[tuple[str, str], Node] = {}
        patients = 0
        for r in range(self.proxy.rowCount()):
            src = self.proxy.mapToSource(self.proxy.index(r, 0)).row()
            row = self.table.rows[src]
            info = row.info
            parent = root
            if info is not None:
                for kind, key in (("patient", info.patient_key), ("study", info.study_key),
                                  ("series", info.series_key)):
                    node = groups.get((kind, key))
                    if node is None:
                        node = parent.add(Node(kind, parent, key, info))
                        groups[(kind, key)] = node
                        if kind == "patient":
                            patients += 1
                            node.number = patients
                    parent = node
            by_flat[r] = parent.add(Node("image", parent, flat_row=r, source_row=src))
        self.root, self._by_flat = root, by_flat
        self.endResetModel()

    def _forward(self, top_left, bottom_right, roles=()) -> None:
        for r in range(top_left.row(), bottom_right.row() + 1):
            node = self._by_flat.get(r)
            if node is not None:
                self.dataChanged.emit(self.createIndex(node.row, 0, node),
                                      self.createIndex(node.row, self.columnCount() - 1, node))

    def set_show_identifiers(self, on: bool) -> None:
        self.show_identifiers = bool(on)
        groups: list[Node] = []

        def walk(node: Node) -> None:
            for child in node.children:
                if child.kind != "image":
                    groups.append(child)
                    walk(child)

        walk(self.root)
        for node in groups:  # only the labels change
            idx = self.createIndex(node.row, 0, node)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DisplayRole])

    # -- navigation helpers -----------------------------------------------------------
    def node(self, index) -> Node:
        return index.internalPointer() if index.isValid() else self.root

    def image_indexes(self) -> list[QModelIndex]:
        """Every image row, in display (reading) order."""
        out: list[QModelIndex] = []

        def walk(node: Node) -> None:
            for child in node.children:
                if child.kind == "image":
                    out.append(self.createIndex(child.row, 0, child))
                else:
                    walk(child)

        walk(self.root)
        return out

    def index_for_flat(self, flat_row: int, column: int = 0) -> QModelIndex:
        node = self._by_flat.get(flat_row)
        return QModelIndex() if node is None else self.createIndex(node.row, column, node)

    def source_row(self, index) -> int | None:
        """The table model's row of an image index (None for a group row)."""
        if not index.isValid():
            return None
        node = index.internalPointer()
        return node.source_row if node.kind == "image" else None

    def flat_row(self, index) -> int | None:
        """The proxy row of an image index (None for a group row)."""
        if not index.isValid():
            return None
        node = index.internalPointer()
        return node.flat_row if node.kind == "image" else None

    # -- Qt model ---------------------------------------------------------------------
    def index(self, row, column, parent=QModelIndex()):
        node = self.node(parent)
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        if 0 <= row < len(node.children) and 0 <= column < self.columnCount():
            return self.createIndex(row, column, node.children[row])
        return QModelIndex()

    def parent(self, index=QModelIndex()):
        if not index.isValid():
            return QModelIndex()
        p = index.internalPointer().parent
        if p is None or p is self.root:
            return QModelIndex()
        return self.createIndex(p.row, 0, p)

    def rowCount(self, parent=QModelIndex()):  # noqa: N802
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802
        return self.table.columnCount()

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        return self.table.headerData(section, orientation, role)

    def sort(self, column, order=Qt.SortOrder.AscendingOrder):
        self.proxy.sort(column, order)

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        if index.internalPointer().kind == "image":
            return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return Qt.ItemFlag.ItemIsEnabled

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        node = index.internalPointer()
        if node.kind == "image":
            return self.proxy.index(node.flat_row, index.column()).data(role)
        if role == Qt.ItemDataRole.DisplayRole and index.column() == 0:
            return self.group_label(node)
        if role == Qt.ItemDataRole.FontRole:
            f = QFont()
            f.setBold(node.kind != "series")
            return f
        if role == Qt.ItemDataRole.BackgroundRole:
            return GROUP_BRUSH
        if role == Qt.ItemDataRole.ForegroundRole:
            return GROUP_TEXT
        return None

    def group_label(self, node: Node) -> str:
        info, n = node.info, _count_images(node)
        images = f"{n} image{'s' if n != 1 else ''}"
        if node.kind == "patient":
            if not self.show_identifiers:
                return f"Patient {node.number} (identifiers hidden) · {images}"
            born = f" · born {info.birth_date_text}" if info.birth_date else ""
            return f"{info.patient_name or 'no name'} · ID {info.patient_id or 'none'}{born} · {images}"
        if node.kind == "study":
            parts = [f"Study {info.study_date_text or 'date not recorded'}"]
            if info.study_description:
                parts.append(info.study_description)
            if info.accession:
                parts.append(f"accession {info.accession}")
            return " · ".join(parts + [images])
        number = "" if info.series_number is None else f" {info.series_number}"
        parts = [f"Series{number}"]
        if info.series_description:
            parts.append(info.series_description)
        if info.modality:
            parts.append(info.modality)
        return " · ".join(parts + [images])


def _count_images(node: Node) -> int:
    return sum(1 if c.kind == "image" else _count_images(c) for c in node.children)


__all__ = ["GroupedBatchModel"]
