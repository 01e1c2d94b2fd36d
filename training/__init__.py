"""Qt-free core of the chest X-ray assistant.

Everything that loads images, builds and stores models, predicts, explains,
trains and reports lives here and never imports Qt.  The desktop app
(``xray_gui``) and the command-line tools call these functions; the name
``training`` is kept from the project card (it also serves inference).
"""

__version__ = "0.1.0"
