#!/usr/bin/env python3
"""flitzictl against a flitzid of this test's own (on its own dummy jackd):
exit status, output and messages of each command.

Environment: FLITZID, FLITZICTL (paths of the programs). Output: TAP.
"""

import json
import os
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flitzid_fixture import (Daemon, Tap, click_track,  # noqa: E402
                             free_udp_port, raise_on_sigterm, waveform_pairs,
                             write_pcm16, write_wav)

SLOTS = 6
NO_REPLY = "flitzictl: no reply from flitzid at 127.0.0.1:{port} within " \
           "{ms} ms \u2014 is it running?"


class Ctl:
    def __init__(self, program, port):
        self.program = program
        self.port = port

    def run(self, *args, cwd=None, port=None, timeout_s=20):
        command = [self.program, "--port", str(port or self.port)]
        command += [str(a) for a in args]
        start = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True,
                                cwd=cwd, timeout=timeout_s)
        result.elapsed_s = time.monotonic() - start
        result.command = " ".join(command[1:])
        return result


def shows(result):
    return (f"$ flitzictl {result.command}\nexit {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}")


def check_exit(tap, result, status, description):
    return tap.ok(result.returncode == status,
                  f"{description}: exit {status}", shows(result))


def columns(line):
    """Where each cell of a table row sits: the right edge of the numeric
    cells, the left edge of "loaded" and of the path."""
    cells = list(re.finditer(r"\S+", line))[:7]
    return [c.start() if i in (1, 6) else c.end()
            for i, c in enumerate(cells)]


def check_usage(tap, ctl):
    for args, what in ((["play", 0], "a missing argument"),
                       (["frobnicate"], "an unknown command"),
                       ([], "no command"),
                       (["load", "x", "/tmp/a.wav"], "a slot that is no number"),
                       (["play", 0, "loud"], "a velocity that is no number"),
                       (["--timeout", "soon", "ping"], "a bad --timeout"),
                       (["--bogus", "ping"], "an unknown option"),
                       (["status", "extra"], "an extra argument"),
                       (["set", 0, "gain"], "a set without a value"),
                       (["set", 0, "gain", "-3", "pan"],
                        "a set whose last key has no value"),
                       (["set", 0, "gain", "loud"],
                        "a number key whose value is no number"),
                       (["get"], "a get without an ID"),
                       (["seek", 0, "soon"], "a seek to no number"),
                       (["master", "loud"], "a master gain that is no number"),
                       (["meters", 0], "meters at 0 Hz"),
                       (["meters", 61], "meters at 61 Hz"),
                       (["play-exclusive", 0], "a play-exclusive without VEL"),
                       (["pause", "x"], "a pause of no slot"),
                       (["analyze"], "an analyze without an ID"),
                       (["waveform", 0], "a waveform without POINTS"),
                       (["waveform", 0, "many"], "POINTS that are no number"),
                       (["waveform", 0, "2.5"], "POINTS that are no integer"),
                       (["waveform", 0, 4, "soon"], "a START that is no "
                        "number"),
                       (["waveform", 0, 4, 0, "later"], "an END that is no "
                        "number"),
                       (["waveform", 0, 4, 0, 1, 2], "a waveform with an "
                        "extra argument"),
                       (["top"], "top without a terminal"),
                       (["top", 1], "top with an argument"),
                       (["tempo", "fast"], "a tempo that is no number"),
                       (["tempo", 120, 130], "a tempo with an extra "
                        "argument"),
                       (["signature", "3.5"], "a signature that is no "
                        "whole number"),
                       (["quantize"], "a quantize without a grid (flitzid "
                        "cannot report it)"),
                       (["quantize", "1/4", "1/8"], "a quantize with two "
                        "grids"),
                       (["downbeat", 1], "a downbeat with an argument"),
                       (["transport", "now"], "a transport with an "
                        "argument"),
                       (["speed"], "a speed without a factor"),
                       (["speed", "fast"], "a speed that is no number"),
                       (["bpmlock"], "a bpmlock without 0 or 1"),
                       (["bpmlock", "on"], "a bpmlock that is no number"),
                       (["save", "now"], "a save with an argument")):
        result = ctl.run(*args)
        if check_exit(tap, result, 64, f"usage error for {what}"):
            tap.ok("Usage: flitzictl" in result.stderr and not result.stdout,
                   f"usage error for {what}: usage line on stderr",
                   shows(result))

    result = ctl.run("--help")
    tap.ok(result.returncode == 0 and "Usage: flitzictl" in result.stdout,
           "--help prints the usage and exits 0", shows(result))
    result = ctl.run("--version")
    tap.ok(result.returncode == 0 and result.stdout == "flitzictl 0.1.0\n",
           "--version prints 'flitzictl 0.1.0'", shows(result))


