#!/usr/bin/env python3
"""Check flitzid against osc-schema/flitzi-osc.json, in both directions.

1. `flitzid --list-osc` must list exactly the schema's addresses, each with
   exactly the schema's forms (form letters X, * and (...)+ included).
2. A flitzid of this test's own (on a dummy jackd of its own) must answer
   - every type-tag string that none of an address's forms matches with
     /fail ,ss ADDRESS "bad arguments: expected ...", built from the schema;
   - every listed form (each number type a form letter X stands for) with
     the schema's reply (path and type tags, fixed values), or with nothing
     before a following /pong if the schema says there is no reply;
   - out-of-range, empty-slot, velocity and value errors with the schema's
     error reply and a reason that matches one of the schema's patterns;
   - an unknown address with the schema's generic /fail.
3. The slot settings: /slot/get reports exactly the schema's keys, in its
   order, in their reply types, with their defaults; every key takes its
   range's ends and its number types and refuses values outside, wrong
   types and unknown keys with reasons that match the schema; /slot/set is
   all or nothing; /load keeps the settings, /unload and /slot/reset drop
   them.
4. Telemetry: /notify clients get /event/started and /event/stopped (a
   timetag honoured for the addresses that say so); /meters sends bundles
   of the schema's /meter/master and /meter/slot until /meters 0.
5. Analysis: /analyze finds 120 BPM (within 0.5) and the first click in a
   click track written here, and no tempo in noise; /waveform's blob,
   decoded by the schema's layout, holds exactly the min/max of each part
   of the file written here (16-bit samples / 32768).

Environment: FLITZID (path of the daemon). Output: TAP. Exit 77 skips (no
jackd on this machine).
"""

import atexit
import importlib.machinery
import importlib.util
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import tempfile
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flitzid_fixture import (Daemon, OscClient, Tap, click_track,  # noqa: E402
                             encode_bundle, encode_message, raise_on_sigterm,
                             timetag, waveform_pairs, write_pcm16, write_wav)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "osc-schema", "flitzi-osc.json")
SLOTS = 10
EMPTY = SLOTS - 1  # Never loaded by this test
CLICK_SLOT = 5  # The click track, from check_analysis() on
NOISE_SLOT = 6
WAVE_SLOT = 7  # The file /waveform is checked against
RATE = 48000  # The dummy jackd's: files at this rate are not resampled
CLICK_BPM = 120.0
CLICK_FIRST_S = 0.25
VOICES = 12  # --voices, the top of the voices key
BUSES = 2  # --buses: the bus key takes 0..BUSES - 1
TONE_SECONDS = 3.0  # Long enough for the examples' regions and seeks

# The slot a valid request goes to when slot 0 (the tone) would not do:
# a tone has no tempo.
REQUEST_SLOTS = {"/analyze": CLICK_SLOT}


