"""The job tests/test_fault_corpus.py runs on each fault-corpus file, inside a
``training.imaging.decode_guard`` worker process (so a case that hangs costs its time
limit, not the test run).  Importable without pytest."""

from __future__ import annotations

import time


def probe(path: str) -> dict:
    """Load one file; return what happened as plain data."""
    from training.common.errors import ImageRefused
    from training.imaging.loading import load_image

    t0 = time.perf_counter()
    try:
        img = load_image(path)
    except ImageRefused as exc:
        return {"status": "refused", "code": exc.code, "reason": exc.reason, "warnings": [],
                "seconds": time.perf_counter() - t0}
    except BaseException as exc:  # noqa: BLE001 - anything else is a bug the test reports
        return {"status": "error", "code": type(exc).__name__, "reason": str(exc), "warnings": [],
                "seconds": time.perf_counter() - t0}
    return {"status": "ok", "code": "", "reason": "", "shape": tuple(img.pixels.shape),
            "warnings": list(img.warnings), "extra": dict(img.meta.extra),
            "seconds": time.perf_counter() - t0}
