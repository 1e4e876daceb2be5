"""The CrossGuard policy pack the Pulumi CLI loads with `--policy-pack policies`."""

from nemotron_policies import PACK_NAME, resource_policies
from pulumi_policy import PolicyPack

PolicyPack(name=PACK_NAME, policies=resource_policies())
