/*
  Tempo, grids and quantized launches on a real JACK server, as recorded
  by a JACK client of our own: flitzid with its internal clock, following
  jack_transport as timebase master (--transport jack), and as timebase
  master itself (--transport master).

  Frames are counted in the recorder's own index: its frame i is flitzid's
  output in the same cycle, and both clients count the cycles the server
  ran, so index differences are flitzid's engine frames. Beat 0 is put on
  the frame of a timetag 100 ms ahead (/transport/downbeat in a bundle);
  that frame is known to +-1 from the JACK timing of its period, and
  exactly from /transport: the reply's beats times frames-per-beat is the
  distance from beat 0 to the first frame of a period, which gives beat 0's
  offset within its period. With that, an onset is on the grid or it is
  not: at 120 BPM a beat is 24000 frames, and (onset - beat 0) % 24000
  must be 0.

  For --transport jack a second JACK client of ours reads JACK's transport
  every cycle (the JACK frame of the cycle and the transport frame), so an
  onset's JACK frame maps to a transport frame, whose grid at 128 BPM is
  k * 22500.

  A recording that the server spoiled (an xrun, a skipped period) is made
  again, up to CAPTURE_ATTEMPTS times; each is reported.
*/
#include "harness.h"

#include <jack/transport.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define ONSET_THRESHOLD 0.5f
#define CAPTURE_ATTEMPTS 4
#define CLICK_SLOT 0

/* Periods between a send and the period that takes the message, at most:
   the OSC thread and a busy machine; far less than any grid step here. */
#define TAKE_PERIODS 16

static FlRig rig;

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

