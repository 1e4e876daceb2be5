"""Hub content -> the stack's `jumpstart.resolved` section (planner/jumpstart.py resolved_from_hub), from the recorded
DescribeHubContent document and variants of it; and the container-environment rules (limits, no secrets)."""

from __future__ import annotations

import pytest

from planner.errors import PlanInputError
from planner.stack_config import ResolvedHubContent
from planner.targets.jumpstart import HubContentError, check_environment, eula_url, instance_family, resolved_from_hub
from tests.jumpstart.stacks import (
    EULA_URL,
    IMAGE,
    MODEL_ID,
    NOW,
    PREPACKED,
    hub_document,
    hub_response,
    shipped_document,
    with_document,
)

FIELD = "nemotron-deploy:jumpstart.resolved.environment"


def test_recorded_document_resolves_to_image_prepacked_prefix_and_container_environment():
    section = resolved_from_hub(hub_response(), "ml.p5en.48xlarge", NOW)
    assert section["imageUri"] == IMAGE
    assert section["artifactS3Uri"] == PREPACKED  # the prepacked prefix (it carries the inference code) wins
    assert (section["artifactS3DataType"], section["artifactCompression"]) == ("S3Prefix", "None")
    assert section["hubContentArn"].endswith(f"/Model/{MODEL_ID}/1.0.0")
    assert section["hubContentVersion"] == "1.0.0" and section["recordedAt"] == "2026-12-01T09:30:00Z"
    env = section["environment"]
    assert env["OPTION_TENSOR_PARALLEL_DEGREE"] == "8" and env["OPTION_MAX_MODEL_LEN"] == "131072"
    assert env["ENDPOINT_SERVER_TIMEOUT"] == "3600"  # an int default becomes the string SageMaker takes
    assert "TS_DEFAULT_WORKERS_PER_MODEL" not in env  # scope "algorithm": not a container variable
    assert section["networkIsolation"] is True
    assert section["supportedInstanceTypes"][-1] == "ml.p6-b200.48xlarge"
    ResolvedHubContent.model_validate(section)  # what resolve writes is what the stack schema reads


def test_the_family_variant_overlays_the_environment_per_instance_type():
    h100 = resolved_from_hub(hub_response(), "ml.p5.48xlarge", NOW)["environment"]
    b200 = resolved_from_hub(hub_response(), "ml.p6-b200.48xlarge", NOW)["environment"]
    assert h100["OPTION_MAX_MODEL_LEN"] == "65536"  # ml.p5 family: less HBM, shorter sequences
    assert b200["OPTION_MAX_ROLLING_BATCH_SIZE"] == "32" and b200["OPTION_MAX_MODEL_LEN"] == "131072"
    assert instance_family("ml.p6-b200.48xlarge") == "ml.p6-b200"


def test_an_instance_type_variant_overrides_its_family_and_aliases_resolve():
    document = hub_document()
    other = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.35.0-lmi17.0.0-cu128"
    document["HostingInstanceTypeVariants"]["Aliases"]["gpu_ecr_uri_2"] = other
    document["HostingInstanceTypeVariants"]["Variants"]["ml.p5en.48xlarge"] = {
        "Properties": {"ImageUri": "$gpu_ecr_uri_2", "EnvironmentVariables": {"OPTION_MAX_MODEL_LEN": "262144"}}}
    section = resolved_from_hub(with_document(document), "ml.p5en.48xlarge", NOW)
    assert section["imageUri"] == other
    assert section["environment"]["OPTION_MAX_MODEL_LEN"] == "262144"


def test_snake_case_variant_keys_are_read_too():
    document = hub_document()
    document["HostingInstanceTypeVariants"] = {"aliases": {"img": IMAGE.replace("0.34.0", "0.33.0")},
                                               "variants": {"ml.p5en": {"properties": {"image_uri": "$img"}}}}
    assert "0.33.0" in resolved_from_hub(with_document(document), "ml.p5en.48xlarge", NOW)["imageUri"]


def test_without_a_prepacked_prefix_the_artifact_uri_is_used_as_a_directory():
    document = hub_document()
    del document["HostingPrepackedArtifactUri"]
    document["HostingArtifactUri"] = document["HostingArtifactUri"].rstrip("/")
    section = resolved_from_hub(with_document(document), "ml.p5en.48xlarge", NOW)
    assert section["artifactS3Uri"].endswith("/artifacts/inference/v1.0.0/")


