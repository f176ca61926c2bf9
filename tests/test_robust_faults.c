/*
  flitzid under floods, storms and faults: a flood of /play with exact
  accounting, a slot reloaded and unloaded a thousand times under 32
  voices, the JACK server killed with SIGKILL and started again, and
  SIGTERM in the middle of a load, of playback and of a flood.

  `test_robust_faults` runs the quick variants (suite 'integration');
  `test_robust_faults --stress` the long ones (suite 'stress'): a flood of
  1,000,000 messages, 10,000 reloads, 20 server kills, and the SIGTERM
  cases again under valgrind (under a sanitizer build, the sanitizer takes
  valgrind's place).
*/
#include "harness.h"
#include "robust_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#  define FL_SANITIZED 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#    define FL_SANITIZED 1
#  endif
#endif
#ifndef FL_SANITIZED
#  define FL_SANITIZED 0
#endif

/*
  Resident memory says something about flitzid's own memory only with the
  C library's allocator: a sanitizer's allocator keeps freed blocks in
  quarantine (hundreds of MB in the reload storm). Under a sanitizer the
  figures are printed, not checked; LeakSanitizer checks for leaks at the
  daemon's exit instead (fl_rig_stop() requires exit status 0).
*/
static void
assert_rss_within(long delta_kib, long limit_kib)
{
  if (FL_SANITIZED) {
    fprintf(stderr,
            "(sanitizer build: a VmRSS change of %+ld KiB is not checked "
            "against %ld KiB)\n",
            delta_kib,
            limit_kib);
    return;
  }
  assert_true(labs(delta_kib) <= limit_kib);
}

#define TONE_FRAMES 4800U
#define VOICES 32

static bool  stress;
static FlRig rig;

static char  tone_path[PATH_MAX];   // 0.1 s mono float tone
static char  stereo_path[PATH_MAX]; // 0.1 s stereo float tone
static char  long_path[PATH_MAX];   // 10 s mono 16-bit tone, for 32 voices
static char  big_path[PATH_MAX];    // 20 s stereo at 44.1 kHz: a slow load
static char  storm_a[PATH_MAX];     // 1 s mono float
static char  storm_b[PATH_MAX];     // 1 s stereo 16-bit
static float tone[TONE_FRAMES];
static float stereo[2 * TONE_FRAMES];

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

static int
group_setup(void** state)
{
  (void)state;
  if (!fl_rig_start(&rig, "robfaults", NULL, true)) {
    return -1;
  }
  fl_env_path(&rig.env, "tone.wav", tone_path, sizeof(tone_path));
  fl_env_path(&rig.env, "stereo.wav", stereo_path, sizeof(stereo_path));
  fl_env_path(&rig.env, "long.wav", long_path, sizeof(long_path));
  fl_env_path(&rig.env, "big.wav", big_path, sizeof(big_path));
  fl_env_path(&rig.env, "storm-a.wav", storm_a, sizeof(storm_a));
  fl_env_path(&rig.env, "storm-b.wav", storm_b, sizeof(storm_b));
  for (uint32_t i = 0; i < TONE_FRAMES; ++i) {
    tone[i]           = fl_signal_value(FL_SIGNAL_TONE, i, TONE_FRAMES, 0);
    stereo[2 * i]     = tone[i];
    stereo[2 * i + 1] = fl_signal_value(FL_SIGNAL_TONE, i, TONE_FRAMES, 1);
  }
  const bool written =
    fl_write_sample(
      tone_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 1, 48000, TONE_FRAMES) &&
    fl_write_sample(
      stereo_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 2, 48000, TONE_FRAMES) &&
    fl_write_sample(
      long_path, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 480000) &&
    fl_write_sample(
      big_path, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 2, 44100, 20U * 44100U) &&
    fl_write_sample(
      storm_a, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 1, 48000, 48000) &&
    fl_write_sample(
      storm_b, FL_FILE_WAV_PCM16, FL_SIGNAL_RAMP, 2, 48000, 48000);
  return written ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  return fl_rig_stop(&rig) ? 0 : -1;
}

static int
test_setup(void** state)
{
  (void)state;
  return fl_rig_quiet(&rig, 3000) ? 0 : -1;
}

