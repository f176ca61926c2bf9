/*
  Trigger latency and timetag accuracy, on a real dummy jackd with a real
  flitzid, measured on flitzid's recorded output.

  For periods of 64, 256 and 1024 frames:
  - 1000 /play messages, each sent at a random phase of a period; for each,
    the JACK frame time at the moment of sending (jack_frame_time() of the
    recorder's client) and the frame of the voice's first output sample.
    The limit is the first period boundary after the message arrives: the
    latency can be no less than 0 and, with flitzid doing its job, no more
    than one period plus the OSC delivery time.
  - 40 bundles timetagged 5 to 500 ms ahead; the start frame error is the
    onset frame minus the frame of the timetag, mapped as the contract says
    (fl_recorder_time_to_frame()). The goal is 0.

  Prints a table, and writes each latency to build/bench/latency-<P>.dat for
  scripts/plot-bench. Run: meson test -C build --benchmark latency -v
*/
#include "harness.h"

#include <jack/jack.h>
#include <sndfile.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TRIGGERS 1000
#define BUNDLES 60
#define AHEADS 4

static const int ahead_ms[AHEADS] = { 5, 20, 100, 500 };

/* Per period, per lead time: bundles measured, exact, largest |error|. */
static int  bundle_count[3][AHEADS];
static int  bundle_exact[3][AHEADS];
static long bundle_worst[3][AHEADS];

static int
compare_long(const void* a, const void* b)
{
  const long x = *(const long*)a;
  const long y = *(const long*)b;
  return (x > y) - (x < y);
}

/* A click: one full-scale frame, then silence. */
static void
write_click(const char* path)
{
  SF_INFO info        = { 0 };
  info.channels       = 1;
  info.samplerate     = (int)FL_TEST_RATE;
  info.format         = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  SNDFILE* file       = sf_open(path, SFM_WRITE, &info);
  float    frames[64] = { 1.0f };
  sf_writef_float(file, frames, 64);
  sf_close(file);
}

static void
sleep_us(long usecs)
{
  const struct timespec duration = { usecs / 1000000L,
                                     (usecs % 1000000L) * 1000L };
  nanosleep(&duration, NULL);
}

/* The index of the first recorded frame at or after absolute frame `frame`.
   With no skipped period that is frame - first; the dummy backend does skip
   periods at small sizes on a busy machine, so search. */
static uint32_t
index_of_frame(const FlRecorder* recorder, jack_nframes_t frame)
{
  uint32_t low  = 0U;
  uint32_t high = fl_recorder_frames(recorder);
  while (low < high) {
    const uint32_t middle = low + (high - low) / 2U;
    jack_nframes_t at     = 0;
    fl_recorder_frame_at(recorder, middle, &at);
    if ((int32_t)(at - frame) < 0) {
      low = middle + 1U;
    } else {
      high = middle;
    }
  }
  return low;
}

