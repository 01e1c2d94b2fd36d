"""``python -m xray_gui`` and the ``xray-gui`` console script."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .fatal import guarded  # start-up errors: a log file and a message box, never a vanished window

    args = sys.argv[1:] if argv is None else argv

    def start() -> int:
        from .app import run

        return run(args)

    return guarded(start, args)


if __name__ == "__main__":
    sys.exit(main())
