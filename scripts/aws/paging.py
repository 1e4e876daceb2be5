"""Listings botocore has no paginator for (SageMaker ListHubContents): follow NextToken, bounded in pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def token_pages(call: Callable[..., dict], result_key: str, *, most_pages: int, **request: Any) -> list:
    """Every item under `result_key` of `call(**request)`, page after page while the answer carries a NextToken, at
    most `most_pages` pages. Where botocore has a paginator, use `client.get_paginator` instead."""
    items: list = []
    request = dict(request)
    for _ in range(most_pages):
        page = call(**request)
        items += page.get(result_key, [])
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    return items
