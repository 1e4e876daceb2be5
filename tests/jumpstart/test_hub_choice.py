"""Finding the JumpStart model by name: the hub's matches, fitted by the planner, the stack's precision first.

Pure choice as a table, then `scripts.jumpstart resolve` on a stack without a modelId against a stubbed
ListHubContents + DescribeHubContent (moto implements neither): the chosen id is recorded as modelId.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS
from planner.models import NEMOTRON_3_ULTRA
from planner.stack_config import load_stack
from planner.targets.jumpstart import choose_hub_model, precision_of_hub_id
from scripts.aws import AwsClients
from scripts.jumpstart import main
from tests.jumpstart.stacks import SHIPPED_STACKS_DIR, hub_response

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
FAMILY = "huggingface-llm-nvidia-nemotron-3-ultra-550b-a55b"


def summary(name: str, version: str = "1.0.0") -> dict:
    return {"HubContentName": name, "HubContentArn": f"arn:aws:sagemaker:us-east-1:aws:hub-content/"
            f"SageMakerPublicHub/Model/{name}/{version}", "HubContentVersion": version, "HubContentType": "Model",
            "DocumentSchemaVersion": "2.0.0", "HubContentStatus": "Available",
            "CreationTime": datetime(2026, 6, 10, tzinfo=UTC)}


@pytest.mark.parametrize(("name", "precision"), [
    (f"{FAMILY}-nvfp4", "nvfp4"), (f"{FAMILY}-bf16", "bf16"), (f"{FAMILY}-fp8", "fp8"), (FAMILY, "bf16"),
    (f"{FAMILY}-base-bf16", None), ("huggingface-llm-nvidia-nemotron-3-ultra-genrm", None),
])
def test_the_precision_an_id_names(name, precision):
    assert precision_of_hub_id(name) == precision


def h200_fit(precision: str):
    """One ml.p5en.48xlarge (8x H200), 131,072 tokens x 16, as the shipped stack asks."""
    if precision not in NEMOTRON_3_ULTRA.checkpoints:
        return None
    return plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS["h200"], 8, 1, precision, 131_072, 16), with_alternatives=False)


def test_on_8x_h200_bf16_is_refused_in_numbers_and_nvfp4_chosen():
    matches = [summary(f"{FAMILY}-bf16"), summary(f"{FAMILY}-nvfp4"), summary(f"{FAMILY}-base-bf16")]
    chosen, rows = choose_hub_model(matches, h200_fit, "nvfp4")
    assert chosen.name == f"{FAMILY}-nvfp4" and chosen.max_concurrent_sequences == 192
    by_name = {row.name: row for row in rows}
    assert not by_name[f"{FAMILY}-bf16"].fits
    # 140.4 GiB x 0.9 - 4 GiB reserve (2 GiB + 8,192 tokens x 8,192 x 2 B x 16) = 122.36 GiB; 1,044.0 GiB / 8 = 130.5
    assert "exceed the 122.4 GiB budget by 8.1 GiB" in by_name[f"{FAMILY}-bf16"].reason
    assert by_name[f"{FAMILY}-base-bf16"].precision is None


def test_the_stacks_precision_wins_over_more_sequences():
    matches = [summary(f"{FAMILY}-nvfp4"), summary(f"{FAMILY}-fp8")]
    assert choose_hub_model(matches, h200_fit, "fp8")[0].name == f"{FAMILY}-fp8"
    assert choose_hub_model(matches, h200_fit, "nvfp4")[0].name == f"{FAMILY}-nvfp4"


def test_nothing_that_fits_is_no_choice():
    assert choose_hub_model([summary(f"{FAMILY}-bf16")], h200_fit, "nvfp4")[0] is None
    assert choose_hub_model([], h200_fit, "nvfp4")[0] is None


@pytest.fixture
def stacks(tmp_path) -> Path:
    """The shipped jumpstart stack as a user starts: modelName, no modelId, nothing resolved."""
    (tmp_path / "Pulumi.jumpstart.yaml").write_text((SHIPPED_STACKS_DIR / "Pulumi.jumpstart.yaml").read_text())
    return tmp_path


def hub_clients(listing: list[dict], chosen: str | None) -> tuple[AwsClients, Stubber]:
    client = boto3.Session(region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing").client("sagemaker")
    stub = Stubber(client)
    stub.add_response("list_hub_contents", {"HubContentSummaries": listing},
                      {"HubName": "SageMakerPublicHub", "HubContentType": "Model", "NameContains": "nemotron-3-ultra",
                       "MaxResults": 100})
    if chosen:
        response = hub_response() | {"HubContentName": chosen, "HubContentArn": summary(chosen)["HubContentArn"]}
        stub.add_response("describe_hub_content", response,
                          {"HubName": "SageMakerPublicHub", "HubContentType": "Model", "HubContentName": chosen})
    stub.activate()
    return AwsClients(boto3.Session(region_name="us-east-1"), overrides={"sagemaker": client}), stub


def test_resolve_finds_the_model_by_name_and_records_its_id(stacks, capsys):
    clients, stub = hub_clients([summary(f"{FAMILY}-bf16"), summary(f"{FAMILY}-nvfp4")], f"{FAMILY}-nvfp4")
    assert main(["resolve", "jumpstart", "--stacks-dir", str(stacks)], clients=clients, now=NOW) == 0
    stub.assert_no_pending_responses()
    js = load_stack(stacks, "jumpstart").config.jumpstart
    assert js.model_id == f"{FAMILY}-nvfp4" and js.resolved.hub_content_arn.endswith(f"/{FAMILY}-nvfp4/1.0.0")
    out = capsys.readouterr().out
    assert "hub models matching modelName" in out and "does not fit" in out
    text = (stacks / "Pulumi.jumpstart.yaml").read_text()
    assert "# The model card names the OpenMDW-1.1 licence." in text  # the rest of the file is kept
    assert yaml.safe_load(text)["config"]["nemotron-deploy:jumpstart"]["modelName"] == "nemotron-3-ultra"


def test_resolve_without_a_fitting_match_is_bad_input_and_writes_nothing(stacks, capsys):
    before = (stacks / "Pulumi.jumpstart.yaml").read_text()
    clients, _ = hub_clients([summary(f"{FAMILY}-bf16")], None)
    assert main(["resolve", "jumpstart", "--stacks-dir", str(stacks)], clients=clients, now=NOW) == 2
    err = capsys.readouterr().err
    assert "jumpstart.modelName" in err and "does not fit" in err
    assert (stacks / "Pulumi.jumpstart.yaml").read_text() == before