def load_generator():
    """scripts/gen-osc-doc, for its reading of the form letters: one
    implementation of the notation for the page and for this test."""
    path = os.path.join(ROOT, "scripts", "gen-osc-doc")
    loader = importlib.machinery.SourceFileLoader("gen_osc_doc", path)
    spec = importlib.util.spec_from_loader("gen_osc_doc", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gen_osc_doc = load_generator()
matches_form = gen_osc_doc.matches_form

# Type-tag strings sent to find out whether an address refuses them. Each
# address is probed with those it does not accept. "fs" and "fi" are
# numerical look-alikes of accepted forms: the API converts no types.
PROBES = ["", "i", "f", "d", "s", "ii", "if", "id", "is", "fi", "fs", "ss",
          "si", "iii", "isi", "iis", "isf", "sif"]


# Valid values for arguments that the generic samples (0, 0.5, the WAV's
# path) do not fit, by argument name.
ARGUMENT_SAMPLES = {"beats_per_bar": 4, "grid": "off"}

# Refused values of addresses without a slot id to check, or beyond it:
# (types, args, the exact reason), which must also match a schema pattern.
VALUE_ERRORS = {
    "/seek": [("if", [0, 3.5], "position 3.5 s is not in the sample "
               "(0 to 3 s)"),
              ("id", [0, -0.5], "position -0.5 s is not in the sample "
               "(0 to 3 s)")],
    "/master/gain": [("f", [13.0], "gain must be a number from -60 to 12 dB "
                      "(got 13)"),
                     ("i", [-61], "gain must be a number from -60 to 12 dB "
                      "(got -61)"),
                     ("f", [float("nan")], "gain must be a number from -60 to "
                      "12 dB (got nan)")],
    "/meters": [("i", [61], "rate 61 is not in 0..60 (0 turns meters off)"),
                ("i", [-1], "rate -1 is not in 0..60 (0 turns meters off)")],
    "/tempo": [("f", [19.5], "tempo must be a number from 20 to 300 BPM "
                "(got 19.5)"),
               ("i", [301], "tempo must be a number from 20 to 300 BPM "
                "(got 301)")],
    "/signature": [("i", [0], "beats per bar must be a whole number from 1 "
                    "to 16 (got 0)"),
                   ("i", [17], "beats per bar must be a whole number from 1 "
                    "to 16 (got 17)")],
    "/quantize": [("s", ["1/3"], "unknown grid '1/3' (off, 1/64, 1/32, 1/16, "
                   "1/8, 1/4, 1/2, 1, 2 or 4)")],
    "/speed": [("d", [2.5], "speed must be a number from 0.5 to 2 (got 2.5)")],
    "/bpmlock": [("i", [2], "bpmlock must be 0 or 1")],
    "/waveform": [("iiff", [0, 0, 0.0, 0.0], "points 0 is not in 1..2048"),
                  ("iiii", [0, 2049, 0, 0], "points 2049 is not in 1..2048"),
                  ("iiff", [0, 10, 3.5, 0.0], "start 3.5 s is not in the "
                   "sample (0 to 3 s)"),
                  ("iidd", [0, 10, -0.5, 0.0], "start -0.5 s is not in the "
                   "sample (0 to 3 s)"),
                  ("iiff", [0, 10, 2.0, 1.0], "end 1 s must be 0 (the end) "
                   "or after start and at most 3 s"),
                  ("iiff", [0, 10, 1.0, 3.5], "end 3.5 s must be 0 (the end) "
                   "or after start and at most 3 s"),
                  # Both round to frame 48000: refused by the loader thread.
                  ("iidd", [0, 10, 1.0, 1.000001], "the span 1..1 s is not "
                   "in slot 0 (3 s)")],
}


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


def accepts(address, types):
    return any(matches_form(form, types) for form in address["typetags"])


def is_concrete(form):
    return not any(letter in form for letter in "X*(")


def sample_args(types, wav_path, slot=0):
    """Arguments of valid types (and values) for a concrete form."""
    values = {"i": slot, "f": 0.5, "s": wav_path}
    args = []
    for index, tag in enumerate(types):
        # The second int of a form is a velocity or flag: 0 is valid for both.
        args.append(0 if tag == "i" and index > 0 else values[tag])
    return args


def arguments_of(address, form):
    return [a for a in address["arguments"] if a.get("form", form) == form]


def tag_of(value):
    if isinstance(value, int):
        return "i"
    return "f" if isinstance(value, float) else "s"


def number_variants(types, args):
    """The same request with each number sent as f, d and (when whole) i."""
    variants = [(types, args)]
    for tag in "di":
        if tag == "i" and not all(float(a).is_integer()
                                  for t, a in zip(types, args) if t == "f"):
            continue
        variants.append(("".join(tag if t == "f" else t for t in types),
                         [(int(a) if tag == "i" else a) if t == "f" else a
                          for t, a in zip(types, args)]))
    return variants


def requests_for(address, form, wav_path, slot=0):
    """Valid (types, args) for a form: sample arguments for a concrete form,
    else the schema's examples that match it, with the id set to `slot` and
    every number type an X stands for."""
    if is_concrete(form):
        args = sample_args(form, wav_path, slot)
        for i, argument in enumerate(arguments_of(address, form)):
            args[i] = ARGUMENT_SAMPLES.get(argument["name"], args[i])
        return [(form, args)]
    found = []
    for example in address["examples"]:
        types = "".join(tag_of(v) for v in example["args"])
        if not matches_form(form, types):
            continue
        args = list(example["args"])
        if address["arguments"] and address["arguments"][0]["name"] == "id":
            args[0] = slot
        found.extend(number_variants(types, args) if "X" in form
                     else [(types, args)])
    return found


def probe_args(types):
    return [{"i": 0, "f": 0.5, "d": 0.5, "s": "x"}[t] for t in types]


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


def choices_text(choices):
    """"a, b or c", as flitzid names an enum's values."""
    return (", ".join(choices[:-1]) + " or " + choices[-1]
            if len(choices) > 1 else choices[0])


def close_to(got, want):
    return isinstance(got, float) and math.isclose(got, want, rel_tol=1e-6,
                                                   abs_tol=1e-6)


def check_settings(tap, schema, daemon, wav_path):
    """The key table both ways: /slot/get against the schema's keys, and
    every key's range, types and reasons against /slot/set."""
    settings = schema["slot_settings"]
    keys = settings["keys"]
    by_path = {a["path"]: a for a in schema["addresses"]}
    set_address = by_path[settings["set_address"]]
    get_address = by_path[settings["get_address"]]
    set_path = set_address["path"]
    reasons = set_address["errors"][0]["reasons"]
    client = OscClient(daemon.port)

    def get(slot):
        client.send(get_address["path"], "i", [slot])
        reply = client.wait_for(lambda m: m[0] != "/pong", 3.0)
        if reply is None or reply[0] != get_address["reply"]["path"]:
            return None
        values = reply[2][1:]
        return dict(zip(values[0::2], values[1::2]))

    def refused(slot, types, args, what, want=None, key=None):
        """A /slot/set that must fail; `want` is the exact reason, `key` a
        name the reason must start with. Returns the reason."""
        client.send(set_path, types, [slot] + list(args))
        reply = client.wait_for(lambda m: m[0] != "/pong", 3.0)
        if not check_reply(tap, what, reply, set_address["errors"][0]):
            return None
        reason = reply[2][-1]
        tap.ok(matches_any(reason, reasons)
               and (want is None or reason == want)
               and (key is None or reason.startswith(key + " ")),
               f"{what}: reason " + (repr(want) if want else "names the key "
                                     "and matches the schema"),
               f"got {reason!r}" + ("" if matches_any(reason, reasons)
                                    else ", which matches no pattern"))
        return reason

    def accepted(slot, types, args, what):
        client.send(set_path, types, [slot] + list(args))
        before = client.until_pong()
        return tap.ok(before == [], f"{what} is accepted",
                      "got " + ("no /pong" if before is None
                                else "; ".join(map(describe, before))))

    try:
        # Both ways: the daemon's keys, order, reply types and defaults.
        client.send("/slot/reset", "i", [EMPTY])
        client.send(get_address["path"], "i", [EMPTY])
        reply = client.wait_for(lambda m: m[0] != "/pong", 3.0)
        check_reply(tap, f"{get_address['path']} {EMPTY}", reply,
                    get_address["reply"])
        daemon_keys = [] if reply is None else reply[2][1::2]
        daemon_tags = "" if reply is None else reply[1][2::2]
        schema_keys = [k["name"] for k in keys]
        for name in daemon_keys:
            tap.ok(name in schema_keys, f"the schema has the key {name}",
                   f"{name} is in flitzid's /slot/get but not in the schema")
        for name in schema_keys:
            tap.ok(name in daemon_keys, f"/slot/get reports the key {name}",
                   f"{name} is in the schema but not in flitzid's /slot/get")
        tap.equal(list(zip(daemon_keys, daemon_tags)),
                  [(k["name"], k["reply_type"]) for k in keys],
                  "/slot/get: the keys in the schema's order and reply types")
        values = get(EMPTY) or {}
        for key in keys:
            got = values.get(key["name"])
            want = key["default"]
            tap.ok(got == want if isinstance(want, (str, int))
                   and key["reply_type"] != "f" else close_to(got, want),
                   f"{key['name']} defaults to {want!r}", f"got {got!r}")

        for key in keys:
            name = key["name"]
            client.send("/slot/reset", "i", [EMPTY])
            if key["type"] == "s":
                for choice in key["choices"]:
                    if accepted(EMPTY, "iss", [name, choice],
                                f"{name} {choice}"):
                        tap.equal((get(EMPTY) or {}).get(name), choice,
                                  f"/slot/get reports {name} {choice}")
                listed = choices_text(key["choices"])
                refused(EMPTY, "iss", [name, "nonsense"], f"{name} nonsense",
                        f"{name} must be {listed} (got 'nonsense')")
                refused(EMPTY, "isf", [name, 1.0], f"{name} 1.0 (a float)",
                        f"{name} takes a string: {listed}")
                continue

            low = key["min"]
            high = {"--voices": VOICES,
                    "--buses - 1": BUSES - 1}.get(key["max"], key["max"])
            tags = ["i"] if key["type"] == "i" else ["f", "d", "i"]
            for value in (low, high):
                for tag in tags:
                    if tag == "i" and not float(value).is_integer():
                        continue
                    sent = int(value) if tag == "i" else float(value)
                    client.send("/slot/reset", "i", [EMPTY])
                    if accepted(EMPTY, "is" + tag, [name, sent],
                                f"{name} {sent} ({comma(tag)})"):
                        got = (get(EMPTY) or {}).get(name)
                        tap.ok(got == value if key["reply_type"] == "i"
                               else close_to(got, value),
                               f"/slot/get reports {name} {sent}",
                               f"got {got!r}")
            if key.get("zero"):
                client.send("/slot/reset", "i", [EMPTY])
                accepted(EMPTY, "isf", [name, 0.0], f"{name} 0 (none)")
            below = low / 2 if key.get("zero") else low - 1
            for value in (below, high + 1):
                sent = int(value) if key["type"] == "i" else float(value)
                tag = "i" if key["type"] == "i" else "f"
                reason = refused(EMPTY, "is" + tag, [name, sent],
                                 f"{name} {sent}", key=name)
                tap.ok(reason is not None
                       and f"from {low:g} to {high:g}" in reason,
                       f"{name} {sent}: the reason names the range "
                       f"{low:g} to {high:g}", f"got {reason!r}")
            if key["type"] == "i":
                refused(EMPTY, "isf", [name, 1.0], f"{name} 1.0 (a float)",
                        f"{name} takes a whole number (int32)")
            else:
                refused(EMPTY, "isf", [name, float("nan")], f"{name} nan",
                        key=name)
                refused(EMPTY, "iss", [name, "x"], f"{name} 'x' (a string)",
                        f"{name} takes a number (float, double or int)")

        # Keys and pairs.
        refused(0, "isf", ["bogus", 1.0], "a bad key", "unknown key 'bogus'")
        refused(0, "is", ["gain"], "a key without a value",
                "key 'gain' has no value")
        refused(0, "ii", [1], "a number where a key goes",
                "argument 2 must be a key (a string)")
        refused(0, "i" + "si" * 33, ["group", 1] * 33, "33 pairs",
                "too many settings: 33 pairs (at most 32)")

        # The region against the loaded sample (slot 0).
        if not ensure_loaded(client, wav_path):
            tap.ok(False, "slot 0 could be loaded", daemon.logs())
        length = f"{TONE_SECONDS:g}"
        client.send("/slot/reset", "i", [0])
        refused(0, "isf", ["start", TONE_SECONDS + 0.5], "start past the end",
                f"start ({TONE_SECONDS + 0.5:g} s) must be before the end of "
                f"the sample ({length} s)")
        refused(0, "isf", ["end", TONE_SECONDS + 0.5], "end past the end",
                f"end ({TONE_SECONDS + 0.5:g} s) is beyond the end of the "
                f"sample ({length} s)")
        refused(0, "isfsf", ["start", 2.0, "end", 1.0], "start after end",
                "start (2 s) must be before end (1 s)")

        # All or nothing.
        accepted(0, "isf", ["gain", -6.0], "gain -6")
        refused(0, "isfsf", ["gain", -3.0, "pan", 5.0], "gain -3 with pan 5",
                key="pan")
        tap.ok(close_to((get(0) or {}).get("gain"), -6.0),
               "a refused /slot/set changes nothing", repr(get(0)))

        # /load keeps the settings, /slot/reset and /unload drop them.
        slot = 2
        defaults = {k["name"]: k["default"] for k in keys}
        accepted(slot, "isfsi", ["gain", -6.0, "group", 3], "gain -6 group 3")
        client.send("/load", "is", [slot, wav_path])
        client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
        got = get(slot) or {}
        tap.ok(close_to(got.get("gain"), -6.0) and got.get("group") == 3,
               "/load keeps the slot's settings", repr(got))
        client.send("/slot/reset", "i", [slot])
        tap.equal(get(slot), defaults, "/slot/reset restores the defaults")
        accepted(slot, "isf", ["gain", -6.0], "gain -6")
        client.send("/unload", "i", [slot])
        client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
        tap.equal(get(slot), defaults, "/unload restores the defaults")
        accepted(slot, "isf", ["gain", -6.0], "gain -6 on the empty slot")
        client.send("/unload", "i", [slot])
        reply = client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
        tap.equal(reply, ("/fail", "sis", ["/unload", slot,
                                           f"slot {slot} is empty"]),
                  "/unload of an empty slot fails")
        tap.ok(close_to((get(slot) or {}).get("gain"), -6.0),
               "/unload of an empty slot keeps its settings", repr(get(slot)))
        client.send("/slot/reset", "i", [slot])
    finally:
        client.close()


def check_events(tap, schema, daemon, short_path):
    """/event/started and /event/stopped reach a /notify client; a future
    timetag delays the start for the addresses that honour it."""
    events = {e["path"]: e for e in schema["events"]}
    started, stopped = events["/event/started"], events["/event/stopped"]
    watcher = OscClient(daemon.port)
    slot = 3

    def event(path, timeout_s):
        return watcher.wait_for(lambda m: m[0] == path, timeout_s)

    try:
        watcher.request("/notify", "i", [1])
        watcher.send("/load", "is", [slot, short_path])
        watcher.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)

        watcher.send("/play", "if", [slot, 0.5])
        message = event(started["path"], 2.0)
        if check_reply(tap, "a /play", message, started):
            tap.equal(message[2], [slot], f"{started['path']} names slot "
                      f"{slot}")
        message = event(stopped["path"], 2.0)
        if check_reply(tap, "a oneshot that reached its end", message,
                       stopped):
            tap.equal(message[2], [slot], f"{stopped['path']} names slot "
                      f"{slot}")

        # Paused is not stopped; /stop is.
        watcher.send("/slot/set", "iss", [slot, "mode", "loop"])
        watcher.send("/play", "if", [slot, 0.5])
        event(started["path"], 2.0)
        watcher.send("/pause", "i", [slot])
        late = event(stopped["path"], 0.3)
        tap.ok(late is None, "a paused slot sends no /event/stopped",
               describe(late))
        watcher.send("/resume", "i", [slot])
        watcher.send("/stop", "i", [slot])
        tap.ok(event(stopped["path"], 1.0) is not None,
               "a stopped loop sends /event/stopped")
        watcher.send("/slot/reset", "i", [slot])

        # /release ends a held loop, and nothing else.
        keys = [k["name"] for k in schema["slot_settings"]["keys"]]
        if "hold" in keys and any(a["path"] == "/release"
                                  for a in schema["addresses"]):
            watcher.send("/slot/set", "isssi", [slot, "mode", "loop",
                                                "hold", 0])
            watcher.send("/play", "if", [slot, 0.5])
            event(started["path"], 2.0)
            watcher.send("/release", "i", [slot])
            late = event(stopped["path"], 0.3)
            tap.ok(late is None, "/release leaves a slot without hold alone",
                   describe(late))
            watcher.send("/slot/set", "isi", [slot, "hold", 1])
            watcher.send("/release", "i", [slot])
            tap.ok(event(stopped["path"], 1.0) is not None,
                   "/release ends a slot with hold 1")
            watcher.send("/stop", "i", [slot])
            watcher.send("/slot/reset", "i", [slot])
            event(stopped["path"], 0.2)

        for address in schema["addresses"]:
            if address["bundle"]["timing"] != "honoured" or not (
                    address["arguments"]
                    and address["arguments"][0]["name"] == "id"):
                continue
            path = address["path"]
            types = address["typetags"][0]
            ahead_s = 0.5
            message = encode_message(path, types,
                                     sample_args(types, short_path, slot))
            sent = time.monotonic()
            watcher.send_raw(encode_bundle(timetag(time.time() + ahead_s),
                                           [message]))
            got = event(started["path"], 3.0)
            took = time.monotonic() - sent
            tap.ok(got is not None and took >= ahead_s - 0.05,
                   f"{path} in a bundle {ahead_s} s ahead starts then",
                   "no /event/started" if got is None
                   else f"it started after {took:.3f} s")
            event(stopped["path"], 2.0)
        watcher.request("/notify", "i", [0])
    finally:
        watcher.close()


