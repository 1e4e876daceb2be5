"""Every external name the toolkit renders, in one registry: images, Helm charts, checkpoints, hub ids, managed
policy ARNs, AMI parameters, Kubernetes versions and CI actions, each with where it was checked and when.

Code takes these names from here and nowhere else; `tests/references/` fails when a rendered artifact carries an
external name this registry lacks, and `make check-references` asks each source online whether the name still
exists and whether a newer version is out. The sources are described in docs/sources.md (the `source` field is the
anchor of the section there).
"""

from __future__ import annotations

from dataclasses import dataclass

CHECKED = "2026-12-01"


@dataclass(frozen=True)
class Reference:
    """One external name: `kind` says which online check applies (see scripts/check_references/)."""

    key: str  # how code asks for it
    kind: str  # image | helm-chart | checkpoint | jumpstart-model | managed-policy | ssm-parameter |
    #            kubernetes-version | eks-addon | github-action
    name: str  # image repository, chart name, Hugging Face repo id, policy ARN, parameter name, action
    version: str = ""  # tag, chart version, action version ("" where the name is the whole reference)
    source: str = ""  # anchor in docs/sources.md
    checked: str = CHECKED
    repository: str = ""  # Helm repository URL or oci:// base; an action's pinned commit
    note: str = ""

    @property
    def ref(self) -> str:
        """The name as rendered: `repo:tag` for images, `owner/action@sha` for actions, the name otherwise."""
        if self.kind == "image":
            return f"{self.name}:{self.version}"
        if self.kind == "github-action":
            return f"{self.name}@{self.repository}"
        return self.name


