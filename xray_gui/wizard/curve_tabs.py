"""The Training page's curves: one tab per model with its loss and accuracy
(train vs validation, the chosen epoch marked), drawn with the core's
``training.train.plots.draw_curves``.  A hidden tab is drawn when it is shown
(matplotlib draws on the GUI thread: a few hundred ms on a slow CPU)."""

from __future__ import annotations

from PySide6.QtWidgets import QTabWidget

from .common import MODEL_LABELS
from .figure import FigureWidget, integer_epochs


class CurveTabs(QTabWidget):
    """``figures``, ``histories`` (epoch metrics per model) and ``best_epoch``
    are kept per model architecture; the dicts are cleared, never replaced."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("curveTabs")
        self.figures: dict[str, FigureWidget] = {}
        self.histories: dict[str, list[dict]] = {}
        self.best_epoch: dict[str, int] = {}
        self._dirty: set[str] = set()
        self.currentChanged.connect(self._tab_shown)

    def reset(self, models) -> None:
        """An empty tab for each of ``models``, in training order."""
        self.histories.clear()
        self.best_epoch.clear()
        self._dirty.clear()
        self.figures.clear()
        while self.count():
            w = self.widget(0)
            self.removeTab(0)
            w.deleteLater()
        for arch in models:
            fw = FigureWidget((8, 3.2))
            fw.message(f"{MODEL_LABELS[arch]}: curves appear after its first epoch")
            self.figures[arch] = fw
            self.addTab(fw, MODEL_LABELS[arch])

    def show_model(self, arch: str) -> None:
        """Bring ``arch``'s tab forward (its first batch)."""
        if self.currentWidget() is not self.figures.get(arch):
            self.setCurrentWidget(self.figures[arch])

    def set_history(self, arch: str, hist: list[dict]) -> None:
        """A resumed or finished model's earlier epochs, as the core's event carries them."""
        self.histories[arch] = list(hist)
        if hist:
            self.draw(arch)

    def add_epoch(self, arch: str, epoch: int, metrics: dict) -> None:
        """One finished epoch (a repeated epoch replaces the later ones)."""
        hist = self.histories.setdefault(arch, [])
        hist[:] = [h for h in hist if h["epoch"] < epoch] + [metrics]
        self.best_epoch[arch] = metrics.get("best_epoch", 0)
        self.draw(arch)

    def model_finished(self, arch: str, result: dict) -> None:
        """The model is trained and tested: its tab is ticked, the chosen epoch marked."""
        self.best_epoch[arch] = result.get("best_epoch", 0)
        i = self.indexOf(self.figures[arch])
        if i >= 0:
            self.setTabText(i, f"{MODEL_LABELS[arch]} ✓")
        self.draw(arch)

    def draw(self, arch: str) -> None:
        """Redraw one model's curves, or mark a hidden tab to be drawn when shown."""
        from training.train.plots import draw_curves

        hist = self.histories.get(arch) or []
        fw = self.figures.get(arch)
        if fw is None or not hist:
            return
        if self.currentWidget() is not fw:
            self._dirty.add(arch)
            return
        self._dirty.discard(arch)
        draw_curves(fw.figure, hist, f"{MODEL_LABELS[arch]}: loss and accuracy (train vs validation)",
                    self.best_epoch.get(arch) or None)
        integer_epochs(fw.figure)
        fw.redraw()

    def _tab_shown(self, _index: int) -> None:
        for arch, fw in self.figures.items():
            if fw is self.currentWidget() and arch in self._dirty:
                self.draw(arch)