def check_transport(tap, schema, daemon, short_path):
    """The clock follows /tempo, /signature and /transport/downbeat (now and
    at a timetag), and a quantized /play waits for its grid line."""
    by_path = {a["path"]: a for a in schema["addresses"]}
    if "/transport" not in by_path:
        return
    spec = by_path["/transport"]["reply"]
    client = OscClient(daemon.port)
    period_s = 0.05  # Several JACK periods: a change shows from the next one

    def clock():
        client.send("/transport")
        reply = client.wait_for(lambda m: m[0] != "/pong", 3.0)
        ok = reply is not None and reply[0] == spec["path"] \
            and reply[1] == spec["typetags"]
        return dict(zip([f["name"] for f in spec["fields"]], reply[2])) \
            if ok else {}

    def started_after(slot, timeout_s=3.0):
        sent = time.monotonic()
        client.send("/play", "if", [slot, 0.5])
        got = client.wait_for(lambda m: m[0] == "/event/started", timeout_s)
        took = time.monotonic() - sent
        client.wait_for(lambda m: m[0] == "/event/stopped", timeout_s)
        return None if got is None else took

    try:
        state = clock()
        tap.equal((state.get("source"), state.get("rolling")),
                  ("internal", 1), "/transport: the internal clock runs")
        client.send("/tempo", "f", [150.0])
        client.send("/signature", "i", [3])
        time.sleep(period_s)
        state = clock()
        tap.equal((state.get("bpm"), state.get("beats_per_bar")), (150.0, 3),
                  "/transport reports /tempo 150 and /signature 3")
        client.send("/tempo", "i", [120])
        client.send("/signature", "i", [4])

        client.send("/transport/downbeat")
        time.sleep(period_s)
        beats = clock().get("beats", -1.0)
        tap.ok(0.0 <= beats < 0.3, "/transport/downbeat starts beat 0",
               f"beats {beats}")
        client.send_raw(encode_bundle(timetag(time.time() + 0.5),
                                      [encode_message("/transport/downbeat",
                                                      "", [])]))
        time.sleep(0.3)
        before = clock().get("beats", -1.0)
        time.sleep(0.35)
        after = clock().get("beats", -1.0)
        tap.ok(before > 0.5 and 0.0 <= after < 0.4,
               "/transport/downbeat in a bundle 0.5 s ahead waits for it",
               f"beats {before} after 0.3 s, {after} after 0.65 s")

        # Quantized launches: at 120 BPM a 1/4 line comes every 0.5 s.
        slot = 4
        client.request("/notify", "i", [1])
        client.send("/load", "is", [slot, short_path])
        client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
        client.send("/transport/downbeat")
        time.sleep(0.1)
        client.send("/quantize", "s", ["1/4"])
        took = started_after(slot)
        tap.ok(took is not None and 0.25 <= took <= 0.5,
               "with /quantize 1/4 a /play starts on the next beat",
               f"it started after {took} s, 0.1 s after a downbeat")
        client.send("/slot/set", "iss", [slot, "quantize", "off"])
        took = started_after(slot)
        tap.ok(took is not None and took < 0.15,
               "a slot with quantize off starts at once",
               f"it started after {took} s")
        client.send("/slot/reset", "i", [slot])
        client.send("/quantize", "s", ["off"])
        client.request("/notify", "i", [0])
    finally:
        client.close()