static void
load_on(FlOsc*      osc,
        int         slot,
        const char* path,
        uint32_t    frames,
        unsigned    channels)
{
  assert_string_equal(
    fl_osc_call(osc, 30000, "/load", "is", slot, path),
    fl_text("/done ,siiii \"/load\" %d %u %u 48000", slot, frames, channels));
}

static void
load(int slot, const char* path, uint32_t frames, unsigned channels)
{
  load_on(rig.osc, slot, path, frames, channels);
}

/* Start `count` voices of `slot` at a low velocity and wait until they sound.
 */
static void
play_voices(FlOsc* osc, int slot, int count)
{
  for (int i = 0; i < count; ++i) {
    fl_osc_send(osc, "/play", "if", slot, 0.01);
  }
  assert_true(fl_osc_wait_voices(osc, count, 3000));
}

/* Milliseconds from /ping to /pong on `osc`, or -1. */
static int64_t
ping_ms(FlOsc* osc)
{
  const int64_t sent = fl_now_ms();
  fl_osc_send(osc, "/ping", "");
  FlReply* const pong = fl_osc_wait(osc, "/pong", FL_TEST_REPLY_MS);
  const int64_t  took = pong ? fl_now_ms() - sent : -1;
  fl_reply_free(pong);
  return took;
}

static int
compare_int64(const void* a, const void* b)
{
  const int64_t x = *(const int64_t*)a;
  const int64_t y = *(const int64_t*)b;
  return (x > y) - (x < y);
}

