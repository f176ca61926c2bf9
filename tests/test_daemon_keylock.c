/*
  Key lock and BPM lock through the daemon, on a real JACK server, as a
  JACK client of our own records flitzid's outputs.

  The loop of most tests is 2 s of stereo (4 beats at its bpm 120): a
  1 kHz sine on the left (2000 whole cycles, so the loop is seamless) and a
  click on the right at its first frame, which marks every pass. At tempo
  126 a BPM-locked voice plays at 126 / 120 = 1.05: a pass lasts
  96000 / 1.05 = 91428.57 frames, and with keylock 1 the loader renders the
  loop with Rubber Band at that ratio, so the sine stays at 1000 Hz.

  - pitch: once the render is there (/stats stretch_misses, polled until
    it stops growing), the recorded sine is 1000 Hz +- 0.5 Hz (fitted: the
    phase of 20 ms blocks demodulated at the guess, a straight line through
    it), no miss is counted while recording, and the passes have the
    locked length: pass k's click, found by cross-correlation with pass 0's
    (refined to a fraction of a frame), lies k x 91428.57 frames after it,
    to 1 frame; within one pass the sine is 1000 Hz too, and no step
    between two frames at a seam is larger than 1.5 x the largest inside
    a pass (the render's end fades into what leads into its start). With
    keylock 0 the voice plays plain varispeed: 1050 Hz, the same passes.
  - a new region on a key-locked pad that plays gets a render of its own
    (the misses stop growing again), as a new tempo does.
  - buffer size: jack_bufsize 1024 and back to 256 while three key-locked
    loops play: flitzid keeps running, every pad's /slot/get is unchanged,
    the loops sound at 1024 and after (SooperLooper crashed on a buffer-size
    change), and no miss is counted (a render does not depend on the
    period).
  - --transport jack, jack_transport as timebase master at 128 BPM (driven
    through its stdin), killed with SIGTERM while a key-locked loop plays:
    /transport.reply's source goes back to "internal" and the recording
    has no run of silence longer than a period after the loop started.
  - freewheel (jack_freewheel y, then n) while the loops play: the same
    checks as for the buffer size. Last, as after freewheeling opening and
    closing clients on the server can block.

  `test_daemon_keylock --stress` (suite 'stress') runs the long one alone,
  on a server of its own: a BPM-locked loop of 2 bars at bpm 120 with a
  click at its first frame, at tempo 126.3 (1.0525), launched on a beat
  after a timetagged downbeat, recorded for 10 minutes of audio with the
  server in freewheel; every pass's click must be within 1 frame of
  launch + k x pass, where launch is the grid line (exact, from beat 0's
  recorded frame) and a pass 8 beats at 126.3 BPM (182422.8 frames).

  A capture that the server spoiled (an xrun, a skipped period) says
  nothing about flitzid and is made again.
*/
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lo/lo.h>
#include <sndfile.h>

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define RATE FL_TEST_RATE
#define PERIOD FL_TEST_PERIOD
#define CAPTURE_ATTEMPTS 4

#define LOOP_FRAMES (2 * RATE) /* 4 beats at 120 BPM */
#define LOOP_BPM 120.0
#define TEMPO 126.0 /* ratio 1.05 */
#define RATIO (TEMPO / LOOP_BPM)
#define PASS_FRAMES (LOOP_FRAMES / RATIO)

#define SLOT_SINE 0
#define SLOT_TONE 1
#define SLOT_QUIET 2
#define SLOT_EMPTY_SET 9 /* an empty pad with settings of its own */
#define SLOTS 32         /* flitzid's default */

/* The stress test: 2 bars at 120 BPM, at 126.3 BPM for 10 minutes. */
#define STRESS_TEMPO 126.3
#define STRESS_LOOP_FRAMES (4 * RATE)
#define STRESS_SECONDS 600

static FlRig rig;

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

static const char* text(const char* format, ...)
  __attribute__((format(printf, 1, 2)));

static const char*
text(const char* format, ...)
{
  static char buffer[4][1024];
  static int  next = 0;
  next             = (next + 1) % 4;
  va_list args;
  va_start(args, format);
  vsnprintf(buffer[next], sizeof(buffer[next]), format, args);
  va_end(args);
  return buffer[next];
}

/* A message that must be accepted without a reply: the next is /pong. */
static void
send_ok_at(int line, const char* path, const char* reply)
{
  if (strncmp(reply, "/pong ", 6)) {
    fprintf(stderr, "line %d: %s answered %s\n", line, path, reply);
    fail();
  }
}

#define SEND_OK(osc, path, ...)                                             \
  do {                                                                      \
    assert_true(fl_osc_send((osc), (path), __VA_ARGS__));                   \
    send_ok_at(                                                             \
      __LINE__, (path), fl_osc_call((osc), FL_TEST_REPLY_MS, "/ping", "")); \
  } while (0)

/* ---- Files ---- */

/* The loop: a 1 kHz sine at 0.5 (left), a click of 0.8 at frame 0 (right). */
static void
write_sine_loop(const char* path)
{
  SF_INFO info        = { 0 };
  info.channels       = 2;
  info.samplerate     = (int)RATE;
  info.format         = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  float* const frames = (float*)calloc(2U * (size_t)LOOP_FRAMES, sizeof(float));
  assert_non_null(frames);
  for (uint32_t i = 0; i < LOOP_FRAMES; ++i) {
    frames[2U * i] = (float)(0.5 * sin(2.0 * M_PI * 1000.0 * i / RATE));
  }
  frames[1]           = 0.8f;
  SNDFILE* const file = sf_open(path, SFM_WRITE, &info);
  assert_non_null(file);
  assert_int_equal(sf_writef_float(file, frames, LOOP_FRAMES), LOOP_FRAMES);
  sf_close(file);
  free(frames);
}

