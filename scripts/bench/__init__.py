"""`python -m scripts.bench` (cli.py): measure a live OpenAI-compatible endpoint or a SageMaker endpoint. targets.py
sends and measures one request (never retried); run.py runs the checks and the concurrency levels; the statistics,
checks and pricing are planner/benchmark.py's."""

from scripts.bench.cli import STACKS_DIR, build_parser, main, validate
from scripts.bench.run import chat_body, run_benchmark, run_level
from scripts.bench.targets import OpenAITarget, SageMakerTarget, sagemaker_runtime_client

__all__ = ["STACKS_DIR", "OpenAITarget", "SageMakerTarget", "build_parser", "chat_body", "main", "run_benchmark",
           "run_level", "sagemaker_runtime_client", "validate"]
