"""What an online answer means for a registry entry: version comparison, the reading of each source's answer and the
report rows of `make check-references`.

Pure: the network side (scripts/check_references/) fetches, and hands the status codes and parsed bodies here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from planner.references import Reference

OK, MISSING, NEWER, UNCHECKED = "ok", "missing", "newer", "unchecked"
STATUSES = (OK, MISSING, NEWER, UNCHECKED)

DOCKER_HUB = "registry-1.docker.io"
HUGGING_FACE = "huggingface.co"
GITHUB_API = "api.github.com"
AWS_KINDS = ("managed-policy", "ssm-parameter", "jumpstart-model", "kubernetes-version", "eks-addon")


@dataclass(frozen=True)
class ReferenceCheck:
    """One report row: the entry, what its source said (ok / missing / newer / unchecked) and why."""

    key: str
    kind: str
    ref: str
    version: str
    status: str
    detail: str = ""
    newest: str = ""  # the newer version the source offers, when status is NEWER

    @property
    def verdict(self) -> str:
        """The status as a person reads it: `ok`, `missing`, `newer: v0.33.0`, `could not check`."""
        if self.status == NEWER:
            return f"newer: {self.newest}"
        if self.status == UNCHECKED:
            return "could not check"
        return self.status

    def to_json(self) -> dict:
        return {"key": self.key, "kind": self.kind, "ref": self.ref, "version": self.version, "status": self.status,
                "newest": self.newest, "detail": self.detail}


def row(reference: Reference, status: str, detail: str = "", newest: str = "") -> ReferenceCheck:
    """A report row for `reference`."""
    return ReferenceCheck(reference.key, reference.kind, reference.ref, reference.version, status, detail, newest)


def unchecked(reference: Reference, why: str) -> ReferenceCheck:
    """A row for an entry whose source could not be asked, saying why."""
    return row(reference, UNCHECKED, why)


def exit_status(rows: Iterable[ReferenceCheck]) -> int:
    """0 when every entry is ok; 1 when one is missing, outdated or could not be checked."""
    return 0 if all(r.status == OK for r in rows) else 1


def counts(rows: Iterable[ReferenceCheck]) -> dict[str, int]:
    """How many rows have each status, every status present (zero included)."""
    tally = dict.fromkeys(STATUSES, 0)
    for r in rows:
        tally[r.status] += 1
    return tally


# ------------------------------------------------------------------------------------------------------- versions
_VERSION = re.compile(r"^(?P<prefix>[A-Za-z]*)(?P<numbers>\d+(?:\.\d+)*)(?P<suffix>.*)$")


def version_shape(tag: str) -> tuple[str, int, str] | None:
    """(prefix, count of numbers, suffix) of a semver-ish tag: `v0.22.0` -> ("v", 3, ""), `1.30.0-alpine` -> ("", 3,
    "-alpine"); None for tags that are not versions (`latest`, `nightly-abc`)."""
    match = _VERSION.match(tag)
    if not match:
        return None
    return match["prefix"], match["numbers"].count(".") + 1, match["suffix"]


def version_numbers(tag: str) -> tuple[int, ...]:
    match = _VERSION.match(tag)
    return tuple(int(n) for n in match["numbers"].split(".")) if match else ()


def newest_of_shape(current: str, candidates: Iterable[str]) -> str | None:
    """The newest candidate of the same shape as `current` (same prefix, number count and suffix, so `1.30.1-alpine`
    counts for `1.30.0-alpine` but `1.31.0-alpine3.22` or `v0.33.0rc1` do not) when it is newer than `current`."""
    shape = version_shape(current)
    if shape is None:
        return None
    same = [c for c in candidates if version_shape(c) == shape]
    best = max(same, key=version_numbers, default=None)
    if best is None or version_numbers(best) <= version_numbers(current):
        return None
    return best


def _present(reference: Reference, candidates: Sequence[str], detail: str) -> ReferenceCheck:
    newer = newest_of_shape(reference.version, candidates)
    if newer:
        return row(reference, NEWER, f"{detail}; newer: {newer}", newer)
    return row(reference, OK, detail)


# ------------------------------------------------------------------------------------------------------- where to ask
def registry_and_repository(name: str) -> tuple[str, str]:
    """(registry host, repository path) of an image name: `vllm/vllm-openai` -> Docker Hub, `vllm/vllm-openai`;
    `nginx` -> Docker Hub, `library/nginx`; `nvcr.io/nim/x` -> nvcr.io, `nim/x`."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, name if rest else f"library/{name}"