/*
  N /play as fast as one loopback sender can send, while 32 voices play.
  Afterwards: /ping answers within 50 ms, resident memory is within 1 MB of
  what it was, and every message is accounted for by /stats:
    sent              = received + dropped_packets (the kernel's drops)
    received /play    = plays_queued + failed ("queue full")
    plays_queued      = plays_applied, once the RT thread has caught up
*/
static void
test_flood(void** state)
{
  (void)state;
  const uint64_t count = stress ? 1000000U : 50000U;
  const int      port  = rig.daemon.port;
  load(0, long_path, 480000, 1);
  play_voices(rig.osc, 0, VOICES);

  FlUdp* const sender = fl_udp_new("127.0.0.1", "127.0.0.1", port, 0);
  assert_non_null(sender);
  static FlPacket play;
  assert_true(fl_packet_message(&play, "/play", "if", 0, 0.01));

  // Warm up: the paths a flood takes allocate what they keep.
  for (int i = 0; i < 5000; ++i) {
    fl_udp_send_packet(sender, &play);
  }
  assert_true(fl_udp_wait_drained(port, 10000));
  fl_sleep_ms(100);
  fl_udp_drain(sender);

  const long    rss_before   = fl_rss_kib(rig.daemon.pid);
  unsigned long queued       = 0UL;
  unsigned long drops_before = 0UL;
  unsigned long drops_after  = 0UL;
  assert_true(fl_udp_socket_state(port, &queued, &drops_before));
  FlStats before;
  assert_true(fl_stats(rig.osc, &before));

  const int64_t started = fl_now_ms();
  uint64_t      sent    = 0U;
  for (uint64_t i = 0; i < count; ++i) {
    sent += fl_udp_send_packet(sender, &play);
    if (i % 4096U == 4095U) {
      fl_udp_drain(sender); // the "queue full" replies
    }
  }
  const int64_t flood_ms = fl_now_ms() - started;
  int64_t       control  = 0; // messages other than the flood's, after `before`

  // The first /ping waits behind whatever the socket still holds. When
  // that queue is full the kernel may drop the /ping itself: then it is
  // one of the dropped datagrams rather than a message received.
  const int64_t backlog_ping_ms = ping_ms(rig.osc);
  const int64_t lost_control    = backlog_ping_ms < 0 ? 1 : 0;
  control += 1 - lost_control;
  assert_true(fl_udp_wait_drained(port, 10000));

  // The RT thread takes what is queued at the start of each period.
  FlStats after;
  for (int64_t deadline = fl_now_ms() + 3000;;) {
    assert_true(fl_stats(rig.osc, &after));
    ++control;
    if (after.plays_applied == after.plays_queued || fl_now_ms() > deadline) {
      break;
    }
    fl_sleep_ms(10);
  }

  int64_t pings[5];
  for (int i = 0; i < 5; ++i) {
    pings[i] = ping_ms(rig.osc);
    ++control;
    assert_true(pings[i] >= 0);
  }
  assert_true(fl_stats(rig.osc, &after));
  ++control;
  assert_true(fl_udp_socket_state(port, &queued, &drops_after));
  const long rss_after = fl_rss_kib(rig.daemon.pid);
  fl_udp_free(sender);

  const int64_t received   = after.messages - before.messages - control;
  const int64_t dropped    = after.dropped_packets - before.dropped_packets;
  const int64_t plays      = after.plays_queued - before.plays_queued;
  const int64_t applied    = after.plays_applied - before.plays_applied;
  const int64_t failed     = after.failed - before.failed;
  const int64_t queue_full = after.dropped_queue - before.dropped_queue;
  qsort(pings, 5, sizeof(pings[0]), compare_int64);
  fprintf(stderr,
          "flood: %llu /play sent in %lld ms (%.0f per second); received "
          "%lld, dropped by the kernel %lld (/proc/net/udp: %lu), queued "
          "%lld, applied %lld, refused %lld (queue full %lld)\n"
          "flood: /ping behind the backlog %lld ms; afterwards %lld..%lld ms "
          "(median %lld); VmRSS %ld KiB before, %ld KiB after (%+ld KiB)\n",
          (unsigned long long)sent,
          (long long)flood_ms,
          flood_ms ? (double)sent * 1000.0 / (double)flood_ms : 0.0,
          (long long)received,
          (long long)dropped,
          drops_after - drops_before,
          (long long)plays,
          (long long)applied,
          (long long)failed,
          (long long)queue_full,
          (long long)backlog_ping_ms,
          (long long)pings[0],
          (long long)pings[4],
          (long long)pings[2],
          rss_before,
          rss_after,
          rss_after - rss_before);

  assert_int_equal(sent, count);
  assert_int_equal((int64_t)sent + lost_control, received + dropped);
  assert_int_equal(dropped, (int64_t)(drops_after - drops_before));
  assert_int_equal(received, plays + failed);
  assert_int_equal(failed, queue_full);
  assert_int_equal(plays, applied);
  assert_true(pings[2] <= 50);
  assert_true(rss_before > 0 && rss_after > 0);
  assert_rss_within(rss_after - rss_before, 1024);
  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  fprintf(
    stderr, "flood: %d voices sounding afterwards\n", status.voices_active);
}

/*
  A burst of plays faster than the RT thread's periods: with every voice
  busy, each play steals the oldest voice, so the newest play always
  sounds and all 32 voices sound afterwards. The burst is one bundle of
  300 /play of slot 0 (quiet) and then /play of slot 6 (a loud DC), all
  for the same moment 100 ms ahead, so they reach the RT thread within one
  or two periods.
*/
static void
test_burst_keeps_newest_play(void** state)
{
  (void)state;
  char dc_path[PATH_MAX];
  fl_env_path(&rig.env, "dc.wav", dc_path, sizeof(dc_path));
  assert_true(fl_write_sample(
    dc_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_DC, 1, 48000, 240000));
  load(0, long_path, 480000, 1);
  load(6, dc_path, 240000, 1);
  play_voices(rig.osc, 0, VOICES);

  static FlPacket bundle;
  static FlPacket play;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  const lo_timetag when = fl_timetag_after(&now, 100000);
  fl_packet_bundle(&bundle, when.sec, when.frac);
  assert_true(fl_packet_message(&play, "/play", "if", 0, 0.01));
  for (int i = 0; i < 300; ++i) {
    fl_packet_element(&bundle, &play);
  }
  assert_true(fl_packet_message(&play, "/play", "if", 6, 1.0));
  fl_packet_element(&bundle, &play);

  FlUdp* const sender =
    fl_udp_new("127.0.0.1", "127.0.0.1", rig.daemon.port, 0);
  assert_non_null(sender);
  fl_recorder_start(rig.recorder);
  assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
  assert_true(fl_udp_send_packet(sender, &bundle));
  assert_true(fl_recorder_wait(rig.recorder, FL_TEST_RATE / 2U, 3000));
  fl_recorder_stop(rig.recorder);
  const uint64_t refused = fl_udp_drain(sender);
  fl_udp_free(sender);

  // Slot 6 adds 0.5 on top of at most 31 voices of 0.01 x 0.5.
  const long     onset = fl_recorder_onset(rig.recorder, 0, 0.4f, 0);
  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  fprintf(stderr,
          "a burst of 301 plays in one bundle: %llu refused; slot 6 %s; "
          "%d voices sounding afterwards\n",
          (unsigned long long)refused,
          onset >= 0 ? "sounded" : "never sounded",
          status.voices_active);
  assert_int_equal(refused, 0);
  assert_true(onset >= 0);
  assert_int_equal(status.voices_active, VOICES);
}

