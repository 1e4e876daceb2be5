"""Every class of bad input ends in one line naming the field, exit status 2, no traceback, nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner.__main__ import main as planner_main
from scripts.plan import main as plan_main

REPO = Path(__file__).resolve().parents[2]
GOOD = ["fit", "--gpu", "h100", "--gpus-per-node", "8", "--nodes", "1", "--precision", "fp8", "--context", "8192",
        "--concurrency", "4"]


def with_flag(flag, value):
    args = list(GOOD)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


FIT_CASES = [
    ("unknown gpu", with_flag("--gpu", "a100"), "--gpu: 'a100' is not valid; allowed: h100, h200, b200, gb200, gb10"),
    ("unknown precision", with_flag("--precision", "fp6"),
     "--precision: 'fp6' is not valid; allowed: bf16, fp8, nvfp4, mxfp4, int8, int8-w8a16, int4"),
    ("unknown model", with_flag("--model", "llama-9000"),
     "--model: 'llama-9000' is not valid; allowed: nemotron-3-ultra"),
    ("zero nodes", with_flag("--nodes", "0"), "--nodes: 0 is not valid; allowed: a whole number >= 1"),
    ("negative context", with_flag("--context", "-5"), "--context: -5 is not valid"),
    ("zero concurrency", with_flag("--concurrency", "0"), "--concurrency: 0 is not valid"),
    ("negative gpus", with_flag("--gpus-per-node", "-8"), "--gpus-per-node: -8 is not valid"),
    ("context over model max", with_flag("--context", "2000000"), "at most the model's max context 1000000"),
    ("tp does not divide heads", with_flag("--tensor-parallel", "6"),
     "--tensor-parallel: 6 is not valid; allowed: a divisor of the model's 64 attention heads"),
    ("not a number", with_flag("--nodes", "two"), "--nodes: 'two' is not valid; allowed: a whole number"),
    ("unknown kv dtype", with_flag("--kv-cache-dtype", "int8"), "--kv-cache-dtype: 'int8' is not valid"),
    ("utilization out of range", with_flag("--gpu-memory-utilization", "1.5"), "--gpu-memory-utilization: 1.5"),
]


@pytest.mark.parametrize(("case", "argv", "message"), FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_bad_input(case, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = planner_main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and message in err, err


SPECS = {
    "syntax": "name: broken\ntotal_params_b: [1, 2\n",
    "missing key": "name: m\ntotal_params_b: 10\nactive_params_b: 10\nhidden_size: 4096\n"
                   "attention: {num_heads: 32, num_kv_heads: 8, head_dim: 128}\nmax_context: 8192\n",
    "wrong type": "name: m\ntotal_params_b: lots\nactive_params_b: 10\nlayers: {attention: 32}\nhidden_size: 4096\n"
                  "attention: {num_heads: 32, num_kv_heads: 8, head_dim: 128}\nmax_context: 8192\n",
    "unknown key": "name: m\ntotal_params_b: 10\nactive_params_b: 10\nlayers: {attention: 32}\nhidden_size: 4096\n"
                   "attention: {num_heads: 32, num_kv_heads: 8, head_dim: 128}\nmax_context: 8192\nvocab: 1\n",
    "kv heads do not divide heads": "name: m\ntotal_params_b: 10\nactive_params_b: 10\nlayers: {attention: 32}\n"
                                    "hidden_size: 4096\nattention: {num_heads: 32, num_kv_heads: 5, head_dim: 128}\n"
                                    "max_context: 8192\n",
    "mamba layers without mixer": "name: m\ntotal_params_b: 10\nactive_params_b: 10\nlayers: {attention: 4, mamba: 8}\n"
                                  "hidden_size: 4096\nattention: {num_heads: 32, num_kv_heads: 8, head_dim: 128}\n"
                                  "max_context: 8192\n",
    "not a mapping": "- a\n- b\n",
}
SPEC_FIELDS = {"syntax": "line 3", "missing key": "layers", "wrong type": "total_params_b", "unknown key": "vocab",
               "kv heads do not divide heads": "attention.num_kv_heads", "mamba layers without mixer": "mamba",
               "not a mapping": "(document)"}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_malformed_model_spec(case, tmp_path, capsys):
    spec = tmp_path / "model.yaml"
    spec.write_text(SPECS[case])
    assert planner_main(with_flag("--model", str(spec))) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"{spec}: {SPEC_FIELDS[case]}" in err, err


GOOD_STACK = {
    "aws:region": "us-east-1",
    "nemotron-deploy:target": "ec2",
    "nemotron-deploy:owner": "me",
    "nemotron-deploy:instanceType": "p5.48xlarge",
    "nemotron-deploy:precision": "fp8",
    "nemotron-deploy:contextTokens": 8192,
}
NS = "nemotron-deploy:"

STACK_CASES = [
    # case, keys to set (None removes), the field the message names, what it says is allowed
    ("unknown key", {NS + "instancetype": "p5.48xlarge"}, NS + "instancetype: unknown key",
     "did you mean instanceType?"),
    ("unknown namespace", {"gcp:region": "us-east1"}, "gcp:region", "unknown key"),
    ("bad precision", {NS + "precision": "fp16"}, NS + "precision: 'fp16'", "bf16, fp8 or nvfp4"),
    ("unknown instance type", {NS + "instanceType": "p3.16xlarge"}, NS + "instanceType",
     "p5.48xlarge, p5e.48xlarge"),
    ("sagemaker type on ec2", {NS + "instanceType": "ml.p5.48xlarge"}, NS + "instanceType: 'ml.p5.48xlarge'",
     "p5.48xlarge"),
    ("zero nodes", {NS + "nodes": 0}, NS + "nodes: 0", "greater than or equal to 1"),
    ("negative concurrency", {NS + "concurrency": -4}, NS + "concurrency: -4", "greater than or equal to 1"),
    ("ttl too long", {NS + "ttlHours": 1000}, NS + "ttlHours: 1000", "less than or equal to 168"),
    ("world-open cidr", {NS + "allowedCidrs": ["0.0.0.0/0"]}, NS + "allowedCidrs", "open the API to the world"),
    ("plaintext secret", {NS + "apiKey": "sk-plain"}, NS + "apiKey", "pulumi config set --secret apiKey"),
    ("tp does not divide heads", {NS + "tensorParallel": 3}, NS + "tensorParallel: 3", "64 attention heads"),
    ("wrong engine", {NS + "engine": "nim"}, NS + "engine: 'nim'", "vllm"),
    ("missing owner", {NS + "owner": None}, NS + "owner", "required key is missing"),
    ("missing region", {"aws:region": None}, "aws:region", "required"),
    ("secret extra arg", {NS + "vllmExtraArgs": ["--api-key", "x"]}, NS + "vllmExtraArgs",
     "no secrets on the command line"),
    ("jumpstart section on ec2", {NS + "jumpstart": {"modelId": "m", "acceptEula": True}}, NS + "jumpstart",
     "only for target jumpstart"),
]


@pytest.mark.parametrize(("case", "changes", "field", "allowed"), STACK_CASES, ids=[c[0] for c in STACK_CASES])
def test_bad_stack_config(case, changes, field, allowed, tmp_path, capsys):
    config = {**GOOD_STACK, **changes}
    config = {k: v for k, v in config.items() if v is not None}
    stack_file = tmp_path / "Pulumi.bad.yaml"
    stack_file.write_text(yaml.safe_dump({"config": config}))
    before = stack_file.read_text()
    assert plan_main(["bad", "--stacks-dir", str(tmp_path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1, err
    assert f"Pulumi.bad.yaml: {field}" in err and allowed in err, err
    assert json.loads(out) == {"stacks": []}
    assert stack_file.read_text() == before  # nothing changes


def test_the_good_stack_of_these_cases_is_valid(tmp_path, capsys):
    (tmp_path / "Pulumi.good.yaml").write_text(yaml.safe_dump({"config": GOOD_STACK}))
    assert plan_main(["good", "--stacks-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stacks"][0]["fit"]["fits"] is True


def test_unknown_stack_names_the_shipped_ones(capsys):
    assert plan_main(["no-such-stack", "--json"]) == 2
    err = capsys.readouterr().err
    assert "stack: 'no-such-stack' is not valid; allowed: b200-nvfp4, b300-bf16, eks-nim" in err


def test_real_cli_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "planner", *with_flag("--gpu", "mi300x")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("python -m planner: --gpu: 'mi300x' is not valid; allowed: h100, h200, b200, gb200, gb10, "
                           "b300, a100-80, a100-40, l40s, l4, a10g\n")