def chart_registry_and_repository(reference: Reference) -> tuple[str, str]:
    """(registry host, repository path) of a chart kept in an OCI registry (`oci://registry.k8s.io/lws/charts`)."""
    base = reference.repository.removeprefix("oci://").rstrip("/")
    host, _, path = base.partition("/")
    return host, f"{path}/{reference.name}" if path else reference.name


def action_repository(name: str) -> str:
    """owner/repo of an action (`github/codeql-action/init` -> `github/codeql-action`)."""
    return "/".join(name.split("/")[:2])


def source_host(reference: Reference) -> str | None:
    """The host asked about `reference` over HTTPS; None for the kinds asked through AWS APIs."""
    if reference.kind == "image":
        return registry_and_repository(reference.name)[0]
    if reference.kind == "helm-chart":
        if reference.repository.startswith("oci://"):
            return chart_registry_and_repository(reference)[0]
        return urlsplit(reference.repository).hostname
    if reference.kind == "checkpoint":
        return HUGGING_FACE
    if reference.kind == "github-action":
        return GITHUB_API
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme and parameters of a WWW-Authenticate header (`Bearer realm="…",service="…",scope="…"`)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def next_link(header: str | None) -> str | None:
    """The rel="next" target of an RFC 8288 Link header (how registries page a tags list), None at the last page."""
    for part in (header or "").split(","):
        match = re.match(r'\s*<([^>]*)>\s*;.*rel="?next"?', part)
        if match:
            return match[1]
    return None


# ------------------------------------------------------------------------------------------------------- answers
def manifest_check(reference: Reference, status: int, tags: Sequence[str] | None, *, where: str,
                   authenticated: bool = False) -> ReferenceCheck:
    """An image or OCI chart: the registry's answer to HEAD manifests/<tag> (`status`) and its tags list (None when
    it could not be listed)."""
    listing = f"{len(tags)} tags listed" if tags is not None else "tags not listed"
    if status == 200:
        return _present(reference, tags or (), f"tag {reference.version} in {where} ({listing})")
    if status == 404:
        newest = max((t for t in tags or () if version_shape(t) == version_shape(reference.version)),
                     key=version_numbers, default="")
        hint = f"; newest of that shape: {newest}" if newest else ""
        return row(reference, MISSING, f"tag {reference.version} not in {where} (404){hint}", newest)
    if status in (401, 403) and not authenticated:
        return row(reference, MISSING, f"{where} refused an anonymous pull ({status}): repository missing or private")
    if status in (401, 403):
        return unchecked(reference, f"{where} rejected the credentials ({status})")
    return unchecked(reference, f"{where} answered {status} for the manifest")


def helm_index_check(reference: Reference, index: Mapping, *, where: str) -> ReferenceCheck:
    """A chart in an https Helm repository: its parsed index.yaml."""
    entries = (index or {}).get("entries") or {}
    if reference.name not in entries:
        return row(reference, MISSING, f"chart {reference.name} not in {where}")
    versions = [str(e.get("version", "")) for e in entries[reference.name] or ()]
    if reference.version not in versions:
        newest = max((v for v in versions if version_shape(v) == version_shape(reference.version)),
                     key=version_numbers, default="")
        hint = f"; newest: {newest}" if newest else ""
        return row(reference, MISSING, f"version {reference.version} not in {where}{hint}", newest)
    return _present(reference, versions, f"{reference.version} in {where}")


def checkpoint_check(reference: Reference, status: int, body: Mapping | None, error_code: str = "") -> ReferenceCheck:
    """A Hugging Face repository: the status, JSON body and X-Error-Code header of GET /api/models/<repo_id>."""
    body = body or {}
    if status == 200:
        gated = body.get("gated")
        note = f"; gated ({gated}): downloads need an accepted licence and HF_TOKEN" if gated else ""
        return row(reference, OK, f"{body.get('id', reference.name)} on Hugging Face{note}")
    said = body.get("error") or ""
    words = " ".join(w for w in (error_code, said) if w) or "no reason given"
    if error_code == "GatedRepo":
        return unchecked(reference, f"gated: Hugging Face answered {status} ({words}); set HF_TOKEN of an account "
                                    "that accepted the licence")
    if status in (401, 403, 404):
        return row(reference, MISSING, f"Hugging Face answered {status}: {words}")
    return unchecked(reference, f"Hugging Face answered {status}: {words}")


