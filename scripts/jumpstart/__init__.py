"""`python -m scripts.jumpstart resolve|smoke STACK` (cli.py): resolve.py records a JumpStart model's hub content in
the stack file; endpoint.py checks a live endpoint with one chat request. AWS clients come from scripts/aws."""

from scripts.jumpstart.cli import build_parser, main
from scripts.jumpstart.common import Failure, UsageError
from scripts.jumpstart.endpoint import (
    ChatResult,
    EndpointNotReady,
    EndpointState,
    endpoint_state,
    invoke_chat,
    smoke,
    stream_chat,
    wait_in_service,
)
from scripts.jumpstart.resolve import ResolveResult, describe_hub_content, resolve, write_resolved

__all__ = ["ChatResult", "EndpointNotReady", "EndpointState", "Failure", "ResolveResult", "UsageError",
           "build_parser", "describe_hub_content", "endpoint_state", "invoke_chat", "main", "resolve", "smoke",
           "stream_chat", "wait_in_service", "write_resolved"]
