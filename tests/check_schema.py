#!/usr/bin/env python3
"""Check flitzid against osc-schema/flitzi-osc.json, in both directions.

1. `flitzid --list-osc` must list exactly the schema's addresses, each with
   exactly the schema's type-tag strings.
2. A flitzid of this test's own (on a dummy jackd of its own) must answer
   - every type-tag string the schema does not list for an address with
     /fail ,ss ADDRESS "bad arguments: expected ...", built from the schema;
   - every listed form with the schema's reply (path and type tags, fixed
     values), or with nothing before a following /pong if the schema says
     there is no reply;
   - out-of-range, empty-slot and velocity errors with the schema's error
     reply and a reason that matches one of the schema's patterns;
   - an unknown address with the schema's generic /fail.

Environment: FLITZID (path of the daemon). Output: TAP. Exit 77 skips (no
jackd on this machine).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flitzid_fixture import (Daemon, OscClient, Tap, encode_bundle,  # noqa: E402
                             encode_message, raise_on_sigterm, timetag,
                             write_wav)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "osc-schema", "flitzi-osc.json")
SLOTS = 8

# Type-tag strings sent to find out whether an address refuses them. Each
# address is probed with those it does not accept. "fs" and "fi" are
# numerical look-alikes of accepted forms: the API converts no types.
PROBES = ["", "i", "f", "s", "ii", "if", "is", "fi", "fs", "ss", "si",
          "iii", "isi", "iis"]


def comma(types):
    return "," + types


def expected_bad_arguments(address):
    return "bad arguments: expected " + " or ".join(
        comma(t) for t in address["typetags"])


def pattern_regex(pattern):
    """A reason pattern ("slot {id} is empty") as an anchored regex."""
    parts = re.split(r"(\{[a-z_]+\})", pattern)
    return re.compile("^" + "".join(
        ".+?" if re.fullmatch(r"\{[a-z_]+\}", p) else re.escape(p)
        for p in parts) + "$", re.S)


def matches_any(reason, patterns):
    return any(pattern_regex(p).match(reason) for p in patterns)


def describe(message):
    if message is None:
        return "nothing"
    path, types, args = message
    return f"{path} ,{types} " + " ".join(repr(a) for a in args)


def sample_args(types, wav_path, slot=0):
    """Arguments of valid types (and values) for a form."""
    values = {"i": slot, "f": 0.5, "s": wav_path}
    args = []
    for index, tag in enumerate(types):
        # The second int of a form is a velocity or flag: 0 is valid for both.
        args.append(0 if tag == "i" and index > 0 else values[tag])
    return args


def probe_args(types):
    return [{"i": 0, "f": 0.5, "s": "x"}[t] for t in types]


def check_list_osc(tap, schema, flitzid):
    result = subprocess.run([flitzid, "--list-osc"], capture_output=True,
                            text=True, timeout=10)
    if not tap.equal(result.returncode, 0, "flitzid --list-osc exits 0"):
        tap.note(result.stderr)
        return
    daemon = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if not words:
            continue
        daemon[words[0]] = ["" if w == "-" else w for w in words[1:]]
    documented = {a["path"]: a["typetags"] for a in schema["addresses"]}

    for path in documented:
        tap.ok(path in daemon, f"--list-osc has {path}",
               f"{path} is in the schema but not in flitzid's dispatch table")
    for path in daemon:
        tap.ok(path in documented, f"the schema has {path}",
               f"{path} is in flitzid's dispatch table but not in the schema")
    for path in documented:
        if path not in daemon:
            continue
        want = " ".join(comma(t) for t in documented[path])
        got = " ".join(comma(t) for t in daemon[path])
        tap.ok(sorted(documented[path]) == sorted(daemon[path]),
               f"{path} accepts {want} in both",
               f"schema: {want}\nflitzid --list-osc: {got}")


def check_reply(tap, what, message, spec):
    """`message` is the success or error reply `spec` describes."""
    wrong = []
    if message is None or message[0] != spec["path"] \
            or message[1] != spec["typetags"]:
        wrong.append(f"expected {spec['path']} {comma(spec['typetags'])}")
    else:
        for field, value in zip(spec["fields"], message[2]):
            if "value" in field and value != field["value"]:
                wrong.append(f"expected {field['name']} {field['value']!r}")
    return tap.ok(not wrong,
                  f"{what}: {spec['path']} {comma(spec['typetags'])}",
                  "\n".join(wrong) + f"\ngot {describe(message)}")


def check_error(tap, client, address, types, args, reason):
    """Send a bad request; expect the schema's error reply with `reason`
    (exact), which must also match one of the schema's patterns."""
    path = address["path"]
    what = f"{path} {comma(types)} {' '.join(map(str, args))}"
    client.send(path, types, args)
    reply = client.wait_for(lambda m: m[0] != "/pong", 3.0)
    spec = address["errors"][0]
    if not check_reply(tap, what, reply, spec):
        return
    got = reply[2][-1]
    tap.ok(got == reason and matches_any(got, spec["reasons"]),
           f"{what}: reason {reason!r}",
           f"got {got!r}" if got != reason else
           f"{got!r} matches none of the schema's {spec['reasons']!r}")


