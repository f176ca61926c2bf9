/*
  What flitzid plays, as recorded by a JACK client of our own connected to
  its outputs: decoded formats, resampling, gain, channel mapping, the
  latency from /play to sound, and timetagged bundles.

  Absolute frames come from the recorder's client: the first recorded frame
  is jack_last_frame_time() of the cycle that recorded it, "now" is
  jack_frame_time(), and a future time maps to a frame with
  jack_time_to_frames() at the moment it is sent.
*/
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frames of the tone files compared sample by sample. */
#define TONE_FRAMES 4800U

/* Anything above this is the sound we asked for; below it, silence. */
#define ONSET_THRESHOLD 0.05f

/* Captures of one /play before giving up on a machine that glitches. */
#define CAPTURE_ATTEMPTS 8

static FlRig rig;

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

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

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

static void
file_path(const char* name, char* path, size_t path_size)
{
  fl_env_path(&rig.env, name, path, path_size);
}

static int
group_setup(void** state)
{
  (void)state;
  return fl_rig_start(&rig, "audio", NULL, true) ? 0 : -1;
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
  return rig.recorder && fl_rig_quiet(&rig, 2000) ? 0 : -1;
}

/* A /play to send: plain, or in a bundle with a timetag. */
typedef struct {
  int         slot;
  const char* types;    ///< "if" or "ii"
  double      velocity; ///< A float, or the MIDI velocity for "ii"
  bool        bundle;   ///< Send it in a bundle...
  int64_t     ahead_us; ///< ...timetagged this far from now (0: immediate)

  // Filled in when it is sent:
  uint32_t       sent_period; ///< Periods recorded when it was sent
  jack_nframes_t sent_frame;  ///< jack_frame_time() just before sending
  jack_time_t    start_usecs; ///< The JACK time the timetag stands for
  jack_nframes_t predicted;   ///< jack_time_to_frames(start_usecs) then
} Play;

static void
send_play(Play* play)
{
  jack_client_t* const client = fl_recorder_client(rig.recorder);
  lo_timetag           when   = LO_TT_IMMEDIATE;
  if (play->bundle && play->ahead_us) {
    // Read as the daemon reads it: CLOCK_REALTIME and jack_get_time() back
    // to back, the timetag's distance from now added to JACK's now.
    struct timespec   realtime;
    const jack_time_t now_us = fl_clock_pair(&realtime);
    play->start_usecs        = (jack_time_t)((int64_t)now_us + play->ahead_us);
    play->predicted          = jack_time_to_frames(client, play->start_usecs);
    when                     = fl_timetag_after(&realtime, play->ahead_us);
  }

  play->sent_frame  = jack_frame_time(client);
  play->sent_period = fl_recorder_period_count(rig.recorder);
  if (play->bundle) {
    assert_true(fl_osc_send_bundle(
      rig.osc, when, "/play", play->types, play->slot, play->velocity));
  } else if (play->types[1] == 'f') {
    assert_true(
      fl_osc_send(rig.osc, "/play", "if", play->slot, play->velocity));
  } else {
    assert_true(
      fl_osc_send(rig.osc, "/play", "ii", play->slot, (int)play->velocity));
  }
}

/* Wait for the onset on out_1 and `after` frames past it, or return -1. */
static long
wait_onset(uint32_t after, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  long          onset    = -1;
  while (onset < 0 && fl_now_ms() < deadline) {
    const uint32_t frames = fl_recorder_frames(rig.recorder);
    fl_recorder_wait(rig.recorder, frames + FL_TEST_PERIOD, 100);
    onset = fl_recorder_onset(rig.recorder, 0, ONSET_THRESHOLD, 0);
  }
  const int64_t left = deadline - fl_now_ms();
  if (onset < 0 || !fl_recorder_wait(rig.recorder,
                                     (uint32_t)onset + after,
                                     left > 0 ? (int)left : 1)) {
    fprintf(stderr,
            "no sound on out_1 (or not %u frames after it) within %d ms; "
            "%u frames recorded\n",
            after,
            timeout_ms,
            fl_recorder_frames(rig.recorder));
    return -1;
  }
  return onset;
}

/*
  Record `play` from a period before it is sent until `after` frames past
  its onset on out_1, and return the onset's index. A capture the server
  spoiled (an xrun, a skipped period) is made again, up to CAPTURE_ATTEMPTS
  times; each is reported.
*/
static int last_capture_attempts; // of the last capture(), for counters

