"""What the teardown's listings, deletions and report share: the constants, the paginated listing helpers, the
Inventory of what was found and the RetryPolicy that bounds the dependency retries and the waits."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from planner.reaper import FoundResource
from planner.tags import TAG_EXPIRES_AT
from scripts.aws import describe_error

PROG = "python -m scripts.teardown"
PAGE_SIZE = 100  # EC2 describe_* accept 5..1000; smaller pages keep each answer quick
FILTER_CHUNK = 200  # values per EC2 filter
TAG_KEY_FILTER = [{"Name": "tag-key", "Values": [TAG_EXPIRES_AT]}]
IAM_PAGE_SIZE = 1000  # GetAccountAuthorizationDetails and ListInstanceProfiles: the most one page holds
TAGGING_TYPES = ["sagemaker:endpoint", "sagemaker:endpoint-config", "sagemaker:model",
                 "elasticloadbalancing:loadbalancer"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries and waits: how many attempts a delete that meets a dependency error gets, how long between
    them, how long to wait for a deletion, and where the waits report their progress (a line on stderr at most every
    `progress_every_s`). Throttling and 5xx answers are botocore's standard retry mode's (scripts/aws)."""

    attempts: int = 6
    first_delay_s: float = 2.0
    max_delay_s: float = 30.0
    wait_timeout_s: float = 900.0
    poll_interval_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    progress: Callable[[str], None] = field(default=lambda line: say(line))
    progress_every_s: float = 30.0


def say(line: str) -> None:
    """A progress line on stderr (stdout carries the report, or the JSON)."""
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def few(ids: list[str], shown: int = 3) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


# ---- facts: what is there ---------------------------------------------------------------------------------------

@dataclass
class Inventory:
    """One listing of the regions: every resource found with its tags and links, and the listings that failed
    (`listing_errors`, one line each, and `unlisted`, the (region, kind) pairs they hid)."""

    resources: list[FoundResource] = field(default_factory=list)
    listing_errors: list[str] = field(default_factory=list)
    unlisted: list[tuple[str, str]] = field(default_factory=list)

    def failed(self, region: str, kinds: tuple[str, ...], err: BaseException, operation: str | None = None,
               what: str = "") -> None:
        """Record one failed listing: the kinds it hid, and why, in one line."""
        self.listing_errors.append(f"{region} {', '.join(kinds)}{what}: {describe_error(err, operation)}")
        self.unlisted += [(region, kind) for kind in kinds if (region, kind) not in self.unlisted]


def tags_of(pairs: Iterable[dict] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in pairs or ()}


def pages(client, operation: str, result_key: str, **kwargs) -> Iterator[dict]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, ())


def chunks(values: list[str], size: int = FILTER_CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


@dataclass
class RegionListing:
    """What one region's listings share: the clients, the page size, what the earlier listings found (by kind) and
    the tagging API's answer, read once for the kinds that take their tags from it."""

    clients: Any
    region: str
    page_size: int
    found: dict[str, list[FoundResource]] = field(default_factory=dict)
    _tagged: dict[str, dict[str, str]] | Exception | None = None

    def ec2(self) -> Any:
        return self.clients("ec2", self.region)

    def paging(self, most: int, **kwargs) -> dict:
        """Each describe call has its own MaxResults range; EC2's is 5 at least."""
        return {**kwargs, "PaginationConfig": {"PageSize": max(5, min(self.page_size, most))}}

    def tags_by_arn(self) -> dict[str, dict[str, str]]:
        """Tags of the SageMaker and ELBv2 resources carrying an expires-at tag (one paginated GetResources);
        its failure is every such kind's failure, and the call is not repeated for each."""
        if self._tagged is None:
            try:
                self._tagged = {clean_arn(m["ResourceARN"]): tags_of(m.get("Tags")) for m in pages(
                    self.clients("resourcegroupstaggingapi", self.region), "get_resources",
                    "ResourceTagMappingList", TagFilters=[{"Key": TAG_EXPIRES_AT}], ResourceTypeFilters=TAGGING_TYPES,
                    ResourcesPerPage=min(self.page_size, 100))}
            except Exception as err:  # noqa: BLE001 - recorded by each kind that needed it
                self._tagged = err
        if isinstance(self._tagged, Exception):
            raise self._tagged
        return self._tagged



def clean_arn(text: str) -> str:
    # moto renders endpoint-config ARNs as "('arn:...',)"; real AWS does not. Take the ARN out either way.
    match = re.search(r"arn:[^'\"\s,()]+", text)
    return match.group(0) if match else text
