#!/usr/bin/env python3
"""A deterministic Amazon Pinpoint endpoint export, for `herald import recipients`.

Writes OUT (gzipped newline-delimited JSON, one endpoint per line, the fields Pinpoint's
CreateExportJob documents: Id, ChannelType, Address, EndpointStatus, OptOut,
EffectiveDate, CreationDate, Demographic, Attributes, User.UserId, User.UserAttributes,
Location, Metrics, ApplicationId, RequestId) and, with --expected, what Herald should
hold after importing it, decided while generating it (see docs/import.md for the rules):

  {"endpoints": N, "users": {id: {"email", "phone", "timezone", "locale", "attributes",
   "tokens": {token: platform}, "consents": {channel: {"granted", "at"}}}},
   "refused": {line: code}}

Several endpoints per user, every ChannelType Herald imports (EMAIL, SMS, GCM, APNS,
APNS_SANDBOX), some OptOut ALL, some INACTIVE, some superseded, and some bad rows
(no user id, an unknown channel type, an invalid address or number, broken JSON).
The same arguments always give the same bytes (fixed seed, gzip mtime 0).

Usage: pinpoint-export.py OUT [--tag TAG] [--users N] [--expected FILE]
"""

import argparse
import gzip
import json
import random

PLATFORMS = {"GCM": "fcm", "APNS": "apns", "APNS_SANDBOX": "apns_sandbox"}
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]
LOCALES = ["en_US", "fr_FR", "de_DE", "ja_JP", "en_GB"]
NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana"]
PLANS = ["free", "pro", "team"]
APP = "0123456789abcdef0123456789abcdef"