def check_no_daemon(tap, ctl):
    port = free_udp_port()
    for args, ms in (([], 1000), (["--timeout", "300"], 300)):
        result = ctl.run(*args, "ping", port=port)
        check_exit(tap, result, 2, f"ping with no daemon, {ms} ms")
        tap.equal(result.stderr.strip(), NO_REPLY.format(port=port, ms=ms),
                  f"ping with no daemon, {ms} ms: message")
        tap.ok(ms / 1000 - 0.05 <= result.elapsed_s <= ms / 1000 + 1.0,
               f"ping with no daemon gives up after about {ms} ms",
               f"took {result.elapsed_s:.2f} s")
    result = ctl.run("--timeout", "300", "load", 0, "/tmp/x.wav", port=port)
    check_exit(tap, result, 2, "load with no daemon")
    result = ctl.run("--timeout", "300", "play", 0, "0.5", port=port)
    check_exit(tap, result, 2, "play with no daemon")
    for args in (("tempo",), ("tempo", 120), ("quantize", "1/4"),
                 ("transport",)):
        result = ctl.run("--timeout", "300", *args, port=port)
        check_exit(tap, result, 2, " ".join(map(str, args))
                   + " with no daemon")


def check_daemon(tap, ctl, daemon, samples):
    mono = os.path.join(samples, "mono.wav")
    stereo = os.path.join(samples, "stereo.wav")
    write_wav(mono, seconds=0.25, rate=44100, channels=1)
    write_wav(stereo, seconds=0.5, rate=48000, channels=2)

    result = ctl.run("ping")
    if check_exit(tap, result, 0, "ping"):
        tap.ok(result.stdout.startswith("flitzid 0.1.0 at 127.0.0.1:"),
               "ping prints the daemon's version", shows(result))

    # load
    result = ctl.run("load", 0, mono)
    if check_exit(tap, result, 0, "load of a mono file"):
        tap.ok("12000 frames" in result.stdout and "44100 Hz" in result.stdout,
               "load prints frames (resampled to 48 kHz) and source rate",
               shows(result))
    missing = os.path.join(samples, "missing.wav")
    result = ctl.run("load", 1, missing)
    if check_exit(tap, result, 1, "load of a missing file"):
        tap.equal(result.stderr.strip(), f"flitzictl: /load 1: cannot open "
                  f"'{missing}': No such file or directory",
                  "load of a missing file: the reason on stderr")

    # Relative paths are resolved against flitzictl's working directory.
    elsewhere = tempfile.mkdtemp(prefix="flitzictl-cwd-")
    try:
        os.mkdir(os.path.join(elsewhere, "kit"))
        shutil.copy(stereo, os.path.join(elsewhere, "kit", "snare.wav"))
        result = ctl.run("load", 2, "kit/snare.wav", cwd=elsewhere)
        check_exit(tap, result, 0, "load of a relative path")
        result = ctl.run("--json", "query", 2)
        line = json.loads(result.stdout.strip().splitlines()[-1]) \
            if result.returncode == 0 and result.stdout.strip() else {}
        tap.equal(line.get("path"),
                  os.path.realpath(os.path.join(elsewhere, "kit/snare.wav")),
                  "the relative path arrives made absolute")
        result = ctl.run("load", 3, "kit/missing.wav", cwd=elsewhere)
        check_exit(tap, result, 1, "load of a missing relative path")
        tap.ok(os.path.join(elsewhere, "kit/missing.wav") in result.stderr,
               "the error names the absolute path", shows(result))
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)

    # play
    for velocity in ("0.8", "1e-1", "100", "0"):
        result = ctl.run("play", 0, velocity)
        check_exit(tap, result, 0, f"play 0 {velocity}")
    for args, reason in (((0, "1.5"), "velocity 1.5 is not in [0, 1]"),
                         ((0, "200"), "velocity 200 is not in 0..127"),
                         ((0, "-0.5"), "velocity -0.5 is not in [0, 1]"),
                         ((4, "0.5"), "slot 4 is empty"),
                         ((SLOTS, "0.5"),
                          f"slot {SLOTS} is out of range (0..{SLOTS - 1})")):
        result = ctl.run("play", *args)
        if check_exit(tap, result, 1, f"play {args[0]} {args[1]}"):
            tap.equal(result.stderr.strip(),
                      f"flitzictl: /play {args[0]}: {reason}",
                      f"play {args[0]} {args[1]}: the reason on stderr")

    # Many short runs in a row: none may take a reply meant for the run
    # before it (which could end with its port and a /pong still on the way).
    runs = 150
    wrong = [ctl.run("play", 4, "0.5").returncode for _ in range(runs)]
    tap.equal([s for s in wrong if s != 1], [],
              f"{runs} runs of 'play 4 0.5' in a row all exit 1")

    # stop
    check_exit(tap, ctl.run("stop", 0), 0, "stop 0")
    check_exit(tap, ctl.run("stop"), 0, "stop")
    check_exit(tap, ctl.run("stop", SLOTS), 1, f"stop {SLOTS}")

    # query: a table of every slot, aligned
    result = ctl.run("query")
    if check_exit(tap, result, 0, "query"):
        lines = result.stdout.splitlines()
        tap.equal(lines[0].split(), ["id", "loaded", "frames", "channels",
                                     "rate", "seconds", "path"],
                  "query: the header")
        tap.equal(len(lines), SLOTS + 1, "query: one row per slot")
        tap.equal(lines[1].split(), ["0", "yes", "12000", "1", "44100",
                                     "0.250", mono], "query: slot 0")
        tap.equal(lines[4].split(), ["3", "no", "-", "-", "-", "-", "-"],
                  "query: an empty slot")
        tap.ok(all(columns(line) == columns(lines[0]) for line in lines[1:]),
               "query: the columns are aligned", result.stdout)
    result = ctl.run("query", 0)
    if check_exit(tap, result, 0, "query 0"):
        tap.equal(len(result.stdout.splitlines()), 2, "query 0: one row")
    check_exit(tap, ctl.run("query", -1), 1, "query -1")

    # status
    result = ctl.run("status")
    if check_exit(tap, result, 0, "status"):
        tap.ok(f"2 of {SLOTS} loaded" in result.stdout
               and "48000 Hz" in result.stdout,
               "status: slots and sample rate", shows(result))

    # --json: every line is one JSON object
    for args, reply, count in ((["ping"], "/pong", 1),
                               (["status"], "/status.reply", 1),
                               (["query"], "/slot", SLOTS),
                               (["query", 0], "/slot", 1),
                               (["load", 5, mono], "/done", 1),
                               (["load", 5, missing], "/fail", 1),
                               (["unload", 5], "/done", 1)):
        result = ctl.run("--json", *args)
        what = "--json " + " ".join(map(str, args))
        try:
            objects = [json.loads(line) for line in result.stdout.splitlines()]
        except ValueError as error:
            tap.ok(False, f"{what}: JSON lines", f"{error}\n{shows(result)}")
            continue
        tap.ok(len(objects) == count
               and all(o.get("reply") == reply for o in objects),
               f"{what}: {count} {reply} object(s)", shows(result))
    result = ctl.run("--json", "status")
    if result.returncode == 0:
        status = json.loads(result.stdout)
        tap.equal((status["slots_max"], status["sample_rate"]),
                  (SLOTS, 48000), "--json status: named fields")

    # watch: events of other clients' loads until SIGTERM
    watch = subprocess.Popen([ctl.program, "--port", str(ctl.port), "--json",
                              "watch"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # Its first line, the /done of /notify 1, says it has subscribed.
        ready, _, _ = select.select([watch.stdout], [], [], 10.0)
        first = watch.stdout.readline() if ready else ""
        tap.ok(first.startswith('{"reply": "/done", "address": "/notify"'),
               "watch --json starts with the /notify reply", repr(first))
        ctl.run("load", 4, mono)
        ctl.run("play", 4, "0.5")
        time.sleep(0.6)  # The 0.25 s sample ends
        ctl.run("unload", 4)
        time.sleep(0.3)  # The copies travel on their own
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=5)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    tap.equal(watch.returncode, 0, "watch exits 0 on SIGTERM")
    events = [json.loads(line) for line in out.splitlines()]
    seen = [(e.get("reply"), e.get("address"), e.get("id", e.get("flag")))
            for e in events if e.get("reply") != "/event/xrun"]
    tap.equal(seen, [("/done", "/load", 4), ("/event/started", None, 4),
                     ("/event/stopped", None, 4), ("/done", "/unload", 4),
                     ("/done", "/notify", 0)],
              "watch prints the /done of another client's load, the slot "
              "starting and stopping, the unload, then /notify 0")

    check_pads(tap, ctl, daemon, samples)
    check_analysis(tap, ctl, samples)
    check_transport(tap, ctl, daemon.flitzid)

    # unload
    check_exit(tap, ctl.run("unload", 0), 0, "unload 0")
    result = ctl.run("unload", 0)
    if check_exit(tap, result, 1, "unload of an empty slot"):
        tap.equal(result.stderr.strip(), "flitzictl: /unload 0: slot 0 is empty",
                  "unload of an empty slot: the reason on stderr")

    # quit
    result = ctl.run("quit")
    check_exit(tap, result, 0, "quit")
    tap.equal(daemon.wait_exit(10.0), 0, "flitzid exits 0 after quit")


SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "osc-schema", "flitzi-osc.json")
with open(SCHEMA, encoding="utf-8") as schema_file:
    # Every key of /slot/get, in its order (the schema test checks the
    # daemon against this list).
    SETTINGS_KEYS = [k["name"] for k in
                     json.load(schema_file)["slot_settings"]["keys"]]
