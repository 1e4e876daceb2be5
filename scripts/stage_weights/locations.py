"""Where a staged copy lives: an `s3://bucket/prefix` checked before anything is sent, the keys under it, and the
one error type that ends a run with one line and exit status 1."""

from __future__ import annotations

import re
from dataclasses import dataclass

from botocore.exceptions import ClientError

from planner.errors import PlanInputError
from planner.startup import s3_location
from planner.weights import MANIFEST_NAME
from scripts.aws import describe_error

PROG = "python -m scripts.stage_weights"
# S3's general purpose bucket names: 3-63 lower-case letters, digits, dots and hyphens, a letter or digit at each end
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_URI_ALLOWED = "s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case letters, digits, . and -)"


@dataclass(frozen=True)
class StagedPrefix:
    """The S3 prefix a model revision is staged under; the manifest sits at its root."""

    bucket: str
    prefix: str  # no leading or trailing slash; "" for the bucket's root

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    @property
    def manifest_key(self) -> str:
        return self.key(MANIFEST_NAME)

    @property
    def manifest_uri(self) -> str:
        return f"s3://{self.bucket}/{self.manifest_key}"

    @property
    def listing_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def uri(self, path: str = "") -> str:
        key = self.key(path) if path else self.prefix
        return f"s3://{self.bucket}/{key}"


def staged_prefix(uri: str, flag: str) -> StagedPrefix:
    """An `s3://bucket/prefix` URI, or PlanInputError naming `flag`: the bucket must be a valid S3 bucket name, and
    the prefix must not hold empty, `.` or `..` parts."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise PlanInputError(flag, uri, S3_URI_ALLOWED)
    location = s3_location(uri)
    parts = location.prefix.split("/") if location.prefix else []
    if not BUCKET.match(location.bucket) or ".." in location.bucket or any(p in ("", ".", "..") for p in parts):
        raise PlanInputError(flag, uri, S3_URI_ALLOWED)
    return StagedPrefix(location.bucket, location.prefix)


class StageError(Exception):
    """What ends a staging or a fetch with one line and exit status 1: an AWS refusal (naming the call, the object
    and the error code) or a copy that does not match its checksum."""


def aws_failure(err: BaseException, uri: str) -> StageError:
    """`s3:CreateMultipartUpload on s3://b/k: NoSuchBucket: The specified bucket does not exist`."""
    operation = f"s3:{err.operation_name}" if isinstance(err, ClientError) else "s3"
    return StageError(f"{operation} on {uri}: {describe_error(err)}")