static long
capture(Play* play, uint32_t after)
{
  for (int attempt = 1; attempt <= CAPTURE_ATTEMPTS; ++attempt) {
    last_capture_attempts = attempt;
    fl_recorder_start(rig.recorder);
    assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
    send_play(play);
    const long onset = wait_onset(after, 3000);
    fl_recorder_stop(rig.recorder);

    const unsigned glitches = fl_recorder_glitches(rig.recorder);
    if (!glitches) {
      assert_true(onset >= 0);
      return onset;
    }

    fprintf(stderr,
            "capture %d of /play %d: %u xrun(s) or skipped period(s) while "
            "recording; recording again\n",
            attempt,
            play->slot,
            glitches);
    fl_osc_send(rig.osc, "/stop", "");
    assert_true(fl_osc_wait_voices(rig.osc, 0, 2000));
  }
  fail_msg("no clean capture in %d attempts", CAPTURE_ATTEMPTS);
  return -1;
}

/* The absolute frame of recorded frame `index`. */
static jack_nframes_t
frame_at(long index)
{
  jack_nframes_t frame = 0;
  assert_true(fl_recorder_frame_at(rig.recorder, (uint32_t)index, &frame));
  return frame;
}

/* Load `path` and check the reply's frames, channels and source rate. */
static void
load(int         slot,
     const char* path,
     uint32_t    frames,
     unsigned    channels,
     unsigned    source_rate)
{
  assert_string_equal(CALL("/load", "is", slot, path),
                      text("/done ,siiii \"/load\" %d %u %u %u",
                           slot,
                           frames,
                           channels,
                           source_rate));
}

/*
  Play `slot` (a file holding `expected`) with a velocity and check that
  both outputs carry it times `gain` from the onset on, with silence before
  and after it.
*/
static void
assert_plays(int          slot,
             const float* expected,
             uint32_t     frames,
             unsigned     channels,
             const char*  types,
             double       velocity,
             float        gain)
{
  Play       play  = { slot, types, velocity, false, 0, 0U, 0U, 0U, 0U };
  const long onset = capture(&play, frames + FL_TEST_PERIOD);

  for (unsigned out = 0; out < 2; ++out) {
    const unsigned     source   = channels == 1 ? 0U : out;
    const float* const recorded = fl_recorder_channel(rig.recorder, out);
    for (long i = 0; i < onset; ++i) {
      if (recorded[i] != 0.0f) {
        fprintf(stderr,
                "out_%u frame %ld before the onset is %g\n",
                out + 1,
                i,
                (double)recorded[i]);
        fail();
      }
    }
    assert_int_equal(fl_recorder_compare(rig.recorder,
                                         out,
                                         onset,
                                         expected + source,
                                         frames,
                                         channels,
                                         gain,
                                         1e-5f),
                     -1);
    for (uint32_t i = 0; i < FL_TEST_PERIOD; ++i) {
      if (recorded[(size_t)onset + frames + i] != 0.0f) {
        fprintf(stderr,
                "out_%u frame %u after the end is %g\n",
                out + 1,
                i,
                (double)recorded[(size_t)onset + frames + i]);
        fail();
      }
    }
  }
}

static void
test_load_formats(void** state)
{
  (void)state;
  char pcm16[PATH_MAX];
  char float32[PATH_MAX];
  char flac[PATH_MAX];
  file_path("pcm16.wav", pcm16, sizeof(pcm16));
  file_path("float.wav", float32, sizeof(float32));
  file_path("pcm16.flac", flac, sizeof(flac));
  assert_true(
    fl_write_sample(pcm16, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 12345));
  assert_true(fl_write_sample(
    float32, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 2, 48000, 23456));
  assert_true(
    fl_write_sample(flac, FL_FILE_FLAC_PCM16, FL_SIGNAL_TONE, 2, 48000, 34567));

  load(0, pcm16, 12345, 1, 48000);
  load(1, float32, 23456, 2, 48000);
  load(2, flac, 34567, 2, 48000);

  // The decoded frames are the file's, as libsndfile reads them. A short
  // file keeps the capture short: the longer it is, the likelier the
  // dummy backend spoils it with an xrun of its own on a busy machine.
  char short_flac[PATH_MAX];
  file_path("short.flac", short_flac, sizeof(short_flac));
  assert_true(fl_write_sample(
    short_flac, FL_FILE_FLAC_PCM16, FL_SIGNAL_TONE, 2, 48000, TONE_FRAMES));
  load(2, short_flac, TONE_FRAMES, 2, 48000);
  uint32_t     frames   = 0;
  unsigned     channels = 0;
  float* const samples  = fl_read_sample(short_flac, &frames, &channels);
  assert_non_null(samples);
  assert_plays(2, samples, frames, channels, "if", 1.0, 1.0f);
  free(samples);
}

