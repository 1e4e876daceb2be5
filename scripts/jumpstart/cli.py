"""`python -m scripts.jumpstart resolve|smoke STACK`: record a JumpStart model's hub content in the stack file, and
check a live endpoint with one chat request.

resolve  Without a modelId: ListHubContents(SageMakerPublicHub, Model, NameContains=modelName) lists the family
         (sibling ids carry a precision suffix), the planner fits each on the stack's instance type and the best
         fit is chosen (the stack's precision first) and recorded as modelId. Then
         DescribeHubContent(SageMakerPublicHub, Model, modelId[, modelVersion]) -> the container image, artifact
         prefix, environment and EULA for the stack's instance type, written into `jumpstart.resolved` of
         stacks/Pulumi.<stack>.yaml with the rest of the file (comments included) unchanged, so `pulumi up` is
         reproducible and the change is reviewed like code. `--check` only compares (exit 1 when the hub changed);
         `--from-file` reads a saved DescribeHubContent response instead of calling AWS.
smoke    One OpenAI-style chat request through sagemaker-runtime InvokeEndpoint (or the streaming call with
         `--stream`): prints latency, prompt and completion tokens and the start of the answer.

Exit 0 on success, 1 when AWS or the endpoint failed or the hub content is unusable (or differs, with --check), 2 on
bad input (one line naming the key or flag). Deleting an endpoint is scripts.teardown's job (one deletion path).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ProfileNotFound

from planner.cli import OneLineParser, PipeConsole, number, run_main, whole
from planner.errors import PlanInputError
from planner.stack_config import PROJECT, StackFile, load_stack, stack_path
from scripts.aws import AwsClients, session_for
from scripts.jumpstart.common import PROG, STACKS_DIR, Failure, UsageError
from scripts.jumpstart.endpoint import print_smoke, smoke
from scripts.jumpstart.resolve import print_resolve, resolve


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    res = sub.add_parser("resolve", help="record the hub content in the stack file")
    res.add_argument("stack")
    res.add_argument("--check", action="store_true", help="compare only; exit 1 when the hub content changed")
    res.add_argument("--from-file", type=Path, help="a saved DescribeHubContent JSON response instead of AWS")
    res.add_argument("--json", action="store_true")
    res.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    sm = sub.add_parser("smoke", help="one chat request to the live endpoint")
    sm.add_argument("stack")
    sm.add_argument("--endpoint", help="endpoint name (default nemotron-<stack>)")
    sm.add_argument("--prompt", default="In one sentence: what is a hybrid Mamba-Transformer model?")
    sm.add_argument("--max-tokens", type=whole, default=128)
    sm.add_argument("--stream", action="store_true", help="use InvokeEndpointWithResponseStream")
    sm.add_argument("--wait", type=number, default=0.0, metavar="SECONDS", help="wait this long for InService")
    sm.add_argument("--timeout", type=number, default=300.0, help="seconds for the request itself")
    sm.add_argument("--json", action="store_true")
    sm.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    return parser


def _load(args) -> StackFile:
    stack = load_stack(args.stacks_dir, args.stack)
    if stack.config.target != "jumpstart":
        raise PlanInputError(f"{PROJECT}:target", stack.config.target, "jumpstart (this command is for JumpStart "
                             "stacks)", str(stack_path(args.stacks_dir, args.stack)))
    return stack


def check_smoke_flags(args: argparse.Namespace) -> None:
    """One flag per message, with its value as typed."""
    if not 1 <= args.max_tokens <= 66000:
        raise UsageError(str(PlanInputError("--max-tokens", args.max_tokens, "a whole number from 1 to 66000")))
    if not 0 < args.timeout <= 3600:
        raise UsageError(str(PlanInputError("--timeout", args.timeout, "seconds, more than 0 and at most 3600")))
    if not 0 <= args.wait <= 7200:
        raise UsageError(str(PlanInputError("--wait", args.wait, "seconds from 0 to 7200")))


def main(argv: list[str] | None = None, clients: AwsClients | None = None, now: datetime | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = PipeConsole(highlight=False, width=160)
    try:
        if args.command == "smoke":
            check_smoke_flags(args)
        stack = _load(args)
        if clients is None and not (args.command == "resolve" and args.from_file):
            try:
                clients = AwsClients(session_for(stack.region, stack.aws_profile))
            except ProfileNotFound as err:
                raise UsageError(f"aws:profile / AWS_PROFILE: {err}; allowed: a profile in ~/.aws/config") from None
        if args.command == "resolve":
            result = resolve(stack, clients, now=now or datetime.now(UTC), check=args.check,
                             from_file=args.from_file)
            if args.json:
                print(json.dumps(result.to_json(), indent=2))
            else:
                print_resolve(result, stack.region, console)
            return 1 if args.check and result.changed else 0
        report = smoke(stack, clients, endpoint=args.endpoint, prompt=args.prompt, max_tokens=args.max_tokens,
                       stream=args.stream, wait_s=args.wait, timeout_s=args.timeout,
                       console=None if args.json else console)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_smoke(report, console)
        return 0 if report["ok"] else 1
    except (PlanInputError, UsageError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except Failure as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run_main(main))
