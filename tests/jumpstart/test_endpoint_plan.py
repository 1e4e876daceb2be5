"""The planner's JumpStart decisions: startup timeouts from the weights' size, the volume decision, autoscaling,
EULA and resolve state warnings, and the checks that refuse a resolved section contradicting the config."""

from __future__ import annotations

import dataclasses

import pytest

from planner.errors import PlanInputError
from planner.hardware import GIB, INSTANCE_TYPES
from planner.stack_config import ResolvedHubContent
from planner.targets.jumpstart import (
    TIMEOUT_MAX_S,
    TIMEOUT_MIN_S,
    endpoint_name_for,
    endpoint_timeouts,
    endpoint_volume,
    partition_of,
)
from tests.jumpstart.stacks import EULA_URL, STACKS_DIR, plan_of, real_resolved, shipped_document, write_variant

SHIPPED_RESOLVED = ResolvedHubContent.model_validate(shipped_document()["config"]["nemotron-deploy:jumpstart"]
                                                     ["resolved"])


def gib(gigabytes: float) -> float:
    return gigabytes * 1e9 / GIB


# weights (GB) -> (download s, startup health check s): 1 GB/s S3, 2 GB/s load + 1,200 s warm-up, x 1.5, 60..3600
@pytest.mark.parametrize(("weights_gb", "download_s", "health_s"), [
    (550, 825, 2213),  # 550B at FP8 (1 B/param)
    (352.3, 528, 2064),  # the shipped stack: NVIDIA's NVFP4 checkpoint as published
    (309.4, 464, 2033),  # NVFP4 (0.5625 B/param)
    (1100, 1650, 2625),  # BF16
    (10, 60, 1808),  # tiny: the download floor of 60 s applies
])
def test_timeouts_follow_the_weights_size(weights_gb, download_s, health_s):
    t = endpoint_timeouts(gib(weights_gb))
    assert (t.download_s, t.startup_health_check_s) == (download_s, health_s)
    assert t.warnings == ()
    assert TIMEOUT_MIN_S <= t.download_s <= TIMEOUT_MAX_S and TIMEOUT_MIN_S <= t.startup_health_check_s <= TIMEOUT_MAX_S


def test_a_derived_timeout_above_3600_is_capped_with_a_warning():
    t = endpoint_timeouts(gib(3000))  # 3 TB: 3,000 s download, 1,500 s load + 1,200 s warm-up; x 1.5
    assert (t.derived_download_s, t.derived_startup_health_check_s) == (4500, 4050)
    assert (t.download_s, t.startup_health_check_s) == (3600, 3600)
    assert len(t.warnings) == 2
    assert t.warnings[0].startswith("ModelDataDownloadTimeoutInSeconds: 4,500 s wanted (3,000 GB of weights) exceeds "
                                    "SageMaker's 3,600 s maximum; capped at 3,600 s")


def test_the_hub_recommendation_is_a_floor_never_a_ceiling():
    resolved = SHIPPED_RESOLVED.model_copy(update={"model_data_download_timeout_s": 1800,
                                                   "container_startup_health_check_timeout_s": 600})
    t = endpoint_timeouts(gib(550), resolved)
    assert (t.download_s, t.startup_health_check_s) == (1800, 2213)  # hub's longer download, our longer startup
    too_long = SHIPPED_RESOLVED.model_copy(update={"model_data_download_timeout_s": 7200})
    assert endpoint_timeouts(gib(550), too_long).download_s == 3600


def test_nvme_instance_types_get_no_volume_size():
    for name in ("ml.p5.48xlarge", "ml.p5e.48xlarge", "ml.p5en.48xlarge", "ml.p6-b200.48xlarge"):
        decision = endpoint_volume(INSTANCE_TYPES[name], gib(550))
        assert decision.size_gb is None
        assert "instance-store NVMe (8x 3.8 TB)" in decision.reason


