"""Helpers for the Python integration tests: a minimal OSC codec over UDP, a
dummy JACK server plus a flitzid of their own, generated WAV files, and TAP
output.

Standard library only. Used by tests/check_schema.py, tests/test_flitzictl.py
and tests/test_top.py.
"""

import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave

NTP_EPOCH_OFFSET = 2208988800  # Seconds from 1900-01-01 to 1970-01-01


# OSC 1.0 encoding: big-endian, every item padded to 4 bytes.

def _padded(data):
    return data + b"\0" * (-len(data) % 4)


def encode_string(text):
    return _padded(text.encode("utf-8") + b"\0")


def encode_message(path, types, args):
    """Encode a message; `types` has no leading comma ("is")."""
    if len(types) != len(args):
        raise ValueError(f"{path}: {len(types)} type tags, {len(args)} args")
    data = encode_string(path) + encode_string("," + types)
    for tag, value in zip(types, args):
        if tag == "i":
            data += struct.pack(">i", value)
        elif tag == "f":
            data += struct.pack(">f", value)
        elif tag == "h":
            data += struct.pack(">q", value)
        elif tag == "d":
            data += struct.pack(">d", value)
        elif tag == "s" or tag == "S":
            data += encode_string(value)
        elif tag == "b":
            data += struct.pack(">i", len(value)) + _padded(value)
        elif tag in "TFNI":
            pass
        else:
            raise ValueError(f"type tag '{tag}' is not supported here")
    return data


def timetag(unix_seconds):
    """The NTP timetag of a time given as seconds since 1970."""
    ntp = unix_seconds + NTP_EPOCH_OFFSET
    seconds = int(ntp)
    fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
    return (seconds << 32) | fraction


def encode_bundle(tag, messages):
    data = encode_string("#bundle") + struct.pack(">Q", tag)
    for message in messages:
        data += struct.pack(">i", len(message)) + message
    return data


def _decode_string(data, offset):
    end = data.index(b"\0", offset)
    text = data[offset:end].decode("utf-8", "replace")
    return text, end + 1 + (-(end + 1 - offset) % 4)


def decode_packet(data):
    """Decode a message or bundle into a list of (path, types, args)."""
    if data.startswith(b"#bundle\0"):
        messages = []
        offset = 16
        while offset < len(data):
            (size,) = struct.unpack_from(">i", data, offset)
            offset += 4
            messages.extend(decode_packet(data[offset:offset + size]))
            offset += size
        return messages

    path, offset = _decode_string(data, 0)
    if offset >= len(data):
        return [(path, "", [])]  # Old-style message without type tags
    types, offset = _decode_string(data, offset)
    types = types[1:] if types.startswith(",") else types
    args = []
    for tag in types:
        if tag == "i":
            args.append(struct.unpack_from(">i", data, offset)[0])
            offset += 4
        elif tag == "f":
            args.append(struct.unpack_from(">f", data, offset)[0])
            offset += 4
        elif tag == "h":
            args.append(struct.unpack_from(">q", data, offset)[0])
            offset += 8
        elif tag == "d":
            args.append(struct.unpack_from(">d", data, offset)[0])
            offset += 8
        elif tag in "sS":
            text, offset = _decode_string(data, offset)
            args.append(text)
        elif tag == "b":
            (size,) = struct.unpack_from(">i", data, offset)
            args.append(data[offset + 4:offset + 4 + size])
            offset += 4 + size + (-size % 4)
        elif tag in "TFNI":
            args.append({"T": True, "F": False}.get(tag))
        else:
            raise ValueError(f"{path}: cannot decode type tag '{tag}'")
    return [(path, types, args)]


