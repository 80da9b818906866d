#!/usr/bin/env python3
"""Parity: template.yaml (after the SAM transform, offline) and the CDK example's synthesized
template must deploy the same stack.

    parity.py --sam ../template.yaml --cdk cdk.out/HeraldExample.template.json
    parity.py --sam ../template.yaml --cdk cdk.out.traced/HeraldExample.template.json --sam-parameter Tracing=Active

Exits 0 when they agree, 1 with one line per difference (which resource, which property,
the two values). Run by `make infra-test` (scripts/infra_test.sh), which synthesizes the CDK
example with `cdk synth --no-staging` so that each function's `aws:asset:path` names its
artifact folder, and once more with `-c tracing=true` (checked with `--sam-parameter Tracing=Active`).

How the two are compared
- Both templates are resolved the same way: parameters (template.yaml's defaults, overridden
  by SAM_PARAMETERS below, which are the values infra/bin/example.ts gives the construct, and
  by each --sam-parameter Name=Value),
  conditions, Fn::If, Fn::Sub, Fn::Join, AWS::NoValue and the pseudo parameters. A reference to
  a resource becomes «role», the resource's role.
- Resources are matched by role, never by logical id (CDK generates those):
    function ingest                    the function running target/lambda/ingest
                                       (SAM: CodeUri; CDK: the asset path)
    queue read by function ingest      the queue of a function's event source mapping
    queue in env HERALD_X_QUEUE_URL    a queue only named by an environment variable
    dead-letter queue of «queue ...»   the target of a queue's RedrivePolicy
    table in env HERALD_LEDGER_TABLE   a table named by an environment variable (a topic, a
                                       secret, an event bus likewise: secret in env HERALD_X_SECRET,
                                       event bus in env HERALD_EVENT_BUS); a table whose stream an
                                       event source reads is named so too (failing that: table whose
                                       stream is read by function events)
    SES events topic                   the SNS destination of the SES configuration set
    topic 'Herald push events'         any other topic, by DisplayName
    log group of «function ingest», event source «queue ...» -> «function ...»,
    alarm AWS/SQS ApproximateNumberOfMessagesVisible QueueName=«...», ...
- Each matched pair is compared property by property (lists as sets), except what is
  meant to differ (IGNORED). IAM is compared per function as a set of
  (effect, action, resource) after expanding statements, whatever policy resource holds them.
  Each function whose event source reads a queue must be granted ReceiveMessage,
  DeleteMessage and GetQueueAttributes on that queue (both sides grant them with a statement of
  their own: CDK's SqsEventSource would also grant ChangeMessageVisibility and GetQueueUrl, SAM's
  `Events: Type: SQS` the managed AWSLambdaSQSQueueExecutionRole, on every queue); one whose
  event source reads a DynamoDB stream, DescribeStream, GetRecords, GetShardIterator and
  ListStreams on that stream; and one whose event source has an SQS on-failure destination
  (DestinationConfig.OnFailure), SendMessage on that queue.
- X-Ray: SAM grants trace writing with a managed policy (AWSXrayWriteOnlyAccess), the construct
  with an inline xray:PutTraceSegments and xray:PutTelemetryRecords on "*". Per function, on each
  side: a role may write traces with one of those managed policies or both actions on "*". A
  function whose TracingConfig Mode is Active and whose role cannot write traces is a problem, and
  so is any of those grants to a function whose Mode is not Active (least privilege). The X-Ray
  grants are then left out of the IAM comparison; TracingConfig is compared with the function.
- Least privilege, on both templates (template.yaml after the SAM transform, so what SAM adds
  counts): no Allow of a data action on Resource "*", in a statement or through one of the AWS
  managed policies that grant data actions on "*" (WILDCARD_MANAGED, such as the
  AWSLambdaSQSQueueExecutionRole the SAM transform attaches for an SQS event).
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

# The values infra/bin/example.ts passes to the construct, as template.yaml parameters.
# Every other parameter keeps its template.yaml default, as every other prop keeps its
# construct default: a default that differs between the two shows up as a difference.
SAM_PARAMETERS = {
    "SenderAddress": "notifications@example.com",
    "SenderIdentity": "example.com",
    "ApnsPlatformApplicationArn": "arn:aws:sns:us-east-1:123456789012:app/APNS/herald-example",
    "ApnsSandboxPlatformApplicationArn": "arn:aws:sns:us-east-1:123456789012:app/APNS_SANDBOX/herald-example",
    "FcmPlatformApplicationArn": "arn:aws:sns:us-east-1:123456789012:app/GCM/herald-example",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:herald-alarms",
    # A parameter without a default would need a value here (and the same in bin/example.ts).
}
# The example stack's environment (bin/example.ts); pseudo parameters resolve to these on both sides.
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "${AWS::StackName}",
    "AWS::StackId": "${AWS::StackId}",
}

# Properties that are meant to differ, or are compared another way.
IGNORED = {
    "*": {"Tags"},  # SAM tags its functions and roles lambda:createdBy=SAM
    "AWS::Lambda::Function": {"Code", "Role"},  # the artifact is the role; IAM is compared per function
    "AWS::Lambda::EventSourceMapping": {"FunctionName", "EventSourceArn"},  # part of the role
    "AWS::IAM::Role": {"Policies", "ManagedPolicyArns", "RoleName"},  # compared per function
    "AWS::IAM::Policy": {"*"},  # its statements are compared per function
    "AWS::SNS::Subscription": {"TopicArn", "Endpoint"},  # part of the role
    "AWS::SES::ConfigurationSetEventDestination": {"ConfigurationSetName"},
    "AWS::Lambda::Permission": {"FunctionName"},  # part of the role (SAM: Ref, CDK: GetAtt Arn)
    "AWS::Lambda::Url": {"TargetFunctionArn"},  # part of the role (SAM: Ref, CDK: GetAtt Arn)
}
# Properties whose absence means this value (CloudFormation defaults).
DEFAULTS = {
    "AWS::Lambda::Function": {"Architectures": ["x86_64"], "TracingConfig": {"Mode": "PassThrough"}},
    "AWS::Lambda::EventSourceMapping": {"Enabled": "true"},
    "AWS::SNS::Subscription": {"RawMessageDelivery": "false"},
    "AWS::Events::Rule": {"State": "ENABLED"},
}
# Types that exist on one side only by construction.
SIDE_ONLY_TYPES = {"AWS::CDK::Metadata", "AWS::IAM::Policy"}

# Actions an SQS event source needs on its queue.
SQS_EVENT_SOURCE_REQUIRED = {"sqs:receivemessage", "sqs:deletemessage", "sqs:getqueueattributes"}
# Actions a DynamoDB stream event source needs on the stream (what AWSLambdaDynamoDBExecutionRole
# grants on "*").
DYNAMODB_STREAM_EVENT_SOURCE_REQUIRED = {"dynamodb:describestream", "dynamodb:getrecords", "dynamodb:getsharditerator",
                                         "dynamodb:liststreams"}
# AWS managed policies that grant data actions on Resource "*" (besides the logs actions), as the
# SAM transform attaches them to a generated role for a pull event (SQS, Kinesis, DynamoDB
# streams). No function's role may hold one: its own statement names the queue or stream.
WILDCARD_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole":
        ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole":
        ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator",
         "kinesis:ListShards", "kinesis:ListStreams", "kinesis:SubscribeToShard"],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole":
        ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
}
# The managed policies SAM attaches for Tracing (the name depends on the partition), and the
# actions Lambda's active tracing needs (what they grant).
XRAY_MANAGED = {"arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess", "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"}
XRAY_WRITE = {"xray:puttracesegments", "xray:puttelemetryrecords"}
# Actions that IAM cannot scope to a resource, so "*" is their least privilege.
RESOURCELESS_ACTIONS = {
    "xray:puttracesegments", "xray:puttelemetryrecords", "xray:getsamplingrules", "xray:getsamplingtargets",
    "xray:getsamplingstatisticsummaries", "cloudwatch:putmetricdata", "ses:getaccount",
    "sns:checkifphonenumberisoptedout", "sns:listphonenumbersoptedout",
}

NOVALUE = object()
NOTES: list[str] = []  # worth a look, not a difference
REF = re.compile(r"«(ref|getatt):([A-Za-z0-9]+)(?:\.([A-Za-z0-9.]+))?»")


class TemplateError(Exception):
    pass


# ------------------------------------------------------------------ loading


def load_cfn(path: str | os.PathLike) -> dict:
    """A CloudFormation template (YAML with short-form tags, or JSON) as plain data."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def sam_transform(template: dict, parameters: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """Applies the SAM transform offline, with these parameter values. Returns the CloudFormation
    template and, for each function's logical id, the artifact it runs (the last folder of its CodeUri)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(template)
    artifacts = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        code = resource.get("Properties", {}).get("CodeUri") or template.get("Globals", {}).get("Function", {}).get("CodeUri")
        if not isinstance(code, str):
            raise TemplateError(f"template.yaml: {logical_id}: CodeUri must be a folder under target/lambda/")
        artifacts[logical_id] = Path(code.rstrip("/")).name
        # The translator wants an S3 location; the artifact is what is compared.
        resource.setdefault("Properties", {})["CodeUri"] = f"s3://herald-parity/{artifacts[logical_id]}.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(template, dict(parameters), NoManagedPolicies()), artifacts