/* ---- OSC ---- */

static uint64_t
stretch_misses(FlOsc* osc)
{
  assert_true(fl_osc_send(osc, "/stats", ""));
  FlReply* const reply = fl_osc_wait(osc, "/stats.reply", FL_TEST_REPLY_MS);
  assert_non_null(reply);
  assert_string_equal(reply->types, "hhhhhhhhh");
  const uint64_t misses = (uint64_t)reply->argv[8].value.h;
  fl_reply_free(reply);
  return misses;
}

/* Poll stretch_misses until it has not grown for 0.5 s (a voice without its
   render adds 94 blocks in that time); returns it. */
static uint64_t
wait_renders(FlOsc* osc, int timeout_ms)
{
  const int64_t start    = fl_now_ms();
  int64_t       since    = start;
  uint64_t      misses   = stretch_misses(osc);
  uint64_t      previous = misses;
  while (fl_now_ms() - since < 500) {
    if (fl_now_ms() - start > timeout_ms) {
      fprintf(stderr,
              "stretch_misses still growing after %d ms: %llu\n",
              timeout_ms,
              (unsigned long long)misses);
      fail();
    }
    fl_sleep_ms(100);
    misses = stretch_misses(osc);
    if (misses != previous) {
      previous = misses;
      since    = fl_now_ms();
    }
  }
  fprintf(stderr,
          "renders there after %lld ms (stretch_misses %llu)\n",
          (long long)(since - start),
          (unsigned long long)misses);
  return misses;
}

static void
transport_reply(FlOsc* osc, char* source, size_t source_size, double* bpm)
{
  assert_true(fl_osc_send(osc, "/transport", ""));
  FlReply* const reply = fl_osc_wait(osc, "/transport.reply", FL_TEST_REPLY_MS);
  assert_non_null(reply);
  assert_string_equal(reply->types, "sfidi");
  snprintf(source, source_size, "%s", reply->argv[0].s);
  *bpm = reply->argv[1].value.f;
  fl_reply_free(reply);
}

/* Poll /transport until its source is `source`; false after 3 s. */
static bool
wait_source(FlOsc* osc, const char* source, double* bpm)
{
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  char          now[32];
  do {
    transport_reply(osc, now, sizeof(now), bpm);
    if (!strcmp(now, source)) {
      return true;
    }
    fl_sleep_ms(10);
  } while (fl_now_ms() < deadline);
  fprintf(stderr, "/transport source is %s, not %s\n", now, source);
  return false;
}

/* /slot/get through a liblo client of its own: /slot/settings has more
   arguments than the harness's FlReply keeps. */
typedef struct {
  bool got;
  char text[4096];
} Settings;

static int
on_settings(const char* path,
            const char* types,
            lo_arg**    argv,
            int         argc,
            lo_message  message,
            void*       data)
{
  (void)message;
  Settings* const settings = (Settings*)data;
  if (settings->got) {
    return 0;
  }
  settings->got = true;
  size_t length = (size_t)snprintf(
    settings->text, sizeof(settings->text), "%s ,%s", path, types);
  for (int i = 0; i < argc && length < sizeof(settings->text); ++i) {
    char* const  end  = settings->text + length;
    const size_t left = sizeof(settings->text) - length;
    int          n    = 0;
    /* Arguments are 4-byte aligned in the packet: copy, do not cast. */
    if (types[i] == 'i') {
      int32_t value = 0;
      memcpy(&value, argv[i], sizeof(value));
      n = snprintf(end, left, " %d", value);
    } else if (types[i] == 'f') {
      float value = 0.0f;
      memcpy(&value, argv[i], sizeof(value));
      n = snprintf(end, left, " %.9g", (double)value);
    } else if (types[i] == 's') {
      n = snprintf(end, left, " \"%s\"", (const char*)argv[i]);
    } else {
      n = snprintf(end, left, " %c", types[i]);
    }
    length += n > 0 ? (size_t)n : 0U;
  }
  return 0;
}

/* Every pad's /slot/settings, one after the other, into `all`. */
static void
all_settings(int daemon_port, char* all, size_t all_size)
{
  char port[16];
  snprintf(port, sizeof(port), "%d", daemon_port);
  Settings         settings = { false, "" };
  lo_server const  server   = lo_server_new_with_proto(NULL, LO_UDP, NULL);
  lo_address const daemon   = lo_address_new("127.0.0.1", port);
  assert_non_null(server);
  assert_non_null(daemon);
  lo_server_enable_coercion(server, 0);
  lo_server_add_method(server, NULL, NULL, on_settings, &settings);
  size_t length = 0U;
  all[0]        = '\0';
  for (int slot = 0; slot < SLOTS; ++slot) {
    settings.got = false;
    assert_true(
      lo_send_from(daemon, server, LO_TT_IMMEDIATE, "/slot/get", "i", slot) >=
      0);
    const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
    while (!settings.got && fl_now_ms() < deadline) {
      lo_server_recv_noblock(server, 50);
    }
    assert_true(settings.got);
    assert_true(!strncmp(settings.text, "/slot/settings ,", 16));
    length +=
      (size_t)snprintf(all + length, all_size - length, "%s\n", settings.text);
    assert_true(length < all_size);
  }
  lo_address_free(daemon);
  lo_server_free(server);
}

