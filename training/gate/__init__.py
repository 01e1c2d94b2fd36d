"""The lung segmenter and the suitability gate (is this a frontal chest radiograph?) with its calibration."""
