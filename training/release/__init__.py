"""Shipping a model: evaluation on held-out sets, ablation tables, the model card."""
