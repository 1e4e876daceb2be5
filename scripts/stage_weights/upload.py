"""One file into S3 by multipart upload, resumable: the part of `python -m scripts.stage_weights` that sends bytes.

The file's sha256 is stored on the object (user metadata `sha256`, set when the upload is created), so a rerun skips
a file whose object already has its size and sha256 without reading the object back. S3 sets an object's metadata
when its multipart upload is created, so a local file is hashed once before its upload starts, and again from the
very bytes the parts are cut from: a file that changes while it is sent fails the run instead of being staged.

A run that was killed left an unfinished multipart upload on the key. A rerun takes it (the newest, when there are
several; the others are aborted), lists its parts and keeps each part whose size is the one this run would send and
whose ETag is the MD5 of the same bytes read again here (or, where S3 lists one, whose CRC32 matches: a bucket
encrypted with SSE-KMS answers ETags that are not MD5s). Every other part is sent again; the upload is completed,
and the object's size and `sha256` are checked. An unfinished upload of an older version of the file keeps only the
parts that still match, and if its metadata names the older sha256 the object is sent once more from scratch.

Parts go out `concurrency` at a time; at most that many parts are held in memory, plus the one being read.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from scripts.aws import CALL_FAILURES, error_code
from scripts.stage_weights.locations import StagedPrefix, StageError, aws_failure

MIB = 2**20
MIN_PART = 5 * MIB  # S3: every part but the last is 5 MiB to 5 GiB, at most 10,000 parts (docs/weights.md)
MAX_PART = 5 * 1024 * MIB
MAX_PARTS = 10_000
CHECKSUM = "CRC32"  # what boto3 and s3transfer send by default; parts carry it, the completion names it again
CHECKSUM_KEY = f"Checksum{CHECKSUM}"
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass
class FileOutcome:
    """What staging did with one file."""

    path: str
    size: int
    sha256: str
    action: str  # "skipped" (already in place), "uploaded" or "resumed"
    bytes_uploaded: int = 0
    parts_uploaded: int = 0
    parts_reused: int = 0


def part_size_for(size: int, asked: int) -> int:
    """The asked part size, grown (in whole MiB) until the file fits in 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    part = asked if needed <= asked else -(-needed // MIB) * MIB
    if part > MAX_PART:
        raise StageError(f"{size:,} bytes do not fit in {MAX_PARTS:,} parts of at most 5 GiB")
    return part


def object_in_place(s3: Any, dest: StagedPrefix, path: str, size: int, sha256: str) -> bool:
    """Whether the object is there with this size and a `sha256` metadata of this value (a HEAD, no read-back)."""
    try:
        head = s3.head_object(Bucket=dest.bucket, Key=dest.key(path))
    except ClientError as err:
        if error_code(err) in NOT_FOUND:
            return False
        raise aws_failure(err, dest.uri(path)) from None
    except CALL_FAILURES as err:
        raise aws_failure(err, dest.uri(path)) from None
    return head.get("ContentLength") == size and head.get("Metadata", {}).get("sha256") == sha256


def upload_file(s3: Any, dest: StagedPrefix, path: str, local: Path, sha256: str, *, part_size: int,
                concurrency: int, resume: bool = True) -> FileOutcome:
    """Send `local` to `dest.key(path)`, resuming an unfinished multipart upload of that key when there is one."""
    size = local.stat().st_size
    uri = dest.uri(path)
    try:
        if size == 0:  # S3 completes no multipart upload without a part; an empty file is one PUT
            s3.put_object(Bucket=dest.bucket, Key=dest.key(path), Body=b"", Metadata={"sha256": sha256})
            return FileOutcome(path, 0, sha256, "uploaded")
        part = part_size_for(size, part_size)
        upload_id, listed = unfinished_upload(s3, dest, path) if resume else (None, {})
        if upload_id is None:
            upload_id = s3.create_multipart_upload(Bucket=dest.bucket, Key=dest.key(path), ChecksumAlgorithm=CHECKSUM,
                                                   Metadata={"sha256": sha256})["UploadId"]
        outcome = FileOutcome(path, size, sha256, "resumed" if listed else "uploaded")
        sent, parts = send_parts(s3, dest.bucket, dest.key(path), upload_id, local, part, listed, concurrency,
                                 outcome)
        if sent != sha256:
            s3.abort_multipart_upload(Bucket=dest.bucket, Key=dest.key(path), UploadId=upload_id)
            raise StageError(f"{local}: changed while it was uploaded (sha256 {sent} now, {sha256} before)")
        s3.complete_multipart_upload(Bucket=dest.bucket, Key=dest.key(path), UploadId=upload_id,
                                     MultipartUpload={"Parts": parts})
        head = s3.head_object(Bucket=dest.bucket, Key=dest.key(path))
    except CALL_FAILURES as err:
        raise aws_failure(err, uri) from None
    if head.get("ContentLength") != size:
        raise StageError(f"{uri}: {head.get('ContentLength')} bytes after completion, the file has {size:,}")
    if head.get("Metadata", {}).get("sha256") != sha256:
        if not resume:
            raise StageError(f"{uri}: its sha256 metadata does not hold after a fresh upload")
        # the unfinished upload was of an older version of the file: its content is now right, its metadata not
        again = upload_file(s3, dest, path, local, sha256, part_size=part_size, concurrency=concurrency, resume=False)
        again.bytes_uploaded += outcome.bytes_uploaded
        return again
    return outcome


def unfinished_upload(s3: Any, dest: StagedPrefix, path: str) -> tuple[str | None, dict[int, dict]]:
    """The newest unfinished multipart upload of the key and its parts by number (the others are aborted)."""
    key = dest.key(path)
    uploads = [u for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=dest.bucket, Prefix=key)
               for u in page.get("Uploads", []) if u["Key"] == key]
    if not uploads:
        return None, {}
    newest = max(enumerate(uploads), key=lambda item: (item[1].get("Initiated"), item[0]))[1]
    for other in uploads:
        if other["UploadId"] != newest["UploadId"]:
            s3.abort_multipart_upload(Bucket=dest.bucket, Key=key, UploadId=other["UploadId"])
    parts = {p["PartNumber"]: p for page in s3.get_paginator("list_parts").paginate(
        Bucket=dest.bucket, Key=key, UploadId=newest["UploadId"]) for p in page.get("Parts", [])}
    return newest["UploadId"], parts


