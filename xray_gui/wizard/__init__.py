"""The in-app training wizard (Tools → Train models…): one page per file,
over the core's ``training.train.trainer.train_events``.  See docs/WIZARD.md."""

from .wizard import TrainingWizard, open_wizard

__all__ = ["TrainingWizard", "open_wizard"]