def check_meters(tap, schema, daemon, wav_path):
    """/meters hz: the /done, hz bundles a second of the schema's messages
    while a slot sounds, and none after /meters 0."""
    address = {a["path"]: a for a in schema["addresses"]}["/meters"]
    shapes = {m["path"]: m for m in schema["meters"]["messages"]}
    master, slot_meter = schema["meters"]["messages"][0], shapes["/meter/slot"]
    client = OscClient(daemon.port)
    hz, listen_s = 20, 1.0
    try:
        if not ensure_loaded(client, wav_path):
            tap.ok(False, "slot 0 could be loaded", daemon.logs())
        client.send("/meters", "i", [hz])
        reply = client.wait_for(lambda m: m[0] not in shapes, 3.0)
        if check_reply(tap, f"/meters {hz}", reply, address["reply"]):
            tap.equal(reply[2], ["/meters", hz], f"/meters {hz}: the rate")
        client.send("/play", "if", [0, 0.5])
        got = []
        deadline = time.monotonic() + listen_s
        while time.monotonic() < deadline:
            message = client.receive(deadline - time.monotonic())
            if message is not None:
                got.append(message)
        client.send("/stop", "i", [0])

        masters = [m for m in got if m[0] == master["path"]]
        slots = [m for m in got if m[0] == slot_meter["path"]]
        tap.ok(hz * listen_s / 2 <= len(masters) <= hz * listen_s * 1.5,
               f"about {hz * listen_s:g} {master['path']} in {listen_s:g} s",
               f"got {len(masters)}")
        tap.ok(all(m[1] == master["typetags"] for m in masters)
               and all(m[1] == slot_meter["typetags"] for m in slots),
               f"{master['path']} {comma(master['typetags'])} and "
               f"{slot_meter['path']} {comma(slot_meter['typetags'])}",
               "\n".join(map(describe, got[:6])))
        tap.ok([m for m in got if m[0] not in shapes] == [],
               "nothing but meters arrives", "\n".join(
                   describe(m) for m in got if m[0] not in shapes))
        tap.ok(any(m[2][0] == 0 and 0.0 < m[2][1] <= 1.0
                   and 0.0 <= m[2][2] < TONE_SECONDS for m in slots),
               f"{slot_meter['path']} reports slot 0 sounding: a peak in "
               "(0, 1] and a position in the sample",
               "\n".join(map(describe, slots[:4])) or "no /meter/slot")
        tap.ok(got[:1] and got[0][0] == master["path"],
               f"a bundle starts with {master['path']}",
               describe(got[0] if got else None))

        client.send("/meters", "i", [0])
        reply = client.wait_for(lambda m: m[0] not in shapes, 3.0)
        check_reply(tap, "/meters 0", reply, address["reply"])
        client.receive(0.1)
        client.pending.clear()
        stray = client.receive(0.3)
        tap.ok(stray is None, "after /meters 0 no more meters arrive",
               describe(stray))
    finally:
        client.close()