/* ---- Measurements ---- */

/*
  The frequency of the sine in `y`: demodulated at `guess` in blocks of
  20 ms (whole cycles of 1000 and 1050 Hz), the blocks' phases unwrapped
  and fitted with a straight line; its slope is the distance from the
  guess (within +-25 Hz).
*/
static double
fit_frequency(const float* y, uint32_t count, double guess)
{
  enum { BLOCK = 960 };
  const double w      = 2.0 * M_PI * guess / RATE;
  double       before = 0.0;
  double       sum_t = 0.0, sum_p = 0.0, sum_tt = 0.0, sum_tp = 0.0;
  uint32_t     blocks = 0U;
  for (uint32_t start = 0U; start + BLOCK <= count; start += BLOCK) {
    double re = 0.0;
    double im = 0.0;
    for (uint32_t n = start; n < start + BLOCK; ++n) {
      re += y[n] * cos(w * n);
      im -= y[n] * sin(w * n);
    }
    double phase = atan2(im, re);
    if (blocks > 0U) {
      phase += 2.0 * M_PI * floor((before - phase) / (2.0 * M_PI) + 0.5);
    }
    before         = phase;
    const double t = start + BLOCK / 2.0;
    sum_t += t;
    sum_p += phase;
    sum_tt += t * t;
    sum_tp += t * phase;
    ++blocks;
  }
  const double slope =
    (blocks * sum_tp - sum_t * sum_p) / (blocks * sum_tt - sum_t * sum_t);
  return guess + slope * RATE / (2.0 * M_PI);
}

/* Cross-correlation of the frames around `at` with the template, refined
   to a fraction of a frame through a parabola. */
static double
best_shift(const float* y,
           long         frames,
           const float* pattern,
           long         width,
           double       at,
           long         search)
{
  const long centre = lround(at);
  double     score[64];
  long       best = 0;
  assert_true(search < 32);
  for (long s = -search; s <= search; ++s) {
    double sum = 0.0;
    for (long i = 0; i < width; ++i) {
      const long index = centre + s - width / 2 + i;
      sum += index >= 0 && index < frames ? pattern[i] * y[index] : 0.0;
    }
    score[s + search] = sum;
    best              = sum > score[best + search] ? s : best;
  }
  double refine = 0.0;
  if (best > -search && best < search) {
    const double a = score[best + search - 1];
    const double b = score[best + search];
    const double c = score[best + search + 1];
    refine = a - 2.0 * b + c < 0.0 ? 0.5 * (a - c) / (a - 2.0 * b + c) : 0.0;
  }
  return (double)(centre + best) + refine;
}

/*
  The passes of the click on `y`: pass 0's click is the largest |sample|
  in the first pass; each later one is where a window of 256 frames around
  it correlates best near pass 0 + k x pass. Returns the largest
  |place - (pass 0 + k x pass)|, after printing each; `*passes` is how many
  were measured.
*/
static double
pass_error(const float* y, long frames, double pass, int* passes)
{
  enum { WIDTH = 256, SEARCH = 12 };
  long first = WIDTH;
  for (long i = WIDTH; i < (long)pass + WIDTH && i < frames; ++i) {
    first = fabsf(y[i]) > fabsf(y[first]) ? i : first;
  }
  float pattern[WIDTH];
  for (long i = 0; i < WIDTH; ++i) {
    pattern[i] = y[first - WIDTH / 2 + i];
  }
  const double zero =
    best_shift(y, frames, pattern, WIDTH, (double)first, SEARCH);
  double worst = 0.0;
  *passes      = 0;
  fprintf(stderr, "  click of pass 0 at %.2f (%.3f); passes:", zero, y[first]);
  for (int k = 1; zero + k * pass + WIDTH + SEARCH < (double)frames; ++k) {
    const double want = zero + k * pass;
    const double got  = best_shift(y, frames, pattern, WIDTH, want, SEARCH);
    fprintf(stderr, " %+.2f", got - want);
    worst = fabs(got - want) > worst ? fabs(got - want) : worst;
    ++*passes;
  }
  fprintf(stderr, " (frames off k x %.2f)\n", pass);
  return worst;
}

/* The largest |sample| of recorded frames [from, to) of `channel`. */
static float
peak_of(const FlRecorder* recorder,
        unsigned          channel,
        uint32_t          from,
        uint32_t          to)
{
  const float* const y    = fl_recorder_channel(recorder, channel);
  float              peak = 0.0f;
  for (uint32_t i = from; i < to; ++i) {
    peak = fabsf(y[i]) > peak ? fabsf(y[i]) : peak;
  }
  return peak;
}

/* The longest run of silent frames (|x| < 1e-6) in [from, to). */
static uint32_t
longest_silence(const float* y, uint32_t from, uint32_t to, uint32_t* at)
{
  uint32_t longest = 0U;
  uint32_t run     = 0U;
  for (uint32_t i = from; i < to; ++i) {
    run = fabsf(y[i]) < 1e-6f ? run + 1U : 0U;
    if (run > longest) {
      longest = run;
      *at     = i + 1U - run;
    }
  }
  return longest;
}

/* Record `frames` frames from now; false if the capture glitched. */
static bool
capture(FlRecorder* recorder, uint32_t frames)
{
  fl_recorder_start(recorder);
  assert_true(fl_recorder_wait(recorder, frames, (int)(frames / 48U) + 5000));
  fl_recorder_stop(recorder);
  const unsigned glitches = fl_recorder_glitches(recorder);
  if (glitches) {
    fprintf(
      stderr, "%u xrun(s) or skipped period(s); recording again\n", glitches);
  }
  return glitches == 0U;
}