/* cmocka's assert_in_range() compares as unsigned; this takes negatives. */
#define assert_between(value, low, high) \
  assert_between_at((long long)(value), (low), (high), #value, __LINE__)

static void
assert_between_at(long long   value,
                  long long   low,
                  long long   high,
                  const char* expression,
                  int         line)
{
  if (value < low || value > high) {
    fprintf(stderr,
            "line %d: %s is %lld, not in [%lld, %lld]\n",
            line,
            expression,
            value,
            low,
            high);
    fail();
  }
}

static const char*
text(const char* format, ...)
{
  static char buffer[2048];
  va_list     args;
  va_start(args, format);
  vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return buffer;
}

static uint32_t
next_random(uint32_t* seed)
{
  *seed = *seed * 1103515245U + 12345U;
  return *seed >> 8;
}

/* ---- The transport as flitzid reports it ---- */

typedef struct {
  char    source[16];
  double  bpm;
  int32_t beats_per_bar;
  double  beats;
  int32_t rolling;
} Transport;

static Transport
query_transport(FlOsc* osc)
{
  Transport transport = { "", 0.0, 0, 0.0, 0 };
  assert_true(fl_osc_send(osc, "/transport", ""));
  FlReply* const reply = fl_osc_wait(osc, "/transport.reply", FL_TEST_REPLY_MS);
  assert_non_null(reply);
  assert_string_equal(reply->types, "sfidi");
  snprintf(transport.source, sizeof(transport.source), "%s", reply->argv[0].s);
  transport.bpm           = reply->argv[1].value.f;
  transport.beats_per_bar = reply->argv[2].value.i;
  transport.beats         = reply->argv[3].value.d;
  transport.rolling       = reply->argv[4].value.i;
  fl_reply_free(reply);
  return transport;
}

/* Poll /transport until it says `bpm` and `beats_per_bar` (from the next
   period on, a change is published), for at most FL_TEST_REPLY_MS. */
static Transport
wait_clock(FlOsc* osc, double bpm, int32_t beats_per_bar)
{
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  Transport     transport;
  do {
    transport = query_transport(osc);
    if (transport.bpm == bpm && transport.beats_per_bar == beats_per_bar) {
      return transport;
    }
    fl_sleep_ms(10);
  } while (fl_now_ms() < deadline);
  fprintf(stderr,
          "/transport says %g BPM, %d beats a bar; expected %g and %d\n",
          transport.bpm,
          transport.beats_per_bar,
          bpm,
          beats_per_bar);
  fail();
  return transport;
}

/* ---- Recorder frames ---- */

/* The recorder index of absolute JACK frame `frame`, if recorded. */
static bool
index_of_frame(FlRecorder* recorder, jack_nframes_t frame, uint32_t* index)
{
  const uint32_t periods = fl_recorder_period_count(recorder);
  for (uint32_t p = 0; p < periods; ++p) {
    jack_nframes_t first = 0;
    if (!fl_recorder_frame_at(recorder, p * FL_TEST_PERIOD, &first)) {
      return false;
    }
    if ((jack_nframes_t)(frame - first) < FL_TEST_PERIOD) {
      *index = p * FL_TEST_PERIOD + (frame - first);
      return true;
    }
  }
  return false;
}

/* Wait for the first onset on out_1 at or after `from`; -1 on timeout. */
static long
wait_onset(FlRecorder* recorder, uint32_t from, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  for (;;) {
    const long onset = fl_recorder_onset(recorder, 0, ONSET_THRESHOLD, from);
    if (onset >= 0 || fl_now_ms() > deadline) {
      return onset;
    }
    fl_recorder_wait(
      recorder, fl_recorder_frames(recorder) + FL_TEST_PERIOD, 50);
  }
}

static void
load_click(FlOsc* osc, int slot)
{
  char path[PATH_MAX];
  fl_env_path(&rig.env, "click.wav", path, sizeof(path));
  assert_true(
    fl_write_sample(path, FL_FILE_WAV_FLOAT, FL_SIGNAL_CLICK, 1, 48000, 64));
  assert_string_equal(
    fl_osc_call(osc, FL_TEST_REPLY_MS, "/load", "is", slot, path),
    text("/done ,siiii \"/load\" %d 64 1 48000", slot));
}

/*
  Put beat 0 on the frame of a timetag 100 ms ahead and return its recorder
  index, exactly: the timetag's frame by its period's JACK timing (+-1, the
  contract for timetags) and beat 0's offset in its period from /transport.
*/
static int64_t
timetagged_downbeat(FlOsc* osc, FlRecorder* recorder, double frames_per_beat)
{
  struct timespec   realtime;
  const jack_time_t now  = fl_clock_pair(&realtime);
  const jack_time_t at   = now + 100000U;
  const lo_timetag  when = fl_timetag_after(&realtime, 100000);
  assert_true(fl_osc_send_bundle(osc, when, "/transport/downbeat", ""));
  fl_sleep_ms(200);

  jack_nframes_t frame = 0;
  uint32_t       near  = 0;
  assert_true(fl_recorder_time_to_frame(recorder, at, &frame));
  assert_true(index_of_frame(recorder, frame, &near));

  /* /transport: beats at the first frame of a period, so beats x frames
     per beat is whole, and beat 0 is that many frames before a period's
     first frame. */
  const Transport transport = query_transport(osc);
  const double    since     = transport.beats * frames_per_beat;
  const int64_t   whole     = llround(since);
  if (fabs(since - (double)whole) > 1e-4) {
    fprintf(stderr,
            "/transport beats %.9f: %.6f frames since beat 0, not whole\n",
            transport.beats,
            since);
    fail();
  }
  const int64_t period = FL_TEST_PERIOD;
  const int64_t phase  = ((-whole) % period + period) % period;
  for (int64_t index = (int64_t)near - 2; index <= (int64_t)near + 2; ++index) {
    if (index >= 0 && index % period == phase) {
      fprintf(stderr,
              "beat 0 at recorded frame %lld; the timetag's frame by its "
              "period's timing is %u (%+lld)\n",
              (long long)index,
              near,
              (long long)((int64_t)near - index));
      assert_between((int64_t)near - index, -1, 1);
      return index;
    }
  }
  fprintf(stderr,
          "no frame near %u is %lld into its period (/transport says %lld "
          "frames since beat 0)\n",
          near,
          (long long)phase,
          (long long)whole);
  fail();
  return -1;
}

/* One quantized launch: the recorded frames when it was sent, and where it
   sounded. */
typedef struct {
  uint32_t sent;
  long     onset;
} Launch;

/*
  Send `count` quantized /play of the click, each at a random time up to
  `spread_ms` after the previous onset, and record where each sounded.
  Returns false if the recording has glitches (then nothing is checked).
*/
static bool
launch_clicks(FlOsc*      osc,
              FlRecorder* recorder,
              Launch*     launches,
              int         count,
              int         spread_ms,
              uint32_t*   seed,
              uint32_t    from)
{
  for (int i = 0; i < count; ++i) {
    fl_sleep_ms((int)(next_random(seed) % (uint32_t)spread_ms));
    launches[i].sent = fl_recorder_frames(recorder);
    assert_true(fl_osc_send(osc, "/play", "if", CLICK_SLOT, 1.0));
    launches[i].onset = wait_onset(recorder, from, 6000);
    if (launches[i].onset < 0) {
      fprintf(stderr, "launch %d: no onset after frame %u\n", i, from);
      fail();
    }
    from = (uint32_t)launches[i].onset + 1U;
  }
  const unsigned glitches = fl_recorder_glitches(recorder);
  if (glitches) {
    fprintf(
      stderr, "%u xrun(s) or skipped period(s) while recording\n", glitches);
  }
  return glitches == 0;
}

/*
  Each launch sounded on line k of the grid of `line_frames` (230400/7 at
  87.5 BPM: line_num / line_den) from beat 0, the nearest frame to it, and
  k is the first line at or after the period that took the /play: at or
  after the frames recorded at send, and less than a line (plus
  TAKE_PERIODS) after them.
*/
static void
assert_on_grid(const Launch* launches,
               int           count,
               int64_t       downbeat,
               int64_t       line_num,
               int64_t       line_den,
               const char*   what)
{
  fprintf(stderr, "%s: lines", what);
  int failures = 0;
  for (int i = 0; i < count; ++i) {
    const int64_t since = launches[i].onset - downbeat;
    const int64_t k     = (2 * since * line_den + line_num) / (2 * line_num);
    const int64_t error_sevenths = since * line_den - k * line_num;
    fprintf(stderr, " %lld", (long long)k);
    /* The nearest frame: |since - k num / den| <= 1/2. */
    if (2 * llabs(error_sevenths) > line_den) {
      fprintf(stderr,
              "\n  launch %d sounded %lld frames after beat 0: %.3f frames "
              "from line %lld\n",
              i,
              (long long)since,
              (double)error_sevenths / (double)line_den,
              (long long)k);
      ++failures;
    }
    const int64_t line_frames = line_num / line_den;
    if (launches[i].onset < (long)launches[i].sent ||
        launches[i].onset - line_frames >=
          (long)launches[i].sent + TAKE_PERIODS * (long)FL_TEST_PERIOD) {
      fprintf(stderr,
              "\n  launch %d sent at recorded frame %u sounded at %ld: not "
              "the first line after it\n",
              i,
              launches[i].sent,
              launches[i].onset);
      ++failures;
    }
  }
  fprintf(stderr, "\n");
  assert_int_equal(failures, 0);
}

/*
  The whole check for one grid at one tempo on the internal clock: /tempo,
  /quantize, a timetagged downbeat, `count` launches at random phases.
*/
static void
check_grid(double      bpm,
           const char* grid,
           const char* slot_grid,
           int64_t     line_num,
           int64_t     line_den,
           int         count,
           uint32_t    seed)
{
  const double frames_per_beat = 60.0 * FL_TEST_RATE / bpm;
  const int    line_ms = (int)(1000 * line_num / line_den / FL_TEST_RATE);
  Launch       launches[32];
  assert_true(count <= 32);
  assert_true(fl_osc_send(rig.osc, "/tempo", "d", bpm));
  assert_true(fl_osc_send(rig.osc, "/quantize", "s", grid));
  if (slot_grid) {
    assert_true(fl_osc_send(
      rig.osc, "/slot/set", "iss", CLICK_SLOT, "quantize", slot_grid));
  }

  for (int attempt = 1; attempt <= CAPTURE_ATTEMPTS; ++attempt) {
    fl_recorder_start(rig.recorder);
    assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
    const int64_t downbeat =
      timetagged_downbeat(rig.osc, rig.recorder, frames_per_beat);
    const bool clean = launch_clicks(rig.osc,
                                     rig.recorder,
                                     launches,
                                     count,
                                     line_ms,
                                     &seed,
                                     (uint32_t)downbeat);
    fl_recorder_stop(rig.recorder);
    if (clean) {
      assert_on_grid(launches,
                     count,
                     downbeat,
                     line_num,
                     line_den,
                     text("%g BPM, /quantize %s, slot %s",
                          bpm,
                          grid,
                          slot_grid ? slot_grid : "global"));
      return;
    }
    fprintf(stderr, "recording again\n");
    assert_true(fl_rig_quiet(&rig, 2000));
  }
  fail_msg("no clean recording in %d attempts", CAPTURE_ATTEMPTS);
}

/* ---- Tests with the internal clock ---- */

static int
group_setup(void** state)
{
  (void)state;
  return fl_rig_start(&rig, "tempo", NULL, true) ? 0 : -1;
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
  if (!rig.recorder || !fl_rig_quiet(&rig, 2000)) {
    return -1;
  }
  fl_osc_send(rig.osc, "/tempo", "f", 120.0);
  fl_osc_send(rig.osc, "/signature", "i", 4);
  fl_osc_send(rig.osc, "/quantize", "s", "off");
  fl_osc_send(rig.osc, "/slot/reset", "i", CLICK_SLOT);
  return 0;
}

static void
test_bad_input(void** state)
{
  (void)state;
  static const struct {
    const char* types;
    double      bpm;
    const char* shown;
  } tempos[] = {
    { "f", 0.0, "0" },         { "i", 0.0, "0" },       { "f", 19.9, "19.9" },
    { "d", 19.999, "19.999" }, { "f", 300.1, "300.1" }, { "d", 1e9, "1e+09" },
    { "f", -120.0, "-120" },
  };
  for (size_t i = 0; i < sizeof(tempos) / sizeof(tempos[0]); ++i) {
    const char* const reply =
      tempos[i].types[0] == 'i'
        ? CALL("/tempo", "i", (int)tempos[i].bpm)
        : CALL("/tempo", tempos[i].types, tempos[i].bpm);
    assert_string_equal(reply,
                        text("/fail ,ss \"/tempo\" \"tempo must be a number "
                             "from 20 to 300 BPM (got %s)\"",
                             tempos[i].shown));
  }
  const char* const nan_reply = CALL("/tempo", "f", (double)NAN);
  fprintf(stderr, "/tempo NaN: %s\n", nan_reply);
  assert_non_null(strstr(nan_reply,
                         "/fail ,ss \"/tempo\" \"tempo must be a "
                         "number from 20 to 300 BPM (got "));
  assert_non_null(strstr(nan_reply, "nan)\""));

  static const char* const grids[] = { "1/3", "3",   "8",   "1/128",
                                       "",    "OFF", "1/4 " };
  for (size_t i = 0; i < sizeof(grids) / sizeof(grids[0]); ++i) {
    assert_string_equal(
      CALL("/quantize", "s", grids[i]),
      text("/fail ,ss \"/quantize\" \"unknown grid '%s' (off, 1/64, 1/32, "
           "1/16, 1/8, 1/4, 1/2, 1, 2 or 4)\"",
           grids[i]));
  }

  assert_string_equal(
    CALL("/signature", "i", 0),
    "/fail ,ss \"/signature\" \"beats per bar must be a whole number from 1 "
    "to 16 (got 0)\"");
  assert_string_equal(
    CALL("/signature", "i", 17),
    "/fail ,ss \"/signature\" \"beats per bar must be a whole number from 1 "
    "to 16 (got 17)\"");

  assert_string_equal(CALL("/quantize", "i", 4),
                      "/fail ,ss \"/quantize\" \"bad arguments: expected ,s\"");
  assert_string_equal(
    CALL("/slot/set", "iss", CLICK_SLOT, "quantize", "1/3"),
    "/fail ,sis \"/slot/set\" 0 \"quantize must be global, off, 1/64, 1/32, "
    "1/16, 1/8, 1/4, 1/2, 1, 2 or 4 (got '1/3')\"");

  /* Nothing changed: the clock is at its defaults. */
  const Transport transport = wait_clock(rig.osc, 120.0, 4);
  assert_string_equal(transport.source, "internal");
  assert_int_equal(transport.rolling, 1);

  /* The bounds are taken (from the next period on). */
  assert_true(fl_osc_send(rig.osc, "/tempo", "i", 20));
  assert_true(fl_osc_send(rig.osc, "/signature", "i", 16));
  wait_clock(rig.osc, 20.0, 16);
  assert_true(fl_osc_send(rig.osc, "/tempo", "d", 300.0));
  assert_true(fl_osc_send(rig.osc, "/signature", "i", 1));
  wait_clock(rig.osc, 300.0, 1);
  assert_int_equal(fl_osc_pending(rig.osc), 0U);
}

static void
test_grid_beats_120(void** state)
{
  (void)state;
  load_click(rig.osc, CLICK_SLOT);
  check_grid(120.0, "1/4", NULL, 24000, 1, 20, 1U);
}

static void
test_grid_bars_120(void** state)
{
  (void)state;
  load_click(rig.osc, CLICK_SLOT);
  check_grid(120.0, "1", NULL, 96000, 1, 8, 2U);
}

static void
test_grid_sixteenths_120(void** state)
{
  (void)state;
  load_click(rig.osc, CLICK_SLOT);
  check_grid(120.0, "1/16", NULL, 6000, 1, 20, 3U);
}

static void
test_grid_87_5(void** state)
{
  (void)state;
  load_click(rig.osc, CLICK_SLOT);
  check_grid(87.5, "1/4", NULL, 230400, 7, 20, 4U);
}

/*
  A tempo change mid-bar keeps the beat position: 120 BPM from a
  timetagged beat 0, /transport (b1) at beat 2.3..2.7 of a bar, /tempo 90,
  /transport again (b2), and launches on the 1/4 grid before and after.

  The change takes effect at the first frame T of a period after b1's
  period (P1, x1 = b1 * 24000 frames after beat 0), so T = x1 + 256 j for
  some j >= 1. If the position is continuous, beat k after the change is
  the nearest frame to T + (k - T / 24000) * 32000 = 32000 k - T / 3, and
  b2 = T / 24000 + 256 m / 32000 for the m periods between T and b2's
  period. Exactly one j must fit every onset after the change and b2.
*/
static void
test_tempo_change_continuous(void** state)
{
  (void)state;
  load_click(rig.osc, CLICK_SLOT);
  assert_true(fl_osc_send(rig.osc, "/quantize", "s", "1/4"));
  wait_clock(rig.osc, 120.0, 4);
  uint32_t seed = 7U;

  for (int attempt = 1; attempt <= CAPTURE_ATTEMPTS; ++attempt) {
    assert_true(fl_osc_send(rig.osc, "/tempo", "i", 120));
    wait_clock(rig.osc, 120.0, 4);
    fl_recorder_start(rig.recorder);
    assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
    const int64_t downbeat =
      timetagged_downbeat(rig.osc, rig.recorder, 24000.0);
    Launch before[3];
    Launch after[4];
    bool   clean = launch_clicks(
      rig.osc, rig.recorder, before, 3, 500, &seed, (uint32_t)downbeat);

    /* Mid-bar: beat 2.3 to 2.7 of the bar (1-based), then at once. */
    Transport     first    = query_transport(rig.osc);
    const int64_t deadline = fl_now_ms() + 5000;
    while (fmod(first.beats, 4.0) < 1.3 || fmod(first.beats, 4.0) > 1.7) {
      assert_true(fl_now_ms() < deadline);
      fl_sleep_ms(5);
      first = query_transport(rig.osc);
    }
    assert_true(fl_osc_send(rig.osc, "/tempo", "i", 90));
    const Transport second = wait_clock(rig.osc, 90.0, 4);
    clean                  = clean && launch_clicks(rig.osc,
                                   rig.recorder,
                                   after,
                                   4,
                                   600,
                                   &seed,
                                   (uint32_t)before[2].onset + 1U);
    fl_recorder_stop(rig.recorder);
    if (!clean) {
      fprintf(stderr, "recording again\n");
      assert_true(fl_rig_quiet(&rig, 2000));
      continue;
    }

    assert_on_grid(before, 3, downbeat, 24000, 1, "120 BPM before the change");
    const double  x1_frames = first.beats * 24000.0;
    const int64_t x1        = llround(x1_frames);
    assert_true(fabs(x1_frames - (double)x1) < 1e-4);

    int     fits  = 0;
    int64_t found = -1;
    for (int64_t j = 1; j <= 2000; ++j) {
      const int64_t change = x1 + 256 * j; /* T, frames after beat 0 */
      bool          fit    = true;
      for (int i = 0; i < 4 && fit; ++i) {
        const int64_t x      = after[i].onset - downbeat;
        const int64_t thrice = 3 * x + change; /* 96000 k +- 1 */
        const int64_t k      = (thrice + 48000) / 96000;
        fit                  = llabs(thrice - 96000 * k) <= 1 && x >= change;
      }
      const double m = (second.beats - (double)change / 24000.0) * 125.0;
      fit            = fit && m > -1e-6 && fabs(m - (double)llround(m)) < 1e-4;
      if (fit) {
        ++fits;
        found = change;
      }
    }
    fprintf(stderr,
            "b1 %.6f (bar beat %.3f), b2 %.6f at 90 BPM; the change at %lld "
            "frames after beat 0 (beat %.6f) fits %d time(s)\n",
            first.beats,
            fmod(first.beats, 4.0) + 1.0,
            second.beats,
            (long long)found,
            (double)found / 24000.0,
            fits);
    assert_int_equal(fits, 1);

    /* Each launch after it on the first line at or after its send. */
    for (int i = 0; i < 4; ++i) {
      assert_true(after[i].onset >= (long)after[i].sent);
      assert_true(after[i].onset - 32000 <
                  (long)after[i].sent + TAKE_PERIODS * (long)FL_TEST_PERIOD);
    }
    return;
  }
  fail_msg("no clean recording in %d attempts", CAPTURE_ATTEMPTS);
}

/* ---- JACK transport ---- */

/* What a JACK client of ours read of JACK's transport in one cycle. */
typedef struct {
  jack_nframes_t frame;           /* JACK frame of the cycle's first frame */
  jack_nframes_t transport_frame; /* jack_position_t.frame */
  uint32_t       state;           /* jack_transport_state_t */
  uint32_t       bbt;             /* 1: a timebase master provides BBT */
  int32_t        bar;
  int32_t        beat;
  int32_t        tick;
  float          beats_per_bar;
  float          beat_type;
  double         ticks_per_beat;
  double         bar_start_tick;
  double         bpm;
} Cycle;

typedef struct {
  jack_client_t* client;
  Cycle*         cycles;
  uint32_t       capacity;
  atomic_uint    count; /* cycles[0..count) are written; release/acquire */
} Clock;

/* The clock's process callback: one record a cycle, nothing else. */
static int
on_clock_process(jack_nframes_t frame_count, void* data)
{
  (void)frame_count;
  Clock* const   clock = (Clock*)data;
  const unsigned count =
    atomic_load_explicit(&clock->count, memory_order_relaxed);
  if (count >= clock->capacity) {
    return 0;
  }
  jack_position_t position;
  Cycle* const    cycle  = &clock->cycles[count];
  cycle->state           = jack_transport_query(clock->client, &position);
  cycle->frame           = jack_last_frame_time(clock->client);
  cycle->transport_frame = position.frame;
  cycle->bbt             = (position.valid & JackPositionBBT) ? 1U : 0U;
  cycle->bar             = position.bar;
  cycle->beat            = position.beat;
  cycle->tick            = position.tick;
  cycle->beats_per_bar   = position.beats_per_bar;
  cycle->beat_type       = position.beat_type;
  cycle->ticks_per_beat  = position.ticks_per_beat;
  cycle->bar_start_tick  = position.bar_start_tick;
  cycle->bpm             = position.beats_per_minute;
  atomic_store_explicit(&clock->count, count + 1U, memory_order_release);
  return 0;
}

static Clock*
clock_new(const char* server)
{
  Clock* const clock = (Clock*)calloc(1, sizeof(Clock));
  assert_non_null(clock);
  clock->capacity = 200000U; /* 17 minutes of periods */
  clock->cycles   = (Cycle*)calloc(clock->capacity, sizeof(Cycle));
  assert_non_null(clock->cycles);
  atomic_init(&clock->count, 0U);
  char name[64];
  snprintf(name, sizeof(name), "fl-clock-%d", (int)getpid());
  clock->client = fl_jack_open(server, name);
  assert_non_null(clock->client);
  assert_int_equal(
    jack_set_process_callback(clock->client, on_clock_process, clock), 0);
  assert_int_equal(jack_activate(clock->client), 0);
  return clock;
}

static void
clock_free(Clock* clock)
{
  if (clock) {
    jack_client_close(clock->client);
    free(clock->cycles);
    free(clock);
  }
}

static unsigned
clock_count(const Clock* clock)
{
  return atomic_load_explicit(&((Clock*)clock)->count, memory_order_acquire);
}

/* The cycle that holds JACK frame `frame`, or NULL. */
static const Cycle*
clock_cycle_of(const Clock* clock, jack_nframes_t frame)
{
  const unsigned count = clock_count(clock);
  unsigned       low   = 0U;
  unsigned       high  = count;
  while (low < high) { /* the last cycle whose first frame is <= frame */
    const unsigned middle = low + (high - low) / 2U;
    if ((int32_t)(clock->cycles[middle].frame - frame) <= 0) {
      low = middle + 1U;
    } else {
      high = middle;
    }
  }
  if (low == 0U) {
    return NULL;
  }
  const Cycle* const cycle = &clock->cycles[low - 1U];
  return frame - cycle->frame < FL_TEST_PERIOD ? cycle : NULL;
}

/* Wait (at most 5 s) until the latest cycle is in `state`, at BBT tempo
   `bpm` (0: no BBT) and, unless negative, at transport frame `frame`. */
static const Cycle*
clock_wait(const Clock* clock, uint32_t state, double bpm, long frame)
{
  const int64_t deadline = fl_now_ms() + 5000;
  while (fl_now_ms() < deadline) {
    const unsigned count = clock_count(clock);
    if (count > 0U) {
      const Cycle* const cycle = &clock->cycles[count - 1U];
      const bool         tempo =
        bpm > 0.0 ? cycle->bbt && cycle->bpm == bpm : !cycle->bbt;
      if (cycle->state == state && tempo &&
          (frame < 0 || cycle->transport_frame == (jack_nframes_t)frame)) {
        return cycle;
      }
    }
    fl_sleep_ms(5);
  }
  fprintf(stderr,
          "JACK transport never reached state %u at %g BPM (frame %ld)\n",
          state,
          bpm,
          frame);
  fail();
  return NULL;
}

/* Beats of a cycle's BBT: bar and beat are 1-based. */
static double
bbt_beats(const Cycle* cycle)
{
  return (double)(cycle->bar - 1) * (double)cycle->beats_per_bar +
         (double)(cycle->beat - 1) +
         (double)cycle->tick / cycle->ticks_per_beat;
}

/* jack_transport (jackd2's interactive client), driven through its stdin. */
typedef struct {
  pid_t pid;
  int   input;
} Transporter;

static void
transporter_start(Transporter* transporter, const char* server)
{
  char log_path[PATH_MAX];
  fl_env_path(&rig.env, "jack_transport.log", log_path, sizeof(log_path));
  int pipe_ends[2];
  assert_int_equal(pipe(pipe_ends), 0);
  const pid_t parent = getpid();
  const pid_t pid    = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
      _exit(127);
    }
    const int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0 || dup2(pipe_ends[0], 0) < 0 || dup2(log, 1) < 0 ||
        dup2(log, 2) < 0) {
      _exit(127);
    }
    close(pipe_ends[1]);
    setenv("JACK_DEFAULT_SERVER", server, 1);
    setenv("JACK_NO_START_SERVER", "1", 1);
    execlp("jack_transport", "jack_transport", (char*)NULL);
    _exit(127);
  }
  close(pipe_ends[0]);
  transporter->pid   = pid;
  transporter->input = pipe_ends[1];
}

