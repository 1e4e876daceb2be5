"""Staging a model revision into S3 once, with a checksum manifest, and fetching it onto the nodes
(`python -m scripts.stage_weights`, docs/weights.md). Preflight calls `staged_copy_problems`."""

from scripts.stage_weights.staged import NO_MANIFEST, staged_copy_problems

__all__ = ["NO_MANIFEST", "staged_copy_problems"]
