"""A stack's CloudWatch dashboard and alarms, as planner/observability.py decides them, and where the alarms go."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from planner.observability import Alarm, ObservabilityPlan


@dataclass(frozen=True)
class StackObservabilityArgs:
    """`observability`: the decided dashboard, alarms and alert addresses; `tags`: the stack's tags."""

    observability: ObservabilityPlan
    tags: dict[str, str]


class StackObservability(pulumi.ComponentResource):
    """One dashboard `nemotron-deploy-<stack>`, one alarm per watched condition and, with alert addresses, an SNS
    topic with an email subscription per address as every alarm's action (each address confirms its subscription
    once). A metric filter counts GPU-error lines: ec2 stacks' kernel log (NVIDIA Xid), with the log groups the
    servers' agent writes to; a JumpStart endpoint's container log (its group comes with the endpoint, so the caller
    orders this component after it)."""

    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, args: StackObservabilityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:StackObservability", name, None, opts)
        decided, tags = args.observability, dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        actions: list[pulumi.Input[str]] = []
        if decided.alert_emails:
            topic = aws.sns.Topic(f"{name}-alerts", name=f"{decided.dashboard_name}-alerts", tags=tags, opts=child)
            for index, email in enumerate(decided.alert_emails):
                aws.sns.TopicSubscription(f"{name}-alerts-{index}", topic=topic.arn, protocol="email",
                                          endpoint=email, opts=child)
            actions.append(topic.arn)
        else:
            pulumi.log.warn(f"{decided.stack}: the alarms have no action: set nemotron-deploy:alertEmails",
                            resource=self)
        for note in decided.notes:
            pulumi.log.warn(f"{decided.stack}: {note}", resource=self)
        if decided.error_logs is not None:
            logs = decided.error_logs
            groups = {group_name: aws.cloudwatch.LogGroup(
                f"{name}-{suffix}", name=group_name, retention_in_days=logs.retention_days, tags=tags, opts=child)
                for suffix, group_name in logs.create_groups}
            group = groups.get(logs.log_group)
            aws.cloudwatch.LogMetricFilter(
                f"{name}-{logs.key}", log_group_name=group.name if group is not None else logs.log_group,
                pattern=logs.filter_pattern, opts=child,
                metric_transformation={"name": logs.metric_name, "namespace": decided.namespace, "value": "1",
                                       "default_value": "0"})
        dashboard = aws.cloudwatch.Dashboard(f"{name}-dashboard", dashboard_name=decided.dashboard_name,
                                             dashboard_body=decided.body_json(), opts=child)
        for alarm in decided.alarms:
            aws.cloudwatch.MetricAlarm(f"{name}-{alarm.key}", opts=child, tags=tags,
                                       **alarm_inputs(alarm, actions))
        self.dashboard_url = dashboard.dashboard_name.apply(lambda _: decided.dashboard_url())
        self.register_outputs({"dashboard_url": self.dashboard_url})


def alarm_inputs(alarm: Alarm, actions: list[pulumi.Input[str]]) -> dict:
    """The MetricAlarm arguments of one decided alarm: a plain metric, or a metric-math expression over its queries."""
    inputs = {"name": alarm.name, "alarm_description": alarm.description,
              "comparison_operator": alarm.comparison, "threshold": alarm.threshold,
              "evaluation_periods": alarm.evaluation_periods, "datapoints_to_alarm": alarm.evaluation_periods,
              "treat_missing_data": alarm.treat_missing_data, "alarm_actions": list(actions),
              "ok_actions": list(actions)}
    if alarm.expression is None:
        metric = alarm.metric
        return inputs | {"namespace": metric.namespace, "metric_name": metric.name, "period": alarm.period_s,
                         "dimensions": dict(metric.dimensions), **_statistic(metric.stat)}
    queries = [{"id": "e1", "expression": alarm.expression, "label": alarm.key, "return_data": True}]
    for ident, metric in alarm.queries():
        queries.append({"id": ident, "return_data": False, "metric": {
            "namespace": metric.namespace, "metric_name": metric.name, "period": alarm.period_s,
            "stat": metric.stat, "dimensions": dict(metric.dimensions)}})
    return inputs | {"metric_queries": queries}


def _statistic(stat: str) -> dict:
    """Plain statistics go to `statistic`; percentiles (p90) to `extended_statistic`."""
    return {"extended_statistic": stat} if stat.startswith("p") else {"statistic": stat}
