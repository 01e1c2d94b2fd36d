"""The numbers the paper reports (Uly, Hendry, Iriani 2023; see
../shared/paper/METHOD.md), for side-by-side reports.  Keys are our
architecture names."""

PAPER_CITATION = ("Uly, Hendry, Iriani, \"CNN-RNN Hybrid Model for Diagnosis of COVID-19 on X-Ray Imagery\", "
                  "Jurnal Teknologi Informasi dan Komunikasi 14(1), 2023")

# Table 2: best epoch, train vs validation
TABLE2 = {
    "resnet50": {"train_loss": 0.5702, "train_acc": 0.7800, "val_loss": 0.5473, "val_acc": 0.8600},
    "lstm": {"train_loss": 0.5090, "train_acc": 0.7650, "val_loss": 0.5446, "val_acc": 0.7400},
    "resnet50_lstm": {"train_loss": 0.2938, "train_acc": 0.9150, "val_loss": 0.3150, "val_acc": 0.9100},
}

# Tables 3-5: confusion matrices on 100 test images (COVID positive)
CONFUSION = {
    "resnet50": {"tp": 47, "fn": 3, "fp": 4, "tn": 46},
    "lstm": {"tp": 42, "fn": 8, "fp": 8, "tn": 42},
    "resnet50_lstm": {"tp": 47, "fn": 3, "fp": 2, "tn": 48},
}

# Table 6: test metrics
TABLE6 = {
    "resnet50": {"accuracy": 0.93, "precision": 0.92, "recall": 0.94, "f1": 0.93},
    "lstm": {"accuracy": 0.84, "precision": 0.84, "recall": 0.84, "f1": 0.84},
    "resnet50_lstm": {"accuracy": 0.95, "precision": 0.96, "recall": 0.94, "f1": 0.95},
}
