"""Smoke test of `herald local` from another language: starts the local stack,
publishes a recipient and a notification with boto3 (Python's AWS SDK) to the
printed ingest queue, and waits until moto's SES sink shows the email.

Usage: python3 scripts/local_smoke.py path/to/herald
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3


def main() -> int:
    herald = sys.argv[1]
    proc = subprocess.Popen(
        [herald, "local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        ready = {}
        deadline = time.time() + 120
        while "HERALD_INGEST_QUEUE_URL" not in ready:
            if time.time() > deadline or proc.poll() is not None:
                print("herald local did not print its ready lines", file=sys.stderr)
                return 1
            line = proc.stdout.readline().strip()
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                ready[key] = value
        endpoint = ready["AWS_ENDPOINT_URL"]
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )
        queue = ready["HERALD_INGEST_QUEUE_URL"]
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=json.dumps(
                {"type": "upsert_recipient", "recipient": "py-user", "email": "py-user@example.org"}
            ),
        )
        time.sleep(2)
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=json.dumps(
                {
                    "idempotency_key": "py-order-1",
                    "recipient": "py-user",
                    "template": "order_shipped",
                    "kind": "transactional",
                    "channels": ["email"],
                    "data": {"order_id": "py-1"},
                }
            ),
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as r:
                    data = json.load(r)
            except urllib.error.HTTPError:
                # moto answers 500 now and then while other requests change its state: ask again.
                time.sleep(0.2)
                continue
            sent = [
                m
                for m in data.get("ses", {}).get("Message", [])
                if "py-user@example.org" in m["destinations"]["ToAddresses"]
            ]
            if sent:
                print(f"local smoke: the email published with boto3 was sent: {sent[0]['subject']!r}")
                return 0
            time.sleep(0.5)
        print("local smoke: no email reached the SES sink within 60 s", file=sys.stderr)
        return 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
