"""Stand-ins for the system tools the boot script calls (mdadm, mount, aws, docker, ...), run as real executables.

Each call is appended to calls.jsonl in FAKE_DIR; answers come from scenario.json there, which a call may change (an
assembled or created array becomes active, a mount makes a mount point). Invoked as `fake_tools.py NAME ARGS...`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FAKE_DIR = Path(os.environ["FAKE_DIR"])
SCENARIO = FAKE_DIR / "scenario.json"


def load() -> dict:
    return json.loads(SCENARIO.read_text())


def save(scenario: dict) -> None:
    SCENARIO.write_text(json.dumps(scenario))


def record(name: str, args: list[str], **extra) -> None:
    with (FAKE_DIR / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps({"tool": name, "args": args, **extra}) + "\n")


def mdadm(args: list[str], s: dict) -> int:
    if args[:2] == ["--detail", "--scan"]:
        for array in s["active"]:
            print(f"ARRAY {array['dev']} metadata=1.2 name={array['name']} UUID=5e1f3c2a:0b9d4e77:8c21aa10:3f6b9e02")
        return 0
    if args[:2] == ["--assemble", "--scan"]:
        found, s["assemblable"] = s["assemblable"], []
        s["active"] += found
        save(s)
        return 0 if found else 2  # mdadm: No arrays found in config file or automatically
    if args[0] == "--examine":
        return 0 if args[1] in s["superblocks"] else 1
    if args[0] == "--create":
        s["active"].append({"dev": args[1], "name": "ip-10-64-3-17:nemotron"})
        s["superblocks"] += [a for a in args if a.startswith("/dev/nvme")]
        save(s)
        return 0
    return 1


def aws(args: list[str], s: dict) -> int:
    if args[:2] == ["secretsmanager", "get-secret-value"]:
        answer = s["secret"][0] if len(s["secret"]) == 1 else s["secret"].pop(0)
        save(s)
        sys.stdout.write(answer.get("stdout", ""))
        sys.stderr.write(answer.get("stderr", ""))
        return answer.get("rc", 0)
    objects = s.get("s3", {})  # s3://bucket/key -> content: what the stand-in S3 holds
    if args[:2] == ["s3", "cp"] and args[-1] == "-":  # an object to stdout
        uri = next(a for a in args[2:] if a.startswith("s3://"))
        if uri not in objects:
            sys.stderr.write(f"fatal error: An error occurred (404) when calling the HeadObject operation: {uri}\n")
            return 1
        sys.stdout.write(objects[uri])
        return 0
    if args[:2] == ["s3", "sync"]:  # S3 to a folder: every object under the prefix, by its relative key
        words = args[2:]
        positional = [a for i, a in enumerate(words)
                      if not a.startswith("-") and (i == 0 or words[i - 1] != "--region")]
        source, target = positional[-2:]
        if source.startswith("s3://"):
            prefix = source.rstrip("/") + "/"
            for uri, content in objects.items():
                if uri.startswith(prefix):
                    path = Path(target) / uri[len(prefix):]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(content)
        return s.get("s3_sync_rc", 0)
    return 0


def main() -> int:
    name, args = sys.argv[1], sys.argv[2:]
    s = load()
    extra = {}
    if name == "docker" and "--env-file" in args:  # what a container would see
        files = [args[i + 1] for i, a in enumerate(args) if a == "--env-file"]
        extra["env_files"] = {f: Path(f).read_text() if Path(f).exists() else None for f in files}
    record(name, args, **extra)
    if name == "mountpoint":
        return 0 if args[-1] in s["mounted"] else 1
    if name == "mount":
        s["mounted"].append(args[-1])
        save(s)
        return 0
    if name == "mdadm":
        return mdadm(args, s)
    if name == "aws":
        return aws(args, s)
    if name == "uptime":
        print(s["booted_at"])
        return 0
    if name == "systemctl" and args[:1] == ["show"]:
        print(s.get("serve_result", "success"))
        return 0
    if name == "ip":
        print(f"2: ens5    inet {s['ipv4']}/20 metric 100 brd 10.64.15.255 scope global dynamic ens5\\"
              "       valid_lft 3000sec preferred_lft 3000sec")
        return 0
    return 0  # mkfs.xfs, sleep, shutdown, docker: recorded only


if __name__ == "__main__":
    sys.exit(main())
