"""The pure core of nemotron-deploy: model profiles, hardware, memory fit, serving commands, cost, stack config.

Nothing in this package imports pulumi, boto3, fabric or a network library: every function is a function of plain
data, so the planner answers the same offline as in a pipeline.
"""
