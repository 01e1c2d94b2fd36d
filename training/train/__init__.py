"""Training: configuration, data, augmentation, the step function, trainers (classifier, model v2, segmenter), run folders and reports."""
