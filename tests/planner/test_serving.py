"""The one serving renderer: vLLM argv and NIM environment from a fitted plan."""

import json

import pytest

from planner.errors import PlanInputError
from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS
from planner.models import NEMOTRON_3_ULTRA, Checkpoint
from planner.serving import ServingOptions, render_nim, render_vllm


def fitted(gpu="h100", gpus_per_node=8, nodes=1, precision="fp8", context=65536, concurrency=8):
    return plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS[gpu], gpus_per_node, nodes, precision, context, concurrency))


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_single_node_fp8_argv():
    cmd = render_vllm(fitted())
    argv = list(cmd.argv)
    # NVIDIA publishes no FP8 checkpoint: FP8 is the community one, and the plan says so
    assert argv[:3] == ["vllm", "serve", "RedHatAI/NVIDIA-Nemotron-3-Ultra-550B-A55B-FP8-Dynamic"]
    assert any("not published by the model's authors" in w for w in cmd.warnings)
    assert flag(argv, "--tensor-parallel-size") == "8"
    assert "--pipeline-parallel-size" not in argv
    assert "--enable-expert-parallel" in argv
    assert flag(argv, "--kv-cache-dtype") == "fp8"
    assert flag(argv, "--mamba-ssm-cache-dtype") == "float32"
    assert flag(argv, "--max-model-len") == "65536"
    assert flag(argv, "--max-num-seqs") == "8"
    assert flag(argv, "--gpu-memory-utilization") == "0.9"
    assert json.loads(flag(argv, "--speculative-config")) == {"method": "mtp", "num_speculative_tokens": 3}
    assert flag(argv, "--reasoning-parser") == "nemotron_v3"
    assert flag(argv, "--tool-call-parser") == "qwen3_coder" and "--enable-auto-tool-choice" in argv
    assert "--distributed-executor-backend" not in argv
    assert "--api-key" not in argv and cmd.secret_env == ("VLLM_API_KEY",)
    assert "--mamba-backend" not in argv and "--moe-backend" not in argv  # defaults: triton; Marlin on Hopper
    assert cmd.env == {}


def test_two_node_bf16_uses_pp_and_ray():
    cmd = render_vllm(fitted(nodes=2, precision="bf16"))
    assert any("MTP speculative decoding under pipeline parallel (PP 2)" in w for w in cmd.warnings)
    assert not any("MTP" in w for w in render_vllm(fitted(nodes=2, precision="bf16"), ServingOptions(mtp_tokens=0))
                   .warnings)
    argv = list(cmd.argv)
    assert argv[2].endswith("-BF16")
    assert flag(argv, "--pipeline-parallel-size") == "2"
    assert flag(argv, "--distributed-executor-backend") == "ray"


def test_data_parallel_across_nodes_places_replicas_with_ray():
    # Only the head runs `vllm serve`; vLLM's default mp backend would start both TP-8 replicas on its 8 GPUs.
    fit = plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS["h100"], 8, 2, "fp8", 65536, 8, tensor_parallel=8,
                              pipeline_parallel=1))
    argv = list(render_vllm(fit).argv)
    assert flag(argv, "--data-parallel-size") == "2"
    assert flag(argv, "--data-parallel-backend") == "ray"
    single = list(render_vllm(plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS["b200"], 8, 1, "nvfp4", 65536, 8,
                                                  tensor_parallel=4))).argv)
    assert flag(single, "--data-parallel-size") == "2" and "--data-parallel-backend" not in single


def test_every_vllm_command_carries_the_api_key_middleware_for_all_paths():
    # vLLM checks VLLM_API_KEY only under /v1 (vllm#58144): the argv loads a module that guards every path, and the
    # command carries that module for the target to install.
    for cmd in (render_vllm(fitted()), render_vllm(fitted(nodes=2, precision="bf16"))):
        assert cmd.argv[-2:] == ("--middleware", "nemotron_auth.require_api_key")
        assert list(cmd.modules) == ["nemotron_auth.py"]
        assert "async def require_api_key(request, call_next)" in cmd.modules["nemotron_auth.py"]
        assert cmd.to_json()["modules"] == ["nemotron_auth.py"]


@pytest.mark.parametrize(("gpu", "gpus_per_node", "nodes", "backend"), [
    ("b200", 8, 1, "flashinfer_trtllm"),  # what VLLM_FLASHINFER_MOE_BACKEND=latency meant on SM100
    ("gb10", 1, 4, "flashinfer_cutlass"),  # SM121 has no TRTLLM-GEN NVFP4 kernels
    ("h100", 8, 1, None),  # no FP4 math: weight-only, vLLM picks Marlin itself
])
def test_nvfp4_picks_the_fp4_moe_kernels_with_the_flag_vllm_033_has(gpu, gpus_per_node, nodes, backend):
    cmd = render_vllm(fitted(gpu=gpu, gpus_per_node=gpus_per_node, nodes=nodes, precision="nvfp4", context=32768,
                             concurrency=4))
    argv = list(cmd.argv)
    assert (flag(argv, "--moe-backend") if "--moe-backend" in argv else None) == backend
    # gone since vLLM 0.23 (it only warns about unknown variables): never rendered
    assert not any(name.startswith("VLLM_USE_FLASHINFER_MOE") or name == "VLLM_FLASHINFER_MOE_BACKEND"
                   for name in cmd.env)


