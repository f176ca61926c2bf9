/*
  Helpers for the robustness tests (test_robust_*.c), beside the harness:
  raw UDP datagrams (so a test can send what liblo would never build, from
  any loopback address, at full speed), /stats, a process's resident
  memory, the kernel's view of a UDP socket, flitzid run under a wrapper
  (setpriv, valgrind), and a JACK server killed with SIGKILL.

  Everything here runs in the test's main thread, except a flooder's own
  sending thread, which touches only its socket and its atomics.
*/
#ifndef FLITZI_TESTS_ROBUST_UTIL_H
#define FLITZI_TESTS_ROBUST_UTIL_H

#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Largest datagram the helpers build or receive. */
#define FL_DATAGRAM_MAX 65536U

/**
   printf into one of 8 rotating static buffers of 16 KiB, for the expected
   side of a comparison (two results may be alive at once).
*/
const char* fl_text(const char* format, ...)
  __attribute__((format(printf, 1, 2)));

/* Building OSC packets byte by byte */

/** A packet being built: at most FL_DATAGRAM_MAX bytes. */
typedef struct {
  unsigned char data[FL_DATAGRAM_MAX];
  size_t        size;
} FlPacket;

/**
   Serialise one OSC message into `packet` (replacing its contents) with
   liblo. `types` is the type-tag string without ','; arguments follow as for
   fl_osc_send(), plus 'c' (int), 'b' (int size, const void* bytes) and 't'
   (uint64_t timetag). Returns false if liblo refuses.
*/
bool fl_packet_message(FlPacket*   packet,
                       const char* path,
                       const char* types,
                       ...);

/** Start a bundle: "#bundle\0" and the timetag (0, 1 is "immediately"). */
void fl_packet_bundle(FlPacket* packet, uint32_t seconds, uint32_t fraction);

/** Append a big-endian 32-bit word. */
void fl_packet_word(FlPacket* packet, uint32_t word);

/** Append raw bytes. */
void fl_packet_bytes(FlPacket* packet, const void* bytes, size_t size);

/** Append a bundle element: its size as a word, then its bytes. */
void fl_packet_element(FlPacket* packet, const FlPacket* element);

/* A raw UDP endpoint */

typedef struct FlUdpImpl FlUdp;

/**
   Open a UDP socket bound to `local_address` (numeric, e.g. "127.0.0.1" or
   "::1") on a free port, that sends to `address`:`port` by default, with a
   receive buffer of at least `receive_buffer` bytes (0: the default).
   Returns NULL (and prints why) on failure.
*/
FlUdp* fl_udp_new(const char* local_address,
                  const char* address,
                  int         port,
                  int         receive_buffer);

/** Close it. fl_udp_free(NULL) does nothing. */
void fl_udp_free(FlUdp* udp);

/** The socket, for a flooder or a poll(). */
int fl_udp_fd(const FlUdp* udp);

/** Send a datagram to the default address; false if sendto() failed. */
bool fl_udp_send(FlUdp* udp, const void* data, size_t size);

/** Send `packet` to the default address. */
bool fl_udp_send_packet(FlUdp* udp, const FlPacket* packet);

/** Send a datagram to another address (numeric) and port. */
bool fl_udp_send_to(FlUdp*      udp,
                    const char* address,
                    int         port,
                    const void* data,
                    size_t      size);

/**
   Receive the next datagram within `timeout_ms` and decode it as an OSC
   message. A datagram that is no OSC message comes back with the path
   "(undecodable)". Returns NULL on timeout. fl_reply_free() the result.
*/
FlReply* fl_udp_receive(FlUdp* udp, int timeout_ms);

/**
   Receive until a message with path `path` arrives (NULL: any), dropping
   and counting the others in `*skipped` (may be NULL). NULL on timeout.
*/
FlReply* fl_udp_wait(FlUdp*      udp,
                     const char* path,
                     int         timeout_ms,
                     uint64_t*   skipped);

/**
   Send `packet` and return the next reply formatted by fl_reply_format(),
   or "(no reply within N ms)". The string lives until the next call.
*/
const char* fl_udp_call(FlUdp* udp, const FlPacket* packet, int timeout_ms);

