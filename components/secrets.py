"""The endpoint's secrets in one Secrets Manager secret: the API key (generated when not configured) and tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

GENERATED_KEY_LENGTH = 48


@dataclass(frozen=True)
class EndpointSecretArgs:
    """`env_names`: the variables the secret holds (`plan.ec2.secret_env_names`); `values`: the configured Pulumi
    secrets by variable name; a variable without a configured value gets a generated random value."""

    env_names: Sequence[str]
    values: Mapping[str, pulumi.Input[str]]
    tags: Mapping[str, str]


class EndpointSecret(pulumi.ComponentResource):
    """A Secrets Manager secret whose JSON maps variable names (VLLM_API_KEY, HF_TOKEN) to values.

    Servers read it at boot with their instance role; the values stay Pulumi secrets end to end and appear in no
    user data, tag or output. Deleted without a recovery window so a destroyed stack leaves nothing behind.
    """

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: EndpointSecretArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:EndpointSecret", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        unknown = set(args.values) - set(args.env_names)
        if unknown:
            raise ValueError(f"values for {sorted(unknown)}: not among the secret's variables "
                             f"{list(args.env_names)}")
        values: dict[str, pulumi.Input[str]] = {}
        for env in args.env_names:
            if env in args.values:
                values[env] = args.values[env]
            else:
                values[env] = random.RandomPassword(
                    f"{name}-{env.lower().replace('_', '-')}", length=GENERATED_KEY_LENGTH, special=False,
                    opts=child).result
        secret = aws.secretsmanager.Secret(
            f"{name}-secret", description=f"nemotron-deploy: {', '.join(args.env_names)} for the endpoint",
            recovery_window_in_days=0, tags=dict(args.tags), opts=child)
        aws.secretsmanager.SecretVersion(
            f"{name}-secret-version", secret_id=secret.id,
            secret_string=pulumi.Output.secret(pulumi.Output.all(**values).apply(json.dumps)), opts=child)
        self.arn = secret.arn
        self.register_outputs({"arn": self.arn})
