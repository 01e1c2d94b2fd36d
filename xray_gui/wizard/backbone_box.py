"""The Setup page's "ResNet50 backbone starts from" box: Scratch, ImageNet
(whether torchvision's weights are in the torch cache), or a local weights file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
)

INIT_HELP = {
    "scratch": "Random weights. Works offline; from scratch the ResNet50 models need more images and epochs "
               "to come near the paper's accuracy.",
    "imagenet": "Torchvision's ImageNet weights, as Keras starts the paper's ResNet50. Needs the internet or the "
                "torch cache; offline and not cached, training stops with a clear message.",
    "file": "A ResNet50 weights file on this computer: torchvision .pth or .safetensors (a ResNet50 model "
            "file of this app works too).",
}


class BackboneBox(QGroupBox):
    """``choice()`` is ``TrainConfig.init``: "scratch", "imagenet" or the file's path as typed."""

    def __init__(self, parent=None):
        super().__init__("ResNet50 backbone starts from", parent)
        il = QGridLayout(self)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        self.file = QLineEdit()
        self.file.setPlaceholderText("weights file (.pth / .safetensors)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.choose_file)
        self.imagenet_note = QLabel()
        for r, (key, text) in enumerate((("scratch", "Scratch"), ("imagenet", "ImageNet"),
                                         ("file", "Local weights file"))):
            rb = QRadioButton(text)
            rb.setObjectName(f"init_{key}")
            self.group.addButton(rb)
            self.buttons[key] = rb
            help_ = QLabel(INIT_HELP[key])
            help_.setWordWrap(True)
            help_.setStyleSheet("color:#666")
            il.addWidget(rb, 2 * r, 0)
            il.addWidget(help_, 2 * r + 1, 0, 1, 3)
        il.addWidget(self.imagenet_note, 2, 1, 1, 2)
        il.addWidget(self.file, 4, 1)
        il.addWidget(browse, 4, 2)
        il.setColumnStretch(1, 1)
        self.buttons["scratch"].setChecked(True)
        self.group.buttonToggled.connect(lambda *_: self._changed())
        self._changed()

    def _changed(self) -> None:
        self.file.setEnabled(self.buttons["file"].isChecked())

    def file_chosen(self) -> bool:
        return self.buttons["file"].isChecked()

    def choice(self) -> str:
        for key, rb in self.buttons.items():
            if rb.isChecked():
                return self.file.text().strip() if key == "file" else key
        return "scratch"

    def show_cached(self, cached: bool) -> None:
        """Whether torchvision's ImageNet weights are in the torch cache (the probe's answer)."""
        self.imagenet_note.setText("<span style='color:#1a7f37'>found in the torch cache</span>" if cached else
                                   "<span style='color:#9a6700'>not in the torch cache: needs the internet</span>")

    def choose_file(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "ResNet50 weights", str(Path.home()),
                                           "Weights (*.pth *.pt *.safetensors);;All files (*)")
        if f:
            self.file.setText(f)
            self.buttons["file"].setChecked(True)
