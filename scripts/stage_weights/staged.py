"""A staged copy as S3 holds it: its manifest (read, written last, removed before the copy changes) and the check
that every file the manifest names is there at its size: `staged_copy_problems`, which `verify` prints and preflight
calls. It never raises on an AWS refusal: a refused or failed call is one problem line naming the call."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from planner.errors import PlanInputError
from planner.weights import WeightsManifest, listing_problems, parse_manifest
from scripts.aws import CALL_FAILURES, describe_error, error_code
from scripts.stage_weights.locations import StagedPrefix, StageError, aws_failure, staged_prefix

NO_MANIFEST = "incomplete: no manifest"
MOST_LISTED_PAGES = 1_000  # 1,000 keys a page: a million objects under a prefix is far past any checkpoint


def read_manifest(s3: Any, dest: StagedPrefix) -> WeightsManifest | None:
    """The manifest at the prefix's root; None when there is none. StageError when the call is refused or the
    manifest does not parse."""
    try:
        body = s3.get_object(Bucket=dest.bucket, Key=dest.manifest_key)["Body"].read()
    except ClientError as err:
        if error_code(err) in ("NoSuchKey", "404"):
            return None
        raise aws_failure(err, dest.manifest_uri) from None
    except CALL_FAILURES as err:
        raise aws_failure(err, dest.manifest_uri) from None
    try:
        return parse_manifest(body, dest.manifest_uri)
    except PlanInputError as err:
        raise StageError(str(err)) from None


def write_manifest(s3: Any, dest: StagedPrefix, manifest: WeightsManifest) -> None:
    try:
        s3.put_object(Bucket=dest.bucket, Key=dest.manifest_key, Body=manifest.to_json().encode(),
                      ContentType="application/json")
    except CALL_FAILURES as err:
        raise aws_failure(err, dest.manifest_uri) from None


def remove_manifest(s3: Any, dest: StagedPrefix) -> None:
    """Before the first byte of a staging changes the copy: a prefix without a manifest is incomplete."""
    try:
        s3.delete_object(Bucket=dest.bucket, Key=dest.manifest_key)
    except CALL_FAILURES as err:
        raise aws_failure(err, dest.manifest_uri) from None


def listed_sizes(s3: Any, dest: StagedPrefix) -> dict[str, int]:
    """Every object under the prefix, by its path relative to the prefix, with its size (ListObjectsV2, paged)."""
    sizes: dict[str, int] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=dest.bucket, Prefix=dest.listing_prefix,
                                                         PaginationConfig={"MaxItems": MOST_LISTED_PAGES * 1000})
    for page in pages:
        for item in page.get("Contents", []):
            sizes[item["Key"][len(dest.listing_prefix):]] = item["Size"]
    return sizes


def staged_copy_problems(s3: Any, uri: str) -> list[str]:
    """What keeps the staged copy at `uri` from being deployed, one line each; empty when the manifest is there and
    every file it names is listed at its size. Checksums are not read here: `fetch` verifies them on every copy.

    Never raises for an AWS refusal, a missing bucket or a bad manifest: each is a problem line (a bad URI is one
    too)."""
    try:
        dest = staged_prefix(uri, "uri")
    except PlanInputError as err:
        return [str(err)]
    try:
        manifest = read_manifest(s3, dest)
    except StageError as err:
        return [str(err)]
    if manifest is None:
        return [f"{NO_MANIFEST} ({dest.manifest_uri} is not there)"]
    try:
        sizes = listed_sizes(s3, dest)
    except CALL_FAILURES as err:
        return [f"s3:ListObjectsV2 on {dest.uri()}: {describe_error(err)}"]
    return [f"incomplete: {problem}" for problem in listing_problems(manifest, sizes)]
