"""A failure that is not an AWS answer (a lost connection, a response botocore cannot parse) in one step of the
deletion fails that resource and no other: the run goes on and says so."""

from botocore.exceptions import EndpointConnectionError

from scripts.teardown.delete import _revoke_cross_references


class GroupsThatCannotBeRevoked:
    """A stand-in EC2 client (ours): two groups whose rules reference each other; revoking sg-a's loses the
    connection."""

    def get_paginator(self, operation):
        assert operation == "describe_security_groups"
        rule = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-b", "UserId": "1"}]}
        page = {"SecurityGroups": [{"GroupId": "sg-a", "IpPermissions": [rule]},
                                   {"GroupId": "sg-b", "IpPermissions": [rule]}]}
        return type("Paginator", (), {"paginate": lambda self, **_: iter([page])})()

    def revoke_security_group_ingress(self, GroupId, **_):  # noqa: N803 - boto3's argument names
        if GroupId == "sg-a":
            raise EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com")

    def revoke_security_group_egress(self, **_):
        pass


def test_a_lost_connection_while_revoking_fails_that_group_only():
    class Deletion:
        def __init__(self, rid):
            self.resource = type("R", (), {"id": rid})()

    outcomes = {}
    _revoke_cross_references(lambda service, region: GroupsThatCannotBeRevoked(), "us-east-1",
                             [Deletion("sg-a"), Deletion("sg-b")], outcomes)
    assert set(outcomes) == {"sg-a"} and outcomes["sg-a"].status == "failed"
    assert "revoking rules" in outcomes["sg-a"].detail