/* Run a JACK tool on the rig's server; its exit status. */
static int
run_tool(const char* const* argv)
{
  char*     out = NULL;
  char*     err = NULL;
  const int status =
    fl_run_capture(&rig.env, argv, rig.jackd.name, &out, &err, 10000);
  fprintf(stderr,
          "%s %s: status %d%s%s",
          argv[0],
          argv[1],
          status,
          out && *out ? "; " : "",
          out ? out : "");
  if (status != 0 && err) {
    fprintf(stderr, "%s", err);
  }
  fprintf(stderr, "\n");
  free(out);
  free(err);
  return status;
}

/* ---- Setup ---- */

static void
load(FlOsc* osc, int slot, const char* path, uint32_t frames)
{
  assert_string_equal(
    fl_osc_call(osc, FL_TEST_REPLY_MS, "/load", "is", slot, path),
    text("/done ,siiii \"/load\" %d %u 2 48000", slot, frames));
}

static int
group_setup(void** state)
{
  (void)state;
  return fl_rig_start(&rig, "keylock", NULL, true) ? 0 : -1;
}

static int
stress_setup(void** state)
{
  (void)state;
  return fl_rig_start(&rig, "keylock-stress", NULL, false) ? 0 : -1;
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
  return 0;
}

/* Three key-locked loops at tempo 126, each pad with settings of its own,
   and an empty pad with some; returns stretch_misses once their renders
   are there. */
static uint64_t
play_three(void)
{
  char path[PATH_MAX];
  fl_env_path(&rig.env, "sine.wav", path, sizeof(path));
  write_sine_loop(path);
  load(rig.osc, SLOT_SINE, path, LOOP_FRAMES);
  load(rig.osc, SLOT_QUIET, path, LOOP_FRAMES);
  fl_env_path(&rig.env, "tone.wav", path, sizeof(path));
  assert_true(fl_write_sample(
    path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 2, RATE, LOOP_FRAMES));
  load(rig.osc, SLOT_TONE, path, LOOP_FRAMES);
  SEND_OK(rig.osc,
          "/slot/set",
          "isssfsi",
          SLOT_SINE,
          "mode",
          "loop",
          "bpm",
          LOOP_BPM,
          "keylock",
          1);
  SEND_OK(rig.osc,
          "/slot/set",
          "isssfsisf",
          SLOT_TONE,
          "mode",
          "loop",
          "bpm",
          LOOP_BPM,
          "keylock",
          1,
          "pan",
          -0.25);
  SEND_OK(rig.osc,
          "/slot/set",
          "isssfsisfsfsf",
          SLOT_QUIET,
          "mode",
          "loop",
          "bpm",
          LOOP_BPM,
          "keylock",
          1,
          "gain",
          -6.0,
          "start",
          0.5,
          "end",
          1.5);
  SEND_OK(rig.osc,
          "/slot/set",
          "isfsisf",
          SLOT_EMPTY_SET,
          "gain",
          -12.0,
          "keylock",
          1,
          "rate",
          1.25);
  SEND_OK(rig.osc, "/tempo", "d", TEMPO);
  SEND_OK(rig.osc, "/bpmlock", "i", 1);
  SEND_OK(rig.osc, "/quantize", "s", "off");
  for (int slot = 0; slot < 3; ++slot) {
    assert_true(fl_osc_send(rig.osc, "/play", "if", slot, 1.0));
  }
  assert_true(fl_osc_wait_voices(rig.osc, 3, FL_TEST_REPLY_MS));
  return wait_renders(rig.osc, 30000);
}

/* flitzid runs, has its three voices, every pad as before, and the loops
   sound: `what` names the moment. */
static void
assert_unharmed(const char* before, uint64_t misses, const char* what)
{
  static char after[SLOTS * 1024];
  assert_true(fl_daemon_running(&rig.daemon));
  all_settings(rig.daemon.port, after, sizeof(after));
  if (strcmp(before, after)) {
    fprintf(stderr,
            "%s: /slot/get changed\nbefore:\n%s\nafter:\n%s",
            what,
            before,
            after);
    fail();
  }
  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  assert_int_equal(status.voices_active, 3);
  fl_recorder_start(rig.recorder);
  assert_true(fl_recorder_wait(rig.recorder, RATE, 6000));
  fl_recorder_stop(rig.recorder);
  const float    peak = peak_of(rig.recorder, 0, 0, RATE);
  uint32_t       at   = 0U;
  const uint32_t silence =
    longest_silence(fl_recorder_channel(rig.recorder, 0), 0, RATE, &at);
  const uint64_t now = stretch_misses(rig.osc);
  fprintf(stderr,
          "%s: running, %d voices, pads unchanged; a second recorded: peak "
          "%.3f, longest silence %u frames; stretch_misses %+lld\n",
          what,
          status.voices_active,
          (double)peak,
          silence,
          (long long)(now - misses));
  assert_true(peak > 0.1f);
  assert_true(now == misses);
}

/* ---- Tests ---- */