class OscClient:
    """A UDP socket that sends to flitzid and receives its replies."""

    def __init__(self, port, host="127.0.0.1"):
        self.daemon = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.pending = []  # Messages received and not yet taken
        self.foreign_sources = []  # Replies that came from another port

    def close(self):
        self.sock.close()

    def send(self, path, types="", args=()):
        self.sock.sendto(encode_message(path, types, list(args)), self.daemon)

    def send_raw(self, data):
        self.sock.sendto(data, self.daemon)

    def receive(self, timeout_s):
        """The next message, or None after `timeout_s`."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, source = self.sock.recvfrom(65536)
            except socket.timeout:
                return None
            if source[1] != self.daemon[1]:
                self.foreign_sources.append(source)
            self.pending.extend(decode_packet(data))
            if self.pending:
                return self.pending.pop(0)

    def until_pong(self, timeout_s=2.0):
        """Send /ping and return the messages that arrive before the /pong,
        or None if no /pong comes."""
        self.send("/ping")
        before = []
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                return None
            if message[0] == "/pong":
                return before
            before.append(message)

    def wait_for(self, predicate, timeout_s=5.0):
        """The first message for which predicate(message) holds, or None.
        Messages that do not match are dropped."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if message is None or predicate(message):
                return message

    def request(self, path, types="", args=(), timeout_s=5.0):
        """Send a message and return the first message that answers it: one
        whose path is not /pong or /event/xrun."""
        self.send(path, types, args)
        return self.wait_for(
            lambda m: m[0] not in ("/pong", "/event/xrun"), timeout_s)


# WAV files

