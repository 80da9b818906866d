#!/usr/bin/env python3
"""Self-test of the parity test: the two real templates agree, and a change made to a copy of
only one of them (a queue setting, a dead-letter pairing, an IAM action or condition, an
environment variable, an event source setting, a DynamoDB stream event source's filter, on-failure destination or
grants, a table's stream, the event bus, a Function URL's CORS, X-Ray tracing or its permission) makes it fail,
naming what differs, and so does an SQS grant on "*" (a statement, or the managed policy of a SAM
SQS event). With --cdk-traced (the example synthesized with `-c tracing=true`), the same for the
traced pair, template.yaml resolved with Tracing=Active.

    test_parity.py --sam ../template.yaml --cdk cdk.out/HeraldExample.template.json \
        --cdk-traced cdk.out.traced/HeraldExample.template.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parity  # noqa: E402


def run_parity(sam: dict, cdk: dict, args: list[str]) -> tuple[int, str]:
    """Writes the two templates to files, as a developer's copies would be, and runs the CLI
    (with args after --sam and --cdk)."""
    with tempfile.TemporaryDirectory() as tmp:
        sam_path, cdk_path = Path(tmp, "template.json"), Path(tmp, "cdk.template.json")
        sam_path.write_text(json.dumps(sam))
        cdk_path.write_text(json.dumps(cdk))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = parity.main(["--sam", str(sam_path), "--cdk", str(cdk_path), *args])
        return code, out.getvalue() + err.getvalue()


def differences(output: str) -> list[str]:
    """The difference lines of a parity report, without the file names."""
    return [line for line in output.splitlines() if line.startswith("  - ")]


def sam_function(sam: dict, artifact: str) -> str:
    """Logical id of the function running target/lambda/<artifact>, in template.yaml."""
    for logical_id, resource in sam["Resources"].items():
        p = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and str(p.get("CodeUri", "")).rstrip("/").endswith(f"/{artifact}"):
            return logical_id
    raise AssertionError(f"template.yaml: no function {artifact}")


def sam_event_source_of(sam: dict, artifact: str) -> str:
    """Logical id of the event source mapping of the function running target/lambda/<artifact>."""
    fn = sam_function(sam, artifact)
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping" and resource["Properties"]["FunctionName"] == {"Ref": fn}:
            return logical_id
    raise AssertionError(f"template.yaml: no event source mapping of {fn}")


def sam_queue_of(sam: dict, artifact: str) -> str:
    """Logical id of the queue the function running target/lambda/<artifact> reads, in template.yaml."""
    return sam["Resources"][sam_event_source_of(sam, artifact)]["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]


def sam_statement(sam: dict, artifact: str, sid: str) -> dict:
    """The statement with this Sid in the Policies of the function running target/lambda/<artifact>."""
    for policy in sam["Resources"][sam_function(sam, artifact)]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if isinstance(statement, dict) and statement.get("Sid") == sid:
                return statement
    raise AssertionError(f"template.yaml: no statement {sid} in the policies of function {artifact}")


def cdk_resource(cdk: dict, path_suffix: str) -> dict:
    """The CDK resource whose construct path ends with path_suffix (construct ids are the SAM logical ids)."""
    for resource in cdk["Resources"].values():
        if resource.get("Metadata", {}).get("aws:cdk:path", "").endswith(path_suffix):
            return resource
    raise AssertionError(f"CDK template: no resource at */{path_suffix}")


def cdk_function_policy(cdk: dict, function_id: str) -> dict:
    return cdk_resource(cdk, f"/{function_id}/ServiceRole/DefaultPolicy/Resource")["Properties"]["PolicyDocument"]


# Each case: a name, a change to copies of (sam, cdk), and what the failure must say.
Mutation = Callable[[dict, dict], None]


# Literal values no template is likely to hold, so the change is a change whatever the setting
# is today (a number or a parameter).
ODD_VISIBILITY_TIMEOUT = 899
ODD_MAX_RECEIVE_COUNT = 97
ODD_MAX_CONCURRENCY = 93


def queue_visibility_in_sam(sam: dict, cdk: dict) -> None:
    sam["Resources"][sam_queue_of(sam, "ingest")]["Properties"]["VisibilityTimeout"] = ODD_VISIBILITY_TIMEOUT


def queue_redrive_count_in_sam(sam: dict, cdk: dict) -> None:
    queue = sam["Resources"][sam_queue_of(sam, "eligibility")]["Properties"]
    queue["RedrivePolicy"]["maxReceiveCount"] = ODD_MAX_RECEIVE_COUNT


def dead_letter_pairing_in_sam(sam: dict, cdk: dict) -> None:
    # The ingest queue sends its failures to a new queue instead of its own dead-letter queue.
    ingest = sam["Resources"][sam_queue_of(sam, "ingest")]["Properties"]
    own = ingest["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    sam["Resources"]["StrayDeadLetterQueue"] = copy.deepcopy(sam["Resources"][own])
    ingest["RedrivePolicy"]["deadLetterTargetArn"] = {"Fn::GetAtt": ["StrayDeadLetterQueue", "Arn"]}


def dlq_retention_in_cdk(cdk_sam: dict, cdk: dict) -> None:
    dlq = cdk_resource(cdk, "/Herald/SmsQueueDeadLetterQueue/Resource")["Properties"]
    dlq["MessageRetentionPeriod"] = 86400


def sam_sqs_event_in_sam(sam: dict, cdk: dict) -> None:
    # The ingest function's event source written as a SAM event again (and its own grant kept):
    # the SAM transform then attaches the managed AWSLambdaSQSQueueExecutionRole.
    esm = sam_event_source_of(sam, "ingest")
    p = sam["Resources"].pop(esm)["Properties"]
    p.pop("FunctionName")
    p["Queue"] = p.pop("EventSourceArn")
    sam["Resources"][sam_function(sam, "ingest")]["Properties"]["Events"] = {"Ingest": {"Type": "SQS", "Properties": p}}


def sqs_on_star_in_sam(sam: dict, cdk: dict) -> None:
    sam_statement(sam, "receipts", "EventSource")["Resource"] = "*"


def iam_action_in_cdk(sam: dict, cdk: dict) -> None:
    for statement in cdk_function_policy(cdk, "ReceiptsFunction")["Statement"]:
        if statement.get("Sid") == "Ledger":
            statement["Action"] = [a for a in statement["Action"] if a != "dynamodb:GetItem"]
            return
    raise AssertionError("no Ledger statement in the receipts function's policy")


def event_source_grant_in_cdk(sam: dict, cdk: dict) -> None:
    for statement in cdk_function_policy(cdk, "IngestFunction")["Statement"]:
        if statement.get("Sid") == "EventSource":
            statement["Action"] = [a for a in statement["Action"] if a != "sqs:ReceiveMessage"]
            return
    raise AssertionError("no EventSource statement in the ingest function's policy")


def wildcard_in_cdk(sam: dict, cdk: dict) -> None:
    cdk_function_policy(cdk, "DispatchPushFunction")["Statement"].append(
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"})


def leading_keys_in_cdk(sam: dict, cdk: dict) -> None:
    for statement in cdk_function_policy(cdk, "WebhooksFunction")["Statement"]:
        if statement.get("Sid") == "ReplayGuard":
            statement.pop("Condition")
            return
    raise AssertionError("no ReplayGuard statement in the webhook function's policy")


def broadcast_leading_keys_in_sam(sam: dict, cdk: dict) -> None:
    sam_statement(sam, "broadcast", "Ledger").pop("Condition")


def env_var_in_cdk(sam: dict, cdk: dict) -> None:
    env = cdk_resource(cdk, "/Herald/DispatchEmailFunction/Resource")["Properties"]["Environment"]["Variables"]
    env.pop("HERALD_FROM_ADDRESS")


def batch_size_in_cdk(sam: dict, cdk: dict) -> None:
    for resource in cdk["Resources"].values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping" and "/Herald/IngestFunction/" in resource["Metadata"]["aws:cdk:path"]:
            resource["Properties"]["BatchSize"] = 5
            return
    raise AssertionError("no event source of the ingest function")


def max_concurrency_in_cdk(sam: dict, cdk: dict) -> None:
    for resource in cdk["Resources"].values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping" and "/Herald/BroadcastFunction/" in resource["Metadata"]["aws:cdk:path"]:
            resource["Properties"]["ScalingConfig"]["MaximumConcurrency"] = ODD_MAX_CONCURRENCY
            return
    raise AssertionError("no event source of the broadcast function")


def table_ttl_in_cdk(sam: dict, cdk: dict) -> None:
    cdk_resource(cdk, "/Herald/LedgerTable/Resource")["Properties"].pop("TimeToLiveSpecification")


def url_cors_in_cdk(sam: dict, cdk: dict) -> None:
    # The inbox API's CORS origins (a list parameter in template.yaml) narrowed in the CDK template only.
    cors = cdk_resource(cdk, "/Herald/InboxFunction/FunctionUrl/Resource")["Properties"]["Cors"]
    cors["AllowOrigins"] = ["https://app.example.com"]


def stream_view_in_cdk(sam: dict, cdk: dict) -> None:
    cdk_resource(cdk, "/Herald/LedgerTable/Resource")["Properties"]["StreamSpecification"]["StreamViewType"] = "KEYS_ONLY"


def event_bus_name_in_sam(sam: dict, cdk: dict) -> None:
    sam["Resources"]["EventBus"]["Properties"]["Name"] = {"Fn::Sub": "${AWS::StackName}-bus"}


def stream_filter_in_cdk(sam: dict, cdk: dict) -> None:
    # The consent filter loses its key prefix: every profile write would reach the events function.
    filters = cdk_resource(cdk, "/Herald/EventsFunctionConsents")["Properties"]["FilterCriteria"]["Filters"]
    filters[0]["Pattern"] = json.dumps({"eventName": ["INSERT"]})


def stream_on_failure_in_cdk(sam: dict, cdk: dict) -> None:
    cdk_resource(cdk, "/Herald/EventsFunctionLedger")["Properties"].pop("DestinationConfig")


def stream_grant_in_cdk(sam: dict, cdk: dict) -> None:
    for statement in cdk_function_policy(cdk, "EventsFunction")["Statement"]:
        if statement.get("Sid") == "EventSource":
            statement["Action"] = [a for a in statement["Action"] if a != "dynamodb:GetRecords"]
            return
    raise AssertionError("no EventSource statement in the events function's policy")


def on_failure_grant_in_sam(sam: dict, cdk: dict) -> None:
    statements = sam["Resources"][sam_function(sam, "events")]["Properties"]["Policies"][0]["Statement"]
    kept = [st for st in statements if st.get("Sid") != "DeadLetters"]
    if len(kept) == len(statements):
        raise AssertionError("no DeadLetters statement in the events function's policy")
    statements[:] = kept


def tracing_in_sam(sam: dict, cdk: dict) -> None:
    sam["Globals"]["Function"]["Tracing"] = "Active"


def xray_grant_in_cdk(sam: dict, cdk: dict) -> None:
    cdk_function_policy(cdk, "ReceiptsFunction")["Statement"].append(
        {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"})


def xray_grant_dropped_in_traced_cdk(sam: dict, cdk: dict) -> None:
    policy = cdk_function_policy(cdk, "DispatchSmsFunction")
    kept = [st for st in policy["Statement"] if "xray:PutTraceSegments" not in parity.as_list(st.get("Action"))]
    if len(kept) == len(policy["Statement"]):
        raise AssertionError("no X-Ray statement in the dispatch-sms function's policy")
    policy["Statement"] = kept


CASES: list[tuple[str, Mutation, list[str]]] = [
    ("a queue's visibility timeout changed in template.yaml only", queue_visibility_in_sam,
     ["queue read by function ingest", f"VisibilityTimeout: SAM {ODD_VISIBILITY_TIMEOUT}, CDK"]),
    ("a queue's maxReceiveCount changed in template.yaml only", queue_redrive_count_in_sam,
     ["queue read by function eligibility", f"RedrivePolicy.maxReceiveCount: SAM {ODD_MAX_RECEIVE_COUNT}, CDK"]),
    ("a queue paired with another dead-letter queue in template.yaml only", dead_letter_pairing_in_sam,
     ["dead-letter queue of «queue read by function ingest»"]),
    ("a dead-letter queue's retention changed in the CDK template only", dlq_retention_in_cdk,
     ["dead-letter queue of «queue read by function dispatch-sms»", "MessageRetentionPeriod: SAM", "CDK 86400"]),
    ("an IAM action dropped in the CDK template only", iam_action_in_cdk,
     ["function receipts: IAM Allow dynamodb:getitem on «table in env HERALD_LEDGER_TABLE».Arn: in template.yaml, not in the CDK construct"]),
    ("the event source's ReceiveMessage dropped in the CDK template only", event_source_grant_in_cdk,
     ["CDK: «function ingest» cannot consume «queue read by function ingest».Arn: no sqs:receivemessage",
      "function ingest: IAM Allow sqs:receivemessage on «queue read by function ingest».Arn: in template.yaml, not in the CDK construct"]),
    ("an SQS event source as a SAM event (managed AWSLambdaSQSQueueExecutionRole) in template.yaml", sam_sqs_event_in_sam,
     ["SAM: «function ingest»: managed policy AWSLambdaSQSQueueExecutionRole allows sqs:ReceiveMessage, "
      "sqs:DeleteMessage, sqs:GetQueueAttributes on Resource \"*\""]),
    ("the event source's grant on Resource * in template.yaml", sqs_on_star_in_sam,
     ["SAM: «function receipts»: Allow sqs:ReceiveMessage on Resource \"*\""]),
    ("a data action on Resource * in the CDK template", wildcard_in_cdk,
     ["CDK: «function dispatch-push»: Allow dynamodb:GetItem on Resource \"*\""]),
    ("the webhook's LeadingKeys condition dropped in the CDK template only", leading_keys_in_cdk,
     ["function webhooks: IAM Allow dynamodb:putitem on «table in env HERALD_LEDGER_TABLE».Arn when "
      "{\"ForAllValues:StringLike\": {\"dynamodb:LeadingKeys\": [\"replay#*\"]}}: in template.yaml, not in the CDK construct"]),
    ("the broadcast's LeadingKeys condition dropped in template.yaml only", broadcast_leading_keys_in_sam,
     ["function broadcast: IAM Allow dynamodb:updateitem on «table in env HERALD_LEDGER_TABLE».Arn: in template.yaml, not in the CDK construct",
      "function broadcast: IAM Allow dynamodb:updateitem on «table in env HERALD_LEDGER_TABLE».Arn when "
      "{\"ForAllValues:StringLike\": {\"dynamodb:LeadingKeys\": [\"broadcast#*\"]}}: in the CDK construct, not in template.yaml"]),
    ("an environment variable dropped in the CDK template only", env_var_in_cdk,
     ["function dispatch-email", "Environment.Variables.HERALD_FROM_ADDRESS: SAM notifications@example.com, CDK has none"]),
    ("an event source batch size changed in the CDK template only", batch_size_in_cdk,
     ["event source «queue read by function ingest» -> «function ingest»", "BatchSize: SAM", "CDK 5"]),
    ("an event source's maximum concurrency changed in the CDK template only", max_concurrency_in_cdk,
     ["event source «queue read by function broadcast» -> «function broadcast»", "ScalingConfig.MaximumConcurrency: SAM",
      f"CDK {ODD_MAX_CONCURRENCY}"]),
    ("a table's TTL dropped in the CDK template only", table_ttl_in_cdk,
     ["table in env HERALD_LEDGER_TABLE", "TimeToLiveSpecification"]),
    ("a Function URL's CORS origins changed in the CDK template only", url_cors_in_cdk,
     ["AWS::Lambda::Url of «function inbox»", "Cors.AllowOrigins: SAM only [*], CDK only [https://app.example.com]"]),
    ("a table's stream view type changed in the CDK template only", stream_view_in_cdk,
     ["table in env HERALD_LEDGER_TABLE", "StreamSpecification.StreamViewType: SAM NEW_AND_OLD_IMAGES, CDK KEYS_ONLY"]),
    ("the event bus renamed in template.yaml only", event_bus_name_in_sam,
     ["event bus in env HERALD_EVENT_BUS", "Name: SAM ${AWS::StackName}-bus, CDK ${AWS::StackName}-events"]),
    ("a stream event source's filter widened in the CDK template only", stream_filter_in_cdk,
     ["event source «table in env HERALD_RECIPIENTS_TABLE» -> «function events»", "FilterCriteria.Filters", "dynamodb"]),
    ("a stream event source's on-failure destination dropped in the CDK template only", stream_on_failure_in_cdk,
     ["event source «table in env HERALD_LEDGER_TABLE» -> «function events»",
      "DestinationConfig: SAM {\"OnFailure\": {\"Destination\": \"«queue in env HERALD_EVENTS_DLQ_URL».Arn\"}}, CDK has none"]),
    ("the stream event source's GetRecords dropped in the CDK template only", stream_grant_in_cdk,
     ["CDK: «function events» cannot consume «table in env HERALD_LEDGER_TABLE».StreamArn: no dynamodb:getrecords",
      "CDK: «function events» cannot consume «table in env HERALD_RECIPIENTS_TABLE».StreamArn: no dynamodb:getrecords"]),
    ("the on-failure destination's SendMessage dropped in template.yaml only", on_failure_grant_in_sam,
     ["SAM: «function events» cannot send failure records to «queue in env HERALD_EVENTS_DLQ_URL».Arn: no sqs:sendmessage"]),
    ("X-Ray tracing Active in template.yaml only", tracing_in_sam,
     ["function ingest", "TracingConfig.Mode: SAM Active, CDK PassThrough"]),
    ("an X-Ray grant without tracing in the CDK template", xray_grant_in_cdk,
     ["CDK: «function receipts»: its role may write X-Ray traces (xray:puttelemetryrecords, xray:puttracesegments) "
      "but TracingConfig Mode is PassThrough"]),
]
# Cases on the traced pair: the CDK example synthesized with `-c tracing=true`, and template.yaml
# with these parity arguments.
TRACED_ARGS = ["--sam-parameter", "Tracing=Active"]
TRACED_CASES: list[tuple[str, Mutation, list[str]]] = [
    ("a traced function's X-Ray grant dropped in the CDK template only", xray_grant_dropped_in_traced_cdk,
     ["CDK: «function dispatch-sms»: TracingConfig Mode Active, but its role cannot write traces"]),
]


def run_cases(sam: dict, cdk: dict, args: list[str], cases: list[tuple[str, Mutation, list[str]]], label: str = "") -> tuple[int, int]:
    """The unchanged pair must agree, each case must fail parity: (passed, failed)."""
    passed = failed = 0
    code, output = run_parity(sam, cdk, args)
    base = set(differences(output))
    if code == 0:
        passed += 1
        print(f"ok   {label}the two templates agree")
    else:
        failed += 1
        print(f"FAIL {label}the two templates should agree (exit {code}):\n{output}")

    for name, mutate, expected in cases:
        name = label + name
        sam_copy, cdk_copy = copy.deepcopy(sam), copy.deepcopy(cdk)
        try:
            mutate(sam_copy, cdk_copy)
        except Exception as e:  # noqa: BLE001 - the template changed shape: say so, do not crash
            failed += 1
            print(f"FAIL {name}: could not make the change ({e!r}); update infra/test/test_parity.py")
            continue
        code, output = run_parity(sam_copy, cdk_copy, args)
        # Only what the change added counts (the real templates may already differ).
        new = "\n".join(d for d in differences(output) if d not in base)
        missing = [e for e in expected if e not in new]
        if code == 1 and not missing:
            passed += 1
            print(f"ok   {name}: parity fails")
        else:
            failed += 1
            print(f"FAIL {name}: exit {code}, expected 1 and new differences saying {missing}; parity said:\n{output}")
    return passed, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", required=True)
    parser.add_argument("--cdk", required=True)
    parser.add_argument("--cdk-traced", help="the example synthesized with -c tracing=true (without it, its cases are skipped)")
    args = parser.parse_args()
    sam = parity.load_cfn(args.sam)
    passed, failed = run_cases(sam, parity.load_cfn(args.cdk), [], CASES)
    if args.cdk_traced:
        more = run_cases(sam, parity.load_cfn(args.cdk_traced), TRACED_ARGS, TRACED_CASES, "traced: ")
        passed, failed = passed + more[0], failed + more[1]
    else:
        print(f"skip {len(TRACED_CASES) + 1} traced checks: no --cdk-traced")

    print(f"parity self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