static void
transporter_send(Transporter* transporter, const char* command)
{
  char      line[64];
  const int length = snprintf(line, sizeof(line), "%s\n", command);
  assert_int_equal(write(transporter->input, line, (size_t)length), length);
}

static void
transporter_stop(Transporter* transporter)
{
  if (transporter->pid <= 0) {
    return;
  }
  transporter_send(transporter, "quit");
  close(transporter->input);
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (waitpid(transporter->pid, &status, WNOHANG) == transporter->pid) {
      transporter->pid = 0;
      return;
    }
    fl_sleep_ms(10);
  }
  kill(transporter->pid, SIGKILL);
  waitpid(transporter->pid, &status, 0);
  transporter->pid = 0;
}

/* A second flitzid on the rig's server, with its OSC client and recorder. */
typedef struct {
  FlDaemon    daemon;
  FlOsc*      osc;
  FlRecorder* recorder;
} Other;

static void
other_start(Other* other, const char* transport_mode)
{
  char name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int port = fl_env_port(&rig.env);
  assert_true(port > 0);
  const char* const args[] = { "--transport", transport_mode, NULL };
  assert_true(fl_daemon_start(
    &other->daemon, &rig.env, rig.jackd.name, name, port, args));
  other->osc = fl_osc_new(port);
  assert_non_null(other->osc);
  other->recorder =
    fl_recorder_new(rig.jackd.name, name, 2, 40U * FL_TEST_RATE);
  assert_non_null(other->recorder);
}