def write_wav(path, seconds=0.25, rate=44100, channels=1, frequency=440.0):
    """A 16-bit sine, `seconds` long."""
    frames = int(seconds * rate)
    with wave.open(path, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        data = bytearray()
        for n in range(frames):
            value = int(12000 * math.sin(2 * math.pi * frequency * n / rate))
            data += struct.pack("<h", value) * channels
        out.writeframes(bytes(data))
    return frames


def write_pcm16(path, samples, rate=48000, channels=1):
    """A 16-bit WAV of `samples`: ints in -32768..32767, interleaved."""
    with wave.open(path, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return len(samples) // channels


def click_track(bpm, first_s, seconds, rate=48000):
    """Mono 16-bit samples: a 10 ms 2 kHz click, decaying, on every beat at
    `bpm` from `first_s` on (the clicks of tests/test_analysis.c)."""
    frames = int(seconds * rate)
    samples = [0] * frames
    beat = first_s
    while beat < seconds:
        at = round(beat * rate)
        for i in range(min(rate // 100, frames - at)):
            samples[at + i] = round(0.8 * 32767 * math.exp(-i / 96.0)
                                    * math.sin(2 * math.pi * 2000 * i / rate))
        beat += 60.0 / bpm
    return samples


def waveform_pairs(channel, start, end, points):
    """(min, max) of each of `points` parts of frames [start, end) of
    `channel`, cut as flitzid's /waveform cuts them (docs/osc-api.md): part
    p covers start + floor(p * s) up to start + floor((p + 1) * s), s =
    (end - start) / points as a float64, and at least one frame."""
    span = (end - start) / points
    pairs = []
    for p in range(points):
        first = min(start + math.floor(span * p), end - 1)
        last = max(start + math.floor(span * (p + 1)), first + 1)
        part = channel[first:last]
        pairs += [min(part), max(part)]
    return pairs


# Processes

def free_udp_port():
    """A UDP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raise_on_sigterm():
    """Turn SIGTERM (meson's timeout) into an exception so that `finally`
    blocks stop the servers this test started."""
    def handler(number, frame):
        raise KeyboardInterrupt(f"signal {number}")
    signal.signal(signal.SIGTERM, handler)


class Daemon:
    """A dummy jackd and a flitzid of this test's own, each with a unique
    name and port. Use as a context manager; stop() always stops both, with
    SIGTERM, by the PIDs started here."""

    def __init__(self, flitzid, tag, slots=8, extra_args=()):
        self.flitzid = flitzid
        self.name = f"flitzi-{tag}-{os.getpid()}"
        self.slots = slots
        self.extra_args = list(extra_args)
        self.port = None
        self.jackd = None
        self.process = None
        self.workdir = tempfile.mkdtemp(prefix=f"flitzi-{tag}-")
        self.jackd_log = os.path.join(self.workdir, "jackd.log")
        self.flitzid_log = os.path.join(self.workdir, "flitzid.log")
        self.env = dict(os.environ,
                        JACK_DEFAULT_SERVER=self.name,
                        JACK_NO_START_SERVER="1")
        self.exit_status = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return False

    def start(self, timeout_s=20.0):
        with open(self.jackd_log, "wb") as log:
            self.jackd = subprocess.Popen(
                ["jackd", "-n", self.name,
                 "-d", "dummy", "-r", "48000", "-p", "256"],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True)
        # flitzid would retry once a second; waiting for jackd saves that.
        if shutil.which("jack_wait"):
            subprocess.run(["jack_wait", "-w", "-s", self.name, "-t", "10"],
                           env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=15)
        self.port = free_udp_port()
        self.start_flitzid(timeout_s)

    def start_flitzid(self, timeout_s=20.0):
        """Start flitzid on self.port (again, after stop_flitzid()) and
        wait until it is ready."""
        with open(self.flitzid_log, "ab") as log:
            self.process = subprocess.Popen(
                # The client keeps its default name: a JACK2 client named
                # like its server replaces the server's socket with its own.
                [self.flitzid, "--port", str(self.port),
                 "--slots", str(self.slots)] + self.extra_args,
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.workdir)

        # Ready when flitzid answers and reports the JACK sample rate (it
        # retries the server once a second if it was not up yet).
        client = OscClient(self.port)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"flitzid exited with {self.process.returncode}\n"
                        + self.logs())
                reply = client.request("/status", timeout_s=0.2)
                if (reply and reply[0] == "/status.reply"
                        and len(reply[2]) > 4 and reply[2][4] == 48000):
                    return
                time.sleep(0.1)
            raise RuntimeError("flitzid did not report a 48000 Hz JACK "
                               f"server within {timeout_s} s\n" + self.logs())
        finally:
            client.close()

    def stop_flitzid(self):
        """Stop flitzid only (SIGTERM, by its PID); jackd keeps running.
        Returns its exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()  # Ours, by PID; it ignored SIGTERM
            return self.process.wait()

    def wait_exit(self, timeout_s=10.0):
        """Wait for flitzid to exit on its own; return its status or None."""
        try:
            self.exit_status = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_status

    def stop(self):
        for process in (self.process, self.jackd):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()  # Ours, by PID; it ignored SIGTERM
                process.wait()
                print(f"# pid {process.pid} ignored SIGTERM; killed",
                      file=sys.stderr)
        if self.process is not None and self.exit_status is None:
            self.exit_status = self.process.returncode

    def logs(self):
        text = ""
        for name, path in (("flitzid", self.flitzid_log),
                           ("jackd", self.jackd_log)):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    body = f.read()
            except OSError:
                continue
            text += f"--- {name} log ---\n{body}"
        return text


class Tap:
    """Test Anything Protocol output, which meson reads (protocol: 'tap')."""

    def __init__(self):
        self.count = 0
        self.failures = 0

    def ok(self, condition, description, detail=""):
        self.count += 1
        if condition:
            print(f"ok {self.count} - {description}")
        else:
            self.failures += 1
            print(f"not ok {self.count} - {description}")
            for line in str(detail).splitlines():
                print(f"#   {line}")
        sys.stdout.flush()
        return condition

    def equal(self, got, expected, description):
        return self.ok(got == expected, description,
                       f"expected: {expected!r}\ngot:      {got!r}")

    def note(self, text):
        for line in str(text).splitlines():
            print(f"# {line}")

    def finish(self):
        print(f"1..{self.count}")
        return 1 if self.failures else 0

    @staticmethod
    def skip_all(reason):
        print(f"1..0 # SKIP {reason}")
        return 0
