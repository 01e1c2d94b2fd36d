"""Names and constants shared by the core and the GUI, without importing torch
(the GUI builds its pages on the GUI thread, where importing torch would stall
the window).  The core's modules import them from here; nothing is copied."""

from __future__ import annotations

ARCHITECTURES = ("resnet50", "lstm", "resnet50_lstm")
ARCH_LABELS = {"resnet50": "ResNet50", "lstm": "LSTM", "resnet50_lstm": "ResNet50-LSTM"}
CLASS_NAMES = ["Normal", "COVID"]  # the paper: Normal = 0, COVID = 1
POSITIVE = "COVID"
MIN_PER_CLASS = 5  # below this an 80/10/10 split leaves a class out of val or test
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")  # what the core accepts (also "cuda:N")
APP_DEVICES = ("auto", "cuda", "cpu")  # what the app offers
# the network's precision on the CPU (training.inference.engine_fast): fp32, or the validated int8 fast mode
PRECISION_LABELS = {"fp32": "Full precision (fp32)",
                    "fast": "Fast (int8) where this computer's CPU and the model file support it, else fp32"}
DEVICE_LABELS = {"auto": "Automatic (GPU when available, else CPU)", "cuda": "NVIDIA GPU (CUDA)",
                 "mps": "Apple GPU (MPS)", "cpu": "CPU"}

__all__ = ["ARCHITECTURES", "ARCH_LABELS", "CLASS_NAMES", "POSITIVE", "MIN_PER_CLASS", "DEVICE_CHOICES", "APP_DEVICES",
           "DEVICE_LABELS"]

APP_NAME = "Chest X-ray Assistant"  # the program, in window titles, reports and audit rows
