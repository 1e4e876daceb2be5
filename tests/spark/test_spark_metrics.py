"""spark.metrics parsers on recorded outputs: nvidia-smi's query CSV, `ip -s -j link show DEV`, vLLM's Prometheus
/metrics text, and the sections the node's snapshot script prints."""

from __future__ import annotations

import copy

from spark_cluster import metrics
from spark_cluster.inventory import parse_inventory

from tests.spark.sparklab import GOOD, data


def inventory():
    return parse_inventory(copy.deepcopy(GOOD))


def test_gpu_figures_and_fields_nvidia_smi_cannot_report():
    assert metrics.parse_gpus(data("nvidia-smi.query.txt")) == [metrics.Gpu(15234.0, 122570.0, 37.0)]
    assert metrics.describe_gpus(data("nvidia-smi.query.txt").strip()) == [
        "gpu0: memory 15234/122570 MiB, utilisation 37%"]
    # GB10 (unified memory) reports [N/A] for memory: said so, not a crash
    assert metrics.describe_gpus(data("nvidia-smi.query-na.txt").strip()) == [
        "gpu0: memory n/a/n/a MiB, utilisation 96%"]
    assert metrics.describe_gpus("missing") == ["gpu: nvidia-smi not found"]
    assert metrics.describe_gpus("NVIDIA-SMI has failed\nerror") == ["gpu: nvidia-smi gave no readings (error)"]


def test_link_counters_from_ip_json():
    counters = metrics.parse_link(data("ip-s-link.txt"))
    assert counters == metrics.LinkCounters("enp1s0f0np0", {"bytes": 918273645, "errors": 2, "dropped": 5},
                                            {"bytes": 827364510, "errors": 0, "dropped": 1})
    assert metrics.describe_link("enp1s0f0np0", data("ip-s-link.txt")) == (
        "enp1s0f0np0: rx 918273645 B (2 errors, 5 drops), tx 827364510 B (0 errors, 1 drops)")
    assert metrics.describe_link("enp9", "missing") == "enp9: no such interface here"


def test_vllm_metrics_from_prometheus_text():
    m = metrics.parse_vllm_metrics(data("vllm-metrics.txt"))
    assert (m.running, m.waiting, m.kv_cache, m.generation_tokens) == (3.0, 1.0, 0.125, 48213.0)
    assert (m.ttft_sum, m.ttft_count) == (9.84, 40.0) and abs(m.ttft_mean_s - 0.246) < 1e-9
    # the older name of the KV cache gauge, summed over two engines; no TTFT yet: no mean
    older = metrics.parse_vllm_metrics('vllm:gpu_cache_usage_perc{engine="0"} 0.25\n'
                                       'vllm:gpu_cache_usage_perc{engine="1"} 0.5\n'
                                       "vllm:time_to_first_token_seconds_count 0\n")
    assert older.kv_cache == 0.75 and older.ttft_mean_s is None and older.running is None


def test_snapshot_sections_to_report_lines():
    inv = inventory()
    head, worker = inv.nodes
    out = ("### gpu\n" + data("nvidia-smi.query.txt") + "### link enp1s0f0np0\n" + data("ip-s-link.txt")
           + "### link enP2p1s0f0np0\nmissing\n### vllm\n" + data("vllm-metrics.txt") + "#@http 200\n")
    lines = metrics.describe_snapshot(inv, head, out)
    assert lines[0] == "gpu0: memory 15234/122570 MiB, utilisation 37%"
    assert lines[1].startswith("enp1s0f0np0: rx 918273645 B") and lines[2] == "enP2p1s0f0np0: no such interface here"
    assert lines[3] == ("vllm: running 3, waiting 1, kv cache 12.5%, generation tokens 48213, "
                        "mean TTFT 0.246 s over 40 requests")
    assert metrics.describe_snapshot(inv, worker, "### gpu\nmissing\n")[0] == "gpu: nvidia-smi not found"
    assert len(metrics.describe_snapshot(inv, worker, "### gpu\nmissing\n")) == 3  # no vllm line off the head


def test_vllm_endpoint_missing_or_refusing_is_said():
    inv = inventory()
    describe = metrics.describe_vllm
    assert describe(inv, *metrics.split_http("\n#@http 000")) == (
        "vllm: no vLLM metrics endpoint answers on 127.0.0.1:8000")
    assert describe(inv, *metrics.split_http("#@http nokey")).startswith("vllm: no readable API key file")
    assert describe(inv, *metrics.split_http("Unauthorized\n#@http 401")) == (
        "vllm: /metrics on port 8000 answered HTTP 401")
    assert describe(inv, *metrics.split_http("")) == "vllm: no vLLM metrics endpoint answers on 127.0.0.1:8000"


def test_snapshot_script_keeps_the_key_out_of_argv():
    inv = inventory()
    head, worker = inv.nodes
    script = metrics.snapshot_command(inv, head)
    assert metrics.GPU_QUERY in script and "ip -s -j link show enP2p1s0f0np0" in script
    assert "-H @-" in script and "http://127.0.0.1:8000/metrics" in script
    assert "/metrics" not in metrics.snapshot_command(inv, worker)
