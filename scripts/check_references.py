"""`python -m scripts.check_references [--json] [--timeout S]`: does every external name in planner/references.py
still exist, and is a newer version out? Asks each source online: OCI registries (v2 API), Helm repositories, the
Hugging Face API, the GitHub API, and IAM, SSM, SageMaker and EKS (read-only calls in us-east-1).

Every source host is probed once, all at once, with a 5 s connect timeout: an unreachable host is reported in one
"no network" line and its entries are not asked again, and the whole run stays within --timeout seconds. Needs
NGC_API_KEY for nvcr.io, AWS credentials for the AWS kinds; HF_TOKEN and GITHUB_TOKEN are used when set
(docs/references.md). Exit 0 when every entry is ok, 1 when one is missing, outdated or could not be checked, 2 on
bad flags.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError
from rich.console import Console
from rich.table import Table

from planner.__main__ import OneLineParser
from planner.cli import PipeConsole, run_main
from planner.reference_checks import (
    AWS_KINDS,
    GITHUB_API,
    MISSING,
    ReferenceCheck,
    action_check,
    action_repository,
    aws_error,
    chart_registry_and_repository,
    checkpoint_check,
    counts,
    exit_status,
    helm_index_check,
    jumpstart_check,
    kubernetes_check,
    manifest_check,
    next_link,
    parameter_check,
    parse_challenge,
    policy_check,
    registry_and_repository,
    row,
    source_host,
    unchecked,
)
from planner.references import REFERENCES, Reference
from scripts._aws import AwsClients, session_for

PROG = "python -m scripts.check_references"
CONNECT_S = 5.0  # a host that does not answer a connect in 5 s is treated as unreachable
REQUEST_S = 15.0  # one request, at most (an index.yaml of a big chart repository takes a few seconds)
DEFAULT_BUDGET_S = 120.0
MAX_REDIRECTS = 5
TAG_PAGES = 20  # a tags list is paged by the registry; vllm/vllm-openai has thousands of nightly tags
AWS_REGION = "us-east-1"  # public SSM parameters, the public hub and EKS versions are asked here
PUBLIC_HUB = "SageMakerPublicHub"
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
USER_AGENT = "nemotron-deploy-check-references"


class Unreachable(Exception):
    """A host that did not answer (connect refused or timed out, no DNS, a proxy that refused)."""

    def __init__(self, host: str, error: str):
        super().__init__(f"no network: {host} unreachable ({error})")
        self.host = host


class BudgetSpent(Exception):
    """The run's --timeout is used up."""


