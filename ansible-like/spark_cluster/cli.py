"""What `fab` itself says on a command line it cannot parse: one line naming the word, the tasks or options there are,
and exit 2 (the toolkit's bad-input status), instead of Fabric's "No idea what 'spark.nope' is!" and exit 1.

Fabric's `fab` is Invoke's Program; it loads fabfile.py (where `guard_parse_errors` is called) before it parses the
task names, so the guard wraps the running program's `parse_tasks` and turns a ParseError into Invoke's own Exit,
which the program prints and exits with. Nothing else about Fabric's parsing changes.
"""

from __future__ import annotations

import difflib
import os
import re
import sys

from invoke import Collection
from invoke.exceptions import Exit, ParseError

from planner.cli import CLOSED_PIPE_STATUS

BAD_INPUT = 2
_UNKNOWN = re.compile(r"^No idea what '(?P<word>.*)' is!$")
_NO_VALUE = re.compile(r"^Flag <Argument: (?P<name>[\w-]+)")


def parse_error_line(error: ParseError, collection: Collection) -> str:
    """One line for a ParseError: an unknown task (with the closest and all task names), an unknown option, or
    Fabric's own words for the rest (a flag given without its value, ...)."""
    no_value = _NO_VALUE.match(str(error))
    if no_value and "needed value" in str(error):
        return f"fab: --{no_value.group('name').replace('_', '-')}: needs a value"
    match = _UNKNOWN.match(str(error))
    if not match:
        return f"fab: {str(error)[:300]}"
    word = match.group("word")[:80]
    if word.startswith("-"):
        task = error.context.name if error.context is not None and error.context.name else None
        where = f" of {task}" if task else ""
        show = f"fab --help {task}" if task else "fab --help"
        return f"fab: {word}: unknown option{where}; `{show}` lists the options"
    names = sorted(collection.task_names)
    # Compare the last parts ("lnk" with "link"), so that the shared "spark." does not make every word look close.
    by_leaf = {name.rpartition(".")[2]: name for name in names}
    close = difflib.get_close_matches(word.rpartition(".")[2], list(by_leaf), n=1, cutoff=0.6)
    hint = f"did you mean {by_leaf[close[0]]}? " if close else ""
    return f"fab: {word}: unknown task; {hint}allowed: {', '.join(names)}"


def guard_parse_errors(collection: Collection) -> None:
    """Make the running `fab` answer unparsable command lines with one line and exit 2 (see the module docstring)."""
    try:
        from fabric.main import program
    except ImportError:  # pragma: no cover - fabric is a requirement; imported by something other than fab
        return
    if getattr(program.parse_tasks, "_spark_guard", False):
        return
    parse_tasks = program.parse_tasks

    def guarded() -> None:
        try:
            parse_tasks()
        except ParseError as error:
            raise Exit(parse_error_line(error, collection), code=BAD_INPUT) from error

    guarded._spark_guard = True  # type: ignore[attr-defined]
    program.parse_tasks = guarded
    program.list_tasks = _quiet_on_closed_pipe(program.list_tasks)


def _quiet_on_closed_pipe(list_tasks):
    """`fab --list | head`: the reader went away; stop like every other entry point (no traceback, status 141)."""

    def listed() -> None:
        try:
            list_tasks()
            sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit
            sys.exit(CLOSED_PIPE_STATUS)

    return listed
