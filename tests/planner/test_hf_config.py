"""Hugging Face config.json as input (planner/hf_config.py), against real configs (tests/planner/data/hf/README.md).

Each config has hand arithmetic here, computed apart from the planner: its parameter count against the published total
(within a stated tolerance), its KV bytes per token, and a fit verdict on a given GPU set with the memory counted by
hand: weights + KV and state of the requested sequences + a runtime reserve between 2 and 6 GiB must stay under
GPU memory x 0.9 for "fits", and the weights alone must exceed it for "does not fit".
"""

import json
from pathlib import Path

import pytest

from planner.__main__ import main
from planner.errors import PlanInputError
from planner.fit import FitRequest, kv_cache_bytes_per_sequence, kv_cache_bytes_per_token, plan_fit
from planner.hardware import GPUS
from planner.hf_config import checkpoint_precision, load_model_or_config, model_from_hf_config

HF = Path(__file__).resolve().parent / "data" / "hf"
GIB = 2**30

# config, published total (B), tolerance, published active (B) or None, hand-computed total (B, 2 decimals)
PARAMS = [
    # Llama-3.1-8B: 32 x (attention 41,943,040 + MLP 3 x 4,096 x 14,336 + norms 8,192) + 2 x 128,256 x 4,096 + 4,096
    ("llama-3.1-8b", 8.03, 0.005, None, 8.03),
    # Qwen3-30B-A3B: 48 x (attention 2 x 2,048 x 4,096 + 2 x 2,048 x 512 + q/k norm 256 + 128 experts x 3 x 2,048 x 768
    # + router 2,048 x 128 + norms) + 2 x 151,936 x 2,048; active with 8 experts: 3.35B (published 3.3B)
    ("qwen3-30b-a3b", 30.5, 0.01, 3.3, 30.53),
    # Mixtral-8x7B: 32 x (attention 41.9M + 8 x 3 x 4,096 x 14,336 + router) + 2 x 32,000 x 4,096; active 2 experts
    ("mixtral-8x7b", 46.7, 0.005, 12.9, 46.70),
    # DeepSeek-V3: 61 MLA layers (187.1M attention each), 3 dense (3 x 7,168 x 18,432), 58 MoE (256 + 1 shared experts
    # x 3 x 7,168 x 2,048); published 671B without the 14B MTP module; active 37B
    ("deepseek-v3", 671.0, 0.005, 37.0, 671.03),
    # gemma-3-27b-it: 62 x (66.1M attention + 3 x 5,376 x 21,504 + 4 norms) + 262,208 x 5,376 (tied) + SigLIP 0.42B
    # (published 27.4B on the model card's safetensors count)
    ("gemma-3-27b-it", 27.4, 0.01, None, 27.43),
    # gpt-oss-120b: 36 x (attention 26.5M with biases and sinks + 128 experts x 24.9M + router) + 2 x 201,088 x 2,880;
    # published 116.8B total; 5.1B active is counted without the input embedding (0.58B): 5.71 - 0.58 = 5.13
    ("gpt-oss-120b", 116.8, 0.005, 5.1 + 201_088 * 2880 / 1e9, 116.83),
    # Nemotron-3-Nano-30B-A3B: 23 Mamba2 (38.7M), 6 attention (23.4M), 23 MoE (128 x 2 x 2,688 x 1,856 + shared
    # 2 x 2,688 x 3,712 + router) + 2 x 131,072 x 2,688; published 31.6B; active 3.2B without the input embedding
    ("nemotron-3-nano-30b-a3b", 31.6, 0.005, 3.2 + 131_072 * 2688 / 1e9, 31.58),
]

# config, KV dtype, hand-computed KV bytes per token (whole model, every attention layer)
KV = [
    ("llama-3.1-8b", "bf16", 32 * 2 * 8 * 128 * 2),  # 131,072
    ("qwen3-30b-a3b", "bf16", 48 * 2 * 4 * 128 * 2),  # 98,304
    ("mixtral-8x7b", "fp8", 32 * 2 * 8 * 128),  # 65,536
    ("deepseek-v3", "bf16", 61 * (512 + 64) * 2),  # 70,272: MLA latent + rope key
    ("gemma-3-27b-it", "bf16", 62 * 2 * 16 * 128 * 2),  # 507,904 while inside every window
    ("gpt-oss-120b", "fp8", 36 * 2 * 8 * 64),  # 36,864 while inside every window
    ("nemotron-3-nano-30b-a3b", "fp8", 6 * 2 * 2 * 128),  # 3,072: only the 6 attention layers
]

