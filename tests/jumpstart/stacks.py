"""The recorded hub document and variants of the shipped jumpstart stack, shared by the JumpStart tests."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml

from planner.plan import StackPlan, plan_stack
from planner.stack_config import load_stack

REPO = Path(__file__).resolve().parents[2]
SHIPPED_STACKS_DIR = REPO / "stacks"
DATA = Path(__file__).resolve().parent / "data"
# The shipped jumpstart stack carries no resolved section (resolve reads it from the hub). The tests plan it with a
# recorded example section and id added (data/example-resolved.yaml), in a copy of the stacks directory.
EXAMPLE_RESOLVED = DATA / "example-resolved.yaml"
HUB_RESPONSE = DATA / "describe-hub-content.nemotron-3-ultra.json"
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
MODEL_ID = "huggingface-llm-nvidia-nemotron-3-ultra-550b-a55b"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.34.0-lmi16.0.0-cu128"
PREPACKED = f"s3://jumpstart-private-cache-prod-us-east-1/nvidia-llm/{MODEL_ID}/artifacts/inference-prepack/v1.0.0/"
EULA_URL = "https://jumpstart-cache-prod-us-east-1.s3.us-east-1.amazonaws.com/fmhMetadata/eula/nvidiaOpenModelLicense.txt"
NS = "nemotron-deploy:"


def hub_response() -> dict:
    """The recorded DescribeHubContent response as the API returns it (the file's example marker removed)."""
    response = json.loads(HUB_RESPONSE.read_text())
    response.pop("_example", None)
    for key in ("CreationTime", "LastModifiedTime"):
        response[key] = datetime.fromisoformat(response[key].replace("Z", "+00:00"))
    return response


def hub_document() -> dict:
    return json.loads(hub_response()["HubContentDocument"])


def with_document(document: dict, **outer) -> dict:
    """A response carrying another HubContentDocument (and other top-level fields)."""
    return {**hub_response(), "HubContentDocument": json.dumps(document), **outer}


def shipped_document() -> dict:
    """The shipped jumpstart stack with the recorded example resolved section and model id added."""
    document = yaml.safe_load((SHIPPED_STACKS_DIR / "Pulumi.jumpstart.yaml").read_text())
    document["config"][f"{NS}jumpstart"].update(yaml.safe_load(EXAMPLE_RESOLVED.read_text()))
    return document


def _example_stacks_dir() -> Path:
    """A copy of stacks/ whose jumpstart stack holds the example resolved section."""
    folder = Path(tempfile.mkdtemp(prefix="nemotron-jumpstart-stacks-"))
    for path in SHIPPED_STACKS_DIR.glob("Pulumi.*.yaml"):
        shutil.copy(path, folder / path.name)
    (folder / "Pulumi.jumpstart.yaml").write_text(yaml.safe_dump(shipped_document(), sort_keys=False))
    return folder


STACKS_DIR = _example_stacks_dir()


def write_variant(stacks_dir: Path, name: str = "jumpstart", jumpstart: dict | None = None,
                  resolved: dict | None = None, drop_resolved: bool = False, **config) -> str:
    """A copy of the shipped jumpstart stack in stacks_dir: top-level keys, jumpstart keys and resolved keys changed."""
    document = copy.deepcopy(shipped_document())
    cfg = document["config"]
    for key, value in config.items():
        cfg[f"{NS}{key}"] = value
    js = cfg[f"{NS}jumpstart"]
    js.update(jumpstart or {})
    if drop_resolved:
        js.pop("resolved")
    elif resolved:
        js["resolved"] = {**js["resolved"], **resolved}
    (stacks_dir / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return name


def real_resolved(**changes) -> dict:
    """The shipped resolved section as if resolve had read it from the hub (so acceptEula true is allowed)."""
    return {"source": "DescribeHubContent", **changes}


def plan_of(stacks_dir: Path, name: str) -> StackPlan:
    return plan_stack(load_stack(stacks_dir, name), NOW)