static void
test_load_resampled(void** state)
{
  (void)state;
  char path[PATH_MAX];
  file_path("dc-44100.wav", path, sizeof(path));
  assert_true(
    fl_write_sample(path, FL_FILE_WAV_PCM16, FL_SIGNAL_DC, 1, 44100, 44100));

  fl_osc_send(rig.osc, "/load", "is", 3, path);
  FlReply* const reply = fl_osc_wait(rig.osc, NULL, FL_TEST_REPLY_MS);
  assert_non_null(reply);
  char line[512];
  fprintf(
    stderr, "44.1 kHz load: %s\n", fl_reply_format(reply, line, sizeof(line)));
  assert_string_equal(reply->path, "/done");
  assert_string_equal(reply->types, "siiii");
  const int32_t frames = reply->argv[2].value.i;
  assert_between(frames, 48000 - 2, 48000 + 2);
  assert_int_equal(reply->argv[3].value.i, 1);
  assert_int_equal(reply->argv[4].value.i, 44100);
  fl_reply_free(reply);

  // A quarter of that (11025 frames, 12000 at 48 kHz) sounds for as long
  // as it says, at the file's level.
  char short_path[PATH_MAX];
  file_path("dc-44100-short.wav", short_path, sizeof(short_path));
  assert_true(fl_write_sample(
    short_path, FL_FILE_WAV_PCM16, FL_SIGNAL_DC, 1, 44100, 11025));
  fl_osc_send(rig.osc, "/load", "is", 3, short_path);
  FlReply* const short_reply = fl_osc_wait(rig.osc, NULL, FL_TEST_REPLY_MS);
  assert_non_null(short_reply);
  fprintf(stderr,
          "44.1 kHz load: %s\n",
          fl_reply_format(short_reply, line, sizeof(line)));
  assert_string_equal(short_reply->types, "siiii");
  const int32_t short_frames = short_reply->argv[2].value.i;
  fl_reply_free(short_reply);
  assert_between(short_frames, 12000 - 2, 12000 + 2);

  Play       play  = { 3, "if", 1.0, false, 0, 0U, 0U, 0U, 0U };
  const long onset = capture(&play, (uint32_t)short_frames + 1000);

  const float* const out = fl_recorder_channel(rig.recorder, 0);
  const float        dc  = fl_signal_value(FL_SIGNAL_DC, 0, 1, 0);
  for (long i = onset + 500; i < onset + short_frames - 500; ++i) {
    if (fabsf(out[i] - dc) > 1e-3f) {
      fprintf(stderr,
              "frame %ld after onset: %g, expected %g\n",
              i - onset,
              (double)out[i],
              (double)dc);
      fail();
    }
  }
  long last = onset;
  for (long i = onset; i < onset + short_frames + 1000; ++i) {
    if (fabsf(out[i]) > ONSET_THRESHOLD) {
      last = i;
    }
  }
  fprintf(stderr,
          "resampled DC sounds for %ld frames (reported %d)\n",
          last - onset + 1,
          short_frames);
  assert_between(last - onset + 1, short_frames - 64, short_frames + 64);
}

static void
test_play_gain(void** state)
{
  (void)state;
  char path[PATH_MAX];
  file_path("tone-float.wav", path, sizeof(path));
  assert_true(fl_write_sample(
    path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 1, 48000, TONE_FRAMES));
  load(4, path, TONE_FRAMES, 1, 48000);

  float tone[TONE_FRAMES];
  for (uint32_t i = 0; i < TONE_FRAMES; ++i) {
    tone[i] = fl_signal_value(FL_SIGNAL_TONE, i, TONE_FRAMES, 0);
  }

  assert_plays(4, tone, TONE_FRAMES, 1, "if", 0.8, 0.8f);
  assert_plays(4, tone, TONE_FRAMES, 1, "ii", 127, 1.0f);
  assert_plays(4, tone, TONE_FRAMES, 1, "ii", 64, 64.0f / 127.0f);
}