static bool
run(FlTestEnv* env, unsigned period, unsigned row, const char* data_dir)
{
  char server[64];
  char name[64];
  fl_env_name(env, server, sizeof(server));
  fl_env_name(env, name, sizeof(name));

  FlJackd  jackd  = { 0 };
  FlDaemon daemon = { 0 };
  if (!fl_jackd_start(&jackd, env, server, period)) {
    return false;
  }
  if (!fl_daemon_start(&daemon, env, server, name, fl_env_port(env), NULL)) {
    fl_jackd_stop(&jackd);
    return false;
  }

  char click[PATH_MAX];
  fl_env_path(env, "click.wav", click, sizeof(click));
  write_click(click);
  FlOsc* const osc = fl_osc_new(daemon.port);
  fl_osc_send(osc, "/load", "is", 0, click);
  FlReply* reply = fl_osc_wait(osc, "/done", FL_TEST_REPLY_MS);
  fl_reply_free(reply);

  const double   period_us = period * 1e6 / FL_TEST_RATE;
  const long     spacing   = (long)(2.5 * period_us) + 2000L;
  const uint32_t capacity =
    (uint32_t)((TRIGGERS * (spacing + period_us) + BUNDLES * 560000.0) *
               FL_TEST_RATE / 1e6) +
    FL_TEST_RATE;
  FlRecorder* const    recorder = fl_recorder_new(server, name, 1U, capacity);
  jack_client_t* const client   = fl_recorder_client(recorder);
  fl_recorder_start(recorder);
  fl_recorder_wait(recorder, period * 4U, 5000);

  /* Triggers at random phases. */
  static jack_nframes_t sent[TRIGGERS];
  for (int i = 0; i < TRIGGERS; ++i) {
    sleep_us(spacing + (long)(rand() % (int)period_us));
    sent[i] = jack_frame_time(client);
    fl_osc_send(osc, "/play", "ii", 0, 127);
  }
  sleep_us((long)(4 * period_us));

  /* Bundles 5..500 ms ahead. */
  static jack_time_t targets[BUNDLES];
  for (int i = 0; i < BUNDLES; ++i) {
    struct timespec   now;
    const jack_time_t jack_now = fl_clock_pair(&now);
    const int64_t     ahead_us = ahead_ms[i % AHEADS] * 1000L;
    const lo_timetag  when     = fl_timetag_after(&now, ahead_us);
    targets[i]                 = jack_now + (jack_time_t)ahead_us;
    fl_osc_send_bundle(osc, when, "/play", "ii", 0, 127);
    sleep_us(ahead_us + 30000L);
  }
  sleep_us((long)(4 * period_us));
  fl_recorder_stop(recorder);

  const unsigned glitches = fl_recorder_glitches(recorder);
  static long    latency[TRIGGERS];
  int            measured = 0;
  char           data_path[PATH_MAX + 32];
  snprintf(data_path, sizeof(data_path), "%s/latency-%u.dat", data_dir, period);
  FILE* const data = fopen(data_path, "w");
  fprintf(
    data, "# period %u: frames from send to onset, one per trigger\n", period);
  for (int i = 0; i < TRIGGERS; ++i) {
    const long onset =
      fl_recorder_onset(recorder, 0U, 0.5f, index_of_frame(recorder, sent[i]));
    jack_nframes_t onset_frame = 0;
    if (onset < 0 ||
        !fl_recorder_frame_at(recorder, (uint32_t)onset, &onset_frame)) {
      continue;
    }
    latency[measured] = (long)(int32_t)(onset_frame - sent[i]);
    fprintf(data, "%ld\n", latency[measured]);
    ++measured;
  }
  fclose(data);
  qsort(latency, (size_t)measured, sizeof(long), compare_long);

  int timed = 0;
  for (int i = 0; i < BUNDLES; ++i) {
    jack_nframes_t expected = 0;
    if (!fl_recorder_time_to_frame(recorder, targets[i], &expected)) {
      continue;
    }
    const long onset = fl_recorder_onset(
      recorder, 0U, 0.5f, index_of_frame(recorder, expected - 64U));
    jack_nframes_t onset_frame = 0;
    if (onset < 0 ||
        !fl_recorder_frame_at(recorder, (uint32_t)onset, &onset_frame)) {
      continue;
    }
    const long error = labs((long)(int32_t)(onset_frame - expected));
    const int  lead  = i % AHEADS;
    ++bundle_count[row][lead];
    bundle_exact[row][lead] += error == 0;
    if (error > bundle_worst[row][lead]) {
      bundle_worst[row][lead] = error;
    }
    ++timed;
  }

  int late = 0; /* triggers later than one period plus 1 ms */
  for (int i = 0; i < measured; ++i) {
    late += latency[i] > (long)period + (long)(FL_TEST_RATE / 1000U);
  }

  FlDaemonStatus status;
  fl_osc_status(osc, &status);
  printf("%6u %7.2f %9d %7ld %7ld %7ld %7ld %7.2f %9d %7u %5d\n",
         period,
         period_us / 1000.0,
         measured,
         measured ? latency[0] : -1,
         measured ? latency[measured / 2] : -1,
         measured ? latency[measured * 99 / 100] : -1,
         measured ? latency[measured - 1] : -1,
         measured ? (double)latency[measured / 2] / period : 0.0,
         late,
         glitches,
         status.late_bundles);

  fl_recorder_free(recorder);
  fl_osc_free(osc);
  fl_daemon_stop(&daemon);
  fl_jackd_stop(&jackd);
  return measured == TRIGGERS && timed == BUNDLES;
}

int
main(void)
{
  FlTestEnv env;
  if (!fl_env_init(&env, "bench-latency")) {
    return 1;
  }
  const char* const build = getenv("MESON_BUILD_ROOT");
  char              data_dir[PATH_MAX - 64];
  snprintf(data_dir, sizeof(data_dir), "%s/bench", build ? build : ".");
  mkdir(data_dir, 0755);
  srand(1);

  printf("/play to first output frame: %d triggers per period size, frames "
         "from jack_frame_time()\nat send to the onset frame. The limit: "
         "the first period boundary after arrival, i.e.\n0 < latency <= one "
         "period plus the OSC delivery time.\n\n",
         TRIGGERS);
  printf("%6s %7s %9s %7s %7s %7s %7s %7s %9s %7s %5s\n",
         "period",
         "ms",
         "triggers",
         "min",
         "median",
         "p99",
         "max",
         "med/P",
         ">P+1ms",
         "glitch",
         "late");
  bool     ok  = true;
  unsigned row = 0U;
  for (unsigned period = 64U; period <= 1024U; period *= 4U, ++row) {
    ok = run(&env, period, row, data_dir) && ok;
  }
  printf("glitch: periods the recorder missed or xruns it saw (the dummy "
         "backend's own);\nlate: /status late_bundles after the run.\n\n");

  printf("start frame error of %d timetagged bundles (exact/measured, "
         "largest |error| in frames)\n",
         BUNDLES);
  printf("%6s", "period");
  for (int a = 0; a < AHEADS; ++a) {
    printf("  %4d ms ahead    ", ahead_ms[a]);
  }
  printf("\n");
  row = 0U;
  for (unsigned period = 64U; period <= 1024U; period *= 4U, ++row) {
    printf("%6u", period);
    for (int a = 0; a < AHEADS; ++a) {
      printf("  %3d/%-3d max %-5ld",
             bundle_exact[row][a],
             bundle_count[row][a],
             bundle_worst[row][a]);
    }
    printf("\n");
  }
  printf("a bundle can only start on its frame if it arrives before the "
         "period holding that\nframe is processed: at least one period "
         "ahead. Data in %s\n",
         data_dir);
  fl_env_remove(&env);
  return ok ? 0 : 1;
}
