"""`python -m scripts.stage_weights`: copy a model revision once into S3 with a checksum manifest, check a staged
copy, and fetch it onto a node.

  python -m scripts.stage_weights SOURCE --to s3://BUCKET/PREFIX [--revision REV] [--concurrency N]
                                  [--part-size-mib N] [--json]
      SOURCE: a local directory, or hf://ORG/NAME (a Hugging Face model repository; --revision picks a branch, tag
      or commit, the manifest records the commit). Resumable: rerun the same command after a kill.
  python -m scripts.stage_weights verify s3://BUCKET/PREFIX [--json]
      the manifest is there and every file it names is listed at its size: exit 0, else 1 with what is missing
  python -m scripts.stage_weights fetch s3://BUCKET/PREFIX --to DIR [--concurrency N] [--chunk-size-mib N] [--json]
  python -m scripts.stage_weights fetch hf://ORG/NAME --to DIR [--revision REV] [--json]  (no S3 copy: the hub)
      every file the manifest names, each sha256-checked, into DIR; the manifest last. Resumable too.

(A local directory named `verify` or `fetch` is given as `./verify`.) Credentials come from the standard chain;
boto3 honours AWS_ENDPOINT_URL. Exit status: 0 done (or complete), 1 an AWS refusal (one line naming the call, the
object and the error code), a checksum mismatch or an incomplete copy, 2 bad input (one line naming the flag and what
is allowed; nothing changed). docs/weights.md says more.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from botocore.config import Config
from botocore.exceptions import ProfileNotFound

from planner.cli import OneLineParser, run_main, whole
from planner.errors import PlanInputError
from scripts.aws import AwsClients, missing_credentials, session_for
from scripts.stage_weights.fetch import DEFAULT_CHUNK_MIB, DEFAULT_CONCURRENCY, MIB, fetch
from scripts.stage_weights.hubfetch import fetch_from_hub
from scripts.stage_weights.locations import PROG, StageError, staged_prefix
from scripts.stage_weights.sources import HUB_SCHEME, open_source
from scripts.stage_weights.stage import stage
from scripts.stage_weights.staged import staged_copy_problems
from scripts.stage_weights.upload import MAX_PART, MIN_PART

DEFAULT_PART_MIB = 64
DEFAULT_UPLOAD_CONCURRENCY = 8  # parts in flight: 8 x 64 MiB held in memory
MOST_CONCURRENCY = 256
COMMANDS = ("verify", "fetch")


def parsers() -> dict[str, argparse.ArgumentParser]:
    staging = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    staging.add_argument("source", metavar="SOURCE", help="a local directory or hf://ORG/NAME")
    staging.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX")
    staging.add_argument("--revision", help="Hugging Face branch, tag or commit; for a directory, a label")
    staging.add_argument("--concurrency", type=whole, default=DEFAULT_UPLOAD_CONCURRENCY, help="parts in flight")
    staging.add_argument("--part-size-mib", type=whole, default=DEFAULT_PART_MIB, help="5 to 5120")
    staging.add_argument("--json", action="store_true", help="one JSON object with the totals, per file too")
    verify = OneLineParser(prog=f"{PROG} verify", description="Is the staged copy complete?")
    verify.add_argument("uri", metavar="s3://BUCKET/PREFIX")
    verify.add_argument("--json", action="store_true", help='{"uri", "complete", "problems"}')
    fetching = OneLineParser(prog=f"{PROG} fetch", description="Fetch a staged copy, checking every sha256.")
    fetching.add_argument("uri", metavar="s3://BUCKET/PREFIX | hf://ORG/NAME")
    fetching.add_argument("--to", required=True, metavar="DIR", type=Path)
    fetching.add_argument("--revision", help="hf:// only: a branch, tag or commit (default main)")
    fetching.add_argument("--concurrency", type=whole, default=DEFAULT_CONCURRENCY, help="ranged GETs in flight")
    fetching.add_argument("--chunk-size-mib", type=whole, default=DEFAULT_CHUNK_MIB, help="bytes per GET, 1 to 1024")
    fetching.add_argument("--json", action="store_true")
    return {"stage": staging, "verify": verify, "fetch": fetching}


def in_range(flag: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise PlanInputError(flag, value, f"a whole number from {low:,} to {high:,}")
    return value


def s3_client(concurrency: int):
    """The S3 client of the scripts' AWS layer, with a connection for each request in flight."""
    clients = AwsClients(session_for(None), config=Config(max_pool_connections=concurrency + 4))
    missing = missing_credentials(clients.session)
    if missing:
        raise StageError(missing)
    return clients.client("s3")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "stage"
    args = parsers()[command].parse_args(argv[1:] if command in COMMANDS else argv)
    try:
        if command == "verify":
            return run_verify(args)
        if command == "fetch":
            return run_fetch(args)
        return run_stage(args)
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except ProfileNotFound as err:
        print(f"{PROG}: AWS_PROFILE: {err}; allowed: a profile in ~/.aws/config", file=sys.stderr)
        return 2
    except StageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1


def run_stage(args: argparse.Namespace) -> int:
    dest = staged_prefix(args.to, "--to")
    concurrency = in_range("--concurrency", args.concurrency, 1, MOST_CONCURRENCY)
    part_mib = in_range("--part-size-mib", args.part_size_mib, MIN_PART // MIB, MAX_PART // MIB)
    source = open_source(args.source, args.revision)
    source.files()  # a bad file name is bad input: found before anything is sent
    s3 = s3_client(concurrency)
    report = stage(source, args.source, dest, s3, part_size=part_mib * MIB, concurrency=concurrency)
    totals = report.to_json()
    if args.json:
        print(json.dumps(totals, indent=1))
    else:
        print(f"staged {totals['files']} files ({totals['total_bytes']:,} bytes) of {report.model}@{report.revision} "
              f"to {report.to}: {totals['bytes_uploaded']:,} bytes sent in {totals['parts_uploaded']} parts, "
              f"{totals['parts_reused']} parts reused, {totals['files_skipped']} files already there")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    staged_prefix(args.uri, "URI")
    problems = staged_copy_problems(s3_client(4), args.uri)
    if args.json:
        print(json.dumps({"uri": args.uri, "complete": not problems, "problems": problems}, indent=1))
    elif problems:
        print("\n".join(problems))
    else:
        print(f"complete: {args.uri} holds every file its manifest names, at its size")
    return 1 if problems else 0


def run_fetch(args: argparse.Namespace) -> int:
    hub = args.uri.startswith(HUB_SCHEME)
    dest = None if hub else staged_prefix(args.uri, "URI")
    concurrency = in_range("--concurrency", args.concurrency, 1, MOST_CONCURRENCY)
    chunk_mib = in_range("--chunk-size-mib", args.chunk_size_mib, 1, 1024)
    if args.to.exists() and not args.to.is_dir():
        raise PlanInputError("--to", str(args.to), "a directory (made when missing)")
    if dest is None:  # straight from the hub (a Spark head without an S3 copy): one file at a time
        source = open_source(args.uri, args.revision)
        report = fetch_from_hub(source, args.to)
    else:
        report = fetch(s3_client(concurrency), dest, args.to, concurrency=concurrency, chunk_size=chunk_mib * MIB)
    totals = report.to_json()
    if args.json:
        print(json.dumps(totals, indent=1))
    else:
        print(f"fetched {report.source} into {report.to}: {report.files} files ({report.total_bytes:,} bytes), "
              f"{report.bytes_downloaded:,} bytes downloaded ({totals['mb_per_s']} MB/s), "
              f"{report.files_skipped} already there; every sha256 checked")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
