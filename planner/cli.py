"""What every entry point shares: one-line argparse errors, number flags shown as typed, and a closed pipe
(`... --json | head`) that ends quietly."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from rich.console import Console

CLOSED_PIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away


class PipeConsole(Console):
    """rich's Console, but a closed pipe ends like any other print: run_main exits 141, not rich's exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


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


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad flags in one line (no usage dump) and exits 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        # argparse says "argument --timeout: ..."; the flag alone reads as every other message does.
        if message.startswith("argument "):
            message = message[len("argument "):]
        self.exit(2, f"{self.prog}: {message}\n")


class Number(float):
    """A number flag: computes as a float, shows as the user typed it (`-1`, `nan`, not `-1.0`, `.nan`)."""

    typed: str


class Whole(int):
    """A whole-number flag: computes as an int, shows as the user typed it (`007`)."""

    typed: str


def _as_typed(kind: type, allowed: str, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not valid; allowed: {allowed}") from None
    value.typed = text.strip()
    return value


def number(text: str) -> Number:
    """argparse type for a number flag; the text is kept for messages (planner.errors.shown)."""
    return _as_typed(Number, "a number", text)


def whole(text: str) -> Whole:
    """argparse type for a whole-number flag; the text is kept for messages (planner.errors.shown)."""
    return _as_typed(Whole, "a whole number", text)