static void
other_stop(Other* other)
{
  fl_recorder_free(other->recorder);
  fl_osc_free(other->osc);
  const int status = fl_daemon_stop(&other->daemon);
  if (status != 0) {
    fl_daemon_print_log(&other->daemon);
  }
  assert_int_equal(status, 0);
}

/* The transport frame of recorded frame `index`, by the clock's record of
   its cycle; false if that cycle was not rolling. */
static bool
transport_frame_at(const Clock*      clock,
                   const FlRecorder* recorder,
                   uint32_t          index,
                   int64_t*          transport_frame)
{
  jack_nframes_t frame = 0;
  assert_true(fl_recorder_frame_at(recorder, index, &frame));
  const Cycle* const cycle = clock_cycle_of(clock, frame);
  assert_non_null(cycle);
  *transport_frame = (int64_t)cycle->transport_frame + (frame - cycle->frame);
  return cycle->state == JackTransportRolling;
}

static void
assert_follower_refuses(FlOsc* osc)
{
  static const char* const reason =
    "\"the tempo follows the JACK timebase master (--transport jack)\"";
  assert_string_equal(fl_osc_call(osc, FL_TEST_REPLY_MS, "/tempo", "f", 100.0),
                      text("/fail ,ss \"/tempo\" %s", reason));
  assert_string_equal(fl_osc_call(osc, FL_TEST_REPLY_MS, "/signature", "i", 3),
                      text("/fail ,ss \"/signature\" %s", reason));
  assert_string_equal(
    fl_osc_call(osc, FL_TEST_REPLY_MS, "/transport/downbeat", ""),
    text("/fail ,ss \"/transport/downbeat\" %s", reason));
}