def crc32_base64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def part_still_good(listed: dict | None, data: bytes) -> bool:
    """An uploaded part holds these bytes: same size, and its ETag is their MD5 (or its listed CRC32 is theirs)."""
    if listed is None or listed.get("Size") != len(data):
        return False
    if listed.get("ETag", "").strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest():
        return True
    return bool(listed.get("ChecksumCRC32")) and listed["ChecksumCRC32"] == crc32_base64(data)


def send_parts(s3: Any, bucket: str, key: str, upload_id: str, local: Path, part_size: int,
               listed: dict[int, dict], concurrency: int, outcome: FileOutcome) -> tuple[str, list[dict]]:
    """Read the file part by part (hashing every byte), keep the parts already there, send the others
    `concurrency` at a time, counting both in `outcome`. Returns the sha256 read and the completion's parts."""
    digest = hashlib.sha256()
    parts: dict[int, dict] = {}

    def one_part(number: int, data: bytes) -> tuple[bool, dict]:
        """(sent, the part as CompleteMultipartUpload names it); runs on the pool, so it only reads `listed`."""
        if part_still_good(listed.get(number), data):
            return False, {"PartNumber": number, "ETag": listed[number]["ETag"], CHECKSUM_KEY: crc32_base64(data)}
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
                                ChecksumAlgorithm=CHECKSUM)
        return True, {"PartNumber": number, "ETag": answer["ETag"],
                      CHECKSUM_KEY: answer.get(CHECKSUM_KEY) or crc32_base64(data)}

    def tally(futures: set[Future]) -> None:
        for future in futures:
            sent, part = future.result()  # an AWS refusal ends the file here, not after every part was read
            parts[part["PartNumber"]] = part
            if sent:
                outcome.parts_uploaded += 1
                outcome.bytes_uploaded += sizes[part["PartNumber"]]
            else:
                outcome.parts_reused += 1

    sizes: dict[int, int] = {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool, local.open("rb") as fh:
        pending: set[Future] = set()
        while data := fh.read(part_size):
            number = len(sizes) + 1
            sizes[number] = len(data)
            digest.update(data)
            if len(pending) >= concurrency:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                tally(finished)
            pending.add(pool.submit(one_part, number, data))
        tally(pending)
    return digest.hexdigest(), [parts[n] for n in sorted(parts)]