def ensure_loaded(client, wav_path, slot=0):
    reply = client.request("/query", "i", [slot], 3.0)
    if reply and reply[0] == "/slot" and reply[2][-1] == 1:
        return True
    client.send("/load", "is", [slot, wav_path])
    done = client.wait_for(lambda m: m[0] in ("/done", "/fail")
                           and m[2][:1] == ["/load"], 10.0)
    return done is not None and done[0] == "/done"


def check_notify(tap, schema, daemon, wav_path):
    """A subscriber gets a copy of another client's /load and /unload
    replies, and its own reply once."""
    watcher = OscClient(daemon.port)
    other = OscClient(daemon.port)
    try:
        reply = watcher.request("/notify", "i", [1])
        tap.equal(reply, ("/done", "si", ["/notify", 1]), "/notify 1")
        copied = schema["notify_copies"]["addresses"]
        slot = 1
        for path in copied:
            types = "is" if path == "/load" else "i"
            args = [slot, wav_path] if path == "/load" else [slot]
            other.send(path, types, args)
            mine = other.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
            copy = watcher.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
            tap.ok(mine is not None and copy == mine,
                   f"a subscriber gets a copy of another client's {path} reply",
                   f"requester got {describe(mine)}\n"
                   f"subscriber got {describe(copy)}")
        watcher.send("/load", "is", [slot, wav_path])
        replies = []
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            message = watcher.receive(0.5 if replies else 10.0)
            if message is None:
                break
            if message[0] in ("/done", "/fail"):
                replies.append(message)
        tap.equal(len(replies), 1, "a subscribed requester gets its reply once")
        watcher.request("/notify", "i", [0])
        other.send("/unload", "i", [slot])
        other.wait_for(lambda m: m[0] in ("/done", "/fail"), 5.0)
        late = watcher.receive(0.3)
        tap.ok(late is None, "after /notify 0 no more copies arrive",
               describe(late))
    finally:
        watcher.close()
        other.close()