def test_an_ebs_only_instance_type_gets_weights_plus_headroom_within_512():
    ebs_only = dataclasses.replace(INSTANCE_TYPES["ml.p5.48xlarge"], name="ml.example.48xlarge", nvme="",
                                   nvme_devices=0)
    assert endpoint_volume(ebs_only, gib(100)).size_gb == 140  # 100 x 1.1 + 30
    assert endpoint_volume(ebs_only, gib(438)).size_gb == 512
    with pytest.raises(PlanInputError, match="attaches at most 512 GB"):
        endpoint_volume(ebs_only, gib(550))


def test_shipped_plan_endpoint(tmp_path):
    plan = plan_of(tmp_path, write_variant(tmp_path))
    js = plan.jumpstart
    assert js.endpoint_name == "nemotron-jumpstart"
    assert js.resource_id == "endpoint/nemotron-jumpstart/variant/AllTraffic"
    assert (js.timeouts.download_s, js.timeouts.startup_health_check_s) == (528, 2064)
    assert (js.initial_instance_count, js.min_capacity, js.max_capacity) == (1, 1, 2)
    assert js.target_invocations_per_instance == 11  # 16 sequences x 60 s / 60 s per request x 70%
    assert js.scale_out_cooldown_s == 528 + 2064 and js.scale_in_cooldown_s == 3600
    assert js.volume.size_gb is None and js.accept_eula is False
    assert (js.image.account, js.image.repository) == ("763104351884", "djl-inference")
    assert (js.artifact.bucket, js.artifact.prefix.split("/")[-1]) == ("jumpstart-private-cache-prod-us-east-1",
                                                                        "v1.0.0")
    assert plan.to_json()["jumpstart"]["timeouts"]["model_data_download_timeout_s"] == 528


def test_shipped_plan_warns_about_the_eula_the_example_and_the_scaling_cost(tmp_path):
    plan = plan_of(tmp_path, write_variant(tmp_path))
    assert (f"acceptEula is false: SageMaker will refuse to create the model until you set jumpstart.acceptEula to "
            f"true after reading {EULA_URL}") in plan.warnings
    assert any(w.startswith("jumpstart.resolved is an example recorded on ") for w in plan.warnings)
    assert "autoscaling 1-2 instances: $79.13-$158.26/h (the maximum spend counts the maximum)" in plan.warnings
    assert plan.cost.max_spend_usd == pytest.approx(158.26 * plan.config.ttl_hours)


def test_a_resolved_and_accepted_stack_has_no_eula_or_example_warning(tmp_path):
    plan = plan_of(tmp_path, write_variant(tmp_path, jumpstart={"acceptEula": True}, resolved=real_resolved()))
    assert plan.jumpstart.accept_eula is True
    assert not [w for w in plan.warnings if "acceptEula" in w or "example" in w]


def test_unresolved_plans_without_an_endpoint_and_says_to_resolve(tmp_path):
    plan = plan_of(tmp_path, write_variant(tmp_path, drop_resolved=True))
    assert plan.fit.fits and plan.jumpstart is None
    assert ("hub content not resolved: the program declares no JumpStart resources until you run "
            "`python -m scripts.jumpstart resolve jumpstart`") in plan.warnings
    assert any("after reading the EULA (run resolve to find it)" in w for w in plan.warnings)