/* The pitch kept with key lock, moved without, and the locked passes. */
static void
test_pitch(void** state)
{
  (void)state;
  char path[PATH_MAX];
  fl_env_path(&rig.env, "sine.wav", path, sizeof(path));
  write_sine_loop(path);
  load(rig.osc, SLOT_SINE, path, LOOP_FRAMES);
  SEND_OK(rig.osc,
          "/slot/set",
          "isssfsi",
          SLOT_SINE,
          "mode",
          "loop",
          "bpm",
          LOOP_BPM,
          "keylock",
          1);
  SEND_OK(rig.osc, "/tempo", "d", TEMPO);
  SEND_OK(rig.osc, "/bpmlock", "i", 1);
  SEND_OK(rig.osc, "/quantize", "s", "off");
  const uint64_t before = stretch_misses(rig.osc);
  assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_SINE, 1.0));
  assert_true(fl_osc_wait_voices(rig.osc, 1, FL_TEST_REPLY_MS));
  const uint64_t misses = wait_renders(rig.osc, 30000);
  /* It played unrendered until the render came, and said so. */
  assert_true(misses > before);

  const uint32_t frames = 8U * RATE;
  for (int keylock = 1; keylock >= 0; --keylock) {
    const double want = keylock ? 1000.0 : 1000.0 * RATIO;
    if (!keylock) {
      SEND_OK(rig.osc, "/slot/set", "isi", SLOT_SINE, "keylock", 0);
    }
    int attempt = 1;
    while (!capture(rig.recorder, frames) && attempt < CAPTURE_ATTEMPTS) {
      ++attempt;
    }
    assert_true(attempt < CAPTURE_ATTEMPTS ||
                fl_recorder_glitches(rig.recorder) == 0U);
    if (keylock) {
      assert_true(stretch_misses(rig.osc) == misses); /* render all along */
    }
    const float* const left  = fl_recorder_channel(rig.recorder, 0);
    const float* const right = fl_recorder_channel(rig.recorder, 1);
    const double       hz =
      fit_frequency(left + RATE / 2, frames - RATE, keylock ? 1000.0 : want);
    fprintf(stderr,
            "keylock %d at tempo %g (ratio %g): %.4f Hz (want %g +- 0.5)\n",
            keylock,
            TEMPO,
            RATIO,
            hz,
            want);
    assert_true(fabs(hz - want) <= 0.5);
    /* For the record: the largest step between two frames of the sine at
       a seam (where pass k's click is) and elsewhere; a 1 kHz sine at 0.5
       steps at most 0.065. */
    long first = RATE;
    for (long i = RATE; i < RATE + (long)PASS_FRAMES; ++i) {
      first = fabsf(right[i]) > fabsf(right[first]) ? i : first;
    }
    float at_seams = 0.0f;
    float inside   = 0.0f;
    for (uint32_t i = 1U; i < frames; ++i) {
      const double into =
        fmod((double)i - (double)first + 64.0 * PASS_FRAMES, PASS_FRAMES);
      const float step = fabsf(left[i] - left[i - 1U]);
      if (into < 200.0 || into > PASS_FRAMES - 200.0) {
        at_seams = step > at_seams ? step : at_seams;
      } else {
        inside = step > inside ? step : inside;
      }
    }
    /* Within one pass, away from its seams. */
    const long   pass_from = first + 2000;
    const double in_pass   = fit_frequency(
      left + pass_from, (uint32_t)PASS_FRAMES - 4000U, keylock ? 1000.0 : want);
    fprintf(stderr,
            "  within one pass: %.4f Hz; largest step between frames of "
            "the sine: %.3f within 200 frames of a seam, %.3f elsewhere\n",
            in_pass,
            (double)at_seams,
            (double)inside);
    assert_true(fabs(in_pass - want) <= 0.5);
    /* The seam is as smooth as the rest: no click at every pass. */
    assert_true(at_seams <= 1.5f * inside);
    int          passes = 0;
    const double worst  = pass_error(right, frames, PASS_FRAMES, &passes);
    fprintf(stderr,
            "  %d passes, each within %.2f frames of k x %.2f\n",
            passes,
            worst,
            PASS_FRAMES);
    assert_true(passes >= 3);
    assert_true(worst <= 1.0);
  }
}

/* A new region on a key-locked pad that plays, at the same tempo, gets
   its own render: the misses stop growing again and the pitch is kept. */
static void
test_new_region(void** state)
{
  (void)state;
  char path[PATH_MAX];
  fl_env_path(&rig.env, "sine.wav", path, sizeof(path));
  write_sine_loop(path);
  load(rig.osc, SLOT_SINE, path, LOOP_FRAMES);
  SEND_OK(rig.osc,
          "/slot/set",
          "isssfsi",
          SLOT_SINE,
          "mode",
          "loop",
          "bpm",
          LOOP_BPM,
          "keylock",
          1);
  SEND_OK(rig.osc, "/tempo", "d", TEMPO);
  SEND_OK(rig.osc, "/bpmlock", "i", 1);
  SEND_OK(rig.osc, "/quantize", "s", "off");
  assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_SINE, 1.0));
  assert_true(fl_osc_wait_voices(rig.osc, 1, FL_TEST_REPLY_MS));
  const uint64_t first = wait_renders(rig.osc, 30000);
  SEND_OK(rig.osc, "/slot/set", "isfsf", SLOT_SINE, "start", 0.5, "end", 1.5);
  const uint64_t second = wait_renders(rig.osc, 30000);
  fprintf(stderr,
          "after the region changed: %llu more blocks without a render\n",
          (unsigned long long)(second - first));
  assert_true(second > first);
  int attempt = 1;
  while (!capture(rig.recorder, 2U * RATE) && attempt < CAPTURE_ATTEMPTS) {
    ++attempt;
  }
  assert_true(stretch_misses(rig.osc) == second);
  /* The median of nine fits of 10000 frames: a pass is 45714, so most
     windows hold no seam (whose phase step a fit across it would count). */
  double fits[9];
  for (int i = 0; i < 9; ++i) {
    fits[i] = fit_frequency(
      fl_recorder_channel(rig.recorder, 0) + i * 10000, 10000, 1000.0);
    for (int j = i; j > 0 && fits[j] < fits[j - 1]; --j) {
      const double swap = fits[j];
      fits[j]           = fits[j - 1];
      fits[j - 1]       = swap;
    }
  }
  const double hz = fits[4];
  fprintf(stderr,
          "the new region at tempo %g: %.4f Hz (median of 9 fits, %.4f to "
          "%.4f)\n",
          TEMPO,
          hz,
          fits[0],
          fits[8]);
  assert_true(fabs(hz - 1000.0) <= 0.5);
}

