"""spark.vllm's plan: the planner's layout for the cluster size, refused sizes, and a launch with no secret in it."""

from __future__ import annotations

import pytest
import yaml
from spark_cluster import vllm_serve
from spark_cluster.inventory import parse_inventory

from planner.errors import PlanInputError
from tests.spark.sparklab import fab


def cluster(size: int):
    nodes = [{"name": f"spark-{i}", "host": f"10.0.0.{i}",
              "links": [{"interface": "enp1s0f0np0", "address": f"192.168.100.{9 + i}/24"},
                        {"interface": "enP2p1s0f0np0", "address": f"192.168.101.{9 + i}/24"}]}
             for i in range(1, size + 1)]
    return parse_inventory({"user": "nvidia", "mtu": 9000, "nodes": nodes})


# NVIDIA's NVFP4 checkpoint is 328.1 GiB as published: 3 nodes hold 109.4 GiB each against a 103.3 GiB budget
@pytest.mark.parametrize("size", [1, 2, 3])
def test_sizes_the_planner_rejects_are_refused_naming_nodes(size):
    with pytest.raises(PlanInputError) as caught:
        vllm_serve.serving_command(cluster(size))
    assert caught.value.field == "nodes" and caught.value.value == size
    assert "4 to 8 DGX Sparks" in str(caught.value) and "does not fit" in str(caught.value)


@pytest.mark.parametrize(("size", "tp", "pp"), [(4, "4", "1"), (8, "8", "1")])
def test_layout_comes_from_the_planner(size, tp, pp):
    fit, command = vllm_serve.serving_command(cluster(size))
    assert fit.fits and (str(fit.tensor_parallel), str(fit.pipeline_parallel)) == (tp, pp)
    argv = vllm_serve.argv_for(cluster(size), command)
    assert argv[:2] == ["vllm", "serve"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == tp
    assert ("--pipeline-parallel-size" in argv) == (pp != "1")
    assert "--distributed-executor-backend" in argv and "--api-key" not in argv


def test_launch_reads_the_key_on_the_node_and_runs_in_a_recorded_session():
    inv = cluster(4)
    _, command = vllm_serve.serving_command(inv)
    step = vllm_serve.launch_step(inv, command)
    assert not step.privileged and step.stdin is None
    assert 'export VLLM_API_KEY="$(cat "$HOME"/.config/nemotron-deploy/vllm-api-key)"' in step.command
    assert "export RAY_ADDRESS=192.168.100.10:6379" in step.command
    assert "setsid -f sh -c" in step.command and "vllm.session" in step.command
    # the planner's API-key middleware (vLLM checks the key only under /v1): written first, then on PYTHONPATH
    assert vllm_serve.argv_for(inv, command)[-2:] == ["--middleware", "nemotron_auth.require_api_key"]
    assert vllm_serve.modules_dir(inv) == "~/.local/state/nemotron-deploy/python"
    write = step.command.index("chmod 644 \"$HOME\"/.local/state/nemotron-deploy/python/nemotron_auth.py")
    assert write < step.command.index("setsid -f sh -c")
    assert 'export PYTHONPATH="$HOME"/.local/state/nemotron-deploy/python"${PYTHONPATH:+:$PYTHONPATH}"' in step.command


def test_api_check_sends_the_key_through_stdin_and_flags_an_open_api():
    check = vllm_serve.api_check_command(cluster(4))
    assert "-H @-" in check and "Bearer %s" in check
    assert vllm_serve.api_findings("anonymous=401\nwith_key=200\n") == (True, [])
    assert vllm_serve.api_findings("anonymous=000\nwith_key=000\n") == (False, [])
    ready, findings = vllm_serve.api_findings("anonymous=200\nwith_key=200\n")
    assert findings == ["the vLLM API answers without a key: VLLM_API_KEY did not reach vLLM"]


def test_key_file_must_exist_and_be_private():
    inv = cluster(4)
    assert vllm_serve.key_file_problems(inv, vllm_serve.parse_key_fact("### api-key-file\n600\n")) == []
    assert "mode 640" in vllm_serve.key_file_problems(inv, vllm_serve.parse_key_fact("### api-key-file\n640\n"))[0]
    assert "missing" in vllm_serve.key_file_problems(inv, vllm_serve.parse_key_fact("### api-key-file\nabsent\n"))[0]


def test_fab_refuses_one_node_with_exit_2_before_any_connection(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"user": "nvidia", "mtu": 9000, "known_hosts": str(tmp_path / "absent"),
                                    "nodes": [{"name": "spark-1", "host": "198.18.250.1", "links": [
                                        {"interface": "enp1s0f0np0", "address": "198.19.250.1/24"}]}]}))
    status, report, stderr = fab("vllm", path, "--dry-run", timeout=60)
    assert status == 2 and report is None
    assert "nodes: 1 is not valid; allowed: 4 to 8 DGX Sparks" in stderr


@pytest.mark.parametrize(("content", "expected"), [
    (None, "missing"), ("", "holds no key"), ("\n", "holds no key"), ("  \t\n", "holds no key"), ("k3y\n", None),
])
def test_the_key_fact_run_by_a_real_shell_tells_a_blank_key_from_a_missing_one(tmp_path, content, expected):
    """An empty key would start vLLM with its own check off: a file of white space is no key."""
    import subprocess

    inv = cluster(4)
    key = tmp_path / ".config" / "nemotron-deploy" / "vllm-api-key"
    key.parent.mkdir(parents=True)
    if content is not None:
        key.write_text(content)
        key.chmod(0o600)
    out = subprocess.run(["sh", "-c", vllm_serve.key_fact_command(inv)], env={"HOME": str(tmp_path), "PATH":
                         "/usr/bin:/bin"}, capture_output=True, text=True, timeout=10, check=True).stdout
    problems = vllm_serve.key_file_problems(inv, vllm_serve.parse_key_fact(out))
    assert problems == [] if expected is None else expected in problems[0]


def test_the_launch_refuses_an_empty_key_after_reading_it():
    """`export VLLM_API_KEY="$(cat f)"` succeeds on a failed read: the planner's guard follows it."""
    inv = cluster(4)
    step = vllm_serve.launch_step(inv, vllm_serve.serving_command(inv)[1])
    read = step.command.index("export VLLM_API_KEY=")
    assert read < step.command.index("VLLM_API_KEY is unset or empty") < step.command.index("exec ")
