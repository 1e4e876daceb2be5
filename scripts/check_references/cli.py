"""`python -m scripts.check_references [--json] [--timeout S]`: does every external name in planner/references.py
still exist, and is a newer version out? Asks each source online: OCI registries (v2 API), Helm repositories, the
Hugging Face API, the GitHub API, and IAM, SSM, SageMaker and EKS (read-only calls in us-east-1).

Every source host is probed once, all at once, with a 5 s connect timeout: an unreachable host is reported in one
"no network" line and its entries are not asked again, and the whole run stays within --timeout seconds. Needs
NGC_API_KEY for nvcr.io, AWS credentials for the AWS kinds; HF_TOKEN and GITHUB_TOKEN are used when set
(docs/references.md). Exit 0 when every entry is ok, 1 when one is missing, outdated or could not be checked, 2 on
bad flags.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping

import httpx
import yaml
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from rich.console import Console
from rich.table import Table

from planner.__main__ import OneLineParser
from planner.cli import PipeConsole, run_main
from planner.reference_checks import (
    AWS_KINDS,
    ReferenceCheck,
    counts,
    exit_status,
    source_host,
    unchecked,
)
from planner.references import REFERENCES, Reference
from scripts.aws import CALL_FAILURES, AwsClients, describe_error
from scripts.check_references.aws_checks import _aws_host, aws_clients_from_environment, check_aws
from scripts.check_references.http_checks import HTTP_CHECKS, _ngc_key
from scripts.check_references.web import USER_AGENT, Budget, BudgetSpent, Unreachable, Web, _describe

PROG = "python -m scripts.check_references"
DEFAULT_BUDGET_S = 120.0


def check_all(references: Iterable[Reference], web: Web, aws: AwsClients | None, env: Mapping[str, str],
              no_aws_reason: str = "no AWS credentials") -> list[ReferenceCheck]:
    """One row per entry: probe every host first (at once), then ask each reachable source in turn."""
    references = list(references)

    def host_of(reference: Reference) -> str | None:
        if reference.kind in AWS_KINDS:
            return _aws_host(aws, reference) if aws else None
        return source_host(reference) if _ngc_key(reference, env)[0] else None

    web.probe(h for h in map(host_of, references) if h)
    rows = []
    for reference in references:
        host = host_of(reference)
        if reference.kind in AWS_KINDS and aws is None:
            rows.append(unchecked(reference, no_aws_reason))
        elif host in web.unreachable:
            rows.append(unchecked(reference, f"no network: {host} unreachable"))
        elif web.budget.remaining() <= 0:
            rows.append(unchecked(reference, f"time budget of {web.budget.seconds:g} s spent"))
        else:
            rows.append(_check_one(reference, web, aws, env, host))
    return rows


def _check_one(reference: Reference, web: Web, aws: AwsClients | None, env: Mapping[str, str],
               host: str | None) -> ReferenceCheck:
    try:
        if reference.kind in AWS_KINDS and aws is not None:
            return check_aws(aws, reference)
        if reference.kind in HTTP_CHECKS:
            return HTTP_CHECKS[reference.kind](web, reference, env)
        return unchecked(reference, f"no online check for kind {reference.kind!r}")
    except Unreachable as err:
        return unchecked(reference, f"no network: {err.host} unreachable")
    except (EndpointConnectionError, ConnectTimeoutError) as err:
        web.mark(host or "AWS", _describe(err))
        return unchecked(reference, f"no network: {host} unreachable")
    except BudgetSpent as err:
        return unchecked(reference, str(err))
    except (httpx.HTTPError, ValueError, yaml.YAMLError, *CALL_FAILURES) as err:
        return unchecked(reference, describe_error(err) if isinstance(err, CALL_FAILURES) else _describe(err))


def notes(web: Web, rows: list[ReferenceCheck], no_aws_reason: str) -> list[str]:
    """The lines that explain many rows at once: one per unreachable host, one for missing AWS credentials."""
    lines = [f"no network: {host} unreachable ({error})" for host, error in sorted(web.unreachable.items())]
    aws_skipped = [r for r in rows if r.kind in AWS_KINDS and r.detail == no_aws_reason]
    if aws_skipped:
        lines.append(f"{no_aws_reason}: {len(aws_skipped)} IAM/SSM/SageMaker/EKS entries not checked "
                     "(docs/references.md: the read-only role)")
    return lines


def _shown(r: ReferenceCheck) -> str:
    if r.kind == "github-action":
        name, _, sha = r.ref.partition("@")
        return f"{name}@{r.version} ({sha[:12]})"
    return r.ref


def print_table(rows: list[ReferenceCheck], console: Console) -> None:
    table = Table(title="external names (planner/references.py)", title_justify="left")
    for column in ("entry", "kind", "reference", "status", "detail"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "missing": "red", "newer": "yellow", "unchecked": "magenta"}
    for r in rows:
        table.add_row(r.key, r.kind, _shown(r), f"[{style[r.status]}]{r.verdict}[/]", r.detail)
    console.print(table)
    tally = counts(rows)
    console.print(f"{tally['ok']} ok, {tally['missing']} missing, {tally['newer']} with a newer version, "
                  f"{tally['unchecked']} could not be checked")


def main(argv: list[str] | None = None, http: httpx.Client | None = None, aws: AwsClients | None = None,
         environ: Mapping[str, str] | None = None, references: Iterable[Reference] = REFERENCES) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("--json", action="store_true",
                        help='one JSON object {"references": [...], "counts", "unreachable", "notes", "ok"}')
    parser.add_argument("--timeout", type=float, default=DEFAULT_BUDGET_S, metavar="S",
                        help=f"bound on the whole run in seconds (default {DEFAULT_BUDGET_S:g})")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout: {args.timeout:g}; allowed: a number of seconds above 0")
    env = os.environ if environ is None else environ
    no_aws_reason = "no AWS credentials"
    if aws is None:
        aws, no_aws_reason = aws_clients_from_environment()
    client = http or httpx.Client(headers={"User-Agent": USER_AGENT}, trust_env=True)
    web = Web(client, Budget(args.timeout))
    console = PipeConsole(highlight=False, width=160)
    try:
        if args.json or not console.is_terminal:
            rows = check_all(references, web, aws, env, no_aws_reason)
        else:
            with console.status("asking the sources..."):
                rows = check_all(references, web, aws, env, no_aws_reason)
    finally:
        if http is None:
            client.close()
    lines = notes(web, rows, no_aws_reason)
    for line in lines:
        print(f"{PROG}: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps({"references": [r.to_json() for r in rows], "counts": counts(rows),
                          "unreachable": dict(sorted(web.unreachable.items())), "notes": lines,
                          "ok": exit_status(rows) == 0}, indent=2))
    else:
        print_table(rows, console)
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(run_main(main))