/*
  Datagrams the kernel drops are counted once, whichever socket (127.0.0.1
  or ::1, both bound by default) they were meant for. The daemon is stopped
  (SIGSTOP) while 30000 unreadable 4-byte datagrams arrive on each socket,
  so both receive queues overflow; every one of them is dropped, either by
  the kernel or by the daemon, so dropped_packets must grow by exactly
  60000.
*/
static void
test_kernel_drops_counted_once(void** state)
{
  (void)state;
  const int    port = rig.daemon.port;
  FlUdp* const v4   = fl_udp_new("127.0.0.1", "127.0.0.1", port, 0);
  FlUdp* const v6   = fl_udp_new("::1", "::1", port, 0);
  assert_non_null(v4);
  assert_non_null(v6);

  FlStats before;
  FlStats after;
  assert_true(fl_stats(rig.osc, &before));
  unsigned long queued       = 0UL;
  unsigned long drops_before = 0UL;
  unsigned long drops_after  = 0UL;
  assert_true(fl_udp_socket_state(port, &queued, &drops_before));

  enum { GARBAGE = 30000 };
  assert_int_equal(kill(rig.daemon.pid, SIGSTOP), 0);
  for (int i = 0; i < GARBAGE; ++i) {
    fl_udp_send(v4, "\0\0\0\0", 4);
    fl_udp_send(v6, "\0\0\0\0", 4);
  }
  assert_true(fl_udp_socket_state(port, &queued, &drops_after));
  assert_int_equal(kill(rig.daemon.pid, SIGCONT), 0);
  assert_true(fl_udp_wait_drained(port, 10000));

  static FlPacket ping;
  assert_true(fl_packet_message(&ping, "/ping", ""));
  assert_string_equal(fl_udp_call(v6, &ping, FL_TEST_REPLY_MS),
                      "/pong ,si \"0.1.0\" 1");
  assert_string_equal(fl_udp_call(v4, &ping, FL_TEST_REPLY_MS),
                      "/pong ,si \"0.1.0\" 1");
  assert_true(fl_stats(rig.osc, &after));
  fprintf(stderr,
          "%d datagrams to each of 127.0.0.1 and ::1 while stopped: the "
          "kernel dropped %lu of those to 127.0.0.1; /stats dropped_packets "
          "%+lld, messages %+lld (two /ping and /stats)\n",
          GARBAGE,
          drops_after - drops_before,
          (long long)(after.dropped_packets - before.dropped_packets),
          (long long)(after.messages - before.messages));
  fl_udp_free(v4);
  fl_udp_free(v6);

  assert_true(drops_after > drops_before);
  assert_int_equal(after.messages - before.messages, 3);
  assert_int_equal(after.dropped_packets - before.dropped_packets, 2 * GARBAGE);
}

