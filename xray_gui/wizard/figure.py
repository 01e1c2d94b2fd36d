"""A matplotlib Figure in a Qt widget (object API only: no pyplot state).

The core's drawing functions (``training.train.plots.draw_curves``,
``draw_confusion``) draw onto ``FigureWidget.figure``; ``redraw()`` shows it.
"""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PySide6.QtWidgets import QSizePolicy, QVBoxLayout, QWidget


class FigureWidget(QWidget):
    def __init__(self, figsize=(7.0, 3.0), parent: QWidget | None = None, *, min_height: int = 200):
        super().__init__(parent)
        self.figure = Figure(figsize=figsize, dpi=90)
        self.figure.set_layout_engine("tight")  # re-laid out at every draw (also after a resize)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(min_height)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)

    def message(self, text: str) -> None:
        """Replace the figure by one line of grey text (nothing to draw yet)."""
        self.figure.clear()
        self.figure.text(0.5, 0.5, text, ha="center", va="center", color="grey", fontsize=11)
        self.redraw()

    def redraw(self) -> None:
        self.canvas.draw_idle()


def integer_epochs(fig: Figure) -> None:
    """Whole-number epoch ticks on every axis of a curves figure."""
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
