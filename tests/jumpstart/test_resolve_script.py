"""`python -m scripts.jumpstart resolve`: DescribeHubContent through a botocore Stubber (moto does not implement it;
the Stubber checks our request and the recorded response against the real API model), the stack file rewritten with
everything else kept, --check, --json, and one-line errors with exit 2 on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from planner.stack_config import load_stack
from scripts.aws import AwsClients
from scripts.jumpstart import main
from tests.jumpstart.stacks import (
    HUB_RESPONSE,
    IMAGE,
    MODEL_ID,
    NOW,
    PREPACKED,
    hub_document,
    hub_response,
    plan_of,
    with_document,
)
from tests.jumpstart.stacks import SHIPPED_STACKS_DIR as SHIPPED_DIR

REQUEST = {"HubName": "SageMakerPublicHub", "HubContentType": "Model", "HubContentName": MODEL_ID}


@pytest.fixture
def stacks(tmp_path) -> Path:
    """The shipped jumpstart stack (no resolved section, as a user starts) pinned to the recorded model id."""
    text = (SHIPPED_DIR / "Pulumi.jumpstart.yaml").read_text()
    name_line = "    modelName: nemotron-3-ultra\n"
    text = text.replace(name_line, f"{name_line}    modelId: {MODEL_ID}\n")
    assert MODEL_ID in text
    (tmp_path / "Pulumi.jumpstart.yaml").write_text(text)
    return tmp_path


class Hub:
    """A SageMaker client whose DescribeHubContent answers are stubbed; everything else would fail loudly."""

    def __init__(self):
        self.client = boto3.Session(region_name="us-east-1", aws_access_key_id="testing",
                                    aws_secret_access_key="testing").client("sagemaker")
        self.stub = Stubber(self.client)
        self.stub.activate()
        self.clients = AwsClients(boto3.Session(region_name="us-east-1"), overrides={"sagemaker": self.client})

    def answers(self, response: dict | None = None, request: dict | None = None) -> Hub:
        self.stub.add_response("describe_hub_content", response or hub_response(), request or REQUEST)
        return self

    def refuses(self, code: str, message: str = "") -> Hub:
        self.stub.add_client_error("describe_hub_content", code, message, expected_params=REQUEST)
        return self


def resolve(stacks: Path, hub: Hub, *flags: str) -> int:
    return main(["resolve", "jumpstart", "--stacks-dir", str(stacks), *flags], clients=hub.clients, now=NOW)


def test_resolve_writes_the_section_and_keeps_the_rest_of_the_file(stacks, capsys):
    before = (stacks / "Pulumi.jumpstart.yaml").read_text()
    hub = Hub().answers()
    assert resolve(stacks, hub) == 0
    hub.stub.assert_no_pending_responses()
    after = (stacks / "Pulumi.jumpstart.yaml").read_text()
    assert after.startswith(before)  # comments, order and quoting of everything else untouched
    assert "    # Written by `python -m scripts.jumpstart resolve jumpstart` on 2026-12-01T09:30:00Z (read from " \
           "DescribeHubContent)." in after
    resolved = load_stack(stacks, "jumpstart").config.jumpstart.resolved
    assert resolved.source == "DescribeHubContent" and resolved.image_uri == IMAGE
    assert resolved.artifact_s3_uri == PREPACKED and resolved.environment["OPTION_MAX_MODEL_LEN"] == "131072"
    assert plan_of(stacks, "jumpstart").jumpstart.image.uri == IMAGE  # the program plans what was written
    assert "jumpstart.resolved written" in capsys.readouterr().out


def test_resolving_unchanged_hub_content_again_changes_nothing(stacks, capsys):
    assert resolve(stacks, Hub().answers()) == 0
    first = (stacks / "Pulumi.jumpstart.yaml").read_text()
    capsys.readouterr()
    assert main(["resolve", "jumpstart", "--stacks-dir", str(stacks), "--json"], clients=Hub().answers().clients,
                now=NOW.replace(day=2)) == 0
    assert (stacks / "Pulumi.jumpstart.yaml").read_text() == first  # same content, so not even recordedAt moves
    out = json.loads(capsys.readouterr().out)
    assert (out["changed"], out["written"]) == (False, False)


def test_a_changed_hub_rewrites_the_section_once(stacks):
    assert resolve(stacks, Hub().answers()) == 0
    document = hub_document()
    document["HostingEcrUri"] = IMAGE.replace("0.34.0", "0.35.0")
    document["HostingInstanceTypeVariants"]["Aliases"]["gpu_ecr_uri_1"] = document["HostingEcrUri"]
    assert resolve(stacks, Hub().answers(with_document(document))) == 0
    text = (stacks / "Pulumi.jumpstart.yaml").read_text()
    assert text.count("# Written by `") == 1 and "djl-inference:0.35.0" in text and "0.34.0" not in text


def test_json_output_and_a_pinned_version_is_asked_for(stacks, capsys):
    path = stacks / "Pulumi.jumpstart.yaml"
    path.write_text(path.read_text().replace('modelVersion: "*"', 'modelVersion: "1.0.0"'))
    hub = Hub().answers(request={**REQUEST, "HubContentVersion": "1.0.0"})
    assert resolve(stacks, hub, "--json") == 0
    hub.stub.assert_no_pending_responses()
    out = json.loads(capsys.readouterr().out)
    assert (out["stack"], out["changed"], out["written"]) == ("jumpstart", True, True)
    assert out["resolved"]["hubContentVersion"] == "1.0.0" and out["resolved"]["imageUri"] == IMAGE


def test_check_reports_drift_without_writing(stacks, capsys):
    before = (stacks / "Pulumi.jumpstart.yaml").read_text()
    assert resolve(stacks, Hub().answers(), "--check") == 1  # nothing recorded yet: differs
    assert (stacks / "Pulumi.jumpstart.yaml").read_text() == before
    assert "differs from jumpstart.resolved" in capsys.readouterr().out
    assert resolve(stacks, Hub().answers()) == 0
    assert resolve(stacks, Hub().answers(), "--check") == 0


def test_an_unknown_model_is_bad_input(stacks, capsys):
    assert resolve(stacks, Hub().refuses("ResourceNotFound", "Hub content not found")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"python -m scripts.jumpstart: nemotron-deploy:jumpstart.modelId: '{MODEL_ID}' is not valid; "
                   "allowed: a model id in SageMakerPublicHub (DescribeHubContent: ResourceNotFound)")


def test_access_denied_is_a_failure_not_bad_input(stacks, capsys):
    assert resolve(stacks, Hub().refuses("AccessDeniedException", "not authorized")) == 1
    assert "sagemaker:DescribeHubContent failed: AccessDeniedException: not authorized" in capsys.readouterr().err


def test_an_instance_type_the_hub_does_not_support_is_bad_input(stacks, capsys):
    document = {**hub_document(), "SupportedInferenceInstanceTypes": ["ml.p5.48xlarge"]}
    assert resolve(stacks, Hub().answers(with_document(document))) == 2
    assert ("nemotron-deploy:instanceType: 'ml.p5en.48xlarge' is not valid; allowed: an instance type the hub "
            "supports for") in capsys.readouterr().err


def test_hub_content_with_a_secret_is_refused_and_nothing_is_written(stacks, capsys):
    before = (stacks / "Pulumi.jumpstart.yaml").read_text()
    document = hub_document()
    token = "hf_" + "q" * 34
    document["InferenceEnvironmentVariables"].append({"Name": "HF_TOKEN", "Type": "text", "Default": token,
                                                      "Scope": "container"})
    assert resolve(stacks, Hub().answers(with_document(document))) == 1
    err = capsys.readouterr().err
    assert "is refused" in err and "HF_TOKEN" in err and token not in err
    assert (stacks / "Pulumi.jumpstart.yaml").read_text() == before


def test_an_unusable_document_is_a_failure(stacks, capsys):
    document = hub_document()
    del document["HostingPrepackedArtifactUri"], document["HostingArtifactUri"]
    assert resolve(stacks, Hub().answers(with_document(document))) == 1
    assert "is unusable: no HostingPrepackedArtifactUri or HostingArtifactUri" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["resolve", "nope"], "stack: 'nope' is not valid"),
    (["resolve", "h100-pilot"], "nemotron-deploy:target: 'ec2' is not valid; allowed: jumpstart"),
    (["resolve", "jumpstart", "--from-file", "/nonexistent.json"], "--from-file: '/nonexistent.json' is not valid"),
    (["smoke", "jumpstart", "--max-tokens", "0"], "--max-tokens: 0 is not valid; allowed: a whole number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message, capsys):
    for name in ("jumpstart", "h100-pilot"):
        shutil.copy(SHIPPED_DIR / f"Pulumi.{name}.yaml", tmp_path)
    assert main([*argv, "--stacks-dir", str(tmp_path)], clients=Hub().clients) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_bad_flag_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["resolve", "jumpstart", "--frobnicate"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().startswith("python -m scripts.jumpstart: unrecognized arguments")


def test_from_file_records_an_example_as_an_example(stacks):
    assert main(["resolve", "jumpstart", "--stacks-dir", str(stacks), "--from-file", str(HUB_RESPONSE)],
                now=NOW) == 0
    resolved = yaml.safe_load((stacks / "Pulumi.jumpstart.yaml").read_text())["config"][
        "nemotron-deploy:jumpstart"]["resolved"]
    assert resolved["source"] == "example"
