"""Runs a moto server on loopback for Herald's local mode and tests.

Prints the endpoint URL on the first line of stdout once it accepts requests,
then serves until its stdin closes: when the process that started it exits
(normally or not), the pipe closes and the server stops with it.

Usage: python3 scripts/moto_server.py [PORT]   (0 or absent: a free port)
"""

import logging
import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    print(f"http://{host}:{bound}", flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    main()