@pytest.mark.parametrize(("changes", "field", "allowed"), [
    ({"jumpstart": {"acceptEula": True}}, "nemotron-deploy:jumpstart.acceptEula",
     "cannot accept the EULA of an example"),
    ({"nodes": 2}, "nemotron-deploy:nodes", "nodes is 1 for target jumpstart"),
    ({"jumpstart": {"minCapacity": 3, "maxCapacity": 2}}, "nemotron-deploy:jumpstart.maxCapacity",
     "at least minCapacity"),
    ({"jumpstart": {"acceptEula": "yes please"}}, "nemotron-deploy:jumpstart.acceptEula", "an unquoted YAML boolean"),
    ({"instanceType": "ml.p6-b200.48xlarge"}, "nemotron-deploy:jumpstart.resolved.instanceType",
     "environment is resolved per instance type"),
    ({"jumpstart": {"modelVersion": "2.0.0"}}, "nemotron-deploy:jumpstart.resolved.hubContentVersion",
     "modelVersion 2.0.0: re-run"),
    ({"jumpstart": {"modelId": "huggingface-llm-other"}}, "nemotron-deploy:jumpstart.resolved.hubContentArn",
     "hub content of modelId huggingface-llm-other"),
    ({"resolved": {"supportedInstanceTypes": ["ml.p5.48xlarge"]}}, "nemotron-deploy:instanceType",
     "an instance type the hub supports"),
    ({"resolved": {"imageUri": "763104351884.dkr.ecr.us-west-2.amazonaws.com/djl-inference:1"}},
     "nemotron-deploy:jumpstart.resolved.imageUri", "region us-east-1"),
    ({"resolved": {"environment": {"HF_TOKEN": "hf_" + "x" * 34}}},
     "nemotron-deploy:jumpstart.resolved.environment.HF_TOKEN", "no secret in the container environment"),
    ({"resolved": {"artifactS3Uri": "https://bucket/x"}}, "nemotron-deploy:jumpstart.resolved.artifactS3Uri",
     "an S3 URI such as"),
    ({"jumpstart": {"vpc": {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-0123456789abcdef0"]}}},
     "nemotron-deploy:jumpstart.vpc.subnetIds", "subnet ids such as"),
])
def test_contradictions_are_one_clear_error_naming_the_key(tmp_path, changes, field, allowed):
    changes = dict(changes)
    name = write_variant(tmp_path, jumpstart=changes.pop("jumpstart", None), resolved=changes.pop("resolved", None),
                         **changes)
    with pytest.raises(PlanInputError) as caught:
        plan_of(tmp_path, name)
    assert caught.value.field == field
    assert allowed in caught.value.allowed
    assert caught.value.source.endswith(f"Pulumi.{name}.yaml")


def test_container_settings_that_disagree_with_the_plan_are_warnings(tmp_path):
    env = {**SHIPPED_RESOLVED.environment, "OPTION_TENSOR_PARALLEL_DEGREE": "4", "OPTION_MAX_MODEL_LEN": "65536"}
    plan = plan_of(tmp_path, write_variant(tmp_path, resolved={"environment": env}))
    assert ("the container's OPTION_TENSOR_PARALLEL_DEGREE=4 differs from the plan's tensor parallel 8 on 8 GPUs: the "
            "fit figures assume TP 8") in plan.warnings
    assert ("the container serves at most 65,536 tokens per sequence (OPTION_MAX_MODEL_LEN) but contextTokens is "
            "131,072: longer requests are refused") in plan.warnings


def test_the_fit_uses_the_ec2_arithmetic_and_refuses_what_cannot_load(tmp_path):
    """ml.p5.48xlarge is 8x H100 like p5.48xlarge: the same verdict and numbers; BF16 does not fit on one."""
    sm = plan_of(tmp_path, write_variant(tmp_path, instanceType="ml.p5.48xlarge", contextTokens=65536, concurrency=8,
                                         resolved={"instanceType": "ml.p5.48xlarge"}))
    ec2 = plan_of(STACKS_DIR, "h100-pilot")  # p5.48xlarge, nvfp4: the same weights and free memory per GPU
    assert sm.fit.fits and sm.fit.weights_gib == ec2.fit.weights_gib
    assert sm.fit.per_gpu_free_gib == ec2.fit.per_gpu_free_gib
    bf16 = plan_of(tmp_path, write_variant(tmp_path, instanceType="ml.p5.48xlarge", precision="bf16",
                                           resolved={"instanceType": "ml.p5.48xlarge"}))
    assert not bf16.fit.fits and bf16.jumpstart is None
    assert bf16.fit.reasons[0].startswith("weights: nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16 is 1,121.0 GB as "
                                          "published = 1,044.0 GiB")
    assert bf16.fit.reasons[0].endswith("per GPU over TP 8 x PP 1 = 130.5 GiB")


def test_names_and_partitions():
    assert endpoint_name_for("jumpstart") == "nemotron-jumpstart"
    assert endpoint_name_for("my_stack.v2") == "nemotron-my-stack-v2"
    assert len(endpoint_name_for("x" * 100)) == 63
    assert (partition_of("us-east-1"), partition_of("cn-north-1"), partition_of("us-gov-west-1")) == \
        ("aws", "aws-cn", "aws-us-gov")
