"""h100-bf16: two p5.48xlarge, TP 8 inside each node and PP 2 across them, joined by Ray over the members-only rules."""

from __future__ import annotations

import shlex

from tests.components.runs import INGRESS_RULE, boot_text, servers, shipped_plan, shipped_run

STACK = "h100-bf16"
NODE_NETWORK_ENV = ("VLLM_HOST_IP=", "GLOO_SOCKET_IFNAME=", "TP_SOCKET_IFNAME=", "NCCL_SOCKET_IFNAME=",
                    "UCX_NET_DEVICES=", "FI_PROVIDER=efa")


def test_the_planner_serves_with_pipeline_parallel_across_nodes_over_ray():
    argv = shipped_plan(STACK).serving.argv
    joined = shlex.join(argv)
    assert "--tensor-parallel-size 8" in joined and "--pipeline-parallel-size 2" in joined
    assert "--distributed-executor-backend ray" in joined


def test_head_starts_ray_waits_for_both_nodes_then_serves():
    run = shipped_run(STACK)
    head, worker = servers(run)
    assert [head["name"], worker["name"]] == [f"{STACK}-servers-node-0", f"{STACK}-servers-node-1"]
    user_data = boot_text(head)
    start = user_data.index('ray start --head --node-ip-address="$VLLM_HOST_IP" --port=6379')
    wait = user_data.index('sys.exit(sum(n["Alive"] for n in ray.nodes()) < 2)')
    serve = user_data.index(f"exec {shlex.join(shipped_plan(STACK).serving.argv)}")
    assert start < wait < serve
    assert "ROLE=head" in user_data and "nemotron-ready.service" in user_data


def test_worker_joins_the_heads_private_ip_and_does_not_serve():
    run = shipped_run(STACK)
    head_ip = run.outputs["private_ips"][0]
    worker = boot_text(servers(run)[1])
    assert f'exec ray start --block --address={head_ip}:6379 --node-ip-address="$VLLM_HOST_IP"' in worker
    assert "vllm serve" not in worker and "ray start --head" not in worker
    assert "ROLE=worker" in worker and "nemotron-ready.service" not in worker


def test_every_node_sets_its_ip_and_interface_for_ray_nccl_and_gloo():
    for server in servers(shipped_run(STACK)):
        user_data = boot_text(server)
        for assignment in NODE_NETWORK_ENV:
            assert assignment in user_data, (server["name"], assignment)
        # the interface is the one holding the node's primary private IP, found at boot, not hard-coded
        assert "addr=$(imds local-ipv4)" in user_data and "ip -o -4 addr show" in user_data
        assert '--env-file "$ETC/node.env"' in user_data


def test_members_reach_each_other_on_every_port_and_nothing_else_gets_in():
    run = shipped_run(STACK)
    members_in = run.named(f"{STACK}-servers-members-in")["inputs"]
    members_out = run.named(f"{STACK}-servers-members-out")["inputs"]
    for rule in (members_in, members_out):
        assert rule["ipProtocol"] == "-1"
        assert rule["referencedSecurityGroupId"] == rule["securityGroupId"]
    world = [r for r in run.of_type(INGRESS_RULE) if r["inputs"].get("cidrIpv4") in ("0.0.0.0/0",)
             or r["inputs"].get("cidrIpv6") == "::/0"]
    assert world == []