def action_check(reference: Reference, tag_status: int, tag_commit: str, latest_release: str) -> ReferenceCheck:
    """A GitHub action: the commit its version tag points at (`tag_status` of GET git/ref/tags/<version>) and the tag
    of the latest release ("" when none)."""
    repo = action_repository(reference.name)
    if tag_status == 404:
        return row(reference, MISSING, f"no tag {reference.version} in {repo}")
    if tag_status != 200:
        return unchecked(reference, f"GitHub answered {tag_status} for tag {reference.version} of {repo}")
    if tag_commit != reference.repository:
        return row(reference, MISSING, f"tag {reference.version} of {repo} points at {tag_commit}, not at the pinned "
                                       f"{reference.repository}")
    return _present(reference, [latest_release] if latest_release else [],
                    f"tag {reference.version} is the pinned commit" + (f"; latest release {latest_release}"
                                                                        if latest_release else ""))


def aws_error(reference: Reference, action: str, code: str, message: str) -> ReferenceCheck:
    """An AWS call that failed: a not-found code means the name is gone; anything else means it was not checked."""
    if code in ("NoSuchEntity", "NoSuchEntityException", "ParameterNotFound", "ResourceNotFound",
                "ResourceNotFoundException"):
        return row(reference, MISSING, f"{action}: {code}: {message}".rstrip(": "))
    return unchecked(reference, f"{action} failed: {code}: {message}".rstrip(": "))


def policy_check(reference: Reference, policy: Mapping) -> ReferenceCheck:
    """An IAM managed policy: the `Policy` of iam:GetPolicy."""
    return row(reference, OK, f"{policy.get('PolicyName', '')} version {policy.get('DefaultVersionId', '?')}")


def parameter_check(reference: Reference, parameter: Mapping) -> ReferenceCheck:
    """An SSM public parameter: the `Parameter` of ssm:GetParameter in us-east-1."""
    return row(reference, OK, f"us-east-1: {parameter.get('Value', '')}")


def jumpstart_check(reference: Reference, summaries: Sequence[Mapping]) -> ReferenceCheck:
    """A JumpStart name filter: the HubContentSummaries of ListHubContents on SageMakerPublicHub."""
    names = sorted({s.get("HubContentName", "") for s in summaries} - {""})
    if not names:
        return row(reference, MISSING, f"no model of SageMakerPublicHub has a name containing {reference.name!r}")
    return row(reference, OK, f"matches: {', '.join(names)}")


def kubernetes_check(reference: Reference, versions: Sequence[Mapping]) -> ReferenceCheck:
    """An EKS Kubernetes version: the clusterVersions of eks:DescribeClusterVersions."""
    by_version = {str(v.get("clusterVersion")): v for v in versions}
    standard = [k for k, v in by_version.items() if str(v.get("status", "")).lower() == "standard-support"]
    newest = newest_of_shape(reference.name, standard) or ""
    ours = by_version.get(reference.name)
    if ours is None:
        return row(reference, MISSING, f"EKS does not list Kubernetes {reference.name}", newest)
    status = str(ours.get("status", "")).lower()
    end = ours.get("endOfStandardSupportDate")
    until = f" until {str(end)[:10]}" if end else ""
    if status == "unsupported":
        return row(reference, MISSING, f"Kubernetes {reference.name} is unsupported on EKS", newest)
    if status == "extended-support":
        detail = f"Kubernetes {reference.name} is in extended support (paid)"
        return row(reference, NEWER, detail + (f"; newer: {newest}" if newest else ""),
                   newest or "a version in standard support")
    if newest:
        return row(reference, NEWER, f"standard support{until}; newer: {newest}", newest)
    return row(reference, OK, f"standard support{until}")


def addon_check(reference: Reference, kubernetes_version: str, addons: Sequence[Mapping]) -> ReferenceCheck:
    """An EKS add-on version: the addonVersions of eks:DescribeAddonVersions for the pinned Kubernetes version."""
    versions = [str(v.get("addonVersion")) for a in addons if a.get("addonName") == reference.name
                for v in a.get("addonVersions", [])]
    newest = newest_of_shape(reference.version, versions) or ""
    if reference.version not in versions:
        return row(reference, MISSING, f"EKS lists no {reference.name} {reference.version} for Kubernetes "
                                       f"{kubernetes_version}", newest)
    if newest:
        return row(reference, NEWER, f"listed for Kubernetes {kubernetes_version}; newer: {newest}", newest)
    return row(reference, OK, f"listed for Kubernetes {kubernetes_version}")
