"""The EC2 listings of the teardown: each kind one describe call filtered by tag-key=expires-at and paginated (the
tag filter runs on the server), returning the state and the links the plan needs."""

from __future__ import annotations

from planner.reaper import FoundResource
from scripts.teardown.common import TAG_KEY_FILTER, RegionListing, pages, tags_of


def _list_instances(listing: RegionListing) -> list[FoundResource]:
    found = []
    for reservation in pages(listing.ec2(), "describe_instances", "Reservations",
                              **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        for inst in reservation.get("Instances", ()):
            found.append(FoundResource(
                "ec2:instance", inst["InstanceId"], listing.region, tags_of(inst.get("Tags")), inst["State"]["Name"],
                instance_type=inst.get("InstanceType"),
                attributes={"placement_group": (inst.get("Placement") or {}).get("GroupName", "")}))
    return found


def _list_volumes(listing: RegionListing) -> list[FoundResource]:
    found = []
    for volume in pages(listing.ec2(), "describe_volumes", "Volumes", **listing.paging(500, Filters=TAG_KEY_FILTER)):
        holders = tuple(a["InstanceId"] for a in volume.get("Attachments", ()) if a.get("State") != "detached")
        found.append(FoundResource("ec2:volume", volume["VolumeId"], listing.region, tags_of(volume.get("Tags")),
                                   volume.get("State"), in_use_by=holders))
    return found


def _list_network_interfaces(listing: RegionListing) -> list[FoundResource]:
    found = []
    for eni in pages(listing.ec2(), "describe_network_interfaces", "NetworkInterfaces",
                      **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        attachment = eni.get("Attachment") or {}
        holders = (attachment["InstanceId"],) if attachment.get("InstanceId") else ()
        found.append(FoundResource("ec2:network-interface", eni["NetworkInterfaceId"], listing.region,
                                   tags_of(eni.get("TagSet")), eni.get("Status"), in_use_by=holders,
                                   attributes={"description": eni.get("Description", "")}))
    return found


def _list_security_groups(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:security-group", group["GroupId"], listing.region, tags_of(group.get("Tags")),
                          attributes={"name": group.get("GroupName", ""), "vpc": group.get("VpcId", "")})
            for group in pages(listing.ec2(), "describe_security_groups", "SecurityGroups",
                                **listing.paging(1000, Filters=TAG_KEY_FILTER))]


def _list_launch_templates(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:launch-template", template["LaunchTemplateId"], listing.region,
                          tags_of(template.get("Tags")), attributes={"name": template.get("LaunchTemplateName", "")})
            for template in pages(listing.ec2(), "describe_launch_templates", "LaunchTemplates",
                                   **listing.paging(200, Filters=TAG_KEY_FILTER))]


def _list_placement_groups(listing: RegionListing) -> list[FoundResource]:
    # DescribePlacementGroups has no pagination: one call answers for the region
    return [FoundResource("ec2:placement-group", group.get("GroupId") or group["GroupName"], listing.region,
                          tags_of(group.get("Tags")), group.get("State"), attributes={"name": group["GroupName"]})
            for group in listing.ec2().describe_placement_groups(Filters=TAG_KEY_FILTER).get("PlacementGroups", ())]


# What a stack's network is made of (VPCs, subnets, route tables, internet and NAT gateways, Elastic IPs and VPC
# endpoints): each a describe call filtered by tag-key=expires-at and paginated (DescribeAddresses has no pagination:
# one call answers for the region). The EC2 describes are used rather than the tagging API because they filter by
# tag on the server just as well and also return the state and links the plan needs.

def _list_vpcs(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:vpc", vpc["VpcId"], listing.region, tags_of(vpc.get("Tags")), vpc.get("State"),
                          keep="the region's default VPC: never deleted" if vpc.get("IsDefault") else "")
            for vpc in pages(listing.ec2(), "describe_vpcs", "Vpcs", **listing.paging(1000, Filters=TAG_KEY_FILTER))]


def _list_subnets(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:subnet", subnet["SubnetId"], listing.region, tags_of(subnet.get("Tags")),
                          subnet.get("State"), attributes={"vpc": subnet.get("VpcId", "")})
            for subnet in pages(listing.ec2(), "describe_subnets", "Subnets",
                                 **listing.paging(1000, Filters=TAG_KEY_FILTER))]