/*
  --transport jack, jack_transport as timebase master at 128 BPM (22500
  frames a beat): quantized launches land on transport frames k * 22500;
  a launch queued while the transport is stopped (located to frame 10000)
  starts on the first line once it rolls (22500); /tempo, /signature and
  /transport/downbeat fail naming the source; once the master releases
  the timebase the internal clock keeps time.
*/
static void
test_follow_jack(void** state)
{
  (void)state;
  Other follower;
  other_start(&follower, "jack");
  FlOsc* const osc = follower.osc;
  load_click(osc, CLICK_SLOT);

  /* No timebase master yet: the internal clock. */
  Transport transport = query_transport(osc);
  assert_string_equal(transport.source, "internal");

  Clock* const clock       = clock_new(rig.jackd.name);
  Transporter  transporter = { 0, -1 };
  transporter_start(&transporter, rig.jackd.name);
  transporter_send(&transporter, "master");
  transporter_send(&transporter, "tempo 128");
  transporter_send(&transporter, "locate 0");
  transporter_send(&transporter, "play");
  clock_wait(clock, JackTransportRolling, 128.0, -1);

  /* /transport: jack, 128 BPM, rolling, and the beats of a transport frame
     of a period: b * 22500 is a whole multiple of 256. */
  int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  do {
    transport = query_transport(osc);
  } while (strcmp(transport.source, "jack") && fl_now_ms() < deadline);
  assert_string_equal(transport.source, "jack");
  assert_true(transport.bpm == 128.0);
  assert_int_equal(transport.beats_per_bar, 4);
  assert_int_equal(transport.rolling, 1);
  const double frames = transport.beats * 22500.0;
  assert_true(fabs(frames - (double)llround(frames)) < 1e-4);
  assert_int_equal(llround(frames) % 256, 0);

  assert_follower_refuses(osc);

  /* Launches on the transport's 1/4 grid. */
  assert_true(fl_osc_send(osc, "/quantize", "s", "1/4"));
  fl_sleep_ms(20);
  Launch   launches[20];
  uint32_t seed = 11U;
  fl_recorder_start(follower.recorder);
  assert_true(fl_recorder_wait(follower.recorder, 1, 2000));
  launch_clicks(osc, follower.recorder, launches, 20, 469, &seed, 0U);
  fl_recorder_stop(follower.recorder);
  fprintf(stderr, "128 BPM from jack_transport: lines");
  for (int i = 0; i < 20; ++i) {
    int64_t sounded = 0;
    int64_t sent    = 0;
    assert_true(transport_frame_at(
      clock, follower.recorder, (uint32_t)launches[i].onset, &sounded));
    assert_true(
      transport_frame_at(clock, follower.recorder, launches[i].sent, &sent));
    fprintf(stderr, " %lld", (long long)(sounded / 22500));
    if (sounded % 22500 != 0 || sounded < sent ||
        sounded - 22500 >= sent + TAKE_PERIODS * (int64_t)FL_TEST_PERIOD) {
      fprintf(stderr,
              "\n  launch %d sent at transport frame %lld sounded at "
              "transport frame %lld (%lld frames off its line)\n",
              i,
              (long long)sent,
              (long long)sounded,
              (long long)(sounded % 22500));
      fail();
    }
  }
  fprintf(stderr, "\n");

  /* jack_transport's own BBT against its frame, for the record: it counts
     whole ticks a period, so it falls behind. */
  const Cycle* const rolling = &clock->cycles[clock_count(clock) - 1U];
  fprintf(stderr,
          "jack_transport at frame %u: BBT %d|%d|%d = %.4f beats, the frame "
          "at 128 BPM = %.4f beats (BBT %.2f %% behind)\n",
          rolling->transport_frame,
          rolling->bar,
          rolling->beat,
          rolling->tick,
          bbt_beats(rolling),
          (double)rolling->transport_frame / 22500.0,
          100.0 * (1.0 - bbt_beats(rolling) * 22500.0 /
                           (double)rolling->transport_frame));

  /* Stopped at frame 10000: the launch waits, then starts on 22500. */
  transporter_send(&transporter, "stop");
  clock_wait(clock, JackTransportStopped, 128.0, -1);
  transporter_send(&transporter, "locate 10000");
  clock_wait(clock, JackTransportStopped, 128.0, 10000);
  deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  do {
    transport = query_transport(osc);
  } while (
    (transport.rolling || fabs(transport.beats * 22500.0 - 10000.0) > 1e-6) &&
    fl_now_ms() < deadline);
  assert_int_equal(transport.rolling, 0);
  fl_recorder_start(follower.recorder);
  assert_true(fl_recorder_wait(follower.recorder, 1, 2000));
  assert_true(fl_osc_send(osc, "/play", "if", CLICK_SLOT, 1.0));
  fl_sleep_ms(500);
  assert_true(fl_recorder_onset(follower.recorder, 0, ONSET_THRESHOLD, 0) < 0);
  transporter_send(&transporter, "play");
  const long onset = wait_onset(follower.recorder, 0U, 3000);
  assert_true(onset >= 0);
  fl_recorder_stop(follower.recorder);
  int64_t sounded = 0;
  assert_true(
    transport_frame_at(clock, follower.recorder, (uint32_t)onset, &sounded));
  fprintf(stderr,
          "queued while stopped at transport frame 10000: sounded at "
          "transport frame %lld\n",
          (long long)sounded);
  assert_int_equal(sounded, 22500);

  /* The master goes: internal again, at the tempo it had, and ours. */
  transporter_send(&transporter, "release");
  clock_wait(clock, JackTransportRolling, 0.0, -1);
  deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  do {
    transport = query_transport(osc);
  } while (strcmp(transport.source, "internal") && fl_now_ms() < deadline);
  assert_string_equal(transport.source, "internal");
  assert_true(transport.bpm == 128.0);
  assert_int_equal(transport.rolling, 1);
  assert_true(fl_osc_send(osc, "/tempo", "i", 100));
  wait_clock(osc, 100.0, 4);

  transporter_stop(&transporter);
  clock_free(clock);
  other_stop(&follower);
}