class Budget:
    """The run's time bound: each request gets what is left, never more than REQUEST_S (CONNECT_S to connect)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._deadline - self._clock())

    def timeout(self, most: float = REQUEST_S) -> httpx.Timeout:
        left = self.remaining()
        if left <= 0:
            raise BudgetSpent(f"time budget of {self.seconds:g} s spent")
        return httpx.Timeout(min(most, left), connect=min(CONNECT_S, left))


def _describe(err: BaseException) -> str:
    text = str(err).strip() or err.__class__.__doc__ or ""
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


class Web:
    """HTTPS requests within the budget; a host that failed once is remembered and never asked again."""

    def __init__(self, client: httpx.Client, budget: Budget):
        self.client = client
        self.budget = budget
        self.unreachable: dict[str, str] = {}
        self._lock = threading.Lock()

    def mark(self, host: str, error: str) -> None:
        with self._lock:
            self.unreachable.setdefault(host, error)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        host = httpx.URL(url).host
        if host in self.unreachable:
            raise Unreachable(host, self.unreachable[host])
        try:
            return self.client.request(method, url, timeout=self.budget.timeout(), **kwargs)
        except httpx.TransportError as err:
            failed = err.request.url.host if _has_request(err) else host  # a redirect may lead elsewhere
            self.mark(failed, _describe(err))
            raise Unreachable(failed, self.unreachable[failed]) from err

    def probe(self, hosts: Iterable[str]) -> None:
        """Ask each host once, all at once (HEAD /, any HTTP answer will do); record those that do not answer."""

        def knock(host: str) -> None:
            try:
                self.client.head(f"https://{host}/", timeout=self.budget.timeout(most=CONNECT_S))
            except httpx.TransportError as err:
                self.mark(host, _describe(err))
            except BudgetSpent:
                pass  # not the host's fault: its entries say the budget is spent

        hosts = sorted(set(hosts))
        if hosts:
            with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
                list(pool.map(knock, hosts))


def _has_request(err: httpx.TransportError) -> bool:
    try:
        err.request  # noqa: B018 - raises RuntimeError when the error carries no request
    except RuntimeError:
        return False
    return True


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Registry:
    """One repository of an OCI registry through the v2 API, with the bearer-token dance the registry asks for
    (anonymous for Docker Hub and registry.k8s.io; nvcr.io takes `$oauthtoken` and the NGC API key)."""

    def __init__(self, web: Web, host: str, repository: str, basic: tuple[str, str] | None = None):
        self.web, self.host, self.repository, self.basic = web, host, repository, basic
        self._headers: dict[str, dict[str, str]] = {}  # per host: a registry may redirect to its storage
        self._basic_hosts: set[str] = set()
        self._challenged: set[str] = set()  # hosts whose challenge was met once; a second 401 is their answer

    def _send(self, method: str, url: str, accept: str) -> httpx.Response:
        # Redirects are followed here, not by httpx, which drops the Authorization header on another host: a
        # registry.k8s.io tag list is served by a backing registry that asks for its own token.
        for _ in range(MAX_REDIRECTS):
            host = httpx.URL(url).host
            response = self.web.request(method, url, headers={"Accept": accept, **self._headers.get(host, {})},
                                        auth=self.basic if host in self._basic_hosts else None)
            if not response.is_redirect:
                break
            url = urljoin(url, response.headers["location"])
        return response

    def request(self, method: str, url: str, accept: str = "application/json") -> httpx.Response:
        url = urljoin(f"https://{self.host}/", url)
        response = self._send(method, url, accept)
        host = response.url.host
        if response.status_code != 401 or host in self._challenged:
            return response
        self._challenged.add(host)
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "bearer" and params.get("realm"):
            query = {k: params[k] for k in ("service", "scope") if k in params}
            query.setdefault("scope", f"repository:{self.repository}:pull")
            answer = self.web.request("GET", params["realm"], params=query, auth=self.basic, follow_redirects=True)
            token = _json(answer).get("token") or _json(answer).get("access_token")
            if answer.status_code != 200 or not token:
                return answer  # a refused token is the registry's answer about this repository
            self._headers[host] = {"Authorization": f"Bearer {token}"}
        elif scheme == "basic" and self.basic:
            self._basic_hosts.add(host)
        else:
            return response
        return self._send(method, url, accept)

    def manifest_status(self, tag: str) -> int:
        return self.request("HEAD", f"/v2/{self.repository}/manifests/{tag}", accept=MANIFEST_TYPES).status_code

    def tags(self) -> list[str] | None:
        """Every tag, page after page (None when the registry does not list them)."""
        tags: list[str] = []
        url: str | None = f"/v2/{self.repository}/tags/list?n=1000"
        for _ in range(TAG_PAGES):
            if url is None:
                break
            response = self.request("GET", url)
            if response.status_code != 200:
                return None
            tags += [str(t) for t in _json(response).get("tags") or ()]
            url = next_link(response.headers.get("link"))
        return tags


# ------------------------------------------------------------------------------------------------------- each kind
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


def _policy(client: Any, reference: Reference) -> ReferenceCheck:
    return policy_check(reference, client.get_policy(PolicyArn=reference.name)["Policy"])


def _parameter(client: Any, reference: Reference) -> ReferenceCheck:
    return parameter_check(reference, client.get_parameter(Name=reference.name)["Parameter"])


def _hub_models(client: Any, reference: Reference) -> ReferenceCheck:
    summaries: list[dict] = []
    kwargs: dict[str, Any] = {"HubName": PUBLIC_HUB, "HubContentType": "Model", "NameContains": reference.name}
    for _ in range(20):
        page = client.list_hub_contents(**kwargs)
        summaries += page.get("HubContentSummaries", [])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return jumpstart_check(reference, summaries)


def _cluster_versions(client: Any, reference: Reference) -> ReferenceCheck:
    versions: list[dict] = []
    for page in client.get_paginator("describe_cluster_versions").paginate():
        versions += page.get("clusterVersions", [])
    return kubernetes_check(reference, versions)


# kind -> (service, the IAM action the read-only role needs, the call)
AWS_CHECKS: dict[str, tuple[str, str, Callable[[Any, Reference], ReferenceCheck]]] = {
    "managed-policy": ("iam", "iam:GetPolicy", _policy),
    "ssm-parameter": ("ssm", "ssm:GetParameter", _parameter),
    "jumpstart-model": ("sagemaker", "sagemaker:ListHubContents", _hub_models),
    "kubernetes-version": ("eks", "eks:DescribeClusterVersions", _cluster_versions),
}


def check_aws(clients: AwsClients, reference: Reference) -> ReferenceCheck:
    """The AWS kinds, through read-only calls; a not-found error code means the name is gone."""
    service, action, call = AWS_CHECKS[reference.kind]
    client = clients.client(service)
    if reference.kind == "kubernetes-version" and not hasattr(client, "describe_cluster_versions"):
        return unchecked(reference, f"this botocore lacks {action}")
    try:
        return call(client, reference)
    except ClientError as err:
        error = err.response.get("Error", {})
        return aws_error(reference, action, error.get("Code", "Error"), error.get("Message", ""))


def _aws_host(clients: AwsClients, reference: Reference) -> str:
    return urlsplit(clients.client(AWS_CHECKS[reference.kind][0]).meta.endpoint_url).hostname or ""


def aws_clients_from_environment() -> tuple[AwsClients | None, str]:
    """Clients in us-east-1 with short timeouts and no retries, or None and why (no credentials, a bad profile)."""
    try:
        session = session_for(AWS_REGION)
        if session.get_credentials() is None:
            return None, "no AWS credentials"
    except BotoCoreError as err:
        return None, f"no AWS credentials ({_describe(err)})"
    config = Config(connect_timeout=CONNECT_S, read_timeout=REQUEST_S, retries={"total_max_attempts": 1})
    return AwsClients(session, {s: session.client(s, config=config) for s, _, _ in AWS_CHECKS.values()}), ""


# ------------------------------------------------------------------------------------------------------- the run
def check_all(references: Iterable[Reference], web: Web, aws: AwsClients | None, env: Mapping[str, str],
              no_aws_reason: str = "no AWS credentials") -> list[ReferenceCheck]:
    """One row per entry: probe every host first (at once), then ask each reachable source in turn."""
    references = list(references)

    def host_of(reference: Reference) -> str | None:
        if reference.kind in AWS_KINDS:
            return _aws_host(aws, reference) if aws else None
        return source_host(reference) if _ngc_key(reference, env)[0] else None

    web.probe(h for h in map(host_of, references) if h)
    rows = []
    for reference in references:
        host = host_of(reference)
        if reference.kind in AWS_KINDS and aws is None:
            rows.append(unchecked(reference, no_aws_reason))
        elif host in web.unreachable:
            rows.append(unchecked(reference, f"no network: {host} unreachable"))
        elif web.budget.remaining() <= 0:
            rows.append(unchecked(reference, f"time budget of {web.budget.seconds:g} s spent"))
        else:
            rows.append(_check_one(reference, web, aws, env, host))
    return rows


def _check_one(reference: Reference, web: Web, aws: AwsClients | None, env: Mapping[str, str],
               host: str | None) -> ReferenceCheck:
    try:
        if reference.kind in AWS_KINDS and aws is not None:
            return check_aws(aws, reference)
        if reference.kind in HTTP_CHECKS:
            return HTTP_CHECKS[reference.kind](web, reference, env)
        return unchecked(reference, f"no online check for kind {reference.kind!r}")
    except Unreachable as err:
        return unchecked(reference, f"no network: {err.host} unreachable")
    except (EndpointConnectionError, ConnectTimeoutError) as err:
        web.mark(host or "AWS", _describe(err))
        return unchecked(reference, f"no network: {host} unreachable")
    except BudgetSpent as err:
        return unchecked(reference, str(err))
    except (httpx.HTTPError, ValueError, yaml.YAMLError, BotoCoreError) as err:
        return unchecked(reference, _describe(err))


def notes(web: Web, rows: list[ReferenceCheck], no_aws_reason: str) -> list[str]:
    """The lines that explain many rows at once: one per unreachable host, one for missing AWS credentials."""
    lines = [f"no network: {host} unreachable ({error})" for host, error in sorted(web.unreachable.items())]
    aws_skipped = [r for r in rows if r.kind in AWS_KINDS and r.detail == no_aws_reason]
    if aws_skipped:
        lines.append(f"{no_aws_reason}: {len(aws_skipped)} IAM/SSM/SageMaker/EKS entries not checked "
                     "(docs/references.md: the read-only role)")
    return lines


def _shown(r: ReferenceCheck) -> str:
    if r.kind == "github-action":
        name, _, sha = r.ref.partition("@")
        return f"{name}@{r.version} ({sha[:12]})"
    return r.ref


def print_table(rows: list[ReferenceCheck], console: Console) -> None:
    table = Table(title="external names (planner/references.py)", title_justify="left")
    for column in ("entry", "kind", "reference", "status", "detail"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "missing": "red", "newer": "yellow", "unchecked": "magenta"}
    for r in rows:
        table.add_row(r.key, r.kind, _shown(r), f"[{style[r.status]}]{r.verdict}[/]", r.detail)
    console.print(table)
    tally = counts(rows)
    console.print(f"{tally['ok']} ok, {tally['missing']} missing, {tally['newer']} with a newer version, "
                  f"{tally['unchecked']} could not be checked")


def main(argv: list[str] | None = None, http: httpx.Client | None = None, aws: AwsClients | None = None,
         environ: Mapping[str, str] | None = None, references: Iterable[Reference] = REFERENCES) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("--json", action="store_true",
                        help='one JSON object {"references": [...], "counts", "unreachable", "notes", "ok"}')
    parser.add_argument("--timeout", type=float, default=DEFAULT_BUDGET_S, metavar="S",
                        help=f"bound on the whole run in seconds (default {DEFAULT_BUDGET_S:g})")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout: {args.timeout:g}; allowed: a number of seconds above 0")
    env = os.environ if environ is None else environ
    no_aws_reason = "no AWS credentials"
    if aws is None:
        aws, no_aws_reason = aws_clients_from_environment()
    client = http or httpx.Client(headers={"User-Agent": USER_AGENT}, trust_env=True)
    web = Web(client, Budget(args.timeout))
    console = PipeConsole(highlight=False, width=160)
    try:
        if args.json or not console.is_terminal:
            rows = check_all(references, web, aws, env, no_aws_reason)
        else:
            with console.status("asking the sources..."):
                rows = check_all(references, web, aws, env, no_aws_reason)
    finally:
        if http is None:
            client.close()
    lines = notes(web, rows, no_aws_reason)
    for line in lines:
        print(f"{PROG}: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps({"references": [r.to_json() for r in rows], "counts": counts(rows),
                          "unreachable": dict(sorted(web.unreachable.items())), "notes": lines,
                          "ok": exit_status(rows) == 0}, indent=2))
    else:
        print_table(rows, console)
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(run_main(main))
