"""Networks, model files, the model's lung view, calibration, metrics, model summaries and audit stamps."""