def when(rng, year=2025):
    return "%d-%02d-%02dT%02d:%02d:%02d.000Z" % (
        year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tag", default="pp")
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--expected")
    args = ap.parse_args()
    rng = random.Random(14)
    tag = args.tag
    lines = []  # JSON text per line
    refused = {}
    users = {}

    def endpoint(eid, user, channel, address, *, status="ACTIVE", opt_out="NONE", effective, extra=None):
        e = {
            "ApplicationId": APP,
            "Id": eid,
            "ChannelType": channel,
            "Address": address,
            "EndpointStatus": status,
            "OptOut": opt_out,
            "EffectiveDate": effective,
            "CreationDate": "2024-01-01T00:00:00.000Z",
            "RequestId": "req-%s" % eid,
            "Location": {"Country": "US", "City": "Springfield"},
            "Metrics": {"sessions": 1.0},
        }
        if user is not None:
            e["User"] = user
        e.update(extra or {})
        lines.append(json.dumps(e, sort_keys=True))
        return len(lines)  # its line number

    for u in range(args.users):
        uid = "%s-user-%04d" % (tag, u)
        name, plan = rng.choice(NAMES), rng.choice(PLANS)
        user = {"UserId": uid, "UserAttributes": {"FirstName": [name], "Plan": [plan]}}
        zone, locale = rng.choice(ZONES), rng.choice(LOCALES)
        demo = {"Demographic": {"Timezone": zone, "Locale": locale, "Platform": "ios", "AppVersion": "1.2"}}
        want = {"attributes": {"FirstName": name, "Plan": plan}, "timezone": zone,
                "locale": locale.replace("_", "-"), "tokens": {}, "consents": {}}
        n = 0

        def eid():
            nonlocal n
            n += 1
            return "%s-ep-%04d-%d" % (tag, u, n)

        # Email: most people; some with an older address too, some opted out.
        if rng.random() < 0.9:
            if rng.random() < 0.2:
                line = endpoint(eid(), user, "EMAIL", "old.%s.%d@example.org" % (tag, u),
                                effective="2024-06-01T00:00:00.000Z", extra=demo)
                refused[line] = "superseded"
            address = "u%d.%s@example.org" % (u, tag)
            out = rng.random() < 0.15
            at = when(rng)
            extra = dict(demo)
            if rng.random() < 0.3:
                extra["Attributes"] = {"Interests": ["shoes", "hats"]}
                want["attributes"]["Interests"] = ["shoes", "hats"]
            endpoint(eid(), user, "EMAIL", address, opt_out="ALL" if out else "NONE", effective=at, extra=extra)
            want["email"] = address
            if out:
                want["consents"]["email"] = {"granted": False, "at": at}
        # SMS: half; some opted out, some inactive (then not imported).
        if rng.random() < 0.5:
            phone = "+1555%07d" % (u * 7 + 1000)
            at = when(rng)
            if rng.random() < 0.1:
                line = endpoint(eid(), user, "SMS", phone, status="INACTIVE", effective=at, extra=demo)
                refused[line] = "inactive_endpoint"
            else:
                out = rng.random() < 0.15
                endpoint(eid(), user, "SMS", phone, opt_out="ALL" if out else "NONE", effective=at, extra=demo)
                want["phone"] = phone
                if out:
                    want["consents"]["sms"] = {"granted": False, "at": at}
        # Push: 0 to 3 devices; inactive ones and opted-out ones are not registered.
        devices = []
        for d in range(rng.choice([0, 1, 1, 2, 3])):
            channel = rng.choice(sorted(PLATFORMS))
            token = "%s%s%04dd%d" % (channel.lower(), tag, u, d) + "f" * 40
            at = when(rng, 2026)
            r = rng.random()
            status, out = ("INACTIVE", False) if r < 0.1 else ("ACTIVE", r < 0.25)
            line = endpoint(eid(), user, channel, token, status=status, opt_out="ALL" if out else "NONE",
                            effective=at, extra=demo)
            if status == "INACTIVE":
                refused[line] = "inactive_endpoint"
                continue
            devices.append((at, line, out))
            if out:
                refused[line] = "opted_out"
            else:
                want["tokens"][token] = PLATFORMS[channel]
        if devices and all(out for _, _, out in devices):
            want["consents"]["push"] = {"granted": False, "at": max(devices)[0]}
        if n == 0:
            # Nobody without an endpoint: give them an email.
            address = "u%d.%s@example.org" % (u, tag)
            endpoint(eid(), user, "EMAIL", address, effective=when(rng), extra=demo)
            want["email"] = address
        users[uid] = want

    # Bad rows, spread through the file.
    bad = [
        lambda i: (endpoint("%s-bad-%d" % (tag, i), None, "EMAIL", "nouser%d.%s@example.org" % (i, tag),
                            effective=when(rng)), "no_user_id"),
        lambda i: (endpoint("%s-bad-%d" % (tag, i), {"UserId": "%s-user-%04d" % (tag, i)}, "VOICE", "+15550001111",
                            effective=when(rng)), "unsupported_channel"),
        lambda i: (endpoint("%s-bad-%d" % (tag, i), {"UserId": "%s-user-%04d" % (tag, i)}, "EMAIL",
                            "not-an-address", effective="2023-01-01T00:00:00.000Z"), "invalid_address"),
        lambda i: (endpoint("%s-bad-%d" % (tag, i), {"UserId": "%s-user-%04d" % (tag, i)}, "SMS", "555-0100",
                            effective="2023-01-01T00:00:00.000Z"), "invalid_address"),
    ]
    for i in range(0, args.users, 16):
        line, code = bad[(i // 16) % len(bad)](i)
        refused[line] = code
        if i % 48 == 0:
            lines.append('{"Id": "%s-broken-%d", "ChannelType": "EMAIL", ' % (tag, i))
            refused[len(lines)] = "malformed_json"

    assert len(lines) >= 1000 or args.users < 400, len(lines)
    data = ("\n".join(lines) + "\n").encode()
    with open(args.out, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(data)
    if args.expected:
        with open(args.expected, "w") as f:
            json.dump({"endpoints": len(lines), "users": users, "refused": {str(k): v for k, v in refused.items()}},
                      f, sort_keys=True, indent=1)
    print("%d endpoints of %d users written to %s" % (len(lines), len(users), args.out))


if __name__ == "__main__":
    main()