/*
  Slot 1 reloaded N times (two files in turn, /unload every 10th time)
  while 32 voices play it: no crash, /query right at the end, xruns
  reported against an idle period of the same length, and resident memory
  back near where it was.
*/
static void
test_reload_storm(void** state)
{
  (void)state;
  const int reloads = stress ? 10000 : 1000;
  load(1, storm_a, 48000, 1);

  // The baseline: slot 1 holds storm_a, nothing plays, after a warm-up.
  for (int i = 0; i < 20; ++i) {
    load(1, i % 2 ? storm_a : storm_b, 48000, i % 2 ? 1 : 2);
  }
  load(1, storm_a, 48000, 1);
  fl_sleep_ms(200);
  const long rss_base = fl_rss_kib(rig.daemon.pid);

  play_voices(rig.osc, 1, VOICES);
  FlDaemonStatus before;
  FlDaemonStatus after;
  assert_true(fl_osc_status(rig.osc, &before));
  const unsigned jackd_xruns_before = fl_jackd_log_count(&rig.jackd, "XRun");

  const int64_t started = fl_now_ms();
  unsigned      unloads = 0;
  unsigned      refused = 0;
  for (int i = 0; i < reloads; ++i) {
    if (i % 10 == 9) {
      assert_string_equal(CALL("/unload", "i", 1), "/done ,si \"/unload\" 1");
      ++unloads;
    }
    const bool a = i % 2 == 0;
    fl_osc_send(rig.osc, "/load", "is", 1, a ? storm_a : storm_b);
    FlReply* const reply = fl_osc_wait(rig.osc, NULL, 30000);
    char           line[1024];
    const char*    got =
      reply ? fl_reply_format(reply, line, sizeof(line)) : "(no reply)";
    const char* const want =
      fl_text("/done ,siiii \"/load\" 1 48000 %u 48000", a ? 1U : 2U);
    if (strcmp(got, want)) {
      fprintf(stderr, "reload %d: got %s, expected %s\n", i, got, want);
    }
    assert_string_equal(got, want);
    fl_reply_free(reply);

    // Keep 32 voices sounding from the slot's newest samples.
    for (int v = 0; v < 4; ++v) {
      fl_osc_send(rig.osc, "/play", "if", 1, 0.01);
    }
    if (i % 100 == 99) {
      // Any refusal of those plays would be a /fail; there must be none.
      refused += fl_osc_collect(rig.osc, 0);
      fl_osc_clear(rig.osc);
    }
  }
  const int64_t storm_ms = fl_now_ms() - started;
  refused += fl_osc_collect(rig.osc, 50);
  fl_osc_clear(rig.osc);
  assert_true(fl_osc_status(rig.osc, &after));
  const unsigned jackd_xruns = fl_jackd_log_count(&rig.jackd, "XRun");
  const int32_t  storm_xruns = after.xruns - before.xruns;

  // Polyphony is whole: 32 more plays sound as 32 voices.
  play_voices(rig.osc, 1, VOICES);

  // The control: as long, on the same server, with nothing happening.
  fl_osc_send(rig.osc, "/stop", "");
  assert_true(fl_osc_wait_voices(rig.osc, 0, 3000));
  FlDaemonStatus idle_before;
  FlDaemonStatus idle_after;
  assert_true(fl_osc_status(rig.osc, &idle_before));
  const unsigned jackd_idle_before = fl_jackd_log_count(&rig.jackd, "XRun");
  fl_sleep_ms((int)storm_ms);
  assert_true(fl_osc_status(rig.osc, &idle_after));
  const int32_t  idle_xruns = idle_after.xruns - idle_before.xruns;
  const unsigned jackd_idle =
    fl_jackd_log_count(&rig.jackd, "XRun") - jackd_idle_before;

  assert_string_equal(CALL("/query", "i", 1),
                      fl_text("/slot ,isiiii 1 \"%s\" 48000 %u 48000 1",
                              reloads % 2 ? storm_a : storm_b,
                              reloads % 2 ? 1U : 2U));
  load(1, storm_a, 48000, 1);
  fl_sleep_ms(200);
  const long rss_after = fl_rss_kib(rig.daemon.pid);
  fprintf(stderr,
          "reload storm: %d reloads and %u unloads under %d voices in %lld ms; "
          "xruns: %d during the storm (jackd logged %u XRun lines), %d in an "
          "idle period as long (jackd: %u); /fail replies to the plays: %u; "
          "VmRSS %ld KiB before, %ld KiB after (%+ld KiB)\n",
          reloads,
          unloads,
          VOICES,
          (long long)storm_ms,
          storm_xruns,
          jackd_xruns - jackd_xruns_before,
          idle_xruns,
          jackd_idle,
          refused,
          rss_base,
          rss_after,
          rss_after - rss_base);

  assert_true(fl_daemon_running(&rig.daemon));
  assert_int_equal(refused, 0);
  // A reload that stalled the RT thread would cost an xrun each time; the
  // dummy backend's own xruns under load are far fewer than the reloads.
  assert_true(storm_xruns < reloads / 10);
  assert_rss_within(rss_after - rss_base, 4096);
}

