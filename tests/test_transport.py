#!/usr/bin/env python3
"""OSC transports: --tcp (length-prefixed packets, OSC 1.0 stream framing),
IPv6 loopback for the default "localhost", and liblo's own oscsend.

A dummy jackd and flitzid of its own (tests/flitzid_fixture.py); TAP output.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flitzid_fixture as fx  # noqa: E402


def tcp_exchange(sock, packet, timeout_s=3.0):
    sock.sendall(struct.pack(">I", len(packet)) + packet)
    sock.settimeout(timeout_s)
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (size,) = struct.unpack(">I", header)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return fx.decode_packet(body)


def main():
    tap = fx.Tap()
    flitzid = os.environ["FLITZID"]
    with fx.Daemon(flitzid, "transport", slots=4,
                   extra_args=["--tcp"]) as daemon:
        wav = os.path.join(daemon.workdir, "tone.wav")
        fx.write_wav(wav, seconds=0.2, rate=48000)

        # TCP: requests and replies on one connection, in order.
        with socket.create_connection(("127.0.0.1", daemon.port), 3) as tcp:
            reply = tcp_exchange(tcp, fx.encode_message("/ping", "", []))
            tap.equal(reply and reply[0][:2], ("/pong", "si"),
                      "TCP: /ping answers /pong on the connection")
            reply = tcp_exchange(
                tcp, fx.encode_message("/load", "is", [0, wav]))
            tap.equal(reply and reply[0][0], "/done",
                      "TCP: /load's /done comes back on the connection "
                      "(sent by the loader thread through the OSC thread)")
            reply = tcp_exchange(
                tcp, fx.encode_message("/play", "if", [9, 0.5]))
            tap.equal(reply and reply[0][2], ["/play", 9,
                                              "slot 9 is out of range (0..3)"],
                      "TCP: /fail with its reason")
            bundle = fx.encode_bundle(1, [fx.encode_message("/query", "i",
                                                            [0])])
            reply = tcp_exchange(tcp, bundle)
            tap.equal(reply and reply[0][0], "/slot",
                      "TCP: a bundle's message is dispatched")

        # A TCP frame that claims more than 64 KiB closes that connection
        # only; the daemon goes on.
        with socket.create_connection(("127.0.0.1", daemon.port), 3) as tcp:
            tcp.sendall(struct.pack(">I", 1 << 30))
            tcp.settimeout(3)
            try:
                closed = tcp.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed = True
            tap.ok(closed, "TCP: an oversized frame closes the connection")
        client = fx.OscClient(daemon.port)
        tap.ok(client.until_pong() is not None,
               "the daemon answers UDP /ping after the bad TCP frame")
        client.close()

        # IPv6 loopback: "localhost" binds ::1 too.
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            v6.bind(("::1", 0))
        except OSError as error:
            tap.ok(False, "an IPv6 loopback socket", str(error))
        else:
            v6.settimeout(3)
            v6.sendto(fx.encode_message("/ping", "", []),
                      ("::1", daemon.port))
            try:
                data, source = v6.recvfrom(65536)
                tap.equal(fx.decode_packet(data)[0][0], "/pong",
                          "UDP over ::1: /ping answers /pong")
                tap.equal(source[1], daemon.port,
                          "the reply comes from the daemon's port")
            except socket.timeout:
                tap.ok(False, "UDP over ::1: /ping answers /pong", "timeout")
            v6.close()

        # liblo's oscsend, as the README's quick start uses it.
        if shutil.which("oscsend"):
            client = fx.OscClient(daemon.port)
            client.send("/notify", "i", [1])
            client.wait_for(lambda m: m[0] == "/done")
            before = client.request("/query", "i", [1])
            subprocess.run(["oscsend", "localhost", str(daemon.port), "/load",
                            "is", "1", wav], check=True, timeout=10)
            event = client.wait_for(lambda m: m[0] in ("/done", "/fail"),
                                    timeout_s=5)
            tap.equal(event and event[2][:2], ["/load", 1],
                      "oscsend localhost /load reaches the daemon "
                      "(a /notify subscriber sees its /done)")
            after = client.request("/query", "i", [1])
            tap.ok(before and after and before[2][5] == 0 and
                   after[2][5] == 1, "slot 1 is loaded afterwards")
            client.close()
        else:
            tap.ok(False, "oscsend is installed (liblo-tools)")
    # --connect: outputs go to the first physical playback ports, which the
    # dummy backend has (system:playback_1, _2).
    with fx.Daemon(flitzid, "connect", slots=2,
                   extra_args=["--connect"]) as daemon:
        listing = subprocess.run(["jack_lsp", "-c"], env=daemon.env,
                                 capture_output=True, text=True,
                                 timeout=10).stdout
        connections = {}
        port = None
        for line in listing.splitlines():
            if line.startswith(" "):
                connections.setdefault(port, set()).add(line.strip())
            else:
                port = line.strip()
        tap.equal(sorted(connections.get("flitzid:out_1", [])),
                  ["system:playback_1"], "--connect: out_1 to playback_1")
        tap.equal(sorted(connections.get("flitzid:out_2", [])),
                  ["system:playback_2"], "--connect: out_2 to playback_2")
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
