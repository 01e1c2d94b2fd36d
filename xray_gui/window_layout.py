"""The main window's layout: a horizontal splitter [viewer over batch table |
side panel], the side panel (the verdict pinned on top, the rest scrolled),
the status bar, full screen, the splitter sizes kept in the settings, and the
layout actions (View → Show Side Panel / Show Batch Table / Full Screen Image)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from . import RESEARCH_NOTICE
from .elided import ElidedLabel, StatusLine

SIDE_WIDTH = 360          # the side panel's default width (px)
SIDE_MIN, SIDE_MAX = 300, 560
TABLE_SHARE = 0.45        # the batch table's share of the height when it first shows
MODEL_STATUS_MAX = 300    # the model name in the status bar is cut to this width


class WindowLayout(QObject):
    """Builds the central widget and the status bar of ``window`` around its
    viewer, panels and batch table, and keeps them arranged: which parts show,
    their splitter sizes, full screen."""

    def __init__(self, window: QMainWindow, viewer, pred_panel, meta_panel, batch_panel, settings, notifier):
        super().__init__(window)
        self.w = window
        self.settings = settings
        self.notifier = notifier
        self.batch_panel = batch_panel
        self._splits_restored = False
        self._full_screen_state: dict | None = None
        self._table_shown_here = False
        self._build_splitters(viewer, pred_panel, meta_panel)
        self._build_status_bar()
        self.actions = self._build_actions()
        self.batch_panel.installEventFilter(self)  # shown by others (received DICOM images) too

    # -- building ---------------------------------------------------------------
    def _build_splitters(self, viewer, pred_panel, meta_panel) -> None:
        self.image_split = QSplitter(Qt.Orientation.Vertical)
        self.image_split.setObjectName("imageTableSplitter")
        self.image_split.addWidget(viewer)
        self.image_split.addWidget(self.batch_panel)
        self.image_split.setStretchFactor(0, 1)
        self.image_split.setStretchFactor(1, 0)
        self.image_split.setChildrenCollapsible(False)
        self.batch_panel.setMinimumHeight(140)
        self.batch_panel.hide()  # shown when a batch starts

        side = QWidget()
        side.setObjectName("sidePanel")
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(0)
        sl.addWidget(pred_panel.detach_summary())  # pinned: never scrolled away
        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(pred_panel)
        il.addWidget(meta_panel)
        self.side_scroll = QScrollArea()
        self.side_scroll.setObjectName("sideScroll")
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setWidget(inner)
        self.side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        sl.addWidget(self.side_scroll, 1)
        side.setMinimumWidth(SIDE_MIN)
        side.setMaximumWidth(SIDE_MAX)
        self.side_panel = side

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("mainSplitter")
        self.main_split.addWidget(self.image_split)
        self.main_split.addWidget(side)
        self.main_split.setStretchFactor(0, 1)
        self.main_split.setStretchFactor(1, 0)
        self.main_split.setChildrenCollapsible(False)
        self.w.setCentralWidget(self.main_split)
        self.image_split.splitterMoved.connect(lambda *_: self.remember_splits())
        self.main_split.splitterMoved.connect(lambda *_: self.remember_splits())

    def _build_actions(self) -> dict[str, QAction]:
        def action(name, text, slot, keys=(), tip="", checkable=False, checked=False):
            a = QAction(text, self.w)
            a.setObjectName(name)
            a.setShortcuts([QKeySequence(k) for k in keys])
            if tip:
                a.setStatusTip(tip)
            a.setCheckable(checkable)
            if checkable:
                a.setChecked(checked)
                a.toggled.connect(slot)
            else:
                a.triggered.connect(slot)
            self.w.addAction(a)  # works while the menu bar is hidden (full screen)
            return a

        actions = {
            "side_panel": action("actSidePanel", "Show &Side Panel", self.set_side_panel_visible,
                                 ["Ctrl+B", "F9"], "Show or hide the result and image panel on the right",
                                 checkable=True, checked=True),
            "batch_table": action("actBatchTable", "Show &Batch Table", self.set_batch_table_visible, [],
                                  "Show or hide the batch results under the image", checkable=True),
            "full_screen": action("actFullScreen", "&Full Screen Image", self.set_full_screen, ["F11"],
                                  "Only the image: hides the side panel, the batch table and the menus "
                                  "(F11 or Esc leaves)", checkable=True),
            "leave_full_screen": action("actLeaveFullScreen", "Leave Full Screen",
                                        lambda: self.set_full_screen(False), ["Esc"]),
        }
        actions["leave_full_screen"].setEnabled(False)
        return actions

    def _build_status_bar(self) -> None:
        """One message line (``StatusLine``, fed only by the notifier) that takes
        the free width, then the model and the research notice, which never
        squeeze it below its minimum: the model name is cut to fit; full texts
        are in the tooltips."""
        sb = self.w.statusBar()
        self.status_line = StatusLine()
        self.model_status = ElidedLabel("loading model…")
        self.model_status.setObjectName("modelStatus")
        self.model_status.setMaximumWidth(MODEL_STATUS_MAX)
        self.model_status.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.model_status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        notice = QLabel(RESEARCH_NOTICE)
        notice.setObjectName("researchNotice")
        notice.setStyleSheet("color: #c9a227; padding: 0 6px;")
        notice.setToolTip("This program is a research tool. Its output is not a medical diagnosis.")
        notice.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        sb.addWidget(self.status_line, 1)
        sb.addPermanentWidget(self.model_status)
        sb.addPermanentWidget(notice)
        self.notifier.attach(self.status_line, self.w)

    # -- splitter sizes ---------------------------------------------------------------
    def window_shown(self) -> None:
        """The window's first show: restore the splitters at its real size (the saved sizes are pixels)."""
        if not self._splits_restored:
            self._splits_restored = True
            state = self.settings.splitter_state("main")
            if not (state and self.main_split.restoreState(state)):
                self.main_split.setSizes([max(1, self.main_split.width() - SIDE_WIDTH), SIDE_WIDTH])
            if not self.batch_panel.isHidden():
                self._apply_table_share()

    def eventFilter(self, obj, event):  # noqa: N802
        if obj is self.batch_panel and event.type() in (QEvent.Type.ShowToParent, QEvent.Type.HideToParent):
            shown = event.type() == QEvent.Type.ShowToParent
            if self._full_screen_state is None:
                act = self.actions["batch_table"]
                act.blockSignals(True)  # only the tick follows; nothing else to do
                act.setChecked(shown)
                act.blockSignals(False)
            if shown and not self._table_shown_here and self._splits_restored:
                QTimer.singleShot(0, self._apply_table_share)  # shown by e.g. the DICOM node
        return super().eventFilter(obj, event)

    def remember_splits(self) -> None:
        """Keep the splitters' states in the settings, only while both parts
        show (a hidden part's size means nothing)."""
        if self._full_screen_state is not None or not self._splits_restored:
            return
        if not self.side_panel.isHidden():
            self.settings.set_splitter_state("main", self.main_split.saveState())
        if not self.batch_panel.isHidden():
            self.settings.set_splitter_state("image_table", self.image_split.saveState())

    def _apply_table_share(self) -> None:
        """The remembered image/table split, else the table gets TABLE_SHARE of the height."""
        state = self.settings.splitter_state("image_table")
        if state and self.image_split.restoreState(state) and min(self.image_split.sizes()) > 0:
            return
        total = sum(self.image_split.sizes()) or self.image_split.height()
        table = int(total * TABLE_SHARE)
        self.image_split.setSizes([total - table, table])

    # -- what shows -----------------------------------------------------------------------
    def show_batch_table(self) -> None:
        """Show the table (a batch started); in full screen it shows when full screen ends."""
        if self._full_screen_state is not None:
            self._full_screen_state["batch"] = True
            return
        self.set_batch_table_visible(True)

    def _show_table(self, on: bool) -> None:
        self._table_shown_here = True
        self.batch_panel.setVisible(on)
        self._table_shown_here = False
        if on:
            self._apply_table_share()

    def set_batch_table_visible(self, on: bool) -> None:
        on = bool(on)
        if self._full_screen_state is not None:  # applies when full screen ends
            self._full_screen_state["batch"] = on
            return
        if on != (not self.batch_panel.isHidden()):
            if not on:
                self.remember_splits()
            self._show_table(on)
        self.actions["batch_table"].setChecked(on)

    def set_side_panel_visible(self, on: bool) -> None:
        on = bool(on)
        if self._full_screen_state is not None:  # applies when full screen ends
            self._full_screen_state["side"] = on
            return
        if not on:
            self.remember_splits()
        self.side_panel.setVisible(on)
        self.settings.side_panel_visible = on
        self.actions["side_panel"].setChecked(on)

    def is_full_screen_image(self) -> bool:
        return self._full_screen_state is not None

    def set_full_screen(self, on: bool) -> None:
        """Full screen image: the side panel, the batch table and the menu bar
        are hidden; the status bar stays (it carries the research-use notice).
        F11 or Esc leaves and brings back what was shown."""
        on = bool(on)
        if on != self.is_full_screen_image():
            if on:
                self.remember_splits()
                self._full_screen_state = {"side": not self.side_panel.isHidden(),
                                           "batch": not self.batch_panel.isHidden(),
                                           "maximized": self.w.isMaximized()}
                self.side_panel.hide()
                self.batch_panel.hide()
                self.w.menuBar().hide()
                self.w.showFullScreen()
                self.notifier.info("Full screen: F11 or Esc leaves; N / P step through the batch.")
            else:
                before, self._full_screen_state = self._full_screen_state, None
                self.w.menuBar().show()
                if before["maximized"]:
                    self.w.showMaximized()
                else:
                    self.w.showNormal()
                self.side_panel.setVisible(before["side"])
                self.settings.side_panel_visible = before["side"]
                self.actions["side_panel"].setChecked(before["side"])
                self._show_table(before["batch"])
                self.actions["batch_table"].setChecked(before["batch"])
        self.actions["full_screen"].setChecked(on)
        self.actions["leave_full_screen"].setEnabled(on)