/*
  /unload gives memory back: 20 slots loaded with 2 s stereo samples
  (15 MB) and unloaded again leave resident memory within 2 MB of where it
  was. A load and an unload before the baseline make glibc's allocator
  settle on how it serves buffers of that size.
*/
static void
test_unload_returns_memory(void** state)
{
  (void)state;
  char path[PATH_MAX];
  fl_env_path(&rig.env, "two-seconds.wav", path, sizeof(path));
  assert_true(
    fl_write_sample(path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 2, 48000, 96000));
  load(10, path, 96000, 2);
  assert_string_equal(CALL("/unload", "i", 10), "/done ,si \"/unload\" 10");
  fl_sleep_ms(200);
  const long rss_base = fl_rss_kib(rig.daemon.pid);

  for (int slot = 10; slot < 30; ++slot) {
    load(slot, path, 96000, 2);
  }
  const long rss_loaded = fl_rss_kib(rig.daemon.pid);
  for (int slot = 10; slot < 30; ++slot) {
    assert_string_equal(CALL("/unload", "i", slot),
                        fl_text("/done ,si \"/unload\" %d", slot));
  }
  fl_sleep_ms(300);
  const long rss_after = fl_rss_kib(rig.daemon.pid);
  fprintf(stderr,
          "20 samples of 750 KiB: VmRSS %ld KiB before, %+ld KiB loaded, "
          "%+ld KiB after unloading them\n",
          rss_base,
          rss_loaded - rss_base,
          rss_after - rss_base);
  assert_true(rss_loaded - rss_base >= 10000);
  assert_rss_within(rss_after - rss_base, 2048);
}

