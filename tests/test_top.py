#!/usr/bin/env python3
"""`flitzictl top` on a real terminal: tmux (a server of this test's own)
runs it in a pane, and `tmux capture-pane -p` reads what it draws.

- The header shows the tempo, bar and beat, DSP load, xruns and voices.
- Two pads loaded and played as loops show as two rows, "playing", whose
  meter bars change between two captures (the loops rise by 37 dB from
  their start to their end, so two moments of them are bars apart).
- flitzid stopped: "waiting for flitzid at HOST:PORT"; started again on the
  same port, the rows of its pads come back with moving meters (top sent
  /meters and /notify again).
- q, Ctrl-C (SIGINT) and SIGTERM each end it with status 0 and leave the
  terminal as it was (`stty -g` before and after, in the pane).

Environment: FLITZID, FLITZICTL. Output: TAP. Skips without jackd or tmux.
"""

import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flitzid_fixture import (Daemon, OscClient, Tap,  # noqa: E402
                             raise_on_sigterm, write_pcm16)

SLOTS = 4
RATE = 48000
LOOPS = {0: 1.0, 1: 1.5}  # Pad: loop length in seconds
COLUMNS, ROWS = 150, 30
ROW = re.compile(r"^ *(?P<pad>\d+)  (?P<state>playing|stopped)  "
                 r"(?P<bar>\[[#-]+\]) +(?P<db>-?[\d.]+|-inf) dBFS  "
                 r"(?P<track>\[[-|]+\]) +(?P<position>[\d.]+|-) / +"
                 r"(?P<length>[\d.]+) s  (?P<file>\S+)$")


def write_loop(path, seconds):
    """A 1 kHz sine whose level rises evenly in dB, -40 to -3 dBFS."""
    frames = int(seconds * RATE)
    samples = []
    for n in range(frames):
        db = -40.0 + 37.0 * n / frames
        samples.append(round(32767 * 10 ** (db / 20)
                             * math.sin(2 * math.pi * 1000 * n / RATE)))
    write_pcm16(path, samples, RATE)


class Tmux:
    """A tmux server of this test's own (its own socket), stopped by
    close()."""

    def __init__(self, workdir):
        self.socket = f"flitzi-top-{os.getpid()}"
        self.workdir = workdir
        self.runs = 0
        # A session that outlives the runs: a server left without sessions
        # exits, and the next run's new-session could reach it as it does.
        self.tmux("new-session", "-d", "-s", "keep", "cat")
        self.socket_path = self.tmux("display-message", "-p", "-t", "keep",
                                     "#{socket_path}").stdout.strip()

    def tmux(self, *args, timeout_s=10):
        return subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull]
                              + list(args), capture_output=True, text=True,
                              timeout=timeout_s)

    def start(self, command):
        """Run `command` in a new session's pane, between two `stty -g`;
        its exit status goes to a file, and the channel of `tmux wait-for`
        is signalled. The shell outlives a Ctrl-C (its trap, which the
        command does not inherit). Returns the run's name."""
        self.runs += 1
        name = f"top{self.runs}"
        files = {k: os.path.join(self.workdir, f"{name}.{k}")
                 for k in ("before", "after", "status")}
        script = (f"trap : INT; stty -g > {files['before']}; {command}; "
                  f"echo $? > {files['status']}; stty -g > {files['after']}; "
                  f"tmux -L {self.socket} wait-for -S {name}")
        self.tmux("new-session", "-d", "-s", name, "-x", str(COLUMNS),
                  "-y", str(ROWS), "sh", "-c", script)
        return name

    def capture(self, name):
        return self.tmux("capture-pane", "-p", "-t", name).stdout

    def wait_for_screen(self, name, predicate, timeout_s=10.0):
        """The first capture for which predicate(text) holds, or the last."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.capture(name)
            if predicate(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.1)

    def program_pid(self, name, program="flitzictl"):
        """The PID of the pane's `program` (a child of its sh), or None."""
        shell = self.tmux("display-message", "-p", "-t", name,
                          "#{pane_pid}").stdout.strip()
        try:
            with open(f"/proc/{shell}/task/{shell}/children") as f:
                children = f.read().split()
            for child in children:
                with open(f"/proc/{child}/comm") as f:
                    if f.read().strip() == program:
                        return int(child)
        except OSError:
            pass
        return None

    def finish(self, name, timeout_s=10):
        """Wait for the run to end; return (status, terminal restored)."""
        try:
            self.tmux("wait-for", name, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            return None, False
        read = {}
        for kind in ("before", "after", "status"):
            try:
                with open(os.path.join(self.workdir, f"{name}.{kind}")) as f:
                    read[kind] = f.read().strip()
            except OSError:
                read[kind] = None
        status = int(read["status"]) if read["status"] else None
        return status, read["before"] is not None and \
            read["before"] == read["after"]

    def close(self):
        self.tmux("kill-server")
        # tmux leaves its socket behind in /tmp/tmux-UID.
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass


def rows_of(text):
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line.rstrip())
        if match:
            rows[int(match["pad"])] = match
    return rows


