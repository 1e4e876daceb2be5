"""A minimal private network for the GPU servers: one private subnet, VPC endpoints, and NAT only when needed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

VPC_CIDR = "10.64.0.0/16"
PRIVATE_SUBNET_CIDR = "10.64.0.0/20"
PUBLIC_SUBNET_CIDR = "10.64.16.0/24"  # holds only the NAT gateway
ANY_IPV4 = "0.0.0.0/0"  # routes and egress only; never an ingress source
# Session Manager needs ssm, ssmmessages and ec2messages; the boot script reads the stack's secret.
INTERFACE_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "secretsmanager")


@dataclass(frozen=True)
class PrivateNetworkArgs:
    """`availability_zone`: the stack's zone, or None for the first zone that offers `instance_type`;
    `internet_egress`: add a NAT gateway (`plan.ec2.internet_egress_reasons` is not empty)."""

    region: str
    availability_zone: str | None
    instance_type: str
    internet_egress: bool
    tags: Mapping[str, str]


class PrivateNetwork(pulumi.ComponentResource):
    """A VPC with one private subnet in the servers' Availability Zone and no inbound path from the internet.

    The S3 gateway endpoint (free) carries the weights; interface endpoints carry Session Manager and Secrets
    Manager, so access and secrets never cross the internet. A NAT gateway in a one-purpose public subnet is added
    only when a server must reach the internet (an image on a public registry, weights from Hugging Face).
    """

    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    availability_zone: pulumi.Output[str]

    def __init__(self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:PrivateNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags, region = dict(args.tags), args.region
        zone = args.availability_zone or _first_zone_offering(args.instance_type, self)

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=VPC_CIDR, enable_dns_support=True, enable_dns_hostnames=True,
                          tags=tags, opts=child)
        # Nothing uses the default security group; managing it empties the allow-all rules AWS puts in it.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags=tags, opts=child)
        private = aws.ec2.Subnet(f"{name}-private-subnet", vpc_id=vpc.id, cidr_block=PRIVATE_SUBNET_CIDR,
                                 availability_zone=zone, map_public_ip_on_launch=False, tags=tags, opts=child)

        routes = []
        if args.internet_egress:
            gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
            public = aws.ec2.Subnet(f"{name}-public-subnet", vpc_id=vpc.id, cidr_block=PUBLIC_SUBNET_CIDR,
                                    availability_zone=zone, map_public_ip_on_launch=False, tags=tags, opts=child)
            public_routes = aws.ec2.RouteTable(f"{name}-public-routes", vpc_id=vpc.id,
                                               routes=[{"cidr_block": ANY_IPV4, "gateway_id": gateway.id}],
                                               tags=tags, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-routes-link", subnet_id=public.id,
                                          route_table_id=public_routes.id, opts=child)
            address = aws.ec2.Eip(f"{name}-nat-ip", domain="vpc", tags=tags, opts=child)
            nat = aws.ec2.NatGateway(f"{name}-nat", allocation_id=address.id, subnet_id=public.id, tags=tags,
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]))
            routes = [{"cidr_block": ANY_IPV4, "nat_gateway_id": nat.id}]
        private_routes = aws.ec2.RouteTable(f"{name}-private-routes", vpc_id=vpc.id, routes=routes, tags=tags,
                                            opts=child)
        aws.ec2.RouteTableAssociation(f"{name}-private-routes-link", subnet_id=private.id,
                                      route_table_id=private_routes.id, opts=child)

        aws.ec2.VpcEndpoint(f"{name}-s3-endpoint", vpc_id=vpc.id, service_name=f"com.amazonaws.{region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[private_routes.id], tags=tags, opts=child)
        endpoints_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg", vpc_id=vpc.id, description="nemotron-deploy: HTTPS from the VPC to AWS endpoints",
            tags=tags, opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https-in", security_group_id=endpoints_sg.id, ip_protocol="tcp", from_port=443,
            to_port=443, cidr_ipv4=VPC_CIDR, description="HTTPS from inside the VPC", tags=tags, opts=child)
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service}-endpoint", vpc_id=vpc.id, service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface", private_dns_enabled=True, subnet_ids=[private.id],
                security_group_ids=[endpoints_sg.id], tags=tags, opts=child)

        self.vpc_id = vpc.id
        self.subnet_id = private.id
        self.availability_zone = private.availability_zone
        self.register_outputs({"vpc_id": self.vpc_id, "subnet_id": self.subnet_id,
                               "availability_zone": self.availability_zone})


def _first_zone_offering(instance_type: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The first Availability Zone (by name) of the region that offers the instance type at all."""
    offerings = aws.ec2.get_instance_type_offerings_output(
        location_type="availability-zone", filters=[{"name": "instance-type", "values": [instance_type]}],
        opts=pulumi.InvokeOutputOptions(parent=parent))

    def first(zones: list[str]) -> str:
        if not zones:
            raise ValueError(f"no Availability Zone of this region offers {instance_type}; set availabilityZone "
                             "or choose another region")
        return sorted(zones)[0]

    return offerings.locations.apply(first)