static void
test_stereo_channels(void** state)
{
  (void)state;
  char path[PATH_MAX];
  file_path("tone-stereo.wav", path, sizeof(path));
  assert_true(fl_write_sample(
    path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 2, 48000, TONE_FRAMES));
  load(5, path, TONE_FRAMES, 2, 48000);

  float tone[2 * TONE_FRAMES];
  for (uint32_t i = 0; i < TONE_FRAMES; ++i) {
    tone[2 * i]     = fl_signal_value(FL_SIGNAL_TONE, i, TONE_FRAMES, 0);
    tone[2 * i + 1] = fl_signal_value(FL_SIGNAL_TONE, i, TONE_FRAMES, 1);
  }

  // Left and right differ in every frame, so a swap or a mix would show.
  assert_plays(5, tone, TONE_FRAMES, 2, "if", 0.5, 0.5f);
}

/* Frames from a to b, as a signed distance on the wrapping frame clock. */
static int32_t
frames_between(jack_nframes_t a, jack_nframes_t b)
{
  return (int32_t)(b - a);
}

static void
load_click(int slot)
{
  char path[PATH_MAX];
  file_path("click.wav", path, sizeof(path));
  assert_true(
    fl_write_sample(path, FL_FILE_WAV_FLOAT, FL_SIGNAL_CLICK, 1, 48000, 64));
  load(slot, path, 64, 1, 48000);
}

static void
print_frames(const char* title, const int32_t* frames, int count)
{
  int32_t worst = 0;
  int64_t sum   = 0;
  fprintf(stderr, "%s:", title);
  for (int i = 0; i < count; ++i) {
    fprintf(stderr, " %d", frames[i]);
    worst = abs(frames[i]) > abs(worst) ? frames[i] : worst;
    sum += frames[i];
  }
  fprintf(
    stderr, " (mean %.1f, largest magnitude %d)\n", (double)sum / count, worst);
}

/*
  Check that a /play sent while `play->sent_period` periods were recorded
  started at the first frame of the next period or the one after (the
  send may fall at the very end of a period), and return the frames from
  the send (the recorder's jack_frame_time()) to the onset.
*/
static int32_t
assert_next_period(const Play* play, long onset, const char* what)
{
  const long    period  = fl_recorder_period_of(rig.recorder, (uint32_t)onset);
  const long    waited  = period - (long)play->sent_period;
  const long    offset  = onset % (long)FL_TEST_PERIOD;
  const int32_t latency = frames_between(play->sent_frame, frame_at(onset));
  if (waited < 0 || waited > 1 || offset != 0) {
    fprintf(stderr,
            "%s: sent with %u periods recorded, sounded in period %ld at "
            "offset %ld (%d frames after jack_frame_time() at send)\n",
            what,
            play->sent_period,
            period,
            offset,
            latency);
  }
  assert_between(waited, 0, 1);
  assert_int_equal(offset, 0);
  return latency;
}

/*
  From /play to sound. The contract says "at the next period", so a voice
  starts on the first frame of the period after the one the /play arrived
  in: at most two periods after the send. That is checked by counting
  periods, which no clock estimate can blur. The frames from
  jack_frame_time() at send to the onset are reported and held to two
  periods too; on a busy machine JACK's estimate of "now" can run ahead of
  the dummy driver's periods, which makes some of them small or even
  negative, so only the upper bound is a check of the daemon.
*/
static void
test_play_latency(void** state)
{
  (void)state;
  load_click(6);

  enum { TRIALS = 20 };
  int32_t latency[TRIALS];
  for (int trial = 0; trial < TRIALS; ++trial) {
    Play       play  = { 6, "if", 1.0, false, 0, 0U, 0U, 0U, 0U };
    const long onset = capture(&play, 64);
    latency[trial]   = assert_next_period(&play, onset, "/play");
  }

  print_frames("/play to onset in frames (period 256)", latency, TRIALS);
  for (int trial = 0; trial < TRIALS; ++trial) {
    assert_true(latency[trial] <= 2 * (int32_t)FL_TEST_PERIOD);
  }
}