def load(client, slot, path):
    client.send("/load", "is", [slot, path])
    done = client.wait_for(lambda m: m[0] in ("/done", "/fail")
                           and m[2][:1] == ["/load"], 10.0)
    return done is not None and done[0] == "/done"


def check_analysis(tap, schema, daemon):
    """/analyze of a click track and of noise (the reply to the requester
    only, nothing set); /waveform against the file written here. Leaves
    the click track in CLICK_SLOT for check_daemon()."""
    by_path = {a["path"]: a for a in schema["addresses"]}
    if "/analyze" not in by_path:
        return
    analyze, waveform = by_path["/analyze"], by_path["/waveform"]
    client = OscClient(daemon.port)
    watcher = OscClient(daemon.port)
    clicks_path = os.path.join(daemon.workdir, "clicks.wav")
    noise_path = os.path.join(daemon.workdir, "noise.wav")
    wave_path = os.path.join(daemon.workdir, "wave.wav")
    write_pcm16(clicks_path, click_track(CLICK_BPM, CLICK_FIRST_S, 10.0, RATE),
                RATE)
    noise = random.Random(20261201)
    write_pcm16(noise_path, [noise.randint(-16000, 16000)
                             for _ in range(10 * RATE)], RATE)
    # Stereo, the channels unlike: the overview is of the first one.
    frames = 2 * RATE
    first = [noise.randint(-32768, 32767) for _ in range(frames)]
    second = [-1 - v for v in first]
    write_pcm16(wave_path, [v for pair in zip(first, second) for v in pair],
                RATE, channels=2)

    try:
        watcher.request("/notify", "i", [1])
        for slot, path in ((CLICK_SLOT, clicks_path), (NOISE_SLOT, noise_path),
                           (WAVE_SLOT, wave_path)):
            tap.ok(load(client, slot, path), f"{os.path.basename(path)} "
                   f"loads into slot {slot}", daemon.logs())

        client.send("/analyze", "i", [CLICK_SLOT])
        reply = client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
        if check_reply(tap, f"/analyze of {CLICK_BPM:g} BPM clicks", reply,
                       analyze["reply"]):
            fields = dict(zip([f["name"] for f in analyze["reply"]["fields"]],
                              reply[2]))
            tap.ok(abs(fields["bpm"] - CLICK_BPM) <= 0.5,
                   f"/analyze: bpm within 0.5 of {CLICK_BPM:g}",
                   f"got {fields['bpm']}")
            beat_s = 60.0 / CLICK_BPM
            off = abs(fields["first_beat"] - CLICK_FIRST_S) % beat_s
            tap.ok(min(off, beat_s - off) <= 0.010,
                   f"/analyze: the first beat within 10 ms of a click "
                   f"({CLICK_FIRST_S:g} s + beats)",
                   f"got {fields['first_beat']}")
            tap.ok(fields["confidence"] >= 0.5,
                   "/analyze: a confidence of 0.5 or more",
                   f"got {fields['confidence']}")
        stray = watcher.wait_for(lambda m: m[2][:1] == ["/analyze"], 0.3)
        tap.ok(stray is None, "a /notify subscriber gets no copy of "
               "another client's /analyze reply", describe(stray))
        client.send("/slot/get", "i", [CLICK_SLOT])
        settings = client.wait_for(lambda m: m[0] == "/slot/settings", 3.0)
        values = dict(zip(settings[2][1::2], settings[2][2::2])) \
            if settings else {}
        tap.equal(values.get("bpm"), 0.0, "/analyze sets nothing (bpm 0)")

        client.send("/analyze", "i", [NOISE_SLOT])
        reply = client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
        spec = analyze["errors"][0]
        if check_reply(tap, "/analyze of noise", reply, spec):
            reason = reply[2][-1]
            tap.ok(reason.startswith("no tempo found (")
                   and matches_any(reason, spec["reasons"]),
                   "/analyze of noise: no tempo found, a reason of the "
                   "schema's", f"got {reason!r}")
        client.send("/unload", "i", [NOISE_SLOT])
        client.wait_for(lambda m: m[0] in ("/done", "/fail"), 5.0)

        # /waveform: the schema's layout, the file's own values.
        blob_field = [f for f in waveform["reply"]["fields"]
                      if f["type"] == "b"][0]
        layout = blob_field["layout"]
        channel = [v / 32768.0 for v in first]
        for types, points, start, end in (
                ("iiii", 2048, 0, 0),
                ("iiff", 7, 0.25, 1.5),
                ("iidd", 256, 1.0, 1.0 + 100 / RATE),  # Parts under a frame
                ("iifi", 1, 0.5, 0)):
            what = f"/waveform ,{types} {points} {start:g} {end:g}"
            client.send("/waveform", types, [WAVE_SLOT, points, start, end])
            reply = client.wait_for(lambda m: m[0] in (
                waveform["reply"]["path"], "/fail"), 10.0)
            if not check_reply(tap, what, reply, waveform["reply"]):
                continue
            tap.equal(reply[2][:2], [WAVE_SLOT, points],
                      f"{what}: the slot and the points")
            blob = reply[2][2]
            fmt = gen_osc_doc.blob_format(layout, points)
            if not tap.equal(len(blob), struct.calcsize(fmt),
                             f"{what}: {struct.calcsize(fmt)} bytes, "
                             f"{points} x ({', '.join(layout['items'])})"):
                continue
            first_frame = math.floor(start * RATE + 0.5)
            end_frame = math.floor(end * RATE + 0.5) if end else frames
            want = waveform_pairs(channel, first_frame, end_frame, points)
            got = list(struct.unpack(fmt, blob))
            wrong = [(i // 2, layout["items"][i % 2], g, w)
                     for i, (g, w) in enumerate(zip(got, want)) if g != w]
            tap.ok(not wrong, f"{what}: the min/max of the file's first "
                   "channel, exactly",
                   "\n".join(f"point {p} {k}: got {g!r}, want {w!r}"
                             for p, k, g, w in wrong[:8]))
        watcher.request("/notify", "i", [0])
    finally:
        client.close()
        watcher.close()


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
                if accepts(address, types):
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
            requests = []
            for form in address["typetags"]:
                found = requests_for(address, form, wav_path,
                                     REQUEST_SLOTS.get(path, 0))
                if not is_concrete(form):
                    tap.ok(found, f"{path} {comma(form)}: the schema has an "
                           "example to send", "no example matches the form")
                requests += [(form, types, args) for types, args in found]
            for form, types, args in requests:
                if path != "/load" and not ensure_loaded(client, wav_path):
                    tap.ok(False, "slot 0 could be loaded for the next check",
                           daemon.logs())
                what = f"{path} {comma(types)}"
                if not is_concrete(form):
                    what += " " + " ".join(map(str, args))
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
                for form in address["typetags"]:
                    if not form:
                        continue
                    for slot in (SLOTS, -1):
                        for types, args in requests_for(
                                address, form, wav_path, slot)[:1]:
                            check_error(tap, client, address, types, args,
                                        f"slot {slot} is out of range "
                                        f"(0..{SLOTS - 1})")
            reasons = [r for e in address["errors"] for r in e["reasons"]]
            if "slot {id} is empty" in reasons:
                for types, args in requests_for(
                        address, address["typetags"][0], wav_path, EMPTY)[:1]:
                    check_error(tap, client, address, types, args,
                                f"slot {EMPTY} is empty")
            for types, args, reason in VALUE_ERRORS.get(path, []):
                check_error(tap, client, address, types, args, reason)
            if "velocity {velocity} is not in [0, 1]" in reasons:
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

    # With a session file, so that /save answers /done.
    state_dir = tempfile.mkdtemp(prefix="flitzi-schema-state-")
    atexit.register(shutil.rmtree, state_dir, True)
    with Daemon(flitzid, "schema", slots=SLOTS,
                extra_args=["--voices", str(VOICES),
                            "--buses", str(BUSES),
                            "--state",
                            os.path.join(state_dir, "session.json")]) as daemon:
        wav_path = os.path.join(daemon.workdir, "tone.wav")
        write_wav(wav_path, seconds=TONE_SECONDS)
        short_path = os.path.join(daemon.workdir, "short.wav")
        write_wav(short_path, seconds=0.2)
        try:
            check_notify(tap, schema, daemon, wav_path)
            check_settings(tap, schema, daemon, wav_path)
            check_events(tap, schema, daemon, short_path)
            check_transport(tap, schema, daemon, short_path)
            check_meters(tap, schema, daemon, wav_path)
            check_analysis(tap, schema, daemon)
            check_daemon(tap, schema, daemon, wav_path)
        finally:
            if tap.failures:
                tap.note(daemon.logs())
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