# config, GPU, GPUs per node, precision (None: the config's own), context, concurrency, hand-computed bytes, fits
# bytes = weights on the largest GPU + concurrency x (KV + state) per GPU; see each line
VERDICTS = [
    # 8.03B x 2 B = 16.06 GB; 16 x 8,192 tokens x 65,536 B (fp8) = 8 GiB: 23 GiB on an 80 GB H100
    ("llama-3.1-8b", "h100", 1, None, 8192, 16, 8.03026e9 * 2 + 16 * 8192 * 65_536, True),
    # 30.53B x 2 B = 61.06 GB = 56.9 GiB; 4 x 32,768 x 49,152 B = 6 GiB
    ("qwen3-30b-a3b", "h100", 1, None, 32_768, 4, 30.5321e9 * 2 + 4 * 32_768 * 49_152, True),
    # 46.70B x 2 B = 87.0 GiB: more than one H100 holds
    ("mixtral-8x7b", "h100", 1, None, 4096, 1, 46.7028e9 * 2, False),
    # over TP 2: 43.5 GiB per GPU + 8 x 32,768 x 32,768 B (4 of 8 KV heads per GPU, fp8) = 8 GiB
    ("mixtral-8x7b", "h100", 2, None, 32_768, 8, 46.7028e9 * 2 / 2 + 8 * 32_768 * 32_768, True),
    # FP8 (669.17B x 1 B + 1.85B embeddings and LM head x 2 B) / 8 = 78.3 GiB per H100: over 71.6 GiB
    ("deepseek-v3", "h100", 8, None, 4096, 1, (669.173e9 + 1.853e9 * 2) / 8, False),
    # on 8 H200: 78.3 GiB + 16 x 32,768 x 35,136 B (the latent on every GPU) = 17.2 GiB
    ("deepseek-v3", "h200", 8, None, 32_768, 16, (669.173e9 + 1.853e9 * 2) / 8 + 16 * 32_768 * 35_136, True),
    # BF16 27.43B x 2 = 51.1 GiB; 8 x (52 x 1,024 + 10 x 32,768) x 4,096 B = 11.6 GiB (62 full layers: 62 GiB)
    ("gemma-3-27b-it", "h100", 1, None, 32_768, 8,
     27.4324e9 * 2 + 8 * (52 * 1024 + 10 * 32_768) * 4096, True),
    # MXFP4 114.70B x 0.53125 B + 2.13B x 2 B = 60.7 GiB; 2 x (18 x 128 + 18 x 131,072) x 1,024 B = 4.5 GiB
    ("gpt-oss-120b", "h100", 1, None, 131_072, 2,
     114.702e9 * 0.53125 + 2.1276e9 * 2 + 2 * (18 * 128 + 18 * 131_072) * 1024, True),
    # the same with 8 sequences: 18.0 GiB of KV over the 60.7 GiB of weights
    ("gpt-oss-120b", "h100", 1, None, 131_072, 8,
     114.702e9 * 0.53125 + 2.1276e9 * 2 + 8 * (18 * 128 + 18 * 131_072) * 1024, False),
    # 31.58B x 2 B = 58.8 GiB; 8 x (131,072 x 3,072 B + 23 x 2,134,016 B Mamba2 state) = 3.4 GiB
    ("nemotron-3-nano-30b-a3b", "h100", 1, None, 131_072, 8,
     31.5779e9 * 2 + 8 * (131_072 * 3072 + 23 * 2_134_016), True),
]


def _load(name):
    return load_model_or_config(str(HF / f"{name}.json"))


@pytest.mark.parametrize(("name", "published", "tolerance", "active", "computed"), PARAMS, ids=lambda v: str(v))
def test_parameter_count_is_computed_within_tolerance(name, published, tolerance, active, computed):
    model = _load(name)
    assert round(model.total_params_b, 2) == computed
    assert abs(model.total_params_b - published) <= tolerance * published
    if active is not None:
        assert abs(model.active_params_b - active) <= 0.05 * active
    assert any("computed from config.json shapes" in n for n in model.notes)


@pytest.mark.parametrize(("name", "dtype", "expected"), KV, ids=lambda v: str(v))
def test_kv_bytes_per_token(name, dtype, expected):
    assert kv_cache_bytes_per_token(_load(name), dtype) == expected


@pytest.mark.parametrize(("name", "gpu", "gpus", "precision", "context", "concurrency", "needed", "fits"), VERDICTS,
                         ids=lambda v: str(v))