/** Drop every datagram waiting now; return how many. */
uint64_t fl_udp_drain(FlUdp* udp);

/* A sending thread */

typedef struct FlFlooderImpl FlFlooder;

/**
   Start a thread that sends `packet` to 127.0.0.1:`port` as fast as it can
   until fl_flooder_stop(), or until `limit` datagrams (0: no limit).
*/
FlFlooder* fl_flooder_start(int port, const FlPacket* packet, uint64_t limit);

/** Stop and join the thread; return how many datagrams it sent. */
uint64_t fl_flooder_stop(FlFlooder* flooder);

/* flitzid's counters */

/** The /stats.reply fields. */
typedef struct {
  int64_t messages;        /**< Messages read (each of a bundle too) */
  int64_t plays_queued;    /**< /play that reached the RT queue */
  int64_t plays_applied;   /**< Queued plays the RT thread took */
  int64_t dropped_queue;   /**< "queue full" refusals */
  int64_t dropped_packets; /**< Datagrams lost unanswered */
  int64_t failed;          /**< /fail replies sent */
} FlStats;

/**
   Send /stats from `osc` and parse the reply. Returns false if none came or
   its type tags are not ",hhhhhh".
*/
bool fl_stats(FlOsc* osc, FlStats* stats);

/* Processes */

/** VmRSS of `pid` in KiB, from /proc/PID/status, or -1. */
long fl_rss_kib(pid_t pid);

/**
   The kernel's counters of the UDP socket bound to 127.0.0.1:`port`
   (/proc/net/udp): bytes waiting to be read and datagrams dropped because
   the receive queue was full. Returns false if no such socket exists.
*/
bool fl_udp_socket_state(int            port,
                         unsigned long* queued_bytes,
                         unsigned long* drops);

/**
   Wait until the socket bound to 127.0.0.1:`port` has nothing left to read;
   false after `timeout_ms`.
*/
bool fl_udp_wait_drained(int port, int timeout_ms);

/**
   Start flitzid as fl_daemon_spawn() does, but run through `prefix` (a
   NULL-terminated command such as { "valgrind", "-q", NULL }): a shell
   script in the test directory execs PREFIX... FLITZID "$@", so the pid is
   the daemon's. Then wait for it like fl_daemon_wait_ready() for
   `timeout_ms`.
*/
bool fl_daemon_start_wrapped(FlDaemon*          daemon,
                             FlTestEnv*         env,
                             const char*        server,
                             const char*        name,
                             int                port,
                             const char* const* extra_args,
                             const char* const* prefix,
                             int                timeout_ms);

/**
   The prefix that runs flitzid without CAP_DAC_OVERRIDE and
   CAP_DAC_READ_SEARCH, so file permissions hold for it even when the tests
   run as root. Only root may drop them (setpriv needs CAP_SETPCAP); other
   users have no such capabilities to drop and run flitzid as it is.
*/
extern const char* const fl_no_dac_prefix[];

/**
   Kill the server with SIGKILL, reap it, and remove the files it left in
   /dev/shm (only names that contain "_<its name>_"). Returns the number of
   files removed, or -1 if it was not running.
*/
int fl_jackd_kill(FlJackd* jackd);

/* Recording */

/**
   Play `slot` at `velocity` and record until `frames` frames past the onset
   (first frame of out_1 above `threshold`). A capture that the server
   spoiled (xrun, skipped period) is made again, up to 8 times. Returns the
   onset, or -1 (after printing why).
*/
long fl_capture_play(FlRecorder* recorder,
                     FlOsc*      osc,
                     int         slot,
                     double      velocity,
                     float       threshold,
                     uint32_t    frames);

/**
   Index of the first of `count` frames from `start` of `channel` that is
   not within `tolerance` of `value`, or -1 if all are.
*/
long fl_find_deviation(const FlRecorder* recorder,
                       unsigned          channel,
                       uint32_t          start,
                       uint32_t          count,
                       float             value,
                       float             tolerance);

#endif /* FLITZI_TESTS_ROBUST_UTIL_H */
