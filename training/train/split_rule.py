"""How many images of one class go to training, validation and test: the one
rounding rule, torch-free (the wizard shows the sizes before anything runs)."""

from __future__ import annotations


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """(train, val, test) for ``n`` images of one class: validation and test get
    at least one image each, rounded; training gets the rest (never negative)."""
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    return max(0, n - n_val - n_test), n_val, n_test


__all__ = ["split_counts"]