def _list_route_tables(listing: RegionListing) -> list[FoundResource]:
    found = []
    for table in pages(listing.ec2(), "describe_route_tables", "RouteTables",
                        **listing.paging(100, Filters=TAG_KEY_FILTER)):
        links = [a for a in table.get("Associations", ())
                 if (a.get("AssociationState") or {}).get("State", "associated") in ("associated", "associating")]
        main = any(a.get("Main") for a in links)
        explicit = [a for a in links if not a.get("Main")]
        # the main route table goes with its VPC (it cannot be deleted on its own)
        found.append(FoundResource(
            "ec2:route-table", table["RouteTableId"], listing.region, tags_of(table.get("Tags")),
            managed_by=table.get("VpcId") if main else None,
            attached_to=tuple(a.get("SubnetId") or a.get("GatewayId") for a in explicit
                              if a.get("SubnetId") or a.get("GatewayId")),
            attributes={"vpc": table.get("VpcId", ""),
                        "associations": tuple(a["RouteTableAssociationId"] for a in explicit)}))
    return found


def _list_internet_gateways(listing: RegionListing) -> list[FoundResource]:
    found = []
    for gateway in pages(listing.ec2(), "describe_internet_gateways", "InternetGateways",
                          **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        vpcs = tuple(a["VpcId"] for a in gateway.get("Attachments", ()) if a.get("State") != "detached")
        found.append(FoundResource("ec2:internet-gateway", gateway["InternetGatewayId"], listing.region,
                                   tags_of(gateway.get("Tags")), attached_to=vpcs, attributes={"vpcs": vpcs}))
    return found


def _list_nat_gateways(listing: RegionListing) -> list[FoundResource]:
    found = []
    for nat in pages(listing.ec2(), "describe_nat_gateways", "NatGateways",
                      **listing.paging(1000, Filter=TAG_KEY_FILTER)):
        addresses = nat.get("NatGatewayAddresses", ())
        found.append(FoundResource(
            "ec2:natgateway", nat["NatGatewayId"], listing.region, tags_of(nat.get("Tags")), nat.get("State"),
            attributes={"vpc": nat.get("VpcId", ""), "subnet": nat.get("SubnetId", ""),
                        "allocations": tuple(a["AllocationId"] for a in addresses if a.get("AllocationId")),
                        "interfaces": tuple(a["NetworkInterfaceId"] for a in addresses
                                            if a.get("NetworkInterfaceId"))}))
    return found


def _list_elastic_ips(listing: RegionListing) -> list[FoundResource]:
    found = []
    for address in listing.ec2().describe_addresses(Filters=TAG_KEY_FILTER).get("Addresses", ()):
        if not address.get("AllocationId"):
            continue  # EC2-Classic addresses no longer exist; nothing the toolkit made
        holder = address.get("InstanceId") or address.get("NetworkInterfaceId")
        found.append(FoundResource("ec2:elastic-ip", address["AllocationId"], listing.region,
                                   tags_of(address.get("Tags")), in_use_by=(holder,) if holder else (),
                                   attributes={"public_ip": address.get("PublicIp", ""),
                                               "interface": address.get("NetworkInterfaceId") or ""}))
    return found


def _list_vpc_endpoints(listing: RegionListing) -> list[FoundResource]:
    found = []
    for endpoint in pages(listing.ec2(), "describe_vpc_endpoints", "VpcEndpoints",
                           **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        kind = endpoint.get("VpcEndpointType", "")
        found.append(FoundResource(
            "ec2:vpc-endpoint", endpoint["VpcEndpointId"], listing.region, tags_of(endpoint.get("Tags")),
            (endpoint.get("State") or "").lower(),  # the API documents "Available", answers "available"
            instance_count=len(endpoint.get("SubnetIds") or ()) if kind == "Interface" else 0,
            attributes={"vpc": endpoint.get("VpcId", ""), "endpoint_type": kind,
                        "service": endpoint.get("ServiceName", ""),
                        "interfaces": tuple(endpoint.get("NetworkInterfaceIds") or ()),
                        "subnets": tuple(endpoint.get("SubnetIds") or ()),
                        "route_tables": tuple(endpoint.get("RouteTableIds") or ())}))
    return found