/*
  --transport master: flitzid is JACK's timebase master. A client of ours
  reads, every cycle with the transport rolling, the tempo and bar flitzid
  was given (100 BPM, 3 beats, 28800 frames a beat) and a BBT whose beats
  are the beats since flitzid's beat 0 at that cycle's first frame, to a
  tick (1/1920 beat, 15 frames): (bar - 1) * 3 + (beat - 1) + tick / 1920.
  /transport's beats are one of those cycles' BBT.
*/
static void
test_master(void** state)
{
  (void)state;
  Other master;
  other_start(&master, "master");
  FlOsc* const osc   = master.osc;
  Clock* const clock = clock_new(rig.jackd.name);
  jack_transport_locate(clock->client, 0);
  jack_transport_start(clock->client);
  assert_true(fl_osc_send(osc, "/tempo", "i", 100));
  assert_true(fl_osc_send(osc, "/signature", "i", 3));
  wait_clock(osc, 100.0, 3);
  clock_wait(clock, JackTransportRolling, 100.0, -1);

  for (int attempt = 1; attempt <= CAPTURE_ATTEMPTS; ++attempt) {
    fl_recorder_start(master.recorder);
    assert_true(fl_recorder_wait(master.recorder, 1, 2000));
    const int64_t downbeat = timetagged_downbeat(osc, master.recorder, 28800.0);
    jack_nframes_t beat_zero = 0;
    assert_true(
      fl_recorder_frame_at(master.recorder, (uint32_t)downbeat, &beat_zero));
    fl_sleep_ms(1000);
    const Transport transport = query_transport(osc);
    fl_sleep_ms(100);
    const jack_nframes_t last = jack_frame_time(clock->client);
    fl_recorder_stop(master.recorder);
    if (fl_recorder_glitches(master.recorder)) {
      fprintf(stderr, "recording again\n");
      continue;
    }

    const unsigned count  = clock_count(clock);
    double         lowest = 1e9, highest = -1e9;
    unsigned       checked = 0, matched = 0;
    for (unsigned i = 0; i < count; ++i) {
      const Cycle* const cycle = &clock->cycles[i];
      const int32_t      since = (int32_t)(cycle->frame - beat_zero);
      if (since < (int32_t)FL_TEST_PERIOD ||
          (int32_t)(last - cycle->frame) < 0) {
        continue;
      }
      assert_int_equal(cycle->bbt, 1U);
      assert_true(cycle->bpm == 100.0);
      assert_true(cycle->beats_per_bar == 3.0f);
      assert_true(cycle->beat_type == 4.0f);
      assert_true(cycle->ticks_per_beat == 1920.0);
      assert_true(cycle->bar_start_tick ==
                  (double)(cycle->bar - 1) * 3.0 * 1920.0);
      const double off = bbt_beats(cycle) * 28800.0 - (double)since;
      lowest           = off < lowest ? off : lowest;
      highest          = off > highest ? off : highest;
      ++checked;
      const double ahead = transport.beats - bbt_beats(cycle);
      matched += ahead >= -1e-9 && ahead < 1.0 / 1920.0;
    }
    fprintf(stderr,
            "%u cycles: flitzid's BBT minus the beats since beat 0 at the "
            "cycle's first frame: %.1f .. %.1f frames (a tick is 15); "
            "/transport %.5f beats is the BBT of %u cycle(s)\n",
            checked,
            lowest,
            highest,
            transport.beats,
            matched);
    assert_true(checked > 100U);
    assert_true(lowest >= -15.0 - 1.0 && highest <= 1.0);
    assert_true(matched >= 1U);
    clock_free(clock);
    other_stop(&master);
    return;
  }
  fail_msg("no clean recording in %d attempts", CAPTURE_ATTEMPTS);
}

