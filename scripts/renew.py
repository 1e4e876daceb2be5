"""`python -m scripts.renew STACK [--hours N] [--apply]`: decide a stack's expiry, or move it, on purpose.

The expiry lives in one place, `nemotron-deploy:expiresAt` in stacks/Pulumi.<stack>.yaml; every other place follows
it on the next `pulumi up`: the expires-at tag on every resource (what the dead-man switch on each server and the
reaper read), the JumpStart end schedule and the EKS scale-to-zero schedule. `pulumi up` refuses a stack without it,
so a re-run or a merge never extends an evaluation. This writes now + N hours (N defaults to the stack's ttlHours,
at most 168) into the file, keeping its comments, and with `--apply` runs `pulumi up` for the stack at once.

Exit 0 when written (and applied), 1 when `pulumi up` failed or is not installed, 2 on bad input (one line, nothing
written).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from ruamel.yaml import YAML

from planner.cli import OneLineParser, number, run_main
from planner.errors import PlanInputError
from planner.estimates import expires_at, iso_utc
from planner.stack_config import MAX_TTL_HOURS, PROJECT, load_stack, parse_stack
from planner.yamlfile import parse_yaml_text

REPO = Path(__file__).resolve().parent.parent
PROG = "python -m scripts.renew"
KEY = f"{PROJECT}:expiresAt"


def new_text(path: Path, stack: str, expiry: datetime) -> str:
    """The stack file's text with expiresAt set (added after ttlHours when absent); validated before it is returned."""
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    round_trip.indent(mapping=2, sequence=4, offset=2)
    document = round_trip.load(path.read_text())
    config = document["config"]
    value = iso_utc(expiry)
    if KEY in config:
        config[KEY] = value
    else:
        keys = list(config)
        after = keys.index(f"{PROJECT}:ttlHours") + 1 if f"{PROJECT}:ttlHours" in keys else len(keys)
        config.insert(after, KEY, value)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    text = buffer.getvalue()
    parse_stack(stack, parse_yaml_text(text, str(path))["config"], str(path))
    return text


def renew(stacks_dir: Path, stack: str, hours: float | None, now: datetime) -> dict:
    """Write the new expiry into the stack file; the before/after as a dict. PlanInputError on bad input."""
    current = load_stack(stacks_dir, stack)
    hours = current.config.ttl_hours if hours is None else hours
    if not 0 < hours <= MAX_TTL_HOURS:
        raise PlanInputError("--hours", hours, f"more than 0 and at most {MAX_TTL_HOURS} (a week)")
    expiry = expires_at(now, hours)
    path = Path(current.source)
    path.write_text(new_text(path, stack, expiry))
    before = current.config.expires_at
    return {"stack": stack, "path": str(path), "previous": iso_utc(before) if before else None,
            "expires_at": iso_utc(expiry), "hours": hours}


def apply(stack: str, pulumi: str | None = None) -> int:
    """`pulumi up` for the stack: the tags, the dead-man's tag and the end schedules follow the new expiry."""
    binary = pulumi or shutil.which("pulumi")
    if binary is None:
        print(f"{PROG}: the Pulumi CLI is not installed: run `pulumi up -s {stack}` where it is", file=sys.stderr)
        return 1
    done = subprocess.run([binary, "up", "--yes", "--non-interactive", "--skip-preview", "-s", stack], cwd=REPO,
                          check=False)
    if done.returncode:
        print(f"{PROG}: pulumi up -s {stack} failed (exit {done.returncode}); the stack file already holds the new "
              "expiry: fix the cause and run `pulumi up` again", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument("--hours", type=number,
                        help=f"from now (default: the stack's ttlHours; at most {MAX_TTL_HOURS})")
    parser.add_argument("--apply", action="store_true", help="run `pulumi up` for the stack afterwards")
    parser.add_argument("--stacks-dir", type=Path, default=REPO / "stacks")
    parser.add_argument("--now", type=datetime.fromisoformat, help=argparse.SUPPRESS)  # tests
    parser.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # bad flags: one line already printed
        return int(exit_.code or 0)
    now = args.now or datetime.now(UTC)
    if now.tzinfo is None:
        print(f"{PROG}: --now: {args.now.isoformat()!r} is not valid; allowed: a time with a zone", file=sys.stderr)
        return 2
    try:
        result = renew(args.stacks_dir, args.stack, args.hours, now)
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        moved = f"{result['previous']} -> " if result["previous"] else "set to "
        print(f"{args.stack}: expiresAt {moved}{result['expires_at']} ({result['hours']:g} h from now), written to "
              f"{result['path']}")
        if not args.apply:
            print(f"next: `pulumi up -s {args.stack}` moves the tags and end schedules to it (or commit the file and "
                  "let the deploy pipeline do it)")
    return apply(args.stack) if args.apply else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