def test_fit_verdict(name, gpu, gpus, precision, context, concurrency, needed, fits):
    model = _load(name)
    g = GPUS[gpu]
    budget = g.memory_gib * GIB * 0.9
    if fits:  # the hand count leaves room for any runtime reserve up to 6 GiB
        assert needed + 6 * GIB < budget
    else:  # and a rejected one does not fit even with no reserve (or its KV alone overflows)
        assert needed + 2 * GIB > budget
    result = plan_fit(FitRequest(model, g, gpus, 1, precision or model.native_precision, context, concurrency),
                      with_alternatives=False)
    assert result.fits is fits, result.reasons
    assert any("computed from config.json shapes" in r for r in result.reasons)


def test_windowed_sequence_bytes():
    gemma = _load("gemma-3-27b-it")
    assert kv_cache_bytes_per_sequence(gemma, 32_768, "fp8") == (52 * 1024 + 10 * 32_768) * 4096
    oss = _load("gpt-oss-120b")
    assert kv_cache_bytes_per_sequence(oss, 131_072, "fp8") == (18 * 128 + 18 * 131_072) * 1024


QUANT = [
    ({"quant_method": "fp8", "fmt": "e4m3"}, "fp8"),
    ({"quant_method": "mxfp4"}, "mxfp4"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, "int4"),
    ({"quant_method": "gptq", "bits": 4}, "int4"),
    ({"quant_method": "gptq", "bits": 8}, "int8-w8a16"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "int"}, "input_activations": {"num_bits": 8, "type": "int"}}}}, "int8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "int"}, "input_activations": None}}}, "int4"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "float"}}}}, "fp8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "float"}}}}, "nvfp4"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4"),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8"),
]


@pytest.mark.parametrize(("quant", "precision"), QUANT, ids=lambda v: str(v)[:50])
def test_quantization_config_sets_the_precision(quant, precision):
    assert checkpoint_precision({"quantization_config": quant}, "config.json")[0] == precision


def test_unknown_quantization_names_the_field():
    with pytest.raises(PlanInputError) as err:
        checkpoint_precision({"quantization_config": {"quant_method": "hqq"}}, "config.json")
    assert err.value.field == "quantization_config.quant_method"


def test_precision_defaults_to_the_config(capsys):
    assert main(["fit", "--model", str(HF / "gpt-oss-120b.json"), "--gpu", "h100", "--gpus-per-node", "1",
                 "--context", "131072", "--concurrency", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["precision"] == "mxfp4" and out["fits"] is True
    assert out["kv_cache_bytes_per_token"] == 36_864


@pytest.mark.parametrize(("config", "field"), [
    ({"architectures": ["FalconForCausalLM"], "model_type": "falcon"}, "architectures"),
    ({"model_type": "bloom"}, "model_type"),
], ids=["architectures", "model_type"])
def test_unknown_architecture_is_one_line_exit_2(tmp_path, capsys, config, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["fit", "--model", str(path), "--gpu", "h100", "--gpus-per-node", "1", "--context", "4096",
                 "--concurrency", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{field}:" in err and "LlamaForCausalLM" in err


def test_missing_field_is_named():
    config = json.loads((HF / "llama-3.1-8b.json").read_text())
    del config["num_hidden_layers"]
    with pytest.raises(PlanInputError) as err:
        model_from_hf_config(config, "config.json")
    assert err.value.field == "num_hidden_layers"


def test_precision_is_required_without_a_config(capsys):
    assert main(["fit", "--gpu", "h100", "--gpus-per-node", "8", "--context", "4096", "--concurrency", "1"]) == 2
    assert "--precision" in capsys.readouterr().err


def test_kimi_k2_reads_as_deepseek_v3_with_its_own_shape():
    """Kimi K2 ships a DeepseekV3ForCausalLM config (model_type kimi_k2): 64 heads, 384 experts, 1 dense layer,
    vocab 163,840 (moonshotai/Kimi-K2-Instruct, as recalled). Published: 1T total (1.03T on its safetensors), 32B
    active; its MLA cache is DeepSeek-V3's: 61 x 576 B (fp8)."""
    config = json.loads((HF / "deepseek-v3.json").read_text())
    config.update({"model_type": "kimi_k2", "num_attention_heads": 64, "num_key_value_heads": 64,
                   "n_routed_experts": 384, "first_k_dense_replace": 1, "vocab_size": 163_840,
                   "num_nextn_predict_layers": 0})
    model = model_from_hf_config(config, "config.json", "kimi-k2")
    assert abs(model.total_params_b - 1030) <= 0.02 * 1030  # computed 1,026.4B
    assert abs(model.active_params_b - 32) <= 0.05 * 32  # computed 32.9B
    assert kv_cache_bytes_per_token(model, "fp8") == 61 * 576
