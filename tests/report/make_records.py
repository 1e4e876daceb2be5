"""Writes the report's recorded test data and the README's example runs: the real benchmark
(`python -m scripts.bench`, in process) against the local fake server of tests/bench/fake_openai.py, priced with
each stack's plan. The timings are the fake server's sleeps on a laptop, NOT measurements of real hardware.

    .venv/bin/python -m tests.report.make_records DIR   # e.g. tests/report/data or docs/examples/bench-runs
"""

from __future__ import annotations

import sys
from pathlib import Path

from scripts.bench.cli import main as bench_main
from tests.bench.fake_openai import Behaviour, FakeOpenAIServer

# stack -> the fake server's first-token delay and gap between tokens (seconds): different stacks, different speeds
RUNS = {
    "h100-pilot": (0.12, 0.012),
    "h200-pilot": (0.08, 0.008),
    "b200-nvfp4": (0.05, 0.004),
    "eks-vllm": (0.1, 0.01),
}


def write_records(directory: Path, runs: dict[str, tuple[float, float]] = RUNS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for stack, (first, gap) in runs.items():
        behaviour = Behaviour(first_token_delay_s=first, inter_token_delay_s=gap, tokens=24, reasoning_tokens=4)
        path = directory / f"{stack}.json"
        with FakeOpenAIServer(behaviour) as server:
            code = bench_main(["--url", server.url, "--stack", stack, "--concurrency", "1,2,4,8",
                               "--requests-per-level", "16", "--max-tokens", "64", "--record", str(path)])
        if code != 0:
            raise SystemExit(f"bench against the fake server for {stack} exited {code}")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_records(Path(sys.argv[1])):
        print(written)
