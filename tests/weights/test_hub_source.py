"""The Hugging Face adapter, staged in-process into a real moto server on 127.0.0.1.

The real hub cannot be reached here (no internet), so `HfApi` and `hf_hub_download` are replaced by a small
client-side fake: `model_info` answers huggingface_hub's own ModelInfo-shaped data (RepoSibling and BlobLfsInfo,
the library's classes) for files kept in a local folder, and the download copies one of them into `local_dir` as
hf_hub_download does. What this shows: LFS sha256s are used before any download (a rerun downloads nothing but
the small non-LFS files), every download is checked against them, one file at a time in a temporary folder that
is gone afterwards, and the manifest records the commit the listing answered. What it cannot show: the real hub's
answers, gated repositories, rate limits."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling

from planner.weights import parse_manifest
from scripts.stage_weights.locations import StagedPrefix, StageError
from scripts.stage_weights.sources import HubSource
from scripts.stage_weights.stage import stage
from tests.weights.staging import MIB, write_shard

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "nvidia/Tiny-Test-Model"


class FakeHub:
    """model_info and hf_hub_download over the files of `folder`; files named in `lfs` are LFS files."""

    def __init__(self, folder: Path, lfs: set[str], lie_about: str | None = None):
        self.folder, self.lfs, self.lie_about = folder, lfs, lie_about
        self.downloads: list[str] = []
        self.workdirs: list[Path] = []

    def model_info(self, repo_id, *, revision=None, files_metadata=False):
        assert (repo_id, revision, files_metadata) == (REPO_ID, "main", True)
        siblings = []
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            name, data = path.relative_to(self.folder).as_posix(), path.read_bytes()
            sha = hashlib.sha256(data).hexdigest() if name != self.lie_about else "0" * 64
            lfs = BlobLfsInfo(size=len(data), sha256=sha, pointer_size=134) if name in self.lfs else None
            siblings.append(RepoSibling(rfilename=name, size=len(data), blob_id="b" * 40, lfs=lfs))
        return SimpleNamespace(sha=COMMIT, siblings=siblings)

    def download(self, repo_id, filename, *, revision=None, local_dir=None):
        assert (repo_id, revision) == (REPO_ID, COMMIT) and local_dir is not None
        assert not any(w.exists() for w in self.workdirs), "one file at a time, each folder removed after"
        self.downloads.append(filename)
        self.workdirs.append(Path(local_dir))
        target = Path(local_dir, filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / filename, target)
        return str(target)


@pytest.fixture
def hub(tmp_path):
    folder = tmp_path / "hub"
    write_shard(folder / "model-00001-of-00002.safetensors", 6 * MIB + 5, 1)
    write_shard(folder / "model-00002-of-00002.safetensors", 2 * MIB, 2)
    (folder / "config.json").write_text('{"architectures": ["NemotronH"]}\n')
    return folder


def staged(fake: FakeHub, s3, dest: StagedPrefix):
    source = HubSource(REPO_ID, "main", api=fake, download=fake.download)
    return stage(source, f"hf://{REPO_ID}", dest, s3, part_size=5 * MIB, concurrency=2, progress=lambda _: None)


def test_a_hub_revision_is_staged_and_a_rerun_downloads_only_what_has_no_lfs_sha256(hub, s3, bucket):
    fake = FakeHub(hub, lfs={"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    dest = StagedPrefix(bucket, "hub/tiny")
    report = staged(fake, s3, dest)
    assert sorted(fake.downloads) == ["config.json", "model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"]
    assert report.to_json()["bytes_uploaded"] == report.to_json()["total_bytes"] == sum(
        p.stat().st_size for p in hub.iterdir())
    manifest = parse_manifest(s3.get_object(Bucket=bucket, Key=dest.manifest_key)["Body"].read())
    assert (manifest.model, manifest.revision) == (REPO_ID, COMMIT)
    assert {f.path: f.sha256 for f in manifest.files} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in hub.iterdir()}

    fake.downloads.clear()
    again = staged(fake, s3, dest)
    assert fake.downloads == ["config.json"]  # the LFS files were judged by their sha256 metadata alone
    assert again.to_json()["bytes_uploaded"] == 0 and not again.manifest_written


def test_a_download_that_is_not_the_hubs_sha256_stops_the_staging(hub, s3, bucket):
    fake = FakeHub(hub, lfs={"model-00001-of-00002.safetensors"}, lie_about="model-00001-of-00002.safetensors")
    dest = StagedPrefix(bucket, "hub/lied")
    with pytest.raises(StageError, match=r"model-00001-of-00002.safetensors: the copy read has sha256 [0-9a-f]{64}, "
                                         r"the source says 0{64}"):
        staged(fake, s3, dest)
    staged_keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="hub/lied/").get("Contents", [])}
    assert staged_keys == {"hub/lied/config.json"}  # staged before it; no manifest, so the copy is incomplete


def test_a_hub_refusal_is_one_line_naming_the_call():
    class Refusing:
        def model_info(self, repo_id, **_):
            raise OSError("401 Client Error: Unauthorized\n  for url https://huggingface.co/api/models/x")

    with pytest.raises(StageError) as caught:
        HubSource(REPO_ID, None, api=Refusing(), download=lambda *a, **k: None)
    assert str(caught.value) == (f"hf:model_info {REPO_ID}@main: OSError: 401 Client Error: Unauthorized for url "
                                 "https://huggingface.co/api/models/x")


def test_fetch_from_the_hub_checks_every_file_writes_the_manifest_last_and_resumes(hub, tmp_path):
    from scripts.stage_weights.hubfetch import fetch_from_hub

    fake = FakeHub(hub, lfs={"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    source = HubSource(REPO_ID, "main", api=fake, download=fake.download)
    target = tmp_path / "node" / "model"
    report = fetch_from_hub(source, target, progress=lambda _: None)
    assert report.bytes_downloaded == report.total_bytes and report.files_skipped == 0
    for path in hub.iterdir():
        assert (target / path.name).read_bytes() == path.read_bytes()
    manifest = parse_manifest((target / "nemotron-weights-manifest.json").read_text())
    assert (manifest.model, manifest.revision) == (REPO_ID, COMMIT)
    assert {f.path: f.sha256 for f in manifest.files} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in hub.iterdir()}
    # a rerun fetches nothing; a file cut short is fetched again, alone
    fake.downloads.clear()
    with (target / "model-00002-of-00002.safetensors").open("r+b") as fh:
        fh.truncate(MIB)
    again = fetch_from_hub(HubSource(REPO_ID, "main", api=fake, download=fake.download), target,
                           progress=lambda _: None)
    assert fake.downloads == ["model-00002-of-00002.safetensors"] and again.files_skipped == 2


def test_fetch_from_the_hub_keeps_no_file_whose_bytes_are_not_the_hubs_sha256(hub, tmp_path):
    from scripts.stage_weights.hubfetch import fetch_from_hub

    fake = FakeHub(hub, lfs={"model-00001-of-00002.safetensors"}, lie_about="model-00001-of-00002.safetensors")
    target = tmp_path / "model"
    with pytest.raises(StageError, match="sha256 mismatch, not kept: model-00001-of-00002.safetensors"):
        fetch_from_hub(HubSource(REPO_ID, "main", api=fake, download=fake.download), target, progress=lambda _: None)
    assert not (target / "model-00001-of-00002.safetensors").exists()
    assert not (target / "nemotron-weights-manifest.json").exists()  # incomplete: no manifest
    assert (target / "config.json").exists()
