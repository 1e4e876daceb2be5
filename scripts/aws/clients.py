"""Sessions and clients for the scripts: one boto3 session per stack (its profile and region), clients made on first
use, one per (service, region), all with botocore's standard retry mode.

No endpoint_url is ever passed: boto3 itself honours AWS_PROFILE (when the stack names no aws:profile), the credential
chain and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> (a local moto server, for instance). Standard retry mode
retries throttling, transient and 5xx answers with backoff (bounded: AWS_MAX_ATTEMPTS or the config file's
max_attempts, else `DEFAULT_TOTAL_ATTEMPTS`); the scripts retry nothing of that kind themselves. Tests hand in ready
clients (moto, or botocore Stubbers) through `overrides`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

from scripts.aws.errors import name_html_error_pages

DEFAULT_TOTAL_ATTEMPTS = 6  # the first call and five retries, unless AWS_MAX_ATTEMPTS or the config file says


def session_for(region: str | None, profile: str | None = None) -> boto3.Session:
    """A session in the stack's region, with the stack's aws:profile when it names one (else AWS_PROFILE / default).

    Raises botocore.exceptions.ProfileNotFound when the profile is not configured.
    """
    return boto3.Session(profile_name=profile or None, region_name=region)


def retry_config(session: boto3.Session, config: Config | None = None) -> Config:
    """botocore's standard retry mode, merged into `config` (its own retries settings win). The number of attempts
    is the one AWS_MAX_ATTEMPTS or the config file's max_attempts names, else DEFAULT_TOTAL_ATTEMPTS."""
    retries: dict[str, Any] = {"mode": "standard"}
    asked = dict((config.retries if config else None) or {})
    if "max_attempts" not in asked and "total_max_attempts" not in asked and \
            session._session.get_config_variable("max_attempts") is None:  # noqa: SLF001 - boto3 has it only here
        retries["total_max_attempts"] = DEFAULT_TOTAL_ATTEMPTS
    standard = Config(retries={**retries, **asked})
    return config.merge(standard) if config else standard


class AwsClients:
    """Clients of one session, created when first asked for, one per (service, region); `overrides` maps a service
    name to a ready client to use instead (in any region). `config` (timeouts, pool size, fewer attempts) is merged
    over the standard retry mode. Calling the object, `clients("ec2", "eu-west-1")`, is `client("ec2", region)`."""

    def __init__(self, session: boto3.Session | None = None, overrides: Mapping[str, Any] | None = None,
                 config: Config | None = None):
        self.session = session or boto3.Session()
        name_html_error_pages(self.session)  # every script's clients: an HTML error page is one line, never a cell
        self._overrides = dict(overrides or {})
        self._config = retry_config(self.session, config)
        self._clients: dict[tuple[str, str | None], Any] = {}

    @property
    def region(self) -> str | None:
        return self.session.region_name

    def client(self, service: str, region: str | None = None) -> Any:
        if service in self._overrides:
            return self._overrides[service]
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = self.session.client(service, region_name=key[1], config=self._config)
        return self._clients[key]

    def __call__(self, service: str, region: str | None = None) -> Any:
        return self.client(service, region)