def test_hub_timeouts_are_recorded_as_numbers():
    document = {**hub_document(), "ModelDataDownloadTimeout": "3000", "ContainerStartupHealthCheckTimeout": 2400}
    section = resolved_from_hub(with_document(document), "ml.p5en.48xlarge", NOW)
    assert (section["modelDataDownloadTimeoutS"], section["containerStartupHealthCheckTimeoutS"]) == (3000, 2400)
    assert "modelDataDownloadTimeoutS" not in resolved_from_hub(hub_response(), "ml.p5en.48xlarge", NOW)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: (d.pop("HostingEcrUri"), d.pop("HostingInstanceTypeVariants")), "no HostingEcrUri"),
    (lambda d: (d.pop("HostingArtifactUri"), d.pop("HostingPrepackedArtifactUri")), "nothing to load"),
    (lambda d: d["HostingInstanceTypeVariants"]["Variants"]["ml.p5en"]["Properties"].update(ImageUri="$nope"),
     "$nope names an alias"),
    (lambda d: d.update(ModelDataDownloadTimeout="soon"), "not a number of seconds"),
])
def test_an_unusable_document_is_refused_with_what_it_lacks(change, message):
    document = hub_document()
    change(document)
    with pytest.raises(HubContentError, match=message.replace("$", r"\$")):
        resolved_from_hub(with_document(document), "ml.p5en.48xlarge", NOW)


def test_a_non_model_or_non_json_document_is_refused():
    with pytest.raises(HubContentError, match="not a model"):
        resolved_from_hub({**hub_response(), "HubContentType": "Notebook"}, "ml.p5en.48xlarge", NOW)
    with pytest.raises(HubContentError, match="not JSON"):
        resolved_from_hub({**hub_response(), "HubContentDocument": "{oops"}, "ml.p5en.48xlarge", NOW)


def test_the_shipped_stack_is_exactly_what_resolve_makes_of_the_recorded_document():
    """Reproducible: the stack's resolved section is the recorded document's, marked as an example."""
    shipped = shipped_document()["config"]["nemotron-deploy:jumpstart"]["resolved"]
    again = resolved_from_hub(hub_response(), "ml.p5en.48xlarge", NOW, source="example")
    assert {k: v for k, v in shipped.items() if k != "recordedAt"} == \
        {k: v for k, v in again.items() if k != "recordedAt"}
    assert shipped["source"] == "example"


def test_eula_link_is_readable_over_https():
    section = resolved_from_hub(hub_response(), "ml.p5en.48xlarge", NOW)
    assert eula_url(section["eulaUri"], "us-east-1") == EULA_URL
    assert eula_url("https://example.com/eula", "us-east-1") == "https://example.com/eula"
    assert eula_url(None, "us-east-1") is None


@pytest.mark.parametrize("environment", [
    {"HF_TOKEN": "hf_" + "a" * 34},
    {"NGC_API_KEY": "literal-value"},
    {"DB_PASSWORD": "hunter2"},
    {"EXTRA_ARGS": "--foo nvapi-" + "b" * 30},  # token-shaped under an innocent name
])
def test_a_secret_in_the_container_environment_is_refused_without_repeating_it(environment):
    with pytest.raises(PlanInputError) as caught:
        check_environment(environment, FIELD)
    name = next(iter(environment))
    assert caught.value.field == f"{FIELD}.{name}"
    assert "no secret in the container environment" in caught.value.allowed
    assert environment[name] not in str(caught.value)


@pytest.mark.parametrize(("environment", "message"), [
    ({"1BAD": "x"}, "a variable name matching"),
    ({"OK": "x" * 1025}, "at most 1024 characters"),
    ({f"V{i}": "1" for i in range(101)}, "at most 100 variables"),
])
def test_sagemaker_environment_limits(environment, message):
    with pytest.raises(PlanInputError, match=message):
        check_environment(environment, FIELD)


def test_references_and_ordinary_settings_pass():
    check_environment({"HF_MODEL_ID": "/opt/ml/model", "HF_TOKEN_FILE": "/run/secrets/hf",
                       "API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
                       "OPTION_TENSOR_PARALLEL_DEGREE": "8", "SAGEMAKER_PROGRAM": "inference.py"}, FIELD)
