"""The pieces under the command line: part sizes within S3's limits, which parts of an unfinished upload are kept,
and `staged_copy_problems` (what preflight calls) answering every refusal with a line instead of raising. AWS
refusals that moto does not give (AccessDenied) come from botocore's Stubber; the rest is a real moto server."""

from __future__ import annotations

import hashlib
import io

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest
from scripts.stage_weights import NO_MANIFEST, staged_copy_problems
from scripts.stage_weights.locations import StagedPrefix, StageError
from scripts.stage_weights.upload import MAX_PART, MIB, crc32_base64, part_size_for, part_still_good, upload_file
from tests.weights.staging import sha256_of, write_shard

MANIFEST = WeightsManifest("m", "r", (WeightFile("a.bin", 10, "a" * 64), WeightFile("b/c.bin", 3, "b" * 64)))


def test_part_sizes_stay_within_s3s_limits():
    assert part_size_for(100 * MIB, 64 * MIB) == 64 * MIB
    assert part_size_for(10_000 * 64 * MIB, 64 * MIB) == 64 * MIB  # exactly 10,000 parts
    grown = part_size_for(10**12, 64 * MIB)  # 1 TB in at most 10,000 parts: whole MiB, 96 MiB
    assert grown == 96 * MIB and -(-10**12 // grown) <= 10_000
    with pytest.raises(StageError, match="do not fit in 10,000 parts"):
        part_size_for(10_000 * MAX_PART + 1, 64 * MIB)


def test_a_part_is_kept_only_when_its_bytes_are_the_ones_read_again():
    data = b"x" * 1000
    md5 = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
    assert part_still_good({"Size": 1000, "ETag": md5}, data)
    assert not part_still_good({"Size": 999, "ETag": md5}, data)
    assert not part_still_good({"Size": 1000, "ETag": '"0123"'}, data)  # an SSE-KMS ETag, no CRC32 listed
    assert part_still_good({"Size": 1000, "ETag": '"0123"', "ChecksumCRC32": crc32_base64(data)}, data)
    assert not part_still_good(None, data)


def stubbed() -> tuple[object, Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def body(text: str) -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text.encode()))


def test_staged_copy_problems_names_a_refused_call_instead_of_raising():
    client, stub = stubbed()
    stub.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    stub.add_response("get_object", {"Body": body(MANIFEST.to_json())})
    stub.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", 403)
    stub.add_response("get_object", {"Body": body("{not json")})
    with stub:
        assert staged_copy_problems(client, "s3://bkt-x/p") == [
            f"s3:GetObject on s3://bkt-x/p/{MANIFEST_NAME}: AccessDenied: Access Denied"]
        assert staged_copy_problems(client, "s3://bkt-x/p") == [
            "s3:ListObjectsV2 on s3://bkt-x/p: AccessDenied: Access Denied"]
        [unreadable] = staged_copy_problems(client, "s3://bkt-x/p")
        assert unreadable.startswith(f"s3://bkt-x/p/{MANIFEST_NAME}: manifest: ")
    assert staged_copy_problems(client, "not-a-uri") == [
        "uri: 'not-a-uri' is not valid; allowed: s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case letters, "
        "digits, . and -)"]


def test_staged_copy_problems_on_a_real_listing(s3, bucket):
    uri = f"s3://{bucket}/copy"
    assert staged_copy_problems(s3, uri) == [f"{NO_MANIFEST} ({uri}/{MANIFEST_NAME} is not there)"]
    s3.put_object(Bucket=bucket, Key=f"copy/{MANIFEST_NAME}", Body=MANIFEST.to_json().encode())
    s3.put_object(Bucket=bucket, Key="copy/a.bin", Body=b"0123456789")
    s3.put_object(Bucket=bucket, Key="copy/b/c.bin", Body=b"toolong")
    assert staged_copy_problems(s3, uri) == ["incomplete: b/c.bin: 7 bytes, the manifest says 3"]
    s3.put_object(Bucket=bucket, Key="copy/b/c.bin", Body=b"abc")
    assert staged_copy_problems(s3, uri) == []
    assert staged_copy_problems(s3, "s3://no-such-bucket-here/copy") == [
        f"s3:GetObject on s3://no-such-bucket-here/copy/{MANIFEST_NAME}: NoSuchBucket: The specified bucket does "
        "not exist"]


def test_a_part_that_changed_is_sent_again_and_the_others_kept(s3, bucket, tmp_path):
    local = tmp_path / "w.bin"
    digest = write_shard(local, 12 * MIB, 5)
    data = local.read_bytes()
    dest = StagedPrefix(bucket, "changed")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="changed/w.bin", Metadata={"sha256": digest},
                                        ChecksumAlgorithm="CRC32")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="changed/w.bin", UploadId=upload, PartNumber=1, Body=b"\0" * (5 * MIB))
    s3.upload_part(Bucket=bucket, Key="changed/w.bin", UploadId=upload, PartNumber=2, Body=data[5 * MIB:10 * MIB])
    outcome = upload_file(s3, dest, "w.bin", local, digest, part_size=5 * MIB, concurrency=2)
    assert (outcome.action, outcome.parts_reused, outcome.parts_uploaded) == ("resumed", 1, 2)
    assert outcome.bytes_uploaded == 7 * MIB
    assert s3.get_object(Bucket=bucket, Key="changed/w.bin")["Body"].read() == data


def test_an_unfinished_upload_of_an_older_file_does_not_leave_its_sha256_behind(s3, bucket, tmp_path):
    local = tmp_path / "w.bin"
    digest = write_shard(local, 7 * MIB, 6)
    dest = StagedPrefix(bucket, "older")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="older/w.bin", Metadata={"sha256": "0" * 64},
                                        ChecksumAlgorithm="CRC32")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="older/w.bin", UploadId=upload, PartNumber=1,
                   Body=local.read_bytes()[:5 * MIB])  # the first part did not change between the two versions
    outcome = upload_file(s3, dest, "w.bin", local, digest, part_size=5 * MIB, concurrency=2)
    assert outcome.action == "uploaded" and outcome.bytes_uploaded == 2 * MIB + 7 * MIB
    head = s3.head_object(Bucket=bucket, Key="older/w.bin")
    assert head["Metadata"]["sha256"] == digest == sha256_of(local)
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="older/").get("Uploads", []) == []


def test_an_answer_botocore_cannot_parse_is_a_problem_line_not_a_traceback():
    """A ResponseParserError is no BotoCoreError: a garbled listing or manifest read must still be one line."""
    from botocore.parsers import ResponseParserError

    client, _ = stubbed()

    def garbled(**_):
        raise ResponseParserError("Unable to parse response (not well-formed), invalid XML received")

    client.get_object = garbled
    [line] = staged_copy_problems(client, "s3://bkt-x/p")
    assert line.startswith(f"s3 on s3://bkt-x/p/{MANIFEST_NAME}: ") and "could not be read" in line
    client2, stub = stubbed()
    stub.add_response("get_object", {"Body": body(MANIFEST.to_json())})

    class Pages:
        def paginate(self, **_):
            raise ResponseParserError("Unable to parse response (not well-formed), invalid XML received")

    client2.get_paginator = lambda name: Pages()
    with stub:
        [line] = staged_copy_problems(client2, "s3://bkt-x/p")
    assert line.startswith("s3:ListObjectsV2 on s3://bkt-x/p: ") and "could not be read" in line
