"""Runs a moto server on loopback for Herald's local mode and tests.

Prints the endpoint URL on the first line of stdout once it accepts requests,
then serves until its stdin closes: when the process that started it exits
(normally or not), the pipe closes and the server stops with it.

DynamoDB serializes the writes to one item, which is what makes a conditional
write atomic; moto evaluates a condition and applies the update in Python
threads that can interleave. So DynamoDB requests are served one at a time here
(a lock around them only: SQS long polls and the rest stay concurrent), and a
conditional write behaves as it does on AWS.

SNS disables a platform application whose credential stops working (an expired
APNs certificate, a revoked FCM key) and then refuses every Publish to its
endpoints with `PlatformApplicationDisabled`; moto keeps publishing. Here an
application whose `Enabled` attribute is set to `false` refuses as SNS does, so
tests can put push in that state with SetPlatformApplicationAttributes.

EventBridge delivers an event to a rule's target after running the target's input
transformer; moto parses each of its JSONPath expressions anew, building the
parser's tables every time (about half a second an event). Here the parsed
expressions are kept, so a rule with an SQS target (the tests' and the demo's view
of the event stream) delivers at once; what is delivered does not change.

Usage: python3 scripts/moto_server.py [PORT]   (0 or absent: a free port)
"""

import logging
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def serialize_dynamodb(app):
    lock = threading.Lock()

    def wrapped(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                # The body is produced inside the lock: the update and its answer are one step.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def honour_disabled_platform_applications():
    from moto.sns import models
    from moto.sns.exceptions import SNSException

    class PlatformApplicationDisabled(SNSException):
        code = "PlatformApplicationDisabled"

    publish = models.PlatformEndpoint.publish

    def checked(self, message):
        if str(self.application.attributes.get("Enabled", "true")).lower() == "false":
            raise PlatformApplicationDisabled("Platform application is disabled.")
        return publish(self, message)

    models.PlatformEndpoint.publish = checked


def cache_jsonpath_expressions():
    import functools

    import jsonpath_ng.ext

    # moto.events.utils imports `parse` from this module at each call.
    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)


def main() -> None:
    honour_disabled_platform_applications()
    cache_jsonpath_expressions()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = serialize_dynamodb(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, bound = server.server_address[:2]
    print(f"http://{host}:{bound}", flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