/* jack_bufsize 1024, then 256, under three key-locked loops. */
static void
test_buffer_size(void** state)
{
  (void)state;
  const uint64_t misses = play_three();
  static char    before[SLOTS * 1024];
  all_settings(rig.daemon.port, before, sizeof(before));
  assert_unharmed(before, misses, "at period 256");

  static const char* const to_1024[] = { "jack_bufsize", "1024", NULL };
  static const char* const to_256[]  = { "jack_bufsize", "256", NULL };
  assert_int_equal(run_tool(to_1024), 0);
  fl_sleep_ms(500);
  /* The recorder sees the new period. */
  fl_recorder_start(rig.recorder);
  assert_true(fl_recorder_wait(rig.recorder, 8U * 1024U, 3000));
  fl_recorder_stop(rig.recorder);
  const uint32_t periods = fl_recorder_period_count(rig.recorder);
  fprintf(stderr,
          "after jack_bufsize 1024: %u frames in %u periods\n",
          fl_recorder_frames(rig.recorder),
          periods);
  assert_true(periods > 0U &&
              fl_recorder_frames(rig.recorder) / periods == 1024U);
  assert_unharmed(before, misses, "at period 1024");

  assert_int_equal(run_tool(to_256), 0);
  fl_sleep_ms(500);
  assert_unharmed(before, misses, "back at period 256");
}

/* --transport jack: the timebase master goes away mid-play. */
static void
test_transport_master_gone(void** state)
{
  (void)state;
  char name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int port = fl_env_port(&rig.env);
  assert_true(port > 0);
  static const char* const args[] = { "--transport", "jack", NULL };
  FlDaemon                 follower;
  assert_true(
    fl_daemon_start(&follower, &rig.env, rig.jackd.name, name, port, args));
  FlOsc* const      osc = fl_osc_new(port);
  FlRecorder* const recorder =
    fl_recorder_new(rig.jackd.name, name, 1, 20U * RATE);
  assert_non_null(osc);
  assert_non_null(recorder);
  char path[PATH_MAX];
  fl_env_path(&rig.env, "sine.wav", path, sizeof(path));
  write_sine_loop(path);
  load(osc, SLOT_SINE, path, LOOP_FRAMES);
  SEND_OK(osc,
          "/slot/set",
          "isssfsi",
          SLOT_SINE,
          "mode",
          "loop",
          "bpm",
          LOOP_BPM,
          "keylock",
          1);
  SEND_OK(osc, "/bpmlock", "i", 1);

  /* jack_transport as timebase master at 128 BPM, rolling. */
  char log_path[PATH_MAX];
  fl_env_path(&rig.env, "jack_transport.log", log_path, sizeof(log_path));
  int pipe_ends[2];
  assert_int_equal(pipe(pipe_ends), 0);
  const pid_t parent = getpid();
  const pid_t master = fork();
  assert_true(master >= 0);
  if (master == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    const int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (getppid() != parent || log < 0 || dup2(pipe_ends[0], 0) < 0 ||
        dup2(log, 1) < 0 || dup2(log, 2) < 0) {
      _exit(127);
    }
    close(pipe_ends[1]);
    setenv("JACK_DEFAULT_SERVER", rig.jackd.name, 1);
    setenv("JACK_NO_START_SERVER", "1", 1);
    execlp("jack_transport", "jack_transport", (char*)NULL);
    _exit(127);
  }
  close(pipe_ends[0]);
  static const char commands[] = "master\ntempo 128\nplay\n";
  assert_int_equal(write(pipe_ends[1], commands, sizeof(commands) - 1),
                   (ssize_t)sizeof(commands) - 1);
  double bpm = 0.0;
  assert_true(wait_source(osc, "jack", &bpm));
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  char          source[32];
  while (bpm != 128.0 && fl_now_ms() < deadline) {
    transport_reply(osc, source, sizeof(source), &bpm);
  }
  assert_true(bpm == 128.0);

  assert_true(fl_osc_send(osc, "/play", "if", SLOT_SINE, 1.0));
  assert_true(fl_osc_wait_voices(osc, 1, FL_TEST_REPLY_MS));
  const uint64_t misses = wait_renders(osc, 30000);

  /* Kill the master a second into the recording. */
  fl_recorder_start(recorder);
  assert_true(fl_recorder_wait(recorder, RATE, 5000));
  const uint32_t killed_at = fl_recorder_frames(recorder);
  assert_int_equal(kill(master, SIGTERM), 0);
  int wait_status = 0;
  assert_int_equal(waitpid(master, &wait_status, 0), master);
  close(pipe_ends[1]);
  assert_true(wait_source(osc, "internal", &bpm));
  const uint32_t internal_at = fl_recorder_frames(recorder);
  assert_true(fl_recorder_wait(recorder, internal_at + RATE, 5000));
  fl_recorder_stop(recorder);

  const uint32_t     frames = fl_recorder_frames(recorder);
  const float* const left   = fl_recorder_channel(recorder, 0);
  uint32_t           from   = 0U;
  while (from < frames && fabsf(left[from]) < 0.1f) {
    ++from;
  }
  uint32_t       at      = 0U;
  const uint32_t silence = longest_silence(left, from, frames, &at);
  fprintf(stderr,
          "jack_transport killed at recorded frame %u (exit status %#x); "
          "/transport said internal by frame %u, at %g BPM; sound from "
          "frame %u to %u, longest silence %u frames (at %u), peak of the "
          "last second %.3f; %u glitches; stretch_misses %+lld\n",
          killed_at,
          (unsigned)wait_status,
          internal_at,
          bpm,
          from,
          frames,
          silence,
          at,
          (double)peak_of(recorder, 0, frames - RATE, frames),
          fl_recorder_glitches(recorder),
          (long long)(stretch_misses(osc) - misses));
  assert_true(from < killed_at);
  assert_true(silence <= PERIOD);
  assert_true(peak_of(recorder, 0, frames - RATE, frames) > 0.1f);
  assert_true(fl_daemon_running(&follower));

  fl_recorder_free(recorder);
  fl_osc_free(osc);
  assert_int_equal(fl_daemon_stop(&follower), 0);
}