def both_playing(text):
    rows = rows_of(text)
    return all(pad in rows and rows[pad]["state"] == "playing"
               for pad in LOOPS)


def play_loops(daemon, paths):
    client = OscClient(daemon.port)
    try:
        for pad in LOOPS:
            client.send("/load", "is", [pad, paths[pad]])
            client.wait_for(lambda m: m[0] in ("/done", "/fail"), 10.0)
            client.send("/slot/set", "iss", [pad, "mode", "loop"])
            client.send("/play", "if", [pad, 1.0])
        client.until_pong()
    finally:
        client.close()


def check_rows(tap, tmux, name, when):
    """Both pads' rows, playing, and their bars moving between captures."""
    first = tmux.wait_for_screen(name, both_playing)
    rows = rows_of(first)
    ok = tap.ok(both_playing(first), f"{when}: a row per pad, both playing",
                first)
    if ok:
        tap.equal({pad: rows[pad]["file"] for pad in LOOPS},
                  {pad: f"loop{pad}.wav" for pad in LOOPS},
                  f"{when}: each row names its file")
        tap.equal({pad: rows[pad]["length"] for pad in LOOPS},
                  {pad: f"{seconds:.3f}" for pad, seconds in LOOPS.items()},
                  f"{when}: each row has its sample's length")
    time.sleep(0.5)
    second = tmux.capture(name)
    later = rows_of(second)
    moved = ok and all(pad in later and later[pad]["bar"] != rows[pad]["bar"]
                       for pad in LOOPS)
    tap.ok(moved, f"{when}: both meter bars change between two captures "
           "0.5 s apart", first + "\n---\n" + second)
    return first


def check_top(tap, tmux, ctl, daemon, paths):
    command = f"{shlex.quote(ctl)} --port {daemon.port} top"
    name = tmux.start(command)
    screen = tmux.wait_for_screen(name, lambda t: "flitzid at" in t
                                  and "no pad is loaded" in t)
    tap.ok("no pad is loaded" in screen, "top starts with no pad loaded",
           screen)
    play_loops(daemon, paths)
    check_rows(tap, tmux, name, "two loops")
    # /status is asked once a second: the voices show within two.
    screen = tmux.wait_for_screen(name, lambda t: "voices 2/32" in t, 3.0)
    header = screen.splitlines()[0] if screen else ""
    tap.ok(re.search(r"120\.00 BPM +bar \d+ beat [1-4] of 4", header)
           and re.search(r"DSP \d+\.\d % \(peak \d+\.\d %\)", header)
           and re.search(r"xruns \d+", header)
           and "voices 2/32" in header,
           "the header: tempo, bar and beat, DSP load, xruns, voices",
           header)

    # flitzid goes away and comes back on the same port.
    daemon.stop_flitzid()
    waiting = f"waiting for flitzid at 127.0.0.1:{daemon.port}"
    screen = tmux.wait_for_screen(name, lambda t: waiting in t, 5.0)
    tap.ok(waiting in screen, f"flitzid stopped: '{waiting}'", screen)
    daemon.start_flitzid()
    play_loops(daemon, paths)
    check_rows(tap, tmux, name, "after flitzid restarted")

    tmux.tmux("send-keys", "-t", name, "q")
    status, restored = tmux.finish(name)
    tap.equal(status, 0, "q: exit status 0")
    tap.ok(restored, "q: the terminal is restored (stty -g)")

    # Ctrl-C and SIGTERM end it as q does.
    for how in ("Ctrl-C", "SIGTERM"):
        name = tmux.start(command)
        tmux.wait_for_screen(name, both_playing)
        if how == "Ctrl-C":
            tmux.tmux("send-keys", "-t", name, "C-c")
        else:
            pid = tmux.program_pid(name)
            tap.ok(pid is not None, "the pane's flitzictl has a PID")
            if pid is not None:
                os.kill(pid, signal.SIGTERM)  # Ours: the pane's flitzictl
        status, restored = tmux.finish(name)
        tap.equal(status, 0, f"{how}: exit status 0")
        tap.ok(restored, f"{how}: the terminal is restored (stty -g)")


def main():
    raise_on_sigterm()
    flitzid = os.environ.get("FLITZID")
    flitzictl = os.environ.get("FLITZICTL")
    if not flitzid or not flitzictl:
        print("test_top.py: set FLITZID and FLITZICTL", file=sys.stderr)
        return 2
    for program in ("jackd", "tmux"):
        if not shutil.which(program):
            return Tap.skip_all(f"no {program}")

    tap = Tap()
    workdir = tempfile.mkdtemp(prefix="flitzi-top-")
    tmux = Tmux(workdir)
    try:
        with Daemon(flitzid, "top", slots=SLOTS) as daemon:
            paths = {}
            for pad, seconds in LOOPS.items():
                paths[pad] = os.path.join(workdir, f"loop{pad}.wav")
                write_loop(paths[pad], seconds)
            try:
                check_top(tap, tmux, flitzictl, daemon, paths)
            finally:
                if tap.failures:
                    tap.note(daemon.logs())
    finally:
        tmux.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
