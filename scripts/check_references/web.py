"""The HTTP side of the reference check: a time budget for the whole run, one client that probes every host at once
and remembers the unreachable ones, and an OCI registry client (token challenge, manifests, paged tag lists)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin

import httpx

from planner.reference_checks import (
    next_link,
    parse_challenge,
)

CONNECT_S = 5.0  # a host that does not answer a connect in 5 s is treated as unreachable
REQUEST_S = 15.0  # one request, at most (an index.yaml of a big chart repository takes a few seconds)
MAX_REDIRECTS = 5
TAG_PAGES = 20  # a tags list is paged by the registry; vllm/vllm-openai has thousands of nightly tags
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
