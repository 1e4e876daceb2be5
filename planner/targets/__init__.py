"""One module per deployment target, each computing that target's plan once from the core plan (planner/core.py).

- ec2.py: GPU servers booted by cloud-init (Ec2Plan: startup budget, boot image, node roles, secret and egress needs)
- eks.py: a model server on Kubernetes (EksPlan: cluster, node pools, add-ons, object names, workload sizing)
- jumpstart.py: a SageMaker JumpStart endpoint (JumpStartEndpointPlan: everything the endpoint's resources state)
- spark.py: the DGX Spark cluster (SparkPlan: the fit and the vLLM command for the inventory's nodes)

planner/plan.py is the only module that dispatches to them; the shared core (tags, startup, fit, serving, hardware,
models, stack_config, budget, estimates) imports nothing from here.

Reading order for a newcomer, per target x: planner/targets/x.py (what is decided, pure) -> components/x.py (what
Pulumi declares from it; ec2: components/gpu_servers.py, eks: eks_cluster.py, gpu_node_pool.py, model_workload.py)
-> tests/x/ (how both are pinned; ec2: tests/user_data and tests/components). The Spark cluster's tasks live in
ansible-like/spark_cluster/ (vllm_serve.py reads the SparkPlan) and its tests in tests/spark.
"""
