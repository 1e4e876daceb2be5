"""AWS sessions for the scripts: one boto3 session per stack (its profile and region), clients made on first use.

boto3 itself honours AWS_PROFILE (when the stack names no aws:profile), the credential chain and AWS_ENDPOINT_URL
(a local moto server, for instance). Tests hand in ready clients (moto, or botocore Stubbers) through `overrides`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3


def session_for(region: str, profile: str | None = None) -> boto3.Session:
    """A session in the stack's region, with the stack's aws:profile when it names one (else AWS_PROFILE / default).

    Raises botocore.exceptions.ProfileNotFound when the profile is not configured.
    """
    return boto3.Session(profile_name=profile or None, region_name=region)


class AwsClients:
    """Clients of one session, created when first asked for; `overrides` maps a service name to a client to use."""

    def __init__(self, session: boto3.Session, overrides: Mapping[str, Any] | None = None):
        self.session = session
        self._clients: dict[str, Any] = dict(overrides or {})

    @property
    def region(self) -> str | None:
        return self.session.region_name

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]
