"""The pure core of nemotron-deploy: model profiles, hardware, memory fit, serving commands, cost, stack config, and
each target's plan (planner/targets/), computed once by planner/plan.py.

Nothing in this package imports pulumi, boto3, fabric or a network library: every function is a function of plain
data, so the planner answers the same offline as in a pipeline.
"""