/* The slot's own grid over the global one: with /quantize 1 (bars of
   96000 frames), a slot set to 1/16 launches on lines 6000 frames apart,
   and with /quantize off too. */
static void
test_slot_quantize(void** state)
{
  (void)state;
  load_click(rig.osc, CLICK_SLOT);
  check_grid(120.0, "1", "1/16", 6000, 1, 10, 5U);
  check_grid(120.0, "off", "1/8", 12000, 1, 10, 6U);
}

int
main(int argc, char** argv)
{
  /* `test_daemon_tempo test_grid_*` runs only the tests named so. */
  if (argc > 1) {
    cmocka_set_test_filter(argv[1]);
  }
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_bad_input, test_setup),
    cmocka_unit_test_setup(test_grid_beats_120, test_setup),
    cmocka_unit_test_setup(test_grid_bars_120, test_setup),
    cmocka_unit_test_setup(test_grid_sixteenths_120, test_setup),
    cmocka_unit_test_setup(test_grid_87_5, test_setup),
    cmocka_unit_test_setup(test_slot_quantize, test_setup),
    cmocka_unit_test_setup(test_tempo_change_continuous, test_setup),
    cmocka_unit_test_setup(test_follow_jack, test_setup),
    cmocka_unit_test_setup(test_master, test_setup),
  };
  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  return fl_rig_finish(&rig, failures);
}