/*
  The JACK server killed with SIGKILL, its leftovers removed, and started
  again: flitzid keeps its slots, is back within 2 s of the server, and
  sounds again.
*/
static void
test_jackd_sigkill(void** state)
{
  (void)state;
  const int kills = stress ? 20 : 3;
  load(0, tone_path, TONE_FRAMES, 1);
  load(5, stereo_path, TONE_FRAMES, 2);
  char query0[PATH_MAX + 64];
  char query5[PATH_MAX + 64];
  snprintf(query0, sizeof(query0), "%s", CALL("/query", "i", 0));
  snprintf(query5, sizeof(query5), "%s", CALL("/query", "i", 5));
  assert_string_equal(
    query0,
    fl_text("/slot ,isiiii 0 \"%s\" %u 1 48000 1", tone_path, TONE_FRAMES));
  assert_string_equal(
    query5,
    fl_text("/slot ,isiiii 5 \"%s\" %u 2 48000 1", stereo_path, TONE_FRAMES));

  int64_t worst_ms    = 0;
  char    times[1024] = "";
  for (int k = 1; k <= kills; ++k) {
    fl_recorder_free(rig.recorder);
    rig.recorder = NULL;
    play_voices(rig.osc, 0, 4); // killed while it plays
    const int removed = fl_jackd_kill(&rig.jackd);
    assert_true(removed >= 0);

    fl_sleep_ms(200);
    assert_true(fl_daemon_running(&rig.daemon));
    assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
    assert_string_equal(CALL("/query", "i", 0), query0);

    assert_true(fl_jackd_start_again(&rig.jackd));
    const int64_t up = fl_now_ms();
    const bool    back =
      fl_jack_wait_ports(rig.jackd.name, rig.daemon.name, 2, 10000);
    const int64_t took = fl_now_ms() - up;
    const size_t  used = strlen(times);
    snprintf(times + used,
             sizeof(times) - used,
             "%s%lld",
             k > 1 ? ", " : "",
             (long long)took);
    worst_ms = took > worst_ms ? took : worst_ms;
    if (!back) {
      fl_daemon_print_log(&rig.daemon);
    }
    assert_true(back);

    assert_string_equal(CALL("/query", "i", 0), query0);
    assert_string_equal(CALL("/query", "i", 5), query5);
    FlDaemonStatus status;
    assert_true(fl_osc_status(rig.osc, &status));
    assert_int_equal(status.sample_rate, 48000);
    assert_int_equal(status.slots_loaded >= 2, 1);
    assert_true(fl_osc_wait_voices(rig.osc, 0, 2000));

    rig.recorder =
      fl_recorder_new(rig.jackd.name, rig.daemon.name, 2, 5U * FL_TEST_RATE);
    assert_non_null(rig.recorder);
    const long onset = fl_capture_play(
      rig.recorder, rig.osc, k % 2 ? 0 : 5, 1.0, 0.05f, TONE_FRAMES);
    assert_true(onset >= 0);
    for (unsigned out = 0; out < 2; ++out) {
      const float* const expected = k % 2 ? tone : stereo + out;
      assert_int_equal(fl_recorder_compare(rig.recorder,
                                           out,
                                           onset,
                                           expected,
                                           TONE_FRAMES,
                                           k % 2 ? 1U : 2U,
                                           1.0f,
                                           1e-5f),
                       -1);
    }
    fprintf(
      stderr,
      "kill %d: %d stale files removed; flitzid back %lld ms after jackd\n",
      k,
      removed,
      (long long)took);
  }
  fprintf(stderr,
          "jackd SIGKILL x%d: flitzid's ports back after %s ms (worst %lld)\n",
          kills,
          times,
          (long long)worst_ms);
  assert_true(worst_ms <= 2000);
}

typedef enum {
  DURING_LOAD,
  DURING_PLAYBACK,
  DURING_FLOOD,
} Moment;

static const char* const moment_names[] = { "a load", "playback", "a flood" };

/*
  A daemon of its own on the rig's server gets SIGTERM during `moment` and
  must exit 0. With `prefix` it runs under that command (valgrind).
*/
static void
sigterm_during(Moment moment, const char* const* prefix)
{
  FlDaemon daemon;
  char     name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int port = fl_env_port(&rig.env);
  assert_true(port > 0);
  const int timeout_ms = prefix ? 120000 : 10000;
  assert_true(prefix ? fl_daemon_start_wrapped(&daemon,
                                               &rig.env,
                                               rig.jackd.name,
                                               name,
                                               port,
                                               NULL,
                                               prefix,
                                               timeout_ms)
                     : fl_daemon_start(
                         &daemon, &rig.env, rig.jackd.name, name, port, NULL));
  FlOsc* const osc = fl_osc_new(port);
  assert_non_null(osc);

  FlFlooder* flooder = NULL;
  switch (moment) {
    case DURING_LOAD:
      fl_osc_send(osc, "/load", "is", 0, big_path);
      fl_sleep_ms(prefix ? 500 : 30);
      break;
    case DURING_PLAYBACK:
      load_on(osc, 0, long_path, 480000, 1);
      for (int i = 0; i < VOICES; ++i) {
        fl_osc_send(osc, "/play", "if", 0, 0.01);
      }
      assert_true(fl_osc_wait_voices(osc, VOICES, timeout_ms));
      break;
    case DURING_FLOOD: {
      load_on(osc, 0, long_path, 480000, 1);
      static FlPacket play;
      assert_true(fl_packet_message(&play, "/play", "if", 0, 0.01));
      flooder = fl_flooder_start(port, &play, 0);
      assert_non_null(flooder);
      fl_sleep_ms(prefix ? 1000 : 200);
      break;
    }
  }

  const int64_t signalled = fl_now_ms();
  kill(daemon.pid, SIGTERM);
  const int      status = fl_daemon_wait_exit(&daemon, prefix ? 120000 : 10000);
  const int64_t  exit_ms = fl_now_ms() - signalled;
  const uint64_t flooded = fl_flooder_stop(flooder);
  if (status == -2) {
    kill(daemon.pid, SIGKILL);
    fl_daemon_wait_exit(&daemon, -1);
  }
  fl_osc_free(osc);

  fprintf(stderr,
          "SIGTERM during %s%s: exit status %d after %lld ms%s\n",
          moment_names[moment],
          prefix ? " under valgrind" : "",
          status,
          (long long)exit_ms,
          moment == DURING_FLOOD
            ? fl_text(" (%llu datagrams flooded)", (unsigned long long)flooded)
            : "");
  char* const log = fl_read_text(daemon.log_path);
  if (prefix && log) {
    // valgrind's verdict, for the record.
    for (char* line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
      if (strstr(line, "ERROR SUMMARY") || strstr(line, "definitely lost") ||
          strstr(line, "Invalid ")) {
        fprintf(stderr, "  %s\n", line);
      }
    }
  }
  if (status != 0) {
    fl_daemon_print_log(&daemon);
  }
  free(log);
  assert_int_equal(status, 0);
}

