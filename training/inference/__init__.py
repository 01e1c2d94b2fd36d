"""The classifier (one pass), its engines and explanations (Grad-CAM, lesion map)."""
