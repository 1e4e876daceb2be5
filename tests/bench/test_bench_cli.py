"""scripts/bench.py against a local streaming server with known delays: the timings it reports are the server's,
errors are counted and never retried, the parser checks tell a working parser from a missing one, the API key
never leaves the process, and bad flags end in one line with exit 2."""

from __future__ import annotations

import json
import socket
import time

import pytest

from scripts import bench
from tests.bench.fake_openai import Behaviour, FakeOpenAIServer

FAST = dict(first_token_delay_s=0.01, inter_token_delay_s=0.002, tokens=4, reasoning_tokens=1)


def run(capsys, argv, **kwargs):
    code = bench.main(argv, **kwargs)
    out, err = capsys.readouterr()
    return code, out, err


def record_of(out: str) -> dict:
    return json.loads(out)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    return tmp_path


def test_timings_match_the_servers_known_delays(in_tmp, capsys):
    # 300 ms before the first token, 30 ms between tokens, 3 reasoning + 8 answer tokens per request. The server's
    # sleeps set lower bounds that no load can shorten; the upper bounds are relations between the record's own
    # figures (a request's answer cannot end before its first token plus ten gaps), so a loaded machine, which
    # stretches every figure alike, cannot fail them, while a client that measures the wrong thing still does.
    behaviour = Behaviour(first_token_delay_s=0.3, inter_token_delay_s=0.03, tokens=8, reasoning_tokens=3)
    with FakeOpenAIServer(behaviour) as server:
        code, out, err = run(capsys, ["--url", server.url + "/v1/", "--concurrency", "1,4", "--requests-per-level",
                                      "4", "--stack", "h100-pilot", "--json"])
    assert code == 0, err
    record = record_of(out)
    assert record["model"] == behaviour.model and record["endpoint"]["url"] == server.url
    one, four = record["levels"]
    for level in (one, four):
        assert level["ok"] == 4 and level["errors"] == {}
        ttft, itl, tpot = level["ttft_s"], level["inter_token_latency_s"], level["time_per_output_token_s"]
        assert level["output_tokens"] == 4 * 11  # from the usage chunk
        assert itl["count"] == 4 * 10  # 11 token chunks -> 10 gaps each; the role-only chunk is not a token
        # a request's latency, request sent -> end of stream, from its tokens per second (11 tokens)
        rate = level["request_output_tokens_per_s"]
        shortest, longest = 11 / rate["max"], 11 / rate["min"]
        # timing the role-only first chunk (~0 s) fails this; the server sleeps 0.3 s before the first token
        assert ttft["min"] >= 0.3
        # timing the whole answer (TTFT = latency) fails this: ten 30 ms gaps follow the first token
        assert shortest >= ttft["min"] + 10 * 0.03 * 0.99 and longest >= ttft["max"] + 10 * 0.03 * 0.99
        # time per output token is (latency - TTFT) / 10; latency / 11 (~55 ms) fails this
        assert tpot["min"] >= 0.03 * 0.99 and ttft["min"] + 10 * tpot["max"] <= longest * 1.001
        assert itl["p50"] >= 0.022
        # the level's throughput is its tokens over its wall time
        assert level["total_output_tokens_per_s"] == pytest.approx(44 / level["wall_s"], rel=1e-3)
    assert one["wall_s"] >= 4 * 11 / one["request_output_tokens_per_s"]["max"] * 0.99  # one at a time
    # four at once really ran together: one after another would take at least four of the shortest requests
    assert four["wall_s"] < 4 * 11 / four["request_output_tokens_per_s"]["max"]
    # $ per 1M output tokens from the plan's $/hour, against the planner's bound at that concurrency
    cost = {c["concurrency"]: c for c in record["cost"]}
    assert record["plan"]["usd_per_hour"] == pytest.approx(55.04)
    for level in (one, four):
        c = cost[level["concurrency"]]
        expected = 55.04 / (level["total_output_tokens_per_s"] * 3600) * 1e6
        assert c["measured_usd_per_million"] == pytest.approx(expected, rel=1e-3)
        # the record keeps 6 significant digits of the fraction and 2 decimals of tok/s (both relative errors far
        # below 1e-3, however small the fraction)
        assert c["fraction_of_bound"] == pytest.approx(level["total_output_tokens_per_s"] / c["bound_tokens_per_s"],
                                                       rel=1e-3)
    assert cost[1]["bound_tokens_per_s"] == pytest.approx(record["plan"]["throughput_upper_bound"]
                                                          ["single_stream_tokens_per_s_upper_bound"], rel=1e-3)
    assert [c["passed"] for c in record["checks"]] == [True, True]
    # the record file under ./bench-runs is what --json printed
    files = list((in_tmp / "bench-runs").glob("*-h100-pilot.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == record
    assert len(behaviour.requests) == 2 + 8  # checks + bounded requests, nothing more


def test_errors_are_counted_never_retried(in_tmp, capsys):
    prompts = in_tmp / "prompts.txt"
    prompts.write_text("fine one\nplease fail [[500]]\nslow down [[429]]\ncut short [[cut]]\n")
    behaviour = Behaviour(**FAST)
    with FakeOpenAIServer(behaviour) as server:
        code, out, err = run(capsys, ["--url", server.url, "--concurrency", "2", "--requests-per-level", "8",
                                      "--prompts", str(prompts), "--no-checks", "--json"])
    assert code == 1
    level = record_of(out)["levels"][0]
    assert level["requests"] == 8 and level["ok"] == 2
    assert level["errors"] == {"http 429": 2, "http 500": 2, "truncated stream": 2}
    assert len(behaviour.requests) == 8  # one attempt per request
    assert level["ttft_s"]["count"] == 2  # failed requests do not pollute the timings


def test_a_stalled_stream_times_out_within_the_bound(in_tmp, capsys):
    prompts = in_tmp / "prompts.txt"
    prompts.write_text("stall [[hang]]\n")
    with FakeOpenAIServer(Behaviour(hang_s=3.0, **FAST)) as server:
        started = time.monotonic()
        code, out, _ = run(capsys, ["--url", server.url, "--concurrency", "2", "--requests-per-level", "2",
                                    "--prompts", str(prompts), "--timeout", "0.4", "--no-checks", "--json"])
        elapsed = time.monotonic() - started
    assert code == 1 and elapsed < 3.0  # the server hangs 3 s: the client did not wait for it
    assert record_of(out)["levels"][0]["errors"] == {"timeout": 2}


def test_parser_checks_fail_when_the_server_runs_without_parsers(in_tmp, capsys):
    with FakeOpenAIServer(Behaviour(tool_parser=False, reasoning_parser=False, **FAST)) as server:
        code, out, _ = run(capsys, ["--url", server.url, "--concurrency", "1", "--requests-per-level", "1"])
    assert code == 1
    assert "FAIL  tool-call parser" in out and "--tool-call-parser qwen3_coder" in out
    assert "FAIL  reasoning parser" in out and "--reasoning-parser nemotron_v3" in out


def test_api_key_is_sent_but_never_printed_or_recorded(in_tmp, capsys, monkeypatch):
    secret = "sk-test-5f1e2d3c4b"
    monkeypatch.setenv("BENCH_KEY", secret)
    with FakeOpenAIServer(Behaviour(api_key=secret, **FAST)) as server:
        code, out, err = run(capsys, ["--url", server.url, "--api-key-env", "BENCH_KEY", "--concurrency", "1",
                                      "--requests-per-level", "2", "--record", "run.json"])
    assert code == 0, err
    assert secret not in out + err + (in_tmp / "run.json").read_text()
    assert json.loads((in_tmp / "run.json").read_text())["settings"]["api_key_env"] == "BENCH_KEY"


def test_a_server_that_echoes_a_wrong_key_cannot_leak_it(in_tmp, capsys, monkeypatch):
    wrong = "sk-wrong-9a8b7c6d"
    monkeypatch.setenv("BENCH_KEY", wrong)
    with FakeOpenAIServer(Behaviour(api_key="sk-right", **FAST)) as server:
        code, out, err = run(capsys, ["--url", server.url, "--api-key-env", "BENCH_KEY", "--model", "m",
                                      "--concurrency", "1", "--requests-per-level", "1", "--no-checks", "--json"])
    assert code == 1
    assert wrong not in out + err + "".join(p.read_text() for p in (in_tmp / "bench-runs").iterdir())
    assert "[redacted]" in record_of(out)["levels"][0]["error_examples"][0]


def test_unreachable_endpoint_is_one_line_exit_1(in_tmp, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        code, out, err = run(capsys, ["--url", f"http://127.0.0.1:{port}", "--requests-per-level", "1"])
    assert code == 1 and err.count("\n") == 1 and "/v1/models" in err


BAD_FLAGS = [
    (["--url", "URL", "--concurrency", "0"], "--concurrency: '0' is not valid; allowed: comma-separated"),
    (["--url", "URL", "--concurrency", "1,x"], "--concurrency"),
    (["--url", "ftp://127.0.0.1/"], "--url: 'ftp://127.0.0.1/' is not valid; allowed: an http:// or https://"),
    (["--url", "URL", "--prompts", "missing.txt"], "--prompts: 'missing.txt' is not valid"),
    (["--url", "URL", "--requests-per-level", "0"], "--requests-per-level"),
    (["--url", "URL", "--timeout", "-1"], "--timeout"),
    (["--url", "URL", "--api-key-env", "NO_SUCH_VARIABLE_SET"], "--api-key-env: 'NO_SUCH_VARIABLE_SET'"),
    (["--url", "URL", "--stack", "nope"], "--stack: 'nope' is not valid; allowed: b200-nvfp4, b300-bf16, eks-nim"),
    (["--url", "URL", "--region", "us-east-1"], "--region"),
    (["--concurrency", "1"], "one of the arguments --url --sagemaker-endpoint is required"),
    (["--url", "URL", "--sagemaker-endpoint", "e"], "not allowed with argument"),
    (["--url", "URL", "--requests-per-level", "many"], "--requests-per-level: 'many' is not valid"),
]


def exit_status(argv) -> int:
    """main's return value, or the status argparse exits with."""
    try:
        return bench.main(argv)
    except SystemExit as exited:
        return exited.code


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_one_line_exit_2_nothing_written(in_tmp, capsys, argv, message):
    code = exit_status([a.replace("URL", "http://127.0.0.1:9") for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not (in_tmp / "bench-runs").exists()