REFERENCES: tuple[Reference, ...] = (
    # ---------------------------------------------------------------------------------------------- container images
    Reference("vllm-image", "image", "vllm/vllm-openai", "v0.33.0", "vllm-release",
              note="the newest release (November 2026); the article pinned v0.22.0"),
    Reference("nim-image", "image", "nvcr.io/nim/nvidia/nemotron-3-ultra-550b-a55b", "2.0.6", "nim-nemotron-3-ultra",
              note="NIM LLM 2.x; support for this model is listed from 2.0.5, the model's day-0 guide is 2.0.6"),
    Reference("aws-cli-image", "image", "public.ecr.aws/aws-cli/aws-cli", "2.36.46", "compile-cache-eks",
              note="the EKS compile cache's restore and save steps; tag read from public deployment code of 2026, "
                   "not from the registry: make check-references asks public.ecr.aws"),
    Reference("nim-auth-proxy-image", "image", "nginxinc/nginx-unprivileged", "1.30.0-alpine", "nginx-unprivileged",
              note="the nginx stable line 1.30, unprivileged build (listens on 8080, runs as uid 101)"),
    Reference("cloudwatch-agent-image", "image", "public.ecr.aws/cloudwatch-agent/cloudwatch-agent", "1.300066.1",
              "cloudwatch-agent-prometheus-eks",
              note="the EKS stacks' metrics agent (vLLM, NIM); tag read from public deployment code of 2026, not "
                   "from the registry: make check-references asks public.ecr.aws whether it exists and what is newer"),
    # ---------------------------------------------------------------------------------------------- checkpoints
    Reference("checkpoint-bf16", "checkpoint", "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16",
              source="nemotron-3-ultra-checkpoints"),
    Reference("checkpoint-nvfp4", "checkpoint", "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4",
              source="nemotron-3-ultra-checkpoints"),
    Reference("checkpoint-fp8-community", "checkpoint", "RedHatAI/NVIDIA-Nemotron-3-Ultra-550B-A55B-FP8-Dynamic",
              source="nemotron-3-ultra-checkpoints", note="community quantization (Red Hat AI), not NVIDIA's"),
    # ---------------------------------------------------------------------------------------------- JumpStart
    Reference("jumpstart-model-name", "jumpstart-model", "nemotron-3-ultra", source="jumpstart-hub",
              note="a name filter for ListHubContents, not an id: resolve chooses among the matches"),
    # ---------------------------------------------------------------------------------------------- Helm charts
    Reference("nvidia-device-plugin-chart", "helm-chart", "nvidia-device-plugin", "0.20.0", "nvidia-device-plugin",
              repository="https://nvidia.github.io/k8s-device-plugin"),
    Reference("efa-device-plugin-chart", "helm-chart", "aws-efa-k8s-device-plugin", "v0.5.30", "efa-device-plugin",
              repository="https://aws.github.io/eks-charts"),
    Reference("lws-chart", "helm-chart", "lws", "0.10.0", "leaderworkerset",
              repository="oci://registry.k8s.io/lws/charts",
              note="volumeClaimTemplates in leaderWorkerTemplate first appear in 0.8.0"),
    # ---------------------------------------------------------------------------------------------- Kubernetes
    Reference("eks-kubernetes-version", "kubernetes-version", "1.35", source="eks-versions",
              note="1.34 leaves standard support on 2026-12-02 (extended support is paid)"),
    # ---------------------------------------------------------------------------------------------- EKS add-ons
    Reference("cloudwatch-observability-addon", "eks-addon", "amazon-cloudwatch-observability", "v4.10.3-eksbuild.1",
              "cloudwatch-observability-addon",
              note="Container Insights with NVIDIA GPU metrics; newer majors exist (the Helm chart is at 6.3.0): "
                   "make check-references asks EKS which versions it lists for the pinned Kubernetes version"),
    # ---------------------------------------------------------------------------------------------- IAM policies
    *(Reference(f"policy-{name}", "managed-policy", f"arn:aws:iam::aws:policy/{path}{name}", source="iam-managed")
      for path, name in (
          ("", "AmazonSSMManagedInstanceCore"),
          ("", "AmazonEKSClusterPolicy"),
          ("", "AmazonEKSWorkerNodePolicy"),
          ("", "AmazonEKS_CNI_Policy"),
          ("", "AmazonEC2ContainerRegistryPullOnly"),
          ("service-role/", "AmazonEBSCSIDriverPolicy"),
          ("", "CloudWatchAgentServerPolicy"),
      )),
    # ---------------------------------------------------------------------------------------------- AMI parameters
    Reference("dlami-x86_64", "ssm-parameter",
              "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
              source="dlami"),
    Reference("dlami-arm64", "ssm-parameter",
              "/aws/service/deeplearning/ami/arm64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
              source="dlami"),
    # ---------------------------------------------------------------------------------------------- CI actions
    # One entry per action the workflows use, pinned by full commit SHA in `repository`; the workflows write
    # `uses: <name>@<sha> # <version>` and tests/references/test_workflow_pins.py holds the two together.
    Reference("action-checkout", "github-action", "actions/checkout", "v7.0.1", "github-actions",
              repository="3d3c42e5aac5ba805825da76410c181273ba90b1"),
    Reference("action-setup-python", "github-action", "actions/setup-python", "v7.0.0", "github-actions",
              repository="5fda3b95a4ea91299a34e894583c3862153e4b97"),
    Reference("action-configure-aws-credentials", "github-action", "aws-actions/configure-aws-credentials", "v6.2.3",
              "github-actions", repository="e6de054238d6b7531b4efff3b6587d9aade6a06c"),
    Reference("action-pulumi", "github-action", "pulumi/actions", "v7.0.0", "github-actions",
              repository="8e5e406f4007fca908480587cb9893c07090f58d"),
    Reference("action-upload-artifact", "github-action", "actions/upload-artifact", "v7.0.1", "github-actions",
              repository="043fb46d1a93c77aae656e7c1c64a875d1fc6a0a"),
)

BY_KEY: dict[str, Reference] = {r.key: r for r in REFERENCES}
KINDS = ("image", "helm-chart", "checkpoint", "jumpstart-model", "managed-policy", "ssm-parameter",
         "kubernetes-version", "eks-addon", "github-action")


def reference(key: str) -> Reference:
    """The registry entry called `key` (a KeyError is a programming error: every name is registered)."""
    return BY_KEY[key]


def ref(key: str) -> str:
    """The rendered form of the entry called `key`."""
    return BY_KEY[key].ref


def managed_policy_arn(name: str, partition: str = "aws") -> str:
    """The ARN of an AWS managed policy in the registry, for `partition` (aws, aws-cn, aws-us-gov)."""
    arn = BY_KEY[f"policy-{name}"].name
    return arn.replace("arn:aws:", f"arn:{partition}:", 1)


def registered(kind: str) -> set[str]:
    """Rendered forms of every entry of one kind."""
    return {r.ref for r in REFERENCES if r.kind == kind}