/* jack_freewheel y, then n, under three key-locked loops. */
static void
test_freewheel(void** state)
{
  (void)state;
  const uint64_t misses = play_three();
  static char    before[SLOTS * 1024];
  all_settings(rig.daemon.port, before, sizeof(before));

  static const char* const on[]  = { "jack_freewheel", "y", NULL };
  static const char* const off[] = { "jack_freewheel", "n", NULL };
  fl_recorder_start(rig.recorder);
  assert_int_equal(run_tool(on), 0);
  fl_sleep_ms(1000);
  assert_int_equal(run_tool(off), 0);
  fl_recorder_stop(rig.recorder);
  fprintf(stderr,
          "a second of freewheel: %u frames recorded (%.1f s)\n",
          fl_recorder_frames(rig.recorder),
          (double)fl_recorder_frames(rig.recorder) / RATE);
  fl_sleep_ms(500);
  assert_unharmed(before, misses, "after freewheel");
}

/* ---- Stress: ten minutes of a BPM-locked loop, in freewheel ---- */

/* The recorder index of absolute JACK frame `frame`, if recorded. */
static bool
index_of_frame(FlRecorder* recorder, jack_nframes_t frame, uint32_t* index)
{
  const uint32_t periods = fl_recorder_period_count(recorder);
  for (uint32_t p = 0; p < periods; ++p) {
    jack_nframes_t first = 0;
    if (!fl_recorder_frame_at(recorder, p * PERIOD, &first)) {
      return false;
    }
    if ((jack_nframes_t)(frame - first) < PERIOD) {
      *index = p * PERIOD + (frame - first);
      return true;
    }
  }
  return false;
}

/* Beat 0 on the frame of a timetag 100 ms ahead: its recorded index, from
   the timetag's frame (+-1) and /transport's beats (whole frames before a
   period's first frame), as tests/test_daemon_tempo.c finds it. */
static int64_t
timetagged_downbeat(FlRecorder* recorder, double frames_per_beat)
{
  struct timespec   realtime;
  const jack_time_t now  = fl_clock_pair(&realtime);
  const jack_time_t at   = now + 100000U;
  const lo_timetag  when = fl_timetag_after(&realtime, 100000);
  assert_true(fl_osc_send_bundle(rig.osc, when, "/transport/downbeat", ""));
  fl_sleep_ms(200);
  jack_nframes_t frame = 0;
  uint32_t       near  = 0;
  assert_true(fl_recorder_time_to_frame(recorder, at, &frame));
  assert_true(index_of_frame(recorder, frame, &near));
  assert_true(fl_osc_send(rig.osc, "/transport", ""));
  FlReply* const reply =
    fl_osc_wait(rig.osc, "/transport.reply", FL_TEST_REPLY_MS);
  assert_non_null(reply);
  const double since = reply->argv[3].value.d * frames_per_beat;
  fl_reply_free(reply);
  const int64_t whole = llround(since);
  assert_true(fabs(since - (double)whole) < 1e-4);
  const int64_t phase = ((-whole) % PERIOD + PERIOD) % PERIOD;
  for (int64_t index = (int64_t)near - 2; index <= (int64_t)near + 2; ++index) {
    if (index >= 0 && index % PERIOD == phase) {
      return index;
    }
  }
  fail_msg("no frame near %u is beat 0", near);
  return -1;
}