def test_long_context_allows_long_max_model_len():
    cmd = render_vllm(fitted(gpu="h200", context=1_000_000, concurrency=4))
    assert cmd.env["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] == "1"


def test_mtp_off_and_a_real_flag_through_extra_args_passes_without_warning():
    cmd = render_vllm(fitted(), ServingOptions(mtp_tokens=0, extra_args=("--mamba-backend", "flashinfer")))
    assert "--speculative-config" not in cmd.argv
    assert cmd.argv[-4:] == ("--mamba-backend", "flashinfer", "--middleware", "nemotron_auth.require_api_key")
    assert not any("--mamba-backend" in w for w in cmd.warnings)  # a real vLLM flag (checked by make check-vllm)


@pytest.mark.parametrize(("extra", "message"), [
    (("--api-key", "sk-123"), "no secrets on the command line"),
    (("--tensor-parallel-size", "4"), "change tensorParallel"),
    (("--max-model-len=8192",), "change contextTokens"),
    (("--middleware", "my.mw"), "flags the planner does not set"),
    (("--moe-backend", "triton"), "change precision/instanceType"),
])
def test_extra_args_cannot_carry_secrets_or_override_the_planner(extra, message):
    with pytest.raises(PlanInputError, match=message):
        render_vllm(fitted(), ServingOptions(extra_args=extra))


def test_a_plan_that_does_not_fit_renders_no_command():
    with pytest.raises(PlanInputError, match="does not fit"):
        render_vllm(fitted(precision="bf16"))


def test_nvfp4_on_hopper_serves_nvidias_checkpoint_without_blackwell_kernel_switches():
    cmd = render_vllm(fitted(precision="nvfp4", context=262144, concurrency=16))
    assert cmd.argv[2] == "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4"
    assert "--quantization" not in cmd.argv and cmd.env == {}
    assert not cmd.warnings  # an NVIDIA checkpoint, weight-only on Hopper (a fit warning, not a serving one)


def test_nim_refuses_a_precision_it_has_no_profile_for():
    with pytest.raises(PlanInputError, match="allowed: bf16, nvfp4 for engine nim"):
        render_nim(fitted(gpu="h200", precision="fp8"))


def test_nim_pins_its_profile_and_names_the_leader_across_nodes():
    single = render_nim(fitted(gpu="h200", precision="nvfp4"))
    assert single.env["NIM_MODEL_PROFILE"] == "vllm-nvfp4-tp8-pp1"
    assert "NIM_MULTI_NODE" not in single.env
    two = render_nim(fitted(gpu="h200", nodes=2, precision="nvfp4"))
    assert two.env["NIM_MODEL_PROFILE"] == "vllm-nvfp4-tp8-pp2"
    assert (two.env["NIM_MULTI_NODE"], two.env["NIM_LEADER_IP_ADDRESS"]) == ("1", "$(LWS_LEADER_ADDRESS)")
    assert render_nim(fitted(gpu="h200", precision="nvfp4"),
                      ServingOptions(nim_model_profile="abc123")).env["NIM_MODEL_PROFILE"] == "abc123"


def test_nim_environment():
    nim = render_nim(fitted(gpu="h200", nodes=2, precision="bf16"))
    assert nim.env["NIM_TENSOR_PARALLEL_SIZE"] == "8"
    assert nim.env["NIM_PIPELINE_PARALLEL_SIZE"] == "2"
    assert nim.env["NIM_NUM_COMPUTE_NODES"] == "2"
    assert nim.env["NIM_MAX_MODEL_LEN"] == "65536"
    assert nim.env["NIM_CACHE_PATH"] == "/opt/nim/.cache"
    assert "--mamba-ssm-cache-dtype float32" in nim.env["NIM_PASSTHROUGH_ARGS"]
    assert "NGC_API_KEY" not in nim.env and nim.secret_env == ("NGC_API_KEY",)


def test_fp8_without_fp8_checkpoint_quantizes_bf16_online():
    from dataclasses import replace

    bf16_only = replace(NEMOTRON_3_ULTRA, checkpoints={"bf16": Checkpoint("org/model-BF16", "bf16", "unspecified")})
    # vLLM allocates each layer in BF16 before quantizing it: the peak is the BF16 shard, 1,024.5 GiB / 8 = 128.1 GiB
    # per GPU, over 140.4 GiB x 0.9 on one 8x H200 node: refused in numbers
    with pytest.raises(PlanInputError, match=r"needs 128\.1 GiB per GPU at its peak"):
        render_vllm(plan_fit(FitRequest(bf16_only, GPUS["h200"], 8, 1, "fp8", 8192, 1)))
    # over two nodes (PP 2) the BF16 shard is 64.0 GiB: quantized while loading
    fit = plan_fit(FitRequest(bf16_only, GPUS["h200"], 8, 2, "fp8", 8192, 1))
    cmd = render_vllm(fit)
    assert cmd.argv[2] == "org/model-BF16"
    assert flag(list(cmd.argv), "--quantization") == "fp8"
