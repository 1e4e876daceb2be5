"""The online checks of the kinds asked over HTTP: container images, Helm charts, Hugging Face checkpoints and
GitHub actions."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import yaml

from planner.reference_checks import (
    GITHUB_API,
    MISSING,
    ReferenceCheck,
    action_check,
    action_repository,
    chart_registry_and_repository,
    checkpoint_check,
    helm_index_check,
    manifest_check,
    registry_and_repository,
    row,
    unchecked,
)
from planner.references import Reference
from scripts.check_references.web import Registry, Web, _json


def _ngc_key(reference: Reference, env: Mapping[str, str]) -> tuple[bool, tuple[str, str] | None]:
    """(can ask, basic credentials): nvcr.io is asked only with an NGC API key."""
    host = registry_and_repository(reference.name)[0] if reference.kind == "image" else ""
    if host != "nvcr.io":
        return True, None
    key = env.get("NGC_API_KEY", "")
    return bool(key), ("$oauthtoken", key) if key else None


def check_manifest(web: Web, reference: Reference, host: str, repository: str,
                   basic: tuple[str, str] | None = None) -> ReferenceCheck:
    registry = Registry(web, host, repository, basic)
    status = registry.manifest_status(reference.version)
    tags = registry.tags() if status in (200, 404) else None
    return manifest_check(reference, status, tags, where=f"{host}/{repository}", authenticated=basic is not None)


def check_image(web: Web, reference: Reference, env: Mapping[str, str]) -> ReferenceCheck:
    can_ask, basic = _ngc_key(reference, env)
    if not can_ask:
        return unchecked(reference, "NGC_API_KEY not set")
    host, repository = registry_and_repository(reference.name)
    return check_manifest(web, reference, host, repository, basic)


def check_chart(web: Web, reference: Reference, env: Mapping[str, str]) -> ReferenceCheck:
    if reference.repository.startswith("oci://"):
        return check_manifest(web, reference, *chart_registry_and_repository(reference))
    url = reference.repository.rstrip("/") + "/index.yaml"
    response = web.request("GET", url, follow_redirects=True)
    if response.status_code == 404:
        return row(reference, MISSING, f"no index.yaml at {url} (404)")
    if response.status_code != 200:
        return unchecked(reference, f"{url} answered {response.status_code}")
    index = yaml.load(response.text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loader
    return helm_index_check(reference, index if isinstance(index, dict) else {}, where=url)


def check_checkpoint(web: Web, reference: Reference, env: Mapping[str, str]) -> ReferenceCheck:
    token = env.get("HF_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = web.request("GET", f"https://huggingface.co/api/models/{reference.name}", headers=headers)
    return checkpoint_check(reference, response.status_code, _json(response), response.headers.get("x-error-code", ""))


def check_action(web: Web, reference: Reference, env: Mapping[str, str]) -> ReferenceCheck:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if env.get("GITHUB_TOKEN"):
        headers["Authorization"] = f"Bearer {env['GITHUB_TOKEN']}"
    api = f"https://{GITHUB_API}/repos/{action_repository(reference.name)}"
    tag = web.request("GET", f"{api}/git/ref/tags/{reference.version}", headers=headers)
    commit, latest = "", ""
    if tag.status_code == 200:
        target = _json(tag).get("object") or {}
        commit = target.get("sha", "")
        if target.get("type") == "tag":  # an annotated tag: its object is the commit
            annotated = web.request("GET", f"{api}/git/tags/{commit}", headers=headers)
            commit = (_json(annotated).get("object") or {}).get("sha", "") if annotated.status_code == 200 else ""
        release = web.request("GET", f"{api}/releases/latest", headers=headers)
        latest = _json(release).get("tag_name", "") if release.status_code == 200 else ""
    return action_check(reference, tag.status_code, commit, latest)


HTTP_CHECKS: dict[str, Callable[[Web, Reference, Mapping[str, str]], ReferenceCheck]] = {
    "image": check_image, "helm-chart": check_chart, "checkpoint": check_checkpoint, "github-action": check_action,
}


