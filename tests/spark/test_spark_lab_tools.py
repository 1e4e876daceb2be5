"""spark.roce and spark.nccl scripts executed for real on the lab: the rendered shell runs on every node against
stand-ins for ibdev2netdev, show_gids, ib_write_bw, mpirun and all_gather_perf that print the recorded outputs of
the real tools (tests/spark/data); the parsers read what the real scripts collected."""

from __future__ import annotations

import pytest

from tests.spark.sparklab import by_node, fab, install_tool_stubs, remove_tool_stubs, tool_calls

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def two(make_lab):
    built = make_lab("pttools", 2, index=205)
    assert fab("link", built.inventory)[0] == 0 and fab("ssh", built.inventory)[0] == 0  # what doctor checks
    return built


@pytest.fixture
def stubs(two):
    install_tool_stubs(two)
    yield two
    remove_tool_stubs(two)


def test_roce_runs_its_scripts_and_judges_what_they_collected(stubs):
    status, report, stderr = fab("roce", stubs.inventory)
    assert status == 0, (report, stderr)
    rows = by_node(report)
    assert ("rocep1s0f0 -> enp1s0f0np0 up, GID index 3; roceP2p1s0f0 -> enP2p1s0f0np0 up, GID index 3"
            in rows["node1"]["messages"])
    # both halves measured together by the clients script on node2, each collected under its own key
    assert "node2 -> node1: 193.2 Gb/s over 2 halves" in rows["node2"]["messages"]
    calls = tool_calls(stubs, "node2", "ib_write_bw").splitlines()
    clients = sorted(c for c in calls if c.endswith(("198.19.0.1", "198.19.1.1")))
    assert clients == ["-d roceP2p1s0f0 -i 1 -x 3 -p 12001 -F --report_gbits 198.19.1.1",
                       "-d rocep1s0f0 -i 1 -x 3 -p 12000 -F --report_gbits 198.19.0.1"]
    servers = tool_calls(stubs, "node1", "ib_write_bw").splitlines()
    assert sorted(servers) == ["-d roceP2p1s0f0 -i 1 -x 3 -p 12001 -F --report_gbits",
                               "-d rocep1s0f0 -i 1 -x 3 -p 12000 -F --report_gbits"]


def test_a_degraded_half_is_named_from_the_collected_output(two):
    install_tool_stubs(two, ib_write_bw="ib_write_bw.degraded.txt")
    try:
        status, report, _ = fab("roce", two.inventory)
    finally:
        remove_tool_stubs(two)
    assert status == 1
    messages = " ".join(by_node(report)["node2"]["messages"])
    assert "node2 -> node1 enp1s0f0np0: 12.3 Gb/s: degraded ConnectX-7 link" in messages


def test_nccl_writes_the_env_and_runs_all_gather_through_mpirun(stubs):
    status, report, stderr = fab("nccl", stubs.inventory)
    assert status == 0, (report, stderr)
    assert "all_gather_perf busbw 22.1338 GB/s via NET/IB" in by_node(report)["node1"]["messages"]
    env = stubs.ssh("node2", "cat /etc/nemotron-deploy/spark.env").stdout
    assert "NCCL_IB_HCA=rocep1s0f0,roceP2p1s0f0" in env
    calls = tool_calls(stubs, "node1", "mpirun")
    assert "-np 2 -H 198.19.0.1:1,198.19.0.2:1" in calls and "/root/nccl-tests/build/all_gather_perf -b 512M" in calls
    assert "NCCL_IB_HCA=rocep1s0f0,roceP2p1s0f0" in calls  # the env file was loaded before mpirun
    # with RDMA tools present the doctor runs every check and passes
    status, report, _ = fab("doctor", stubs.inventory, "--skip-bench")
    lines = by_node(report)["node2"]["messages"]
    assert status == 0, [m for r in report["nodes"] for m in r["messages"] if "FAILED" in m]
    assert lines[2].startswith("roce: ok") and lines[3].startswith("nccl: ok")


def test_doctor_without_rdma_tools_says_not_applicable_and_passes(two):
    status, report, _ = fab("doctor", two.inventory, "--skip-bench")
    lines = by_node(report)["node1"]["messages"]
    assert status == 0, [m for r in report["nodes"] for m in r["messages"] if "FAILED" in m]
    assert lines[2].startswith("roce: not applicable here: no RDMA tools on this host (ibdev2netdev not installed)")
    assert lines[3].startswith("nccl: not applicable here")
    # asked for explicitly, RoCE without the tools still fails
    status, report, _ = fab("roce", two.inventory)
    assert status == 1 and "ibdev2netdev not found" in by_node(report)["node1"]["messages"][0]
