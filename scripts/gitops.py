"""Helpers the GitOps workflows call: which stacks a change touches, which deploy on merge, the PR comment.

`python -m scripts.gitops changed-stacks --base origin/main`, `python -m scripts.gitops deployable`,
`python -m scripts.gitops stack-status --backend-stacks stacks.json -- STACK ...`,
`python -m scripts.gitops pr-comment plan.json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from planner.cli import OneLineParser, run_main
from planner.errors import PlanInputError
from planner.stack_config import load_stack, stack_names

REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"
# A change under any of these can alter what every stack declares.
PROGRAM_PATHS = ("planner/", "components/", "__main__.py", "Pulumi.yaml", "requirements.txt", "models/")


def stacks_touched(changed_paths: list[str], all_stacks: list[str]) -> list[str]:
    """The stacks whose preview a change needs: all of them when the program changed, else the edited stack files."""
    if any(p.startswith(PROGRAM_PATHS) for p in changed_paths):
        return list(all_stacks)
    touched = {Path(p).name[len("Pulumi."):-len(".yaml")] for p in changed_paths
               if p.startswith("stacks/Pulumi.") and p.endswith(".yaml")}
    return [s for s in all_stacks if s in touched]


def changed_paths(base: str) -> list[str]:
    out = subprocess.run(["git", "diff", "--name-only", f"{base}...HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [line for line in out.splitlines() if line]


def deployable(stacks_dir: Path) -> list[str]:
    """Stacks marked `nemotron-deploy:autoDeploy: true`: `pulumi up` runs for them on merge to main."""
    return [name for name in stack_names(stacks_dir) if load_stack(stacks_dir, name).config.auto_deploy]


def stack_status(stacks: list[str], backend_stacks: list[dict]) -> list[tuple[str, str]]:
    """(stack, "existing" or "new") for each stack, from `pulumi stack ls --json`: the preview role may not create a
    stack, so a new one is previewed from an empty state instead. The backend may qualify a name
    (`org/nemotron-deploy/h100-pilot` on Pulumi Cloud or a project-scoped S3 backend); its last part is the stack."""
    known = {str(entry["name"]).rsplit("/", 1)[-1] for entry in backend_stacks}
    return [(stack, "existing" if stack in known else "new") for stack in stacks]


def pr_comment(plan_document: dict) -> str:
    """The plan as a Markdown comment a reviewer reads: fit, cost, resources, violations per stack."""
    lines = ["### nemotron-deploy plan", "",
             "| stack | target | servers | fits | layout | $/hour | max spend | resources | violations |",
             "|---|---|---|---|---|---|---|---|---|"]
    details = []
    for entry in plan_document.get("stacks", []):
        fit, cost = entry["fit"], entry["cost"]
        hourly = f"${cost['usd_per_hour']:,.2f}" if cost.get("usd_per_hour") is not None else "n/a"
        spend = f"${cost['max_spend_usd']:,.0f}" if cost.get("max_spend_usd") is not None else "n/a"
        verdict = "yes" if fit["fits"] else "**NO**"
        lines.append(f"| `{entry['stack']}` | {entry['target']} | {entry.get('nodes', 1)}x {entry.get('instance_type')}"
                     f" | {verdict} | {entry.get('layout', {}).get('description', '')} | {hourly} | {spend} | "
                     f"{len(entry['resources'])} | {len(entry['violations'])} |")
        if not fit["fits"] or entry["violations"]:
            details.append(f"<details><summary><code>{entry['stack']}</code></summary>\n")
            details += [f"- {r}" for r in fit["reasons"]]
            details += [f"- violation `{v.get('rule')}` on `{v.get('resource')}`: {v.get('message', '')}"
                        for v in entry["violations"]]
            details.append("\n</details>")
    return "\n".join(lines + [""] + details) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m scripts.gitops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    changed = sub.add_parser("changed-stacks")
    changed.add_argument("--base", required=True, help="git ref the change is compared with, e.g. origin/main")
    sub.add_parser("deployable")
    status = sub.add_parser("stack-status")
    status.add_argument("--backend-stacks", type=Path, required=True, help="output of pulumi stack ls --json")
    status.add_argument("stacks", nargs="*", help="stack names, e.g. from changed-stacks")
    comment = sub.add_parser("pr-comment")
    comment.add_argument("plan_json", type=Path, help="output of python -m scripts.plan --json")
    args = parser.parse_args(argv)
    try:
        if args.command == "changed-stacks":
            print("\n".join(stacks_touched(changed_paths(args.base), stack_names(STACKS_DIR))))
        elif args.command == "deployable":
            print("\n".join(deployable(STACKS_DIR)))
        elif args.command == "stack-status":
            try:
                listed = json.loads(args.backend_stacks.read_text())
                pairs = stack_status(args.stacks, listed)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                print(f"python -m scripts.gitops: --backend-stacks: {str(args.backend_stacks)!r} is not valid; "
                      f"allowed: a file written by pulumi stack ls --json ({exc.__class__.__name__})", file=sys.stderr)
                return 2
            sys.stdout.writelines(f"{stack} {state}\n" for stack, state in pairs)
        else:
            try:
                document = json.loads(args.plan_json.read_text())
            except (OSError, ValueError) as exc:
                print(f"python -m scripts.gitops: plan_json: {str(args.plan_json)!r} is not valid; allowed: a file "
                      f"written by python -m scripts.plan --json ({exc.__class__.__name__})", file=sys.stderr)
                return 2
            sys.stdout.write(pr_comment(document))
    except PlanInputError as err:
        print(f"python -m scripts.gitops: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"python -m scripts.gitops: --base: {args.base!r} is not valid; allowed: a git ref "
              f"({err.stderr.strip()})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