static void
test_sigterm_during_load(void** state)
{
  (void)state;
  sigterm_during(DURING_LOAD, NULL);
}

static void
test_sigterm_during_playback(void** state)
{
  (void)state;
  sigterm_during(DURING_PLAYBACK, NULL);
}

static void
test_sigterm_during_flood(void** state)
{
  (void)state;
  sigterm_during(DURING_FLOOD, NULL);
}

/*
  The same under valgrind: exit 0, no invalid access, no definite leak
  (--error-exitcode makes either one exit 99). Valgrind cannot run a
  sanitizer build; there the sanitizer does its job instead.
*/
static const char* const valgrind_prefix[] = {
  "valgrind",
  "--error-exitcode=99",
  "--leak-check=full",
  "--errors-for-leak-kinds=definite",
  NULL,
};

static void
test_sigterm_under_valgrind(void** state)
{
  (void)state;
  const char* const* const prefix = FL_SANITIZED ? NULL : valgrind_prefix;
  if (FL_SANITIZED) {
    fprintf(stderr,
            "sanitizer build: the SIGTERM cases run without valgrind\n");
  }
  sigterm_during(DURING_LOAD, prefix);
  sigterm_during(DURING_PLAYBACK, prefix);
  sigterm_during(DURING_FLOOD, prefix);
}

int
main(int argc, char** argv)
{
  stress = argc > 1 && !strcmp(argv[1], "--stress");

  const struct CMUnitTest quick[] = {
    cmocka_unit_test_setup(test_flood, test_setup),
    cmocka_unit_test_setup(test_burst_keeps_newest_play, test_setup),
    cmocka_unit_test_setup(test_kernel_drops_counted_once, test_setup),
    cmocka_unit_test_setup(test_reload_storm, test_setup),
    cmocka_unit_test_setup(test_unload_returns_memory, test_setup),
    cmocka_unit_test_setup(test_jackd_sigkill, test_setup),
    cmocka_unit_test_setup(test_sigterm_during_load, test_setup),
    cmocka_unit_test_setup(test_sigterm_during_playback, test_setup),
    cmocka_unit_test_setup(test_sigterm_during_flood, test_setup),
  };
  const struct CMUnitTest long_runs[] = {
    cmocka_unit_test_setup(test_flood, test_setup),
    cmocka_unit_test_setup(test_burst_keeps_newest_play, test_setup),
    cmocka_unit_test_setup(test_kernel_drops_counted_once, test_setup),
    cmocka_unit_test_setup(test_reload_storm, test_setup),
    cmocka_unit_test_setup(test_unload_returns_memory, test_setup),
    cmocka_unit_test_setup(test_jackd_sigkill, test_setup),
    cmocka_unit_test_setup(test_sigterm_under_valgrind, test_setup),
  };

  const int failures =
    stress ? cmocka_run_group_tests_name(
               "robust_faults --stress", long_runs, group_setup, group_teardown)
           : cmocka_run_group_tests_name(
               "robust_faults", quick, group_setup, group_teardown);
  return fl_rig_finish(&rig, failures);
}
