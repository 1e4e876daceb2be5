"""spark.metrics: the one read-only snapshot script a node runs, and pure parsers of what it prints.

The script prints sections, each after a `### <name>` line: `gpu` (nvidia-smi's CSV, or `missing`), one `link DEV`
per link interface (`ip -s -j link show DEV`), and on the head `vllm`: vLLM's Prometheus /metrics fetched over
loopback with the API key (fed to curl through stdin, never in argv or output), then `#@http CODE`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from spark_cluster.inventory import Inventory, Node
from spark_cluster.step import shell_path

MARK = "### "
HTTP_MARK = "#@http "  # after the body (not a section: Prometheus comments start "# ")
GPU_QUERY = "nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits"
LINK_KEYS = ("bytes", "errors", "dropped")


def snapshot_command(inventory: Inventory, node: Node) -> str:
    """The node's snapshot script: GPUs, link counters, and on the head vLLM's metrics."""
    parts = [f"echo '{MARK}gpu'; if command -v nvidia-smi >/dev/null 2>&1; then {GPU_QUERY} 2>&1 "
             f"|| echo 'error'; else echo missing; fi"]
    for link in node.links:
        dev = shlex.quote(link.interface)
        parts.append(f"echo '{MARK}link {link.interface}'; ip -s -j link show {dev} 2>/dev/null || echo missing")
    if node.name == inventory.head.name:
        parts.append(vllm_metrics_command(inventory))
    return "; ".join(parts)


def vllm_metrics_command(inventory: Inventory) -> str:
    """GET /metrics on the head's loopback with the key from the key file (through stdin: `-H @-`)."""
    url = f"http://127.0.0.1:{inventory.vllm.port}/metrics"
    key = shell_path(inventory.vllm.api_key_file)
    return (f"echo '{MARK}vllm'; if ! command -v curl >/dev/null 2>&1; then echo '{HTTP_MARK}nocurl'; "
            f"elif [ ! -r {key} ]; then echo '{HTTP_MARK}nokey'; else "
            f"printf 'Authorization: Bearer %s\\n' \"$(cat {key})\" | "
            f"curl -s --max-time 5 -H @- -w '\\n{HTTP_MARK}%{{http_code}}\\n' {url}; fi")


def sections(text: str) -> dict[str, str]:
    """The script's output by section name."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            found.setdefault(current, [])
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


@dataclass(frozen=True)
class Gpu:
    memory_used_mib: float
    memory_total_mib: float
    utilization_pct: float


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None  # "[N/A]" (GB10 reports no dedicated memory total), "[Not Supported]"


def parse_gpus(text: str) -> list[Gpu]:
    """nvidia-smi's `used, total, util` lines; a field it cannot report ([N/A]) is NaN."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3:
            continue
        values = [_number(f) for f in fields]
        gpus.append(Gpu(*(float("nan") if v is None else v for v in values)))
    return gpus


def _figure(value: float, unit: str = "") -> str:
    return "n/a" if value != value else f"{value:g}{unit}"


def describe_gpus(text: str) -> list[str]:
    if text == "missing":
        return ["gpu: nvidia-smi not found"]
    gpus = parse_gpus(text)
    if not gpus:
        return [f"gpu: nvidia-smi gave no readings ({text.splitlines()[-1] if text else 'no output'})"]
    return [f"gpu{i}: memory {_figure(g.memory_used_mib)}/{_figure(g.memory_total_mib)} MiB, "
            f"utilisation {_figure(g.utilization_pct, '%')}" for i, g in enumerate(gpus)]


@dataclass(frozen=True)
class LinkCounters:
    interface: str
    rx: dict[str, int]  # bytes, errors, dropped
    tx: dict[str, int]


def parse_link(text: str) -> LinkCounters | None:
    """`ip -s -j link show DEV`: its stats64 (or stats) counters; None when the output is not that."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return None
    stats = data[0].get("stats64") or data[0].get("stats") or {}
    rx, tx = stats.get("rx", {}), stats.get("tx", {})
    return LinkCounters(data[0].get("ifname", ""), {k: int(rx.get(k, 0)) for k in LINK_KEYS},
                        {k: int(tx.get(k, 0)) for k in LINK_KEYS})


def describe_link(interface: str, text: str) -> str:
    counters = parse_link(text)
    if counters is None:
        return f"{interface}: no such interface here"

    def side(name: str, c: dict[str, int]) -> str:
        return f"{name} {c['bytes']} B ({c['errors']} errors, {c['dropped']} drops)"

    return f"{interface}: {side('rx', counters.rx)}, {side('tx', counters.tx)}"


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
VLLM_METRICS = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_cache": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # the older vLLM name second
    "generation_tokens": ("vllm:generation_tokens_total",),
    "ttft_sum": ("vllm:time_to_first_token_seconds_sum",),
    "ttft_count": ("vllm:time_to_first_token_seconds_count",),
}


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text exposition: each metric name's value summed over its label sets (one per model/engine)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line.strip())
        value = _number(match.group(3)) if match else None
        if match and value is not None:
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + value
    return totals


@dataclass(frozen=True)
class VllmMetrics:
    running: float | None
    waiting: float | None
    kv_cache: float | None  # fraction, 0..1
    generation_tokens: float | None
    ttft_sum: float | None
    ttft_count: float | None

    @property
    def ttft_mean_s(self) -> float | None:
        return self.ttft_sum / self.ttft_count if self.ttft_sum is not None and self.ttft_count else None


def parse_vllm_metrics(text: str) -> VllmMetrics:
    totals = parse_prometheus(text)
    picked = {key: next((totals[n] for n in names if n in totals), None) for key, names in VLLM_METRICS.items()}
    return VllmMetrics(**picked)


def split_http(section: str) -> tuple[str, str]:
    """The vllm section's (body, status: an HTTP code, `nokey`, `nocurl` or `000` where nothing answered)."""
    text = "\n" + section
    if f"\n{HTTP_MARK}" not in text:
        return section, "000"
    body, _, status = text.rpartition(f"\n{HTTP_MARK}")
    return body.strip(), status.strip() or "000"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def describe_vllm(inventory: Inventory, body: str, status: str) -> str:
    port, key = inventory.vllm.port, inventory.vllm.api_key_file
    problems = {"nocurl": "curl not found on the head", "nokey": f"no readable API key file {key} on the head",
                "000": f"no vLLM metrics endpoint answers on 127.0.0.1:{port}"}
    if status in problems:
        return f"vllm: {problems[status]}"
    if status != "200":
        return f"vllm: /metrics on port {port} answered HTTP {status}"
    m = parse_vllm_metrics(body)
    kv = "n/a" if m.kv_cache is None else f"{m.kv_cache * 100:.1f}%"
    ttft = "n/a" if m.ttft_mean_s is None else f"{m.ttft_mean_s:.3f} s over {m.ttft_count:g} requests"
    return (f"vllm: running {_count(m.running)}, waiting {_count(m.waiting)}, kv cache {kv}, "
            f"generation tokens {_count(m.generation_tokens)}, mean TTFT {ttft}")


def describe_snapshot(inventory: Inventory, node: Node, text: str) -> list[str]:
    """The node's report lines from its snapshot script's output."""
    found = sections(text)
    lines = describe_gpus(found.get("gpu", "missing"))
    lines += [describe_link(link.interface, found.get(f"link {link.interface}", "")) for link in node.links]
    if "vllm" in found:
        lines.append(describe_vllm(inventory, *split_http(found["vllm"])))
    return lines