def check_daemon(tap, schema, daemon, wav_path):
    client = OscClient(daemon.port)
    addresses = schema["addresses"]
    generic = {e["reasons"][0]: e for e in schema["generic_errors"]}
    bad_spec = generic["bad arguments: expected {expected}"]
    unknown_spec = generic["unknown address"]
    # /quit goes last: it ends the daemon.
    ordered = ([a for a in addresses if a["path"] != "/quit"]
               + [a for a in addresses if a["path"] == "/quit"])

    try:
        for address in ordered:
            path = address["path"]

            # Wrong type tags.
            for types in PROBES:
                if types in address["typetags"]:
                    continue
                what = f"{path} {comma(types)}"
                client.send(path, types, probe_args(types))
                reply = client.wait_for(lambda m: m[0] != "/pong", 2.0)
                expected = ("/fail", bad_spec["typetags"],
                            [path, expected_bad_arguments(address)])
                if not tap.equal(reply, expected, f"{what} is refused"):
                    # Whatever the daemon did with it, clear what followed.
                    client.until_pong()
                if reply is None and daemon.process.poll() is not None:
                    tap.ok(False, f"flitzid is still running after {what}",
                           daemon.logs())
                    return

            # Valid forms.
            for types in address["typetags"]:
                if path != "/load" and not ensure_loaded(client, wav_path):
                    tap.ok(False, "slot 0 could be loaded for the next check",
                           daemon.logs())
                what = f"{path} {comma(types)}"
                args = sample_args(types, wav_path)
                spec = address["reply"]
                if spec is None:
                    client.send(path, types, args)
                    before = client.until_pong()
                    tap.ok(before == [], f"{what}: no reply",
                           "expected nothing before /pong, got "
                           + ("no /pong" if before is None
                              else "; ".join(map(describe, before))))
                    continue
                client.send(path, types, args)
                reply = client.wait_for(
                    lambda m: m[0] in (spec["path"], "/fail"), 10.0)
                check_reply(tap, what, reply, spec)
                if path == "/quit":
                    status = daemon.wait_exit(10.0)
                    tap.equal(status, 0, "flitzid exits 0 after /quit")
                    return

            # Error replies, for addresses that have a slot id.
            if address["arguments"] and address["arguments"][0]["name"] == "id":
                for types in address["typetags"]:
                    if not types:
                        continue
                    for slot in (SLOTS, -1):
                        args = sample_args(types, wav_path, slot)
                        check_error(tap, client, address, types, args,
                                    f"slot {slot} is out of range "
                                    f"(0..{SLOTS - 1})")
            reasons = [r for e in address["errors"] for r in e["reasons"]]
            empty = SLOTS - 1  # Never loaded by this test
            if "slot {id} is empty" in reasons:
                types = address["typetags"][0]
                check_error(tap, client, address, types,
                            sample_args(types, wav_path, empty),
                            f"slot {empty} is empty")
            if path == "/play":
                for velocity, reason in (
                        (1.5, "velocity 1.5 is not in [0, 1]"),
                        (-0.25, "velocity -0.25 is not in [0, 1]"),
                        (float("nan"), "velocity nan is not in [0, 1]"),
                        (float("inf"), "velocity inf is not in [0, 1]")):
                    check_error(tap, client, address, "if", [0, velocity],
                                reason)
                for velocity in (128, -1):
                    check_error(tap, client, address, "ii", [0, velocity],
                                f"velocity {velocity} is not in 0..127")
            if path == "/load":
                missing = os.path.join(daemon.workdir, "missing.wav")
                client.send("/load", "is", [1, missing])
                reply = client.wait_for(lambda m: m[0] != "/pong", 10.0)
                if check_reply(tap, "/load of a missing file", reply,
                               address["errors"][0]):
                    reason = reply[2][2]
                    want = (f"cannot open '{missing}': "
                            "No such file or directory")
                    tap.ok(reason == want and matches_any(
                        reason, address["errors"][0]["reasons"]),
                        f"/load of a missing file: reason {want!r}",
                        f"got {reason!r}")

            # In a bundle timetagged 2 s ahead: /play must wait (no reply),
            # any other address is executed on receipt.
            if address["bundle"]["allowed"] and path in ("/query", "/play"):
                types = address["typetags"][0]
                message = encode_message(path, types,
                                         sample_args(types, wav_path))
                client.send_raw(encode_bundle(timetag(time.time() + 2.0),
                                              [message]))
                if address["bundle"]["timing"] == "honoured":
                    before = client.until_pong()
                    tap.ok(before == [], f"{path} in a future bundle is "
                           "accepted", "got " + repr(before))
                else:
                    start = time.monotonic()
                    reply = client.wait_for(lambda m: m[0] != "/pong", 1.5)
                    check_reply(tap, f"{path} in a future bundle", reply,
                                address["reply"])
                    tap.ok(time.monotonic() - start < 1.0,
                           f"{path} in a future bundle runs on receipt",
                           f"the reply took {time.monotonic() - start:.2f} s")

            if path == "/status":
                client.send("/nope", "i", [1])
                reply = client.wait_for(lambda m: m[0] != "/pong", 2.0)
                if check_reply(tap, "/nope", reply, unknown_spec):
                    tap.equal(reply[2], ["/nope", "unknown address"],
                              "/nope is an unknown address")

        tap.ok(not client.foreign_sources,
               "every reply comes from the daemon's port",
               f"replies from {client.foreign_sources}")
    finally:
        client.close()


def main():
    raise_on_sigterm()
    flitzid = os.environ.get("FLITZID")
    if not flitzid:
        print("check_schema.py: set FLITZID to the flitzid to check",
              file=sys.stderr)
        return 2
    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)

    tap = Tap()
    check_list_osc(tap, schema, flitzid)
    if not shutil.which("jackd"):
        tap.note("no jackd: skipping the checks against a running flitzid")
        return tap.finish()

    with Daemon(flitzid, "schema", slots=SLOTS) as daemon:
        wav_path = os.path.join(daemon.workdir, "tone.wav")
        write_wav(wav_path)
        try:
            check_notify(tap, schema, daemon, wav_path)
            check_daemon(tap, schema, daemon, wav_path)
        finally:
            if tap.failures:
                tap.note(daemon.logs())
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