static void
test_ten_minutes_in_freewheel(void** state)
{
  (void)state;
  const double      frames_per_beat = 60.0 * RATE / STRESS_TEMPO;
  const double      pass            = 8.0 * frames_per_beat;
  const uint32_t    capacity        = (STRESS_SECONDS + 30) * RATE;
  FlRecorder* const recorder =
    fl_recorder_new(rig.jackd.name, rig.daemon.name, 1, capacity);
  assert_non_null(recorder);

  char path[PATH_MAX];
  fl_env_path(&rig.env, "click.wav", path, sizeof(path));
  assert_true(fl_write_sample(
    path, FL_FILE_WAV_FLOAT, FL_SIGNAL_CLICK, 1, RATE, STRESS_LOOP_FRAMES));
  assert_string_equal(
    CALL("/load", "is", 0, path),
    text("/done ,siiii \"/load\" 0 %u 1 48000", STRESS_LOOP_FRAMES));
  SEND_OK(rig.osc, "/slot/set", "isssf", 0, "mode", "loop", "bpm", LOOP_BPM);
  SEND_OK(rig.osc, "/tempo", "d", STRESS_TEMPO);
  SEND_OK(rig.osc, "/bpmlock", "i", 1);
  SEND_OK(rig.osc, "/quantize", "s", "1/4");

  fl_recorder_start(recorder);
  assert_true(fl_recorder_wait(recorder, 1, 2000));
  const int64_t downbeat = timetagged_downbeat(recorder, frames_per_beat);
  assert_true(fl_osc_send(rig.osc, "/play", "if", 0, 1.0));
  const int64_t wait_until = fl_now_ms() + 3000;
  long          onset      = -1;
  while (onset < 0 && fl_now_ms() < wait_until) {
    fl_recorder_wait(recorder, fl_recorder_frames(recorder) + PERIOD, 50);
    onset = fl_recorder_onset(recorder, 0, 0.3f, (uint32_t)downbeat);
  }
  assert_true(onset >= 0);
  const double line  = floor((onset - downbeat) / frames_per_beat + 0.5);
  const double start = (double)downbeat + line * frames_per_beat;
  fprintf(stderr,
          "beat 0 at recorded frame %lld; launched on beat %.0f (%.2f), first "
          "frame above 0.3 at %ld\n",
          (long long)downbeat,
          line,
          start,
          onset);

  /* Ten minutes of audio as fast as the server can run them. */
  const int64_t            began = fl_now_ms();
  static const char* const on[]  = { "jack_freewheel", "y", NULL };
  static const char* const off[] = { "jack_freewheel", "n", NULL };
  assert_int_equal(run_tool(on), 0);
  const uint32_t wanted = (uint32_t)((double)onset + STRESS_SECONDS * RATE);
  const bool     full   = fl_recorder_wait(recorder, wanted, 1500000);
  const int64_t  took   = fl_now_ms() - began;
  const int      left   = run_tool(off);
  fl_recorder_stop(recorder);
  const uint32_t frames = fl_recorder_frames(recorder);
  fprintf(stderr,
          "freewheel: %u frames (%.1f s of audio) in %.1f s of wall time; "
          "jack_freewheel n: status %d; recording glitches %u\n",
          frames,
          (double)frames / RATE,
          (double)took / 1000.0,
          left,
          fl_recorder_glitches(recorder));
  assert_true(full);
  assert_int_equal(left, 0);

  /* Every pass: the click's peak (and its place refined by a parabola)
     within a frame of start + k x pass. */
  const float* const y      = fl_recorder_channel(recorder, 0);
  double             worst  = 0.0;
  double             sum    = 0.0;
  int                passes = 0;
  int                off_by = 0;
  for (int k = 0; start + k * pass + 64.0 < (double)frames; ++k) {
    const double want = start + k * pass;
    long         peak = lround(want) - 32;
    for (long i = peak; i <= lround(want) + 32; ++i) {
      peak = fabsf(y[i]) > fabsf(y[peak]) ? i : peak;
    }
    const double a = fabsf(y[peak - 1]), b = fabsf(y[peak]),
                 c = fabsf(y[peak + 1]);
    const double refine =
      a - 2.0 * b + c < 0.0 ? 0.5 * (a - c) / (a - 2.0 * b + c) : 0.0;
    const double error = (double)peak - want;
    if (fabs(error) > 1.0 || b < 0.3) {
      fprintf(stderr,
              "pass %d: click at %ld (%.3f), %.2f frames from %.2f\n",
              k,
              peak,
              b,
              error,
              want);
      ++off_by;
    }
    worst = fabs(error) > worst ? fabs(error) : worst;
    sum += fabs((double)peak + refine - want);
    ++passes;
  }
  fprintf(stderr,
          "%d passes of %.2f frames (%.1f min): every click's peak within "
          "%.2f frames of launch + k x pass (refined: %.3f on average); %d "
          "off by more than a frame\n",
          passes,
          pass,
          passes * pass / RATE / 60.0,
          worst,
          sum / passes,
          off_by);
  assert_true(passes * pass >= STRESS_SECONDS * (double)RATE - pass);
  assert_int_equal(off_by, 0);
  fl_recorder_free(recorder);
}

int
main(int argc, char** argv)
{
  if (argc > 1 && !strcmp(argv[1], "--stress")) {
    const struct CMUnitTest stress[] = {
      cmocka_unit_test(test_ten_minutes_in_freewheel),
    };
    return cmocka_run_group_tests_name(
      "daemon_keylock --stress", stress, stress_setup, group_teardown);
  }
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_pitch, test_setup),
    cmocka_unit_test_setup(test_new_region, test_setup),
    cmocka_unit_test_setup(test_buffer_size, test_setup),
    cmocka_unit_test_setup(test_transport_master_gone, test_setup),
    /* Last: after freewheeling, opening clients on the server can block. */
    cmocka_unit_test_setup(test_freewheel, test_setup),
  };
  return cmocka_run_group_tests_name(
    "daemon_keylock", tests, group_setup, group_teardown);
}
