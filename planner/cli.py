"""What every entry point shares when it prints: a closed pipe (`... --json | head`) ends quietly."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

CLOSED_PIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away


def run_main(main: Callable[[], int | None]) -> int:
    """Run an entry point's main(); when the reader of stdout closed the pipe, stop quietly (no traceback)."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return CLOSED_PIPE_STATUS
    return status or 0