def cdk_artifacts(template: dict) -> dict[str, str]:
    """For each function of a template synthesized with --no-staging, the artifact it runs."""
    artifacts = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        asset = resource.get("Metadata", {}).get("aws:asset:path")
        if not asset:
            raise TemplateError(f"CDK: function {logical_id} has no aws:asset:path metadata: synthesize with `cdk synth --no-staging` (asset metadata on)")
        artifacts[logical_id] = Path(asset.rstrip("/")).name
    return artifacts


# ---------------------------------------------------------------- resolving


class Resolver:
    """Evaluates parameters, conditions and intrinsic functions; a resource reference becomes
    the string «ref:Id» or «getatt:Id.Attr»."""

    def __init__(self, template: dict, parameters: dict[str, str], side: str):
        self.template = template
        self.side = side
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if name in parameters:
                value = str(parameters[name])
            elif "Default" in spec:
                value = scalar(spec["Default"])
            else:
                continue
            # A Ref to a list parameter is a list in CloudFormation (CommaDelimitedList, List<...>).
            kind = str(spec.get("Type", ""))
            is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
            self.parameters[name] = [v.strip() for v in value.split(",")] if is_list else value
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            spec = self.template.get("Conditions", {}).get(name)
            if spec is None:
                raise TemplateError(f"{self.side}: unknown condition {name}")
            self.conditions[name] = bool(self.evaluate(spec))
        return self.conditions[name]

    def evaluate(self, spec: Any) -> Any:
        if isinstance(spec, dict) and len(spec) == 1:
            (fn, arg), = spec.items()
            if fn == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return scalar(a) == scalar(b)
            if fn == "Fn::Not":
                return not self.evaluate(arg[0])
            if fn == "Fn::And":
                return all(self.evaluate(x) for x in arg)
            if fn == "Fn::Or":
                return any(self.evaluate(x) for x in arg)
            if fn == "Condition":
                return self.condition(arg)
        return self.resolve(spec)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            out = [self.resolve(v) for v in value]
            return [v for v in out if v is not NOVALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                target, attr = arg.split(".", 1) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return f"«getatt:{target}.{attr}»"
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                variables = {k: self.resolve(v) for k, v in variables.items()}
                return re.sub(r"\$\{([^}]+)\}", lambda m: self.sub_var(m.group(1), variables), text)
            if fn == "Fn::Join":
                delimiter, parts = arg
                parts = self.resolve(parts)
                if isinstance(parts, list) and all(isinstance(p, (str, int, float)) for p in parts):
                    return delimiter.join(scalar(p) for p in parts)
                return {"Fn::Join": [delimiter, parts]}
            if fn == "Fn::Select":
                index, items = self.resolve(arg[0]), self.resolve(arg[1])
                if isinstance(items, list):
                    return items[int(index)]
                return {"Fn::Select": [index, items]}
            if fn == "Fn::Split":
                delimiter, text = arg[0], self.resolve(arg[1])
                return text.split(delimiter) if isinstance(text, str) else {"Fn::Split": [delimiter, text]}
            if fn == "Fn::FindInMap":
                name, key, attr = (self.resolve(x) for x in arg)
                return self.resolve(self.template["Mappings"][name][key][attr])
            if fn in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                return self.evaluate(value)
        out = {}
        for k, v in value.items():
            v = self.resolve(v)
            if v is not NOVALUE:
                out[k] = v
        return out

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NOVALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.get("Resources", {}):
            return f"«ref:{name}»"
        if name in self.template.get("Parameters", {}):
            raise TemplateError(f"{self.side}: parameter {name} has no default: give it a value in SAM_PARAMETERS "
                                "(infra/test/parity.py) and the same to the construct in infra/bin/example.ts")
        raise TemplateError(f"{self.side}: Ref to unknown {name}")

    def sub_var(self, name: str, variables: dict) -> str:
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            return scalar(variables[name])
        if "." in name:
            target, attr = name.split(".", 1)
            return f"«getatt:{target}.{attr}»"
        return scalar(self.ref(name))

    def resources(self) -> dict[str, dict]:
        """The resources that exist with these parameters, resolved."""
        out = {}
        for logical_id, resource in self.template.get("Resources", {}).items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            out[logical_id] = {
                "Type": resource["Type"],
                "Properties": self.resolve(resource.get("Properties", {})),
                "DeletionPolicy": resource.get("DeletionPolicy", "Delete"),
                "UpdateReplacePolicy": resource.get("UpdateReplacePolicy", "Delete"),
                "Metadata": resource.get("Metadata", {}),
            }
        return out

    def outputs(self) -> dict[str, dict]:
        out = {}
        for name, output in self.template.get("Outputs", {}).items():
            if "Condition" in output and not self.condition(output["Condition"]):
                continue
            out[name] = self.resolve({k: v for k, v in output.items() if k != "Condition"})
        return out


def scalar(value: Any) -> Any:
    """CloudFormation passes numbers and booleans as strings: compare them so."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return value


def refs_in(value: Any) -> set[str]:
    """Logical ids a resolved value refers to."""
    return {m.group(2) for m in REF.finditer(json.dumps(value, ensure_ascii=False))}


# -------------------------------------------------------------------- roles


def assign_roles(resources: dict[str, dict], artifacts: dict[str, str], side: str) -> tuple[dict[str, str], list[str]]:
    """Gives each resource a role that names it the same way in both templates."""
    roles: dict[str, str] = {}
    problems: list[str] = []
    by_type: dict[str, list[str]] = defaultdict(list)
    for logical_id, resource in sorted(resources.items()):
        by_type[resource["Type"]].append(logical_id)

    def props(logical_id: str) -> dict:
        return resources[logical_id]["Properties"]

    def target(value: Any) -> str | None:
        m = REF.fullmatch(value) if isinstance(value, str) else None
        return m.group(2) if m and m.group(2) in resources else None

    def give(logical_id: str, role: str) -> None:
        if logical_id not in roles:
            roles[logical_id] = role

    for fn in by_type["AWS::Lambda::Function"]:
        give(fn, f"function {artifacts.get(fn, fn)}")
    env: dict[str, set[str]] = defaultdict(set)  # logical id -> env var names naming it
    for fn in by_type["AWS::Lambda::Function"]:
        for name, value in props(fn).get("Environment", {}).get("Variables", {}).items():
            if target(value):
                env[target(value)].add(name)

    # A queue by the function that reads it. Not a table whose stream an event source reads:
    # one function may read several tables' streams, and a table's role would then depend on
    # which; tables are named by the env var that names them (below), and only failing that by
    # the function reading their stream.
    streams_read: dict[str, set[str]] = defaultdict(set)  # table -> roles of the functions reading its stream
    for esm in by_type["AWS::Lambda::EventSourceMapping"]:
        source, fn = target(props(esm).get("EventSourceArn")), target(props(esm).get("FunctionName"))
        if source and fn in roles:
            type_ = resources[source]["Type"]
            if type_ == "AWS::DynamoDB::Table":
                streams_read[source].add(roles[fn])
            else:
                give(source, f"{'queue' if type_ == 'AWS::SQS::Queue' else 'source'} read by {roles[fn]}")
    for kind, type_ in (("queue", "AWS::SQS::Queue"), ("table", "AWS::DynamoDB::Table"), ("topic", "AWS::SNS::Topic"),
                        ("secret", "AWS::SecretsManager::Secret"), ("event bus", "AWS::Events::EventBus")):
        for logical_id in by_type[type_]:
            if logical_id in env:
                give(logical_id, f"{kind} in env {sorted(env[logical_id])[0]}")
    for table, readers in sorted(streams_read.items()):
        give(table, f"table whose stream is read by {', '.join(sorted(readers))}")
    for destination in by_type["AWS::SES::ConfigurationSetEventDestination"]:
        topic = target(props(destination).get("EventDestination", {}).get("SnsDestination", {}).get("TopicARN"))
        if topic:
            give(topic, "SES events topic")
    for topic in by_type["AWS::SNS::Topic"]:
        if "DisplayName" in props(topic):
            give(topic, f"topic '{props(topic)['DisplayName']}'")
    for i, config_set in enumerate(by_type["AWS::SES::ConfigurationSet"]):
        give(config_set, "SES configuration set" + (f" #{i + 1}" if i else ""))
    for i, dashboard in enumerate(by_type["AWS::CloudWatch::Dashboard"]):
        name = props(dashboard).get("DashboardName")
        give(dashboard, f"dashboard {name}" if isinstance(name, str) and not refs_in(name) else "dashboard" + (f" #{i + 1}" if i else ""))

    # Roles that follow from others, until nothing changes.
    changed = True
    while changed:
        changed = False
        before = dict(roles)
        for queue in by_type["AWS::SQS::Queue"]:
            dlq = target(props(queue).get("RedrivePolicy", {}).get("deadLetterTargetArn"))
            if dlq and queue in roles:
                give(dlq, f"dead-letter queue of «{roles[queue]}»")
        for fn in by_type["AWS::Lambda::Function"]:
            role = target(props(fn).get("Role"))
            if role:
                give(role, f"IAM role of «{roles[fn]}»")
        for logical_id in sorted(resources):
            if logical_id in roles:
                continue
            r = resources[logical_id]
            p = r["Properties"]
            t = r["Type"]
            if t == "AWS::Lambda::EventSourceMapping":
                source, fn = target(p.get("EventSourceArn")), target(p.get("FunctionName"))
                if source in roles and fn in roles:
                    give(logical_id, f"event source «{roles[source]}» -> «{roles[fn]}»")
            elif t == "AWS::SNS::Subscription":
                topic, endpoint = target(p.get("TopicArn")), target(p.get("Endpoint"))
                if topic in roles and (endpoint in roles or not endpoint):
                    where = f"«{roles[endpoint]}»" if endpoint else json.dumps(p.get("Endpoint"))
                    give(logical_id, f"subscription «{roles[topic]}» -> {p.get('Protocol')} {where}")
            elif t == "AWS::Logs::LogGroup":
                named = [x for x in refs_in(p.get("LogGroupName")) if x in roles]
                if named:
                    give(logical_id, f"log group of «{roles[named[0]]}»")
            elif t == "AWS::CloudWatch::Alarm":
                dims = p.get("Dimensions", [])
                if all(not refs_in(d) or refs_in(d) <= set(roles) for d in dims):
                    shown = ",".join(sorted(f"{d.get('Name')}={rename(d.get('Value'), roles)}" for d in dims))
                    metric = f"{p.get('Namespace')} {p.get('MetricName')}" if "MetricName" in p else metric_math(p.get("Metrics", []), roles)
                    give(logical_id, f"alarm {metric} {shown}".rstrip())
            elif t == "AWS::Lambda::Permission":
                fn, source = target(p.get("FunctionName")), target(p.get("SourceArn"))
                if fn in roles and (source is None or source in roles):
                    origin = f" from «{roles[source]}»" if source else ""
                    give(logical_id, f"permission {p.get('Action')} for {json.dumps(p.get('Principal'))} on «{roles[fn]}»{origin}")
            elif t == "AWS::SES::ConfigurationSetEventDestination":
                config_set = target(p.get("ConfigurationSetName"))
                if config_set in roles:
                    give(logical_id, f"event destination of «{roles[config_set]}»")
            elif t in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
                targets = [target(x) for x in p.get("Queues", p.get("Topics", []))]
                if targets and all(x in roles for x in targets):
                    give(logical_id, f"policy of {', '.join(sorted(f'«{roles[x]}»' for x in targets))}")
            elif t == "AWS::IAM::Policy":
                attached = [target(x) for x in p.get("Roles", [])]
                if attached and all(x in roles for x in attached):
                    give(logical_id, f"policy of {', '.join(sorted(f'«{roles[x]}»' for x in attached))}")
            else:
                # Anything else: by the one resource with a role it refers to (a function URL,
                # a permission, a schedule...), or by the resource that refers to it.
                referred = sorted({roles[x] for x in refs_in(p) if x in roles})
                if referred and len(referred) == len({x for x in refs_in(p) if x in resources}):
                    give(logical_id, f"{t} of {', '.join(f'«{r}»' for r in referred)}")
                    continue
                referrers = sorted({roles[x] for x in resources if x in roles and logical_id in refs_in(resources[x]["Properties"])})
                if len(referrers) == 1:
                    give(logical_id, f"{t} used by «{referrers[0]}»")
        changed = roles != before

    # Two resources with one role cannot be told apart. Identical ones deploy the same thing
    # twice (say, a permission the SAM transform generates as well): they count as one, with a
    # note. Others are named by logical id instead, and reported.
    seen: dict[str, list[str]] = defaultdict(list)
    for logical_id, role in roles.items():
        seen[role].append(logical_id)
    for role, ids in seen.items():
        if len(ids) > 1:
            bodies = {json.dumps(canonical(rename(resources[i]["Properties"], roles)), sort_keys=True) for i in ids}
            if len(bodies) == 1:
                NOTES.append(f"{side}: {len(ids)} identical resources have the role '{role}' ({', '.join(sorted(ids))}): "
                             "one is redundant (does the SAM transform generate it already?); compared as one")
                for logical_id in sorted(ids)[1:]:
                    del resources[logical_id]
                    del roles[logical_id]
                continue
            problems.append(f"{side}: {len(ids)} resources have the role '{role}' ({', '.join(sorted(ids))}); they are compared by logical id")
            for logical_id in ids:
                roles[logical_id] = f"{role} [{logical_id}]"
    for logical_id in resources:
        roles.setdefault(logical_id, f"{resources[logical_id]['Type']} {logical_id} (no role found, so matched by logical id)")
    return roles, problems


def metric_math(metrics: list, roles: dict[str, str]) -> str:
    """A metric-math alarm by what it computes: each metric's identity and the expressions
    (not periods or statistics, which are compared as properties)."""
    parts = []
    for m in metrics:
        if "Expression" in m:
            parts.append(f"{m.get('Id')}={m['Expression']}")
        else:
            metric = m.get("MetricStat", {}).get("Metric", {})
            dims = ",".join(sorted(f"{d.get('Name')}={rename(d.get('Value'), roles)}" for d in metric.get("Dimensions", [])))
            parts.append(f"{m.get('Id')}={metric.get('Namespace')}/{metric.get('MetricName')}{{{dims}}}")
    return "(" + "; ".join(sorted(parts)) + ")"


def rename(value: Any, roles: dict[str, str]) -> Any:
    """Replaces every resource reference with the resource's role."""
    if isinstance(value, str):
        def role(m: re.Match) -> str:
            name = roles.get(m.group(2), m.group(2))
            attr = m.group(3)
            if m.group(1) == "getatt":
                return f"«{name}».{attr}"
            return f"«{name}»"
        return REF.sub(role, value)
    if isinstance(value, list):
        return [rename(v, roles) for v in value]
    if isinstance(value, dict):
        return {k: rename(v, roles) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------- IAM


def statements_of(document: Any) -> list[dict]:
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    return statements if isinstance(statements, list) else [statements]


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def iam_model(resources: dict, roles: dict, side: str) -> tuple[dict[str, dict], list[str]]:
    """Per function role: its IAM atoms (effect, action, Resource|NotResource, resource, condition),
    its managed policies and its trust principals."""
    problems: list[str] = []
    model: dict[str, dict] = {}
    role_of_iam: dict[str, str] = {}
    for logical_id, r in resources.items():
        if r["Type"] == "AWS::Lambda::Function":
            m = REF.fullmatch(r["Properties"].get("Role", ""))
            if m:
                role_of_iam[m.group(2)] = logical_id
    documents: dict[str, list] = defaultdict(list)
    for iam_role, fn in role_of_iam.items():
        p = resources.get(iam_role, {}).get("Properties", {})
        for policy in p.get("Policies", []):
            documents[fn].append(policy.get("PolicyDocument", {}))
        model[fn] = {
            "managed": {scalar(x) for x in p.get("ManagedPolicyArns", [])},
            "trust": canonical(p.get("AssumeRolePolicyDocument", {})),
            "atoms": set(),
        }
    for logical_id, r in resources.items():
        if r["Type"] != "AWS::IAM::Policy":
            continue
        for attached in r["Properties"].get("Roles", []):
            m = REF.fullmatch(attached) if isinstance(attached, str) else None
            if m and m.group(2) in role_of_iam:
                documents[role_of_iam[m.group(2)]].append(r["Properties"].get("PolicyDocument", {}))
    for fn, docs in documents.items():
        for document in docs:
            for statement in statements_of(document):
                effect = statement.get("Effect", "Allow")
                condition = json.dumps(canonical(rename(statement.get("Condition"), roles)), sort_keys=True, ensure_ascii=False) if statement.get("Condition") else ""
                kind = "NotResource" if "NotResource" in statement else "Resource"
                for action in as_list(statement.get("Action", statement.get("NotAction", []))):
                    for resource in as_list(statement.get(kind, [])):
                        atom = (effect, action.lower(), kind, rename(resource, roles), condition)
                        model[fn]["atoms"].add(atom)
                        if effect == "Allow" and kind == "Resource" and resource == "*" and action.lower() not in RESOURCELESS_ACTIONS:
                            problems.append(f"{side}: «{roles[fn]}»: Allow {action} on Resource \"*\" (least privilege: name the resource)")
    return {roles[fn]: m for fn, m in model.items()}, problems


def check_event_source_grants(resources: dict, roles: dict, model: dict, side: str) -> list[str]:
    """Each function can consume what its event source mappings read: ReceiveMessage,
    DeleteMessage and GetQueueAttributes on a queue; DescribeStream, GetRecords, GetShardIterator
    and ListStreams on a DynamoDB table's stream (GetAtt StreamArn); and SendMessage on an SQS
    on-failure destination (DestinationConfig.OnFailure), which Lambda sends with the function's
    role. Granted on the resource itself, or on "*" (which the least-privilege checks refuse)."""
    problems = []
    for r in resources.values():
        if r["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        p = r["Properties"]
        source = REF.fullmatch(p.get("EventSourceArn", ""))
        fn = REF.fullmatch(p.get("FunctionName", ""))
        if not (source and fn and fn.group(2) in roles):
            continue
        fn_role = roles[fn.group(2)]
        entry = model.get(fn_role)
        if entry is None:
            continue

        def granted(arn: str) -> set[str]:
            out = {a[1] for a in entry["atoms"] if a[0] == "Allow" and a[2] == "Resource" and a[3] in (arn, "*")}
            return out | {a.lower() for m in entry["managed"] for a in WILDCARD_MANAGED.get(m, [])}

        needs: list[tuple[str, set[str], str]] = []  # (ARN, actions, what for)
        source_type = resources.get(source.group(2), {}).get("Type")
        if source_type == "AWS::SQS::Queue":
            needs.append((f"«{roles[source.group(2)]}».Arn", SQS_EVENT_SOURCE_REQUIRED, "consume"))
        elif source_type == "AWS::DynamoDB::Table" and source.group(3) == "StreamArn":
            needs.append((f"«{roles[source.group(2)]}».StreamArn", DYNAMODB_STREAM_EVENT_SOURCE_REQUIRED, "consume"))
        on_failure = p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        destination = REF.fullmatch(on_failure) if isinstance(on_failure, str) else None
        if destination and resources.get(destination.group(2), {}).get("Type") == "AWS::SQS::Queue":
            needs.append((f"«{roles[destination.group(2)]}».Arn", {"sqs:sendmessage"}, "send failure records to"))
        for arn, actions, what in needs:
            missing = actions - granted(arn)
            if missing:
                problems.append(f"{side}: «{fn_role}» cannot {what} {arn}: no {', '.join(sorted(missing))}")
    return problems


def check_wildcard_managed(model: dict, side: str) -> list[str]:
    """No function's role holds an AWS managed policy that grants data actions on "*"."""
    problems = []
    for fn, entry in sorted(model.items()):
        for arn in sorted(entry["managed"] & set(WILDCARD_MANAGED)):
            name = arn.rsplit("/", 1)[-1]
            fix = ("; a SAM `Events: Type: SQS` attaches it: declare an AWS::Lambda::EventSourceMapping instead and "
                   "grant these on the function's queue" if arn.endswith("SQSQueueExecutionRole") else "")
            problems.append(f"{side}: «{fn}»: managed policy {name} allows {', '.join(WILDCARD_MANAGED[arn])} "
                            f"on Resource \"*\" (least privilege: name the resource){fix}")
    return problems


def check_tracing(resources: dict, roles: dict, model: dict, side: str) -> list[str]:
    """A function's role may write X-Ray traces (an XRAY_MANAGED policy, or XRAY_WRITE on "*")
    when, and only when, its TracingConfig Mode is Active. Then leaves the X-Ray grants out of
    the IAM comparison: SAM and the construct grant them differently, and TracingConfig is
    compared with the function."""
    problems = []
    for logical_id, r in resources.items():
        fn = roles[logical_id]
        if r["Type"] != "AWS::Lambda::Function" or fn not in model:
            continue
        entry = model[fn]
        mode = r["Properties"].get("TracingConfig", {}).get("Mode", "PassThrough")
        managed = sorted(entry["managed"] & XRAY_MANAGED)
        on_any = [a[1] for a in entry["atoms"] if a[0] == "Allow" and a[2] == "Resource" and a[3] == "*"]
        inline = sorted(x for x in XRAY_WRITE if any(fnmatch.fnmatchcase(x, pattern) for pattern in on_any))
        if mode == "Active" and not managed and len(inline) < len(XRAY_WRITE):
            missing = ", ".join(sorted(XRAY_WRITE - set(inline)))
            problems.append(f"{side}: «{fn}»: TracingConfig Mode Active, but its role cannot write traces "
                            f"(no {missing} on \"*\", no X-Ray managed policy)")
        elif mode != "Active" and (managed or inline):
            problems.append(f"{side}: «{fn}»: its role may write X-Ray traces ({', '.join(managed + inline)}) but "
                            f"TracingConfig Mode is {show(mode)} (least privilege: grant X-Ray only with Active tracing)")
    for entry in model.values():
        entry["managed"] -= XRAY_MANAGED
        entry["atoms"] = {a for a in entry["atoms"] if not (a[1].startswith("xray:") and a[3] == "*")}
    return problems


# ------------------------------------------------------------------ compare


def canonical(value: Any) -> Any:
    """Scalars as strings, lists as sorted sets, policy documents in one shape."""
    if isinstance(value, dict):
        out = {k: canonical(v) for k, v in value.items()}
        if "Statement" in out and isinstance(out["Statement"], list):
            out.setdefault("Version", "2012-10-17")
            for statement in out["Statement"]:
                if isinstance(statement, dict):
                    for key in ("Action", "NotAction", "Resource", "NotResource"):
                        if key in statement:
                            statement[key] = sorted(as_list(statement[key]), key=json.dumps)
                    principal = statement.get("Principal")
                    if isinstance(principal, dict):
                        statement["Principal"] = {k: sorted(as_list(v), key=json.dumps) for k, v in principal.items()}
        return out
    if isinstance(value, list):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, str) and value[:1] in "{[":
        # A JSON document in a string (a dashboard body, a policy in an env var): compare its
        # content, not its spacing and key order.
        try:
            return {"(JSON)": canonical(json.loads(value))}
        except ValueError:
            pass
    return scalar(value)


def diff(path: str, sam: Any, cdk: Any, out: list[str]) -> None:
    if isinstance(sam, dict) and isinstance(cdk, dict):
        for key in sorted(set(sam) | set(cdk)):
            sub = f"{path}.{key}" if path else key
            if key not in cdk:
                out.append(f"{sub}: SAM {show(sam[key])}, CDK has none")
            elif key not in sam:
                out.append(f"{sub}: CDK {show(cdk[key])}, SAM has none")
            else:
                diff(sub, sam[key], cdk[key], out)
    elif isinstance(sam, list) and isinstance(cdk, list):
        if sam != cdk:
            sam_rest = [v for v in sam if v not in cdk]
            cdk_rest = [v for v in cdk if v not in sam]
            if len(sam_rest) == len(cdk_rest) and all(isinstance(v, (dict, list)) for v in sam_rest + cdk_rest):
                # As many changed elements on each side: compare them pairwise, to name the field.
                for i, (a, b) in enumerate(zip(sam_rest, cdk_rest)):
                    diff(f"{path}[~{i}]", a, b, out)
                return
            sam_only = [show(v) for v in sam_rest]
            cdk_only = [show(v) for v in cdk_rest]
            if sam_only or cdk_only:
                out.append(f"{path}: SAM only [{', '.join(sam_only)}], CDK only [{', '.join(cdk_only)}]")
            else:
                out.append(f"{path}: SAM {show(sam)}, CDK {show(cdk)}")
    elif sam != cdk:
        if isinstance(sam, str) and isinstance(cdk, str) and max(len(sam), len(cdk)) > 200:
            # Long values (a JSON policy...): show where they part.
            at = next((i for i, (a, b) in enumerate(zip(sam, cdk)) if a != b), min(len(sam), len(cdk)))
            start = max(0, at - 40)
            out.append(f"{path}: differ from character {at}: SAM ...{sam[start:at + 80]}..., CDK ...{cdk[start:at + 80]}...")
        else:
            out.append(f"{path}: SAM {show(sam)}, CDK {show(cdk)}")


def show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def comparable(resource: dict, roles: dict) -> dict:
    resource = copy.deepcopy(resource)
    if resource["Type"] == "AWS::Events::Rule":
        for target in resource["Properties"].get("Targets", []):
            target.pop("Id", None)  # a label: SAM <Function><Event>LambdaTarget, CDK Target0
    t = resource["Type"]
    ignored = IGNORED.get("*", set()) | IGNORED.get(t, set())
    if "*" in ignored:
        return {}
    props = {k: v for k, v in resource["Properties"].items() if k not in ignored}
    if t == "AWS::Logs::LogGroup" and isinstance(props.get("LogGroupName"), str) and refs_in(props["LogGroupName"]):
        props.pop("LogGroupName")  # part of the role
    for key, default in DEFAULTS.get(t, {}).items():
        props.setdefault(key, default)
    out = {"Properties": canonical(rename(props, roles))}
    out["DeletionPolicy"] = resource["DeletionPolicy"]
    out["UpdateReplacePolicy"] = resource["UpdateReplacePolicy"]
    return out


def side_model(template: dict, artifacts: dict[str, str], parameters: dict, side: str):
    resolver = Resolver(template, parameters, side)
    resources = resolver.resources()
    roles, problems = assign_roles(resources, artifacts, side)
    model, iam_problems = iam_model(resources, roles, side)
    problems += iam_problems
    problems += check_event_source_grants(resources, roles, model, side)
    problems += check_wildcard_managed(model, side)
    problems += check_tracing(resources, roles, model, side)
    by_role = {roles[i]: (i, r) for i, r in resources.items()}
    outputs = {name: canonical(rename(o, roles)) for name, o in resolver.outputs().items()}
    description = template.get("Description")
    return by_role, model, outputs, description, problems


def compare(sam_template: dict, cdk_template: dict, explain: bool = False,
            sam_parameters: dict[str, str] | None = None) -> tuple[list[str], int]:
    """Differences between template.yaml (SAM), resolved with sam_parameters (default
    SAM_PARAMETERS), and the synthesized CDK template; and how many resources were matched.
    With explain, prints each role and the resources that have it."""
    NOTES.clear()
    parameters = dict(SAM_PARAMETERS if sam_parameters is None else sam_parameters)
    sam_cfn, sam_artifacts = sam_transform(sam_template, parameters)
    sam, sam_iam, sam_outputs, sam_description, problems = side_model(sam_cfn, sam_artifacts, parameters, "SAM")
    cdk, cdk_iam, cdk_outputs, cdk_description, cdk_problems = side_model(cdk_template, cdk_artifacts(cdk_template), {}, "CDK")
    problems += cdk_problems
    sam_roles = {r: sam[r][0] for r in sam}
    cdk_roles = {r: cdk[r][0] for r in cdk}
    sam_names = {logical_id: role for role, logical_id in sam_roles.items()}
    cdk_names = {logical_id: role for role, logical_id in cdk_roles.items()}

    if explain:
        for role in sorted(set(sam) | set(cdk)):
            print(f"{role}\n    SAM {sam[role][0] if role in sam else '-'}\n    CDK {cdk_path(cdk[role][1], cdk[role][0]) if role in cdk else '-'}")
    matched = 0
    for role in sorted(set(sam) | set(cdk)):
        in_sam, in_cdk = sam.get(role), cdk.get(role)
        kind = (in_sam or in_cdk)[1]["Type"]
        if kind in SIDE_ONLY_TYPES:
            continue
        if in_cdk is None:
            where = "" if role.startswith(kind) else f" ({kind} {in_sam[0]})"
            problems.append(f"{role}{where}: in template.yaml, missing from the CDK construct")
            continue
        if in_sam is None:
            where = "" if role.startswith(kind) else f" ({kind} {cdk_path(in_cdk[1], in_cdk[0])})"
            problems.append(f"{role}{where}: in the CDK construct, not in template.yaml")
            continue
        if in_sam[1]["Type"] != in_cdk[1]["Type"]:
            problems.append(f"{role}: SAM {in_sam[1]['Type']}, CDK {in_cdk[1]['Type']}")
            continue
        matched += 1
        out: list[str] = []
        diff("", comparable(in_sam[1], sam_names), comparable(in_cdk[1], cdk_names), out)
        problems += [f"{role} ({kind}, SAM {in_sam[0]}, CDK {cdk_path(in_cdk[1], in_cdk[0])}): {d}" for d in out]

    for fn in sorted(set(sam_iam) | set(cdk_iam)):
        if fn not in sam_iam or fn not in cdk_iam:
            continue  # reported above
        s, c = sam_iam[fn], cdk_iam[fn]
        for atom in sorted(s["atoms"] - c["atoms"]):
            problems.append(f"{fn}: IAM {atom_text(atom)}: in template.yaml, not in the CDK construct")
        for atom in sorted(c["atoms"] - s["atoms"]):
            problems.append(f"{fn}: IAM {atom_text(atom)}: in the CDK construct, not in template.yaml")
        for arn in sorted(s["managed"] - c["managed"]):
            problems.append(f"{fn}: IAM managed policy {arn}: in template.yaml, not in the CDK construct")
        for arn in sorted(c["managed"] - s["managed"]):
            problems.append(f"{fn}: IAM managed policy {arn}: in the CDK construct, not in template.yaml")
        if s["trust"] != c["trust"]:
            problems.append(f"{fn}: IAM role trust: SAM {s['trust']}, CDK {c['trust']}")

    for name in sorted(set(sam_outputs) | set(cdk_outputs)):
        if name not in cdk_outputs:
            problems.append(f"output {name}: in template.yaml, not in the CDK example (infra/bin/example.ts)")
        elif name not in sam_outputs:
            problems.append(f"output {name}: in the CDK example, not in template.yaml")
        else:
            out = []
            diff("", sam_outputs[name], cdk_outputs[name], out)
            problems += [f"output {name}: {d}" for d in out]
    if sam_description != cdk_description:
        problems.append(f"stack Description: SAM {show(sam_description)}, CDK {show(cdk_description)}")
    return problems, matched


def atom_text(atom: tuple) -> str:
    effect, action, kind, resource, condition = atom
    text = f"{effect} {action} on {'NotResource ' if kind == 'NotResource' else ''}{resource}"
    return f"{text} when {condition}" if condition else text


def cdk_path(resource: dict, logical_id: str) -> str:
    return resource.get("Metadata", {}).get("aws:cdk:path", logical_id)


def sam_parameter(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not (name and equals):
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", required=True, help="template.yaml")
    parser.add_argument("--cdk", required=True, help="the synthesized CDK template (JSON)")
    parser.add_argument("--sam-parameter", action="append", type=sam_parameter, default=[], metavar="NAME=VALUE",
                        help="a template.yaml parameter's value for this run, over SAM_PARAMETERS (repeatable)")
    parser.add_argument("--explain", action="store_true", help="print each role and the resources matched to it")
    args = parser.parse_args(argv)
    overrides = dict(args.sam_parameter)
    try:
        sam = load_cfn(args.sam)
        for name, value in overrides.items():
            spec = sam.get("Parameters", {}).get(name)
            if spec is None:
                raise TemplateError(f"--sam-parameter {name}: {args.sam} has no such parameter")
            allowed = [scalar(v) for v in spec.get("AllowedValues", [])]
            if allowed and value not in allowed:
                raise TemplateError(f"--sam-parameter {name}: {value!r} is not one of {allowed}")
        problems, matched = compare(sam, load_cfn(args.cdk), args.explain, {**SAM_PARAMETERS, **overrides})
    except TemplateError as e:
        print(f"parity: {e}", file=sys.stderr)
        return 2
    for note in NOTES if problems else []:
        print(f"parity: note: {note}", file=sys.stderr)
    if problems:
        print(f"parity: {args.sam} and {args.cdk} differ ({len(problems)}):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print("Change infra/lib/herald.ts (or infra/bin/example.ts for outputs) and template.yaml together; "
              "see infra/README.md.", file=sys.stderr)
        return 1
    for note in NOTES:
        print(f"parity: note: {note}")
    with_values = "".join(f" {name}={value}" for name, value in overrides.items())
    print(f"parity: {args.sam}{with_values} and {args.cdk} agree ({matched} resources matched by role, IAM compared per function)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