CHANGED = {"mode": "loop", "start": "0.05", "end": "0.2", "xfade": "5",
           "gain": "-3", "pan": "0", "voices": "2", "group": "3"}


def settings_lines(result):
    """KEY=VALUE lines as a dict, or None if a line is something else."""
    pairs = [line.split("=", 1) for line in result.stdout.splitlines()]
    return dict(pairs) if all(len(p) == 2 for p in pairs) else None


def interrupted(ctl, args, signal_number, after_s, between=None,
                ready_on="stdout"):
    """Run a long-running command, call `between` once it has started (its
    first line on `ready_on`), and stop it with a signal. Returns (exit
    status, stdout lines)."""
    process = subprocess.Popen([ctl.program, "--port", str(ctl.port)]
                               + [str(a) for a in args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        stream = getattr(process, ready_on)
        ready, _, _ = select.select([stream], [], [], 10.0)
        first = stream.readline() if ready else ""
        first = first if ready_on == "stdout" else ""
        if between:
            between()
        time.sleep(after_s)
        process.send_signal(signal_number)
        out, _ = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, ([first] if first else []) + out.splitlines()


def check_pads(tap, ctl, daemon, samples):
    """set, get, reset, play-exclusive, pause, resume, seek, master, watch's
    slot events and meters, against slot 0 (mono.wav, 0.25 s)."""
    # set: prints every setting after the change, in /slot/get's order.
    result = ctl.run("set", 0, "mode", "loop", "start", "0.05", "end", "0.2",
                     "xfade", "5", "gain", "-3", "voices", "2", "group", "3")
    if check_exit(tap, result, 0, "set 0 mode loop start 0.05 end 0.2 ..."):
        lines = settings_lines(result) or {}
        tap.equal(list(lines), SETTINGS_KEYS,
                  "set prints every setting, one KEY=VALUE a line, in order")
        tap.equal({k: lines.get(k) for k in CHANGED}, CHANGED,
                  "set: the settings as changed")
    result = ctl.run("get", 0)
    if check_exit(tap, result, 0, "get 0"):
        tap.equal((settings_lines(result) or {}).get("mode"), "loop",
                  "get 0: mode=loop")
    result = ctl.run("--json", "get", 0)
    if check_exit(tap, result, 0, "--json get 0"):
        try:
            settings = json.loads(result.stdout)
        except ValueError:
            settings = {}
        tap.ok(settings.get("reply") == "/slot/settings"
               and settings.get("id") == 0 and settings.get("mode") == "loop"
               and settings.get("voices") == 2
               and abs(settings.get("gain", 0) + 3) < 1e-6,
               "--json get 0: one object with the keys as fields",
               shows(result))
    result = ctl.run("--json", "set", 1, "pan", "-0.5")
    if check_exit(tap, result, 0, "--json set 1 pan -0.5"):
        tap.ok('"pan": -0.5' in result.stdout and result.stdout.count("\n") == 1,
               "--json set prints the settings as one object", shows(result))

    for args, reason in (
            (("gain", "20"), "gain must be a number from -60 to 12 dB "
             "(got 20)"),
            (("bogus", "1"), "unknown key 'bogus'"),
            (("mode", "pingpong"), "mode must be oneshot or loop "
             "(got 'pingpong')"),
            (("voices", "1.5"), "voices takes a whole number (int32)"),
            (("start", "0.2", "end", "0.1"), "start (0.2 s) must be before "
             "end (0.1 s)")):
        result = ctl.run("set", 0, *args)
        what = "set 0 " + " ".join(args)
        if check_exit(tap, result, 1, what):
            tap.equal((result.stderr.strip(), result.stdout),
                      (f"flitzictl: /slot/set 0: {reason}", ""),
                      f"{what}: the reason on stderr, nothing on stdout")
    result = ctl.run("set", SLOTS, "gain", "0")
    if check_exit(tap, result, 1, f"set {SLOTS} gain 0"):
        tap.equal(result.stderr.strip(), f"flitzictl: /slot/set {SLOTS}: "
                  f"slot {SLOTS} is out of range (0..{SLOTS - 1})",
                  f"set {SLOTS}: the reason on stderr")
    result = ctl.run("get", 0)
    tap.equal((settings_lines(result) or {}).get("gain"), "-3",
              "a refused set changes nothing")

    # play-exclusive, pause, resume, seek: no reply unless refused.
    for args in (("play-exclusive", 0, "0.8"), ("play-exclusive", 0, 100),
                 ("pause", 0), ("resume", 0), ("release", 0),
                 ("seek", 0, "0.1"),
                 ("seek", 0, 0)):
        result = ctl.run(*args)
        check_exit(tap, result, 0, " ".join(map(str, args)))
    for args, reason in ((("play-exclusive", 4, "0.5"), "slot 4 is empty"),
                         (("play-exclusive", 0, "1.5"),
                          "velocity 1.5 is not in [0, 1]"),
                         (("pause", SLOTS), f"slot {SLOTS} is out of range "
                          f"(0..{SLOTS - 1})"),
                         (("resume", -1), "slot -1 is out of range "
                          f"(0..{SLOTS - 1})"),
                         (("release", SLOTS), f"slot {SLOTS} is out of range "
                          f"(0..{SLOTS - 1})"),
                         (("seek", 0, "5"), "position 5 s is not in the "
                          "sample (0 to 0.25 s)"),
                         (("seek", 4, "0"), "slot 4 is empty")):
        result = ctl.run(*args)
        what = " ".join(map(str, args))
        address = {"play-exclusive": "/play/exclusive"}.get(args[0],
                                                            "/" + args[0])
        if check_exit(tap, result, 1, what):
            tap.equal(result.stderr.strip(),
                      f"flitzictl: {address} {args[1]}: {reason}",
                      f"{what}: the reason on stderr")

    # master: a /fail ,ss names no slot.
    check_exit(tap, ctl.run("master", "-6"), 0, "master -6")
    result = ctl.run("master", "20")
    if check_exit(tap, result, 1, "master 20"):
        tap.equal(result.stderr.strip(), "flitzictl: /master/gain: gain must "
                  "be a number from -60 to 12 dB (got 20)",
                  "master 20: the reason on stderr")
    check_exit(tap, ctl.run("master", "0"), 0, "master 0")

    # meters: slot 0 loops (set above) while they run.
    ctl.run("stop")
    ctl.run("play", 0, "0.5")
    status, lines = interrupted(ctl, ["--json", "meters", 20],
                                signal.SIGINT, 0.5)
    tap.equal(status, 0, "meters exits 0 on SIGINT")
    try:
        objects = [json.loads(line) for line in lines]
    except ValueError:
        objects = []
    tap.ok(objects[:1] == [{"reply": "/done", "address": "/meters",
                            "hz": 20}]
           and objects[-1:] == [{"reply": "/done", "address": "/meters",
                                 "hz": 0}],
           "meters --json: the /done of /meters 20 first, of /meters 0 last",
           "\n".join(lines[:3] + ["..."] + lines[-2:]))
    slot_meters = [o for o in objects if o.get("reply") == "/meter/slot"]
    tap.ok(len(slot_meters) >= 3 and all(
        o["id"] == 0 and 0 < o["peak"] <= 1 and 0 <= o["position"] < 0.25
        for o in slot_meters),
        "meters --json: /meter/slot objects for slot 0 while it loops",
        "\n".join(lines[:6]))

    status, lines = interrupted(ctl, ["meters", 10], signal.SIGTERM, 0.5)
    tap.equal(status, 0, "meters exits 0 on SIGTERM")
    slot_lines = [line for line in lines if line.startswith("slot")]
    pattern = re.compile(r"^slot +0 \[#+-*\] +-\d+\.\d dBFS +0\.\d{3} s$")
    tap.ok(slot_lines and all(pattern.match(line) for line in slot_lines),
           "meters: a line per sounding slot (id, bar, dBFS, position)",
           "\n".join(lines[:6]))
    tap.ok(any(re.match(r"^master +\[[#-]+\] +-\d+\.\d dBFS$", line)
               for line in lines), "meters: a master line",
           "\n".join(lines[:4]))
    ctl.run("stop")

    # watch, as text: slot events.
    status, lines = interrupted(ctl, ["watch"], signal.SIGINT, 0.8,
                                lambda: ctl.run("play", 2, "0.5"),
                                ready_on="stderr")
    tap.equal(status, 0, "watch exits 0 on SIGINT")
    tap.ok(any(line.endswith("  slot 2 started") for line in lines)
           and any(line.endswith("  slot 2 stopped") for line in lines),
           "watch prints 'slot 2 started' and 'slot 2 stopped' (0.5 s later)",
           "\n".join(lines))

    # reset: the defaults again.
    check_exit(tap, ctl.run("reset", 0), 0, "reset 0")
    result = ctl.run("get", 0)
    tap.equal({k: (settings_lines(result) or {}).get(k)
               for k in ("mode", "gain", "voices")},
              {"mode": "oneshot", "gain": "0", "voices": "0"},
              "after reset 0: the defaults")
    result = ctl.run("reset", SLOTS)
    check_exit(tap, result, 1, f"reset {SLOTS}")


def as_float32(value):
    return struct.unpack("f", struct.pack("f", value))[0]


def check_analysis(tap, ctl, samples):
    """analyze (a click track, noise, an empty slot) and waveform (against
    the 16-bit file written here) in slots 3, 4 and 5, empty until now."""
    clicks, noise, wave = (os.path.join(samples, name) for name in
                           ("clicks.wav", "noise.wav", "wave.wav"))
    write_pcm16(clicks, click_track(120.0, 0.25, 10.0))
    rng = random.Random(7)
    write_pcm16(noise, [rng.randint(-16000, 16000) for _ in range(480000)])
    first = [rng.randint(-32768, 32767) for _ in range(48000)]
    write_pcm16(wave, [v for f in first for v in (f, 0)], channels=2)

    result = ctl.run("analyze", 5)
    if check_exit(tap, result, 1, "analyze of an empty slot"):
        tap.equal(result.stderr.strip(), "flitzictl: /analyze 5: slot 5 is "
                  "empty", "analyze of an empty slot: the reason on stderr")
    for slot, path in ((3, clicks), (4, noise), (5, wave)):
        check_exit(tap, ctl.run("load", slot, path), 0, f"load {slot}")

    result = ctl.run("analyze", 3)
    if check_exit(tap, result, 0, "analyze of a 120 BPM click track"):
        match = re.fullmatch(r"slot 3: (\d+\.\d{3}) BPM, first beat at "
                             r"(\d+\.\d{4}) s, confidence (\d+\.\d{2})\n",
                             result.stdout)
        tap.ok(match and abs(float(match[1]) - 120) <= 0.5
               and abs(float(match[2]) - 0.25) <= 0.01,
               "analyze prints the tempo (120 within 0.5), the first beat "
               "(0.25 s) and the confidence", shows(result))
    result = ctl.run("--json", "analyze", 3)
    if check_exit(tap, result, 0, "--json analyze"):
        try:
            found = json.loads(result.stdout)
        except ValueError:
            found = {}
        tap.ok(found.get("reply") == "/done"
               and found.get("address") == "/analyze" and found.get("id") == 3
               and abs(found.get("bpm", 0) - 120) <= 0.5
               and "first_beat" in found and "confidence" in found,
               "--json analyze: the /done with bpm, first_beat, confidence",
               shows(result))
    result = ctl.run("analyze", 4)
    if check_exit(tap, result, 1, "analyze of noise"):
        tap.ok(re.fullmatch(r"flitzictl: /analyze 4: no tempo found \(.+\)",
                            result.stderr.strip()) and not result.stdout,
               "analyze of noise: the reason on stderr", shows(result))

    # waveform: a "MIN MAX" line per point, each the float32 itself.
    channel = [v / 32768.0 for v in first]
    for args, start, end in (((4,), 0, 48000), ((3, "0.25", "0.75"),
                                                12000, 36000),
                             ((2, "0.5"), 24000, 48000)):
        result = ctl.run("waveform", 5, *args)
        what = "waveform 5 " + " ".join(map(str, args))
        if not check_exit(tap, result, 0, what):
            continue
        want = waveform_pairs(channel, start, end, args[0])
        try:
            got = [as_float32(float(x)) for line in
                   result.stdout.splitlines() for x in line.split(" ")]
            lines = [len(line.split(" ")) for line in
                     result.stdout.splitlines()]
        except ValueError:
            got, lines = [], []
        tap.ok(got == want and lines == [2] * args[0],
               f"{what}: {args[0]} 'MIN MAX' lines, the file's first channel",
               f"want {want}\n{shows(result)}")
    result = ctl.run("--json", "waveform", 5, 2)
    if check_exit(tap, result, 0, "--json waveform 5 2"):
        try:
            found = json.loads(result.stdout)
        except ValueError:
            found = {}
        pairs = waveform_pairs(channel, 0, 48000, 2)
        if isinstance(found.get("blob"), list):
            found["blob"] = [[as_float32(x) for x in pair]
                             for pair in found["blob"]]
        tap.equal(found, {"reply": "/waveform.reply", "id": 5, "points": 2,
                          "blob": [pairs[0:2], pairs[2:4]]},
                  "--json waveform: one object, the pairs in 'blob'")
    for args, reason in (((5, 0), "points 0 is not in 1..2048"),
                         ((5, 4, 2), "start 2 s is not in the sample "
                          "(0 to 1 s)"),
                         ((2, 4, 0, 0.25), None)):
        result = ctl.run("waveform", *args)
        what = "waveform " + " ".join(map(str, args))
        if reason is None:
            check_exit(tap, result, 0, what)
        elif check_exit(tap, result, 1, what):
            tap.equal(result.stderr.strip(),
                      f"flitzictl: /waveform {args[0]}: {reason}",
                      f"{what}: the reason on stderr")


TRANSPORT_KEYS = ["source", "bpm", "beats_per_bar", "beats", "rolling"]


def transport_of(ctl):
    """The transport as --json reports it, or {}."""
    result = ctl.run("--json", "transport")
    try:
        return json.loads(result.stdout) if result.returncode == 0 else {}
    except ValueError:
        return {}


def check_refused(tap, result, reason, what):
    """Exit 1, the reason on stderr, nothing on stdout."""
    if check_exit(tap, result, 1, what):
        tap.equal((result.stderr.strip(), result.stdout), (reason, ""),
                  f"{what}: the reason on stderr, nothing on stdout")


def check_transport(tap, ctl, flitzid):
    """tempo, signature, quantize, downbeat, transport, speed, bpmlock and
    save (flitzid runs without --state here) against flitzid's clock, which
    is at its defaults until now: 120 BPM, 4 beats per bar."""
    result = ctl.run("transport")
    if check_exit(tap, result, 0, "transport"):
        lines = settings_lines(result) or {}
        tap.equal(list(lines), TRANSPORT_KEYS,
                  "transport prints source, bpm, beats_per_bar, beats and "
                  "rolling, one KEY=VALUE a line")
        tap.equal({k: lines.get(k) for k in ("source", "bpm",
                                             "beats_per_bar", "rolling")},
                  {"source": "internal", "bpm": "120", "beats_per_bar": "4",
                   "rolling": "1"}, "transport: the defaults, rolling")
        tap.ok(re.fullmatch(r"\d+\.\d{3}", lines.get("beats", "")),
               "transport: beats with three decimals", shows(result))
    result = ctl.run("--json", "transport")
    if check_exit(tap, result, 0, "--json transport"):
        try:
            found = json.loads(result.stdout)
        except ValueError:
            found = {}
        tap.ok(list(found) == ["reply"] + TRANSPORT_KEYS
               and found["reply"] == "/transport.reply"
               and found["bpm"] == 120 and found["beats_per_bar"] == 4
               and isinstance(found["beats"], (int, float)),
               "--json transport: one /transport.reply object with named "
               "fields", shows(result))

    # tempo: print it, or set it and print it once /transport shows it.
    result = ctl.run("tempo")
    if check_exit(tap, result, 0, "tempo"):
        tap.equal(result.stdout, "120 BPM\n", "tempo prints '120 BPM'")
    result = ctl.run("tempo", "128.5")
    if check_exit(tap, result, 0, "tempo 128.5"):
        tap.equal((result.stdout, result.stderr), ("128.5 BPM\n", ""),
                  "tempo 128.5 prints the new tempo (/transport shows it)")
    tap.equal(transport_of(ctl).get("bpm"), 128.5,
              "after tempo 128.5, /transport shows 128.5")
    shown = [ctl.run("tempo", bpm).stdout for bpm in range(60, 80)]
    tap.equal(shown, [f"{bpm} BPM\n" for bpm in range(60, 80)],
              "tempo 60, 61, ..., 79 in a row: each prints its own tempo")
    result = ctl.run("--json", "tempo", "97.5")
    if check_exit(tap, result, 0, "--json tempo 97.5"):
        try:
            found = json.loads(result.stdout)
        except ValueError:
            found = {}
        tap.ok(found.get("reply") == "/transport.reply"
               and found.get("bpm") == 97.5
               and result.stdout.count("\n") == 1,
               "--json tempo 97.5: the /transport.reply that shows it",
               shows(result))
    for bpm in ("19", "300.5"):
        check_refused(tap, ctl.run("tempo", bpm),
                      f"flitzictl: /tempo: tempo must be a number from 20 "
                      f"to 300 BPM (got {bpm})", f"tempo {bpm}")
    result = ctl.run("--json", "tempo", "19")
    if check_exit(tap, result, 1, "--json tempo 19"):
        tap.ok(result.stdout.startswith('{"reply": "/fail", "address": '
                                        '"/tempo", "reason": ')
               and result.stdout.count("\n") == 1,
               "--json tempo 19: the /fail object", shows(result))
    result = ctl.run("tempo")
    tap.equal(result.stdout, "97.5 BPM\n", "a refused tempo changes nothing")

    # signature
    result = ctl.run("signature")
    if check_exit(tap, result, 0, "signature"):
        tap.equal(result.stdout, "4 beats per bar\n",
                  "signature prints '4 beats per bar'")
    for beats, text in ((3, "3 beats per bar"), (1, "1 beat per bar")):
        result = ctl.run("signature", beats)
        if check_exit(tap, result, 0, f"signature {beats}"):
            tap.equal((result.stdout, result.stderr), (text + "\n", ""),
                      f"signature {beats} prints '{text}'")
    for beats in (0, 17):
        check_refused(tap, ctl.run("signature", beats),
                      f"flitzictl: /signature: beats per bar must be a whole "
                      f"number from 1 to 16 (got {beats})",
                      f"signature {beats}")
    result = ctl.run("signature", 4)
    tap.equal(transport_of(ctl).get("beats_per_bar"), 4,
              "after signature 4, /transport shows 4 beats per bar")

    # quantize, speed, bpmlock: no reply unless refused, nothing printed.
    for args in (("quantize", "1/4"), ("quantize", "4"), ("quantize", "off"),
                 ("speed", "1.5"), ("speed", "0.5"), ("speed", 1),
                 ("bpmlock", 1), ("bpmlock", 0)):
        result = ctl.run(*args)
        what = " ".join(map(str, args))
        if check_exit(tap, result, 0, what):
            tap.equal((result.stdout, result.stderr), ("", ""),
                      f"{what}: prints nothing")
    grids = "off, 1/64, 1/32, 1/16, 1/8, 1/4, 1/2, 1, 2 or 4"
    for args, reason in (
            (("quantize", "1/3"), f"/quantize: unknown grid '1/3' ({grids})"),
            (("quantize", "global"),
             f"/quantize: unknown grid 'global' ({grids})"),
            (("speed", 3), "/speed: speed must be a number from 0.5 to 2 "
             "(got 3)"),
            (("speed", "-1"), "/speed: speed must be a number from 0.5 to 2 "
             "(got -1)"),
            (("bpmlock", 2), "/bpmlock: bpmlock must be 0 or 1")):
        check_refused(tap, ctl.run(*args), "flitzictl: " + reason,
                      " ".join(map(str, args)))

    # downbeat: beat 0 from the next period on. flitzid has been running
    # for seconds, so the beats are far from 0 before it.
    before = transport_of(ctl).get("beats", 0)
    result = ctl.run("downbeat")
    if check_exit(tap, result, 0, "downbeat"):
        tap.equal((result.stdout, result.stderr), ("", ""),
                  "downbeat prints nothing")
    time.sleep(0.05)
    after = transport_of(ctl).get("beats", -1)
    tap.ok(before > 2 and 0 <= after < 0.5,
           "downbeat: the beats start again from 0",
           f"before {before}, 50 ms after {after}")

    # save: this flitzid has no --state (see check_save for one that has).
    result = ctl.run("save")
    if not lists_save(flitzid):
        check_exit(tap, result, 1, "save of a flitzid without /save")
    elif check_exit(tap, result, 1, "save without --state"):
        tap.ok(result.stderr.startswith("flitzictl: /save: ")
               and "--state" in result.stderr and not result.stdout,
               "save without --state: the reason on stderr", shows(result))

    ctl.run("tempo", 120)


def check_save(tap, ctl, state):
    """save against a flitzid with --state STATE: the settings of the
    transport commands are in the file it writes."""
    for args in (("tempo", "97.5"), ("signature", 3), ("quantize", "1/8"),
                 ("speed", "1.25"), ("bpmlock", 1)):
        check_exit(tap, ctl.run(*args), 0, " ".join(map(str, args)))
    result = ctl.run("save")
    if check_exit(tap, result, 0, "save with --state"):
        tap.equal(result.stdout, "saved\n", "save prints 'saved'")
    try:
        with open(state, encoding="utf-8") as state_file:
            saved = json.load(state_file)
    except (OSError, ValueError) as error:
        saved = {"error": str(error)}
    tap.equal({k: saved.get(k) for k in ("tempo", "signature", "quantize",
                                         "speed", "bpmlock")},
              {"tempo": 97.5, "signature": 3, "quantize": "1/8",
               "speed": 1.25, "bpmlock": True},
              "save: the state file holds the tempo, signature, quantize, "
              "speed and bpmlock set with flitzictl")
    result = ctl.run("--json", "save")
    if check_exit(tap, result, 0, "--json save"):
        tap.equal(result.stdout, '{"reply": "/done", "address": "/save"}\n',
                  "--json save: the /done object")

    # A state file that cannot be written (its directory is gone, which
    # stops root too): /save answers /fail with the reason.
    directory = os.path.dirname(state)
    shutil.rmtree(directory)
    try:
        ctl.run("tempo", 100)
        result = ctl.run("save")
    finally:
        os.mkdir(directory)  # For the write at flitzid's exit
    if check_exit(tap, result, 1, "save whose directory is gone"):
        tap.ok(result.stderr.startswith("flitzictl: /save: ")
               and state in result.stderr and not result.stdout,
               "save whose directory is gone: the reason on stderr",
               shows(result))


def lists_save(flitzid):
    listed = subprocess.run([flitzid, "--list-osc"], capture_output=True,
                            text=True, timeout=10).stdout
    return any(line.split(" ")[0] == "/save" for line in listed.splitlines())


def main():
    raise_on_sigterm()
    flitzid = os.environ.get("FLITZID")
    flitzictl = os.environ.get("FLITZICTL")
    if not flitzid or not flitzictl:
        print("test_flitzictl.py: set FLITZID and FLITZICTL", file=sys.stderr)
        return 2

    tap = Tap()
    check_usage(tap, Ctl(flitzictl, 9950))
    check_no_daemon(tap, Ctl(flitzictl, 9950))
    if not shutil.which("jackd"):
        tap.note("no jackd: skipping the checks against a running flitzid")
        return tap.finish()

    with Daemon(flitzid, "ctl", slots=SLOTS) as daemon:
        samples = tempfile.mkdtemp(prefix="flitzictl-samples-")
        try:
            check_daemon(tap, Ctl(flitzictl, daemon.port), daemon, samples)
        finally:
            shutil.rmtree(samples, ignore_errors=True)
            if tap.failures:
                tap.note(daemon.logs())

    if not lists_save(flitzid):
        tap.note("flitzid --list-osc has no /save: skipping save --state")
        return tap.finish()
    sessions = tempfile.mkdtemp(prefix="flitzictl-state-")
    state = os.path.join(sessions, "session.json")
    try:
        with Daemon(flitzid, "ctl-state", slots=2,
                    extra_args=["--state", state]) as daemon:
            failures = tap.failures
            check_save(tap, Ctl(flitzictl, daemon.port), state)
            if tap.failures > failures:
                tap.note(daemon.logs())
    finally:
        shutil.rmtree(sessions, ignore_errors=True)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