/*
  A /play in a bundle timetagged 100 ms ahead starts on the frame of that
  time. The time is read as the daemon reads it (send_play()); its frame is
  then found two ways:

  - afterwards, with the JACK timing (jack_get_cycle_times()) of the
    recorded period that holds that time: the mapping the contract asks of
    the daemon's RT thread. This must be met to ±1 frame.
  - at send time, with jack_time_to_frames() of the recorder's client. This
    extrapolates the clock estimate of that moment 100 ms (19 periods)
    ahead, so changes of JACK's estimate over those periods show up in it:
    up to 9 frames were seen on the dummy backend with the suite running
    in parallel on 2 cores, in trials where the first mapping was exact. It
    is reported and held to ±32 frames (0.7 ms), which still catches a
    daemon that ignores the timetag or lands a period off.
*/
static void
test_timetag(void** state)
{
  (void)state;
  load_click(7);
  FlDaemonStatus before;
  assert_true(fl_osc_status(rig.osc, &before));

  enum { TRIALS = 10 };
  int32_t in_period[TRIALS];
  int32_t at_send[TRIALS];
  for (int trial = 0; trial < TRIALS; ++trial) {
    Play                 play  = { 7, "if", 1.0, true, 100000, 0U, 0U, 0U, 0U };
    const long           onset = capture(&play, 64);
    const jack_nframes_t sounded = frame_at(onset);

    jack_nframes_t expected = 0;
    assert_true(
      fl_recorder_time_to_frame(rig.recorder, play.start_usecs, &expected));
    in_period[trial] = frames_between(expected, sounded);
    at_send[trial]   = frames_between(play.predicted, sounded);
  }

  print_frames("timetag +100 ms: onset - frame by that period's JACK timing",
               in_period,
               TRIALS);
  print_frames(
    "timetag +100 ms: onset - jack_time_to_frames() at send", at_send, TRIALS);
  for (int trial = 0; trial < TRIALS; ++trial) {
    assert_between(in_period[trial], -1, 1);
    assert_between(at_send[trial], -32, 32);
  }

  FlDaemonStatus after;
  assert_true(fl_osc_status(rig.osc, &after));
  assert_int_equal(after.late_bundles, before.late_bundles);
}

static void
test_timetag_immediate_and_late(void** state)
{
  (void)state;
  load_click(7);
  FlDaemonStatus before;
  assert_true(fl_osc_status(rig.osc, &before));

  // "Immediately" (timetag 1) plays at the next period and is not late.
  Play    immediate = { 7, "if", 1.0, true, 0, 0U, 0U, 0U, 0U };
  long    onset     = capture(&immediate, 64);
  int32_t latency   = assert_next_period(&immediate, onset, "immediate");
  fprintf(stderr, "immediate bundle: onset %d frames after sending\n", latency);
  assert_true(latency <= 2 * (int32_t)FL_TEST_PERIOD);

  FlDaemonStatus middle;
  assert_true(fl_osc_status(rig.osc, &middle));
  assert_int_equal(middle.late_bundles, before.late_bundles);

  // 50 ms in the past: plays at the next period and counts as late, once
  // per bundle sent (a spoiled capture sends it again).
  Play late = { 7, "if", 1.0, true, -50000, 0U, 0U, 0U, 0U };
  onset     = capture(&late, 64);
  latency   = assert_next_period(&late, onset, "late bundle");
  fprintf(stderr, "late bundle: onset %d frames after sending\n", latency);
  assert_true(latency <= 2 * (int32_t)FL_TEST_PERIOD);

  FlDaemonStatus after;
  assert_true(fl_osc_status(rig.osc, &after));
  assert_int_equal(after.late_bundles,
                   middle.late_bundles + last_capture_attempts);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_load_formats, test_setup),
    cmocka_unit_test_setup(test_load_resampled, test_setup),
    cmocka_unit_test_setup(test_play_gain, test_setup),
    cmocka_unit_test_setup(test_stereo_channels, test_setup),
    cmocka_unit_test_setup(test_play_latency, test_setup),
    cmocka_unit_test_setup(test_timetag, test_setup),
    cmocka_unit_test_setup(test_timetag_immediate_and_late, test_setup),
  };

  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  return fl_rig_finish(&rig, failures);
}
