/*
  Pads (OSC API v2: slot settings, launching, master gain, telemetry) as a
  user hears and sees them: a real jackd, a real flitzid, OSC over UDP, and
  flitzid's outputs recorded by a JACK client of our own.

  Every sample is generated here as a float WAV, so what a voice plays is
  known to the bit, and the checks compare the recording with a model of
  what the contract says it must hold: a region tiled pass after pass, the
  seam crossfade, gain ramps, the fades of 2 ms (steal, choke, exclusive)
  and 5 ms (pause, resume, seek) starting on the very frame of whatever
  causes them, meter peaks against the recorded peaks of the same frames.
  The model takes each fade at the longest length the contract allows,
  which is the length flitzid uses.

  Voices launched from timetagged bundles start mid-period, so a choke that
  happened at the start of the period instead of on the new voice's frame
  would show.

  A capture that the server spoiled (an xrun, a skipped period:
  fl_recorder_glitches()) says nothing about flitzid and is made again.

  /slot/settings has 17 arguments and more, beyond the 16 the harness's
  FlReply keeps, so /slot/get (and the /slot/set of 200 pairs) goes through
  a plain liblo client of this file, the probe. It checks the keys of §1
  that these tests use by name, in the table's order, so that the keys of
  later features may stand between and after them.
*/
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lo/lo.h>
#include <sndfile.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE FL_TEST_RATE
#define PERIOD FL_TEST_PERIOD

/* Captures of one scenario before giving up on a machine that glitches. */
#define CAPTURE_ATTEMPTS 8

/* The contract's fades at 48 kHz. */
#define STEAL_FADE_FRAMES 96  /* voices=N, choke groups, /play/exclusive */
#define PAUSE_FADE_FRAMES 240 /* /pause, /resume, each side of /seek */
#define GAIN_RAMP_FRAMES 480  /* gain, /master/gain */
#define XFADE_FRAMES 240      /* the 5 ms seam crossfade the test asks for */

/* The loop region of the tests: 0.25 s to 0.5 s of a 1 s file. */
#define REGION_START 12000
#define REGION_END 24000
#define REGION_FRAMES (REGION_END - REGION_START)

/* Slots */
#define SLOT_DC 0        /* bad input: a DC loop that must play on unharmed */
#define SLOT_EDGES 2     /* bad input: a 1 s file, for the accepted edges */
#define SLOT_EMPTY 7     /* never loaded */
#define SLOT_SINE 1      /* 1 s of 441 Hz */
#define SLOT_TONE 3      /* 0.1 s of 441 Hz at 0.25 */
#define SLOT_MONO_DC 4   /* 3 s, 0.5 */
#define SLOT_STEREO_DC 5 /* 3 s, 0.5 / -0.25 */
#define SLOT_RAMP 6      /* 2 s rising from 0.1 to 0.9 */
#define SLOT_PAD_A 8     /* pads A..D of the voice tests: 2 s ramps */
#define PAD_COUNT 4
#define SLOT_EVENT_SHORT 12 /* 0.1 s one-shot */
#define SLOT_EVENT_LOOP 13  /* 50 ms loop */
#define SLOT_EVENT_LONG 14  /* 1 s one-shot */
#define SLOT_EVENT_CHOKE 15 /* 15 and 16: loops in choke group 7 */
#define SLOT_METER_MONO 17
#define SLOT_METER_STEREO 18
#define SLOT_SETTINGS 20
#define SLOT_RELOAD 21
#define SLOTS_USED 24

#define PAD_FRAMES (2 * RATE)
#define RAMP_FRAMES (2 * RATE)
#define METER_FRAMES (RATE * 6 / 10)

static FlRig  rig;
static FlOsc* listener; /* a second client: /notify and /meters */

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

/* Nothing came back for what was sent before: the next reply is /pong. */
static void
assert_no_reply_at(int line)
{
  const char* const reply = CALL("/ping", "");
  if (strncmp(reply, "/pong ", 6)) {
    fprintf(stderr, "line %d: expected no reply, got %s\n", line, reply);
    fail();
  }
}

#define assert_no_reply() assert_no_reply_at(__LINE__)

/* A /slot/set (or any message) that must be accepted without a reply. */
#define SEND_OK(...)                                \
  do {                                              \
    assert_true(fl_osc_send(rig.osc, __VA_ARGS__)); \
    assert_no_reply();                              \
  } while (0)

#define SET(...) SEND_OK("/slot/set", __VA_ARGS__)

/* The probe: a liblo client that keeps every argument of one reply. */

#define PROBE_MAX_ARGS 64

typedef struct {
  char    type;
  int32_t i;
  double  number;
  char    s[128];
} ProbeArg;

typedef struct {
  lo_server  server;
  lo_address daemon;
  bool       got;
  char       path[64];
  char       types[PROBE_MAX_ARGS + 1];
  int        argc;
  ProbeArg   argv[PROBE_MAX_ARGS];
  char       formatted[2048];
} Probe;

static Probe probe;

static int
on_probe_message(const char* path,
                 const char* types,
                 lo_arg**    argv,
                 int         argc,
                 lo_message  message,
                 void*       data)
{
  (void)message;
  Probe* const p = (Probe*)data;
  if (p->got) {
    return 0;
  }
  p->got = true;
  snprintf(p->path, sizeof(p->path), "%s", path);
  snprintf(p->types, sizeof(p->types), "%s", types);
  p->argc = argc < PROBE_MAX_ARGS ? argc : PROBE_MAX_ARGS;

  size_t length =
    (size_t)snprintf(p->formatted, sizeof(p->formatted), "%s ,%s", path, types);
  for (int i = 0; i < p->argc; ++i) {
    ProbeArg* const arg = &p->argv[i];
    memset(arg, 0, sizeof(*arg));
    arg->type = types[i];
    /* Arguments are 4-byte aligned in the packet: copy, do not cast. */
    if (types[i] == 'i') {
      memcpy(&arg->i, argv[i], sizeof(arg->i));
      arg->number = arg->i;
    } else if (types[i] == 'f') {
      float value = 0.0f;
      memcpy(&value, argv[i], sizeof(value));
      arg->number = value;
    } else if (types[i] == 'd') {
      memcpy(&arg->number, argv[i], sizeof(arg->number));
    } else if (types[i] == 's') {
      snprintf(arg->s, sizeof(arg->s), "%s", (const char*)argv[i]);
    }
    if (length >= sizeof(p->formatted)) {
      continue;
    }
    if (types[i] == 'i') {
      length += (size_t)snprintf(
        p->formatted + length, sizeof(p->formatted) - length, " %d", arg->i);
    } else if (types[i] == 's') {
      length += (size_t)snprintf(p->formatted + length,
                                 sizeof(p->formatted) - length,
                                 " \"%s\"",
                                 arg->s);
    } else {
      length += (size_t)snprintf(p->formatted + length,
                                 sizeof(p->formatted) - length,
                                 " %g",
                                 arg->number);
    }
  }
  return 0;
}

static bool
probe_open(int daemon_port)
{
  char port[16];
  snprintf(port, sizeof(port), "%d", daemon_port);
  probe.server = lo_server_new_with_proto(NULL, LO_UDP, NULL);
  probe.daemon = lo_address_new("127.0.0.1", port);
  if (!probe.server || !probe.daemon) {
    return false;
  }
  lo_server_enable_coercion(probe.server, 0);
  lo_server_add_method(probe.server, NULL, NULL, on_probe_message, &probe);
  return true;
}

static void
probe_close(void)
{
  if (probe.daemon) {
    lo_address_free(probe.daemon);
  }
  if (probe.server) {
    lo_server_free(probe.server);
  }
  probe.daemon = NULL;
  probe.server = NULL;
}

/* Send `message` (freed here) and return the formatted reply. */
static const char*
probe_call(const char* path, lo_message message)
{
  probe.got = false;
  const int sent =
    lo_send_message_from(probe.daemon, probe.server, path, message);
  lo_message_free(message);
  if (sent < 0) {
    return "(could not send)";
  }
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  while (!probe.got && fl_now_ms() < deadline) {
    lo_server_recv_noblock(probe.server, 50);
  }
  return probe.got ? probe.formatted : "(no reply)";
}

/* The keys of §1 this file tests, in the contract's table order, and the
   type /slot/get answers each in. */
#define PAD_KEYS 8
static const char* const pad_keys[PAD_KEYS] = { "mode",   "start", "end",
                                                "xfade",  "gain",  "pan",
                                                "voices", "group" };
static const char        pad_types[]        = "sfffffii";

/* A value of the probe's last reply as text. */
static void
format_value(const ProbeArg* value, char* out, size_t out_size)
{
  if (value->type == 's') {
    snprintf(out, out_size, "%s", value->s);
  } else {
    snprintf(out, out_size, "%g", value->number);
  }
}

/*
  Send /slot/get `slot` and check the reply: /slot/settings, the id, then
  key/value pairs among which the keys of pad_keys come in their order,
  each in its type (the keys of other features may come between and
  after). Writes every pair, "mode loop start 0.25 ...", to `all`, and
  those of pad_keys alone to `pad`.
*/
static void
get_settings(int slot, char* all, size_t all_size, char* pad, size_t pad_size)
{
  lo_message const message = lo_message_new();
  lo_message_add_int32(message, slot);
  const char* const reply = probe_call("/slot/get", message);
  bool              good = probe.got && !strcmp(probe.path, "/slot/settings") &&
              probe.argc % 2 == 1 && probe.argc >= 1 + 2 * PAD_KEYS &&
              probe.argc < PROBE_MAX_ARGS && probe.types[0] == 'i' &&
              probe.argv[0].i == slot;

  size_t all_length = 0U;
  size_t pad_length = 0U;
  int    next_key   = 0;
  all[0] = pad[0] = '\0';
  for (int i = 1; good && i + 1 < probe.argc; i += 2) {
    const ProbeArg* const name = &probe.argv[i];
    char                  value[160];
    good = name->type == 's';
    format_value(&probe.argv[i + 1], value, sizeof(value));
    if (all_length < all_size) {
      all_length += (size_t)snprintf(all + all_length,
                                     all_size - all_length,
                                     "%s%s %s",
                                     i > 1 ? " " : "",
                                     name->s,
                                     value);
    }
    for (int key = 0; key < PAD_KEYS; ++key) {
      if (strcmp(name->s, pad_keys[key])) {
        continue;
      }
      // In the table's order, once, in its type.
      good =
        good && key == next_key && probe.argv[i + 1].type == pad_types[key];
      ++next_key;
      if (pad_length < pad_size) {
        pad_length += (size_t)snprintf(pad + pad_length,
                                       pad_size - pad_length,
                                       "%s%s %s",
                                       key ? " " : "",
                                       name->s,
                                       value);
      }
    }
  }
  if (!good || next_key != PAD_KEYS) {
    fprintf(stderr, "/slot/get %d answered %s\n", slot, reply);
    fail();
  }
}

/* Every setting of `slot`, as get_settings() writes them. */
static const char*
all_settings_of(int slot)
{
  static char all[1024];
  char        pad[512];
  get_settings(slot, all, sizeof(all), pad, sizeof(pad));
  return all;
}

/* The settings of pad_keys of `slot`: "mode loop start 0.25 ... group 0". */
static const char*
settings_of(int slot)
{
  static char pad[512];
  char        all[1024];
  get_settings(slot, all, sizeof(all), pad, sizeof(pad));
  return pad;
}

#define DEFAULT_SETTINGS \
  "mode oneshot start 0 end 0 xfade 0 gain 0 pan 0 voices 0 group 0"

/* Files */

/* Write `frames` frames of `channels` interleaved floats as a float WAV. */
static void
write_sample(const char*  name,
             const float* samples,
             uint32_t     frames,
             unsigned     channels,
             char*        path,
             size_t       path_size)
{
  fl_env_path(&rig.env, name, path, path_size);
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  info.samplerate     = (int)RATE;
  info.channels       = (int)channels;
  info.format         = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  SNDFILE* const file = sf_open(path, SFM_WRITE, &info);
  if (!file) {
    fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
    fail();
  }
  assert_int_equal(sf_writef_float(file, samples, frames), frames);
  assert_int_equal(sf_close(file), 0);
}

static void
load(int slot, const char* path, uint32_t frames, unsigned channels)
{
  assert_string_equal(
    CALL("/load", "is", slot, path),
    text("/done ,siiii \"/load\" %d %u %u %u", slot, frames, channels, RATE));
}

/* Write and load a mono sample. */
static void
load_mono(int slot, const char* name, const float* samples, uint32_t frames)
{
  char path[PATH_MAX];
  write_sample(name, samples, frames, 1, path, sizeof(path));
  load(slot, path, frames, 1);
}

static float*
new_samples(size_t count)
{
  float* const samples = (float*)calloc(count, sizeof(float));
  assert_non_null(samples);
  return samples;
}

/* 441 Hz: 110.25 periods in a region of 0.25 s, so the region's two ends
   are a quarter of a period apart and do not meet. */
static float
sine_value(uint32_t frame, float amplitude)
{
  return (float)(amplitude *
                 sin(2.0 * M_PI * 441.0 * (double)frame / RATE + 0.3));
}

static float*
new_sine(uint32_t frames, float amplitude)
{
  float* const sine = new_samples(frames);
  for (uint32_t i = 0; i < frames; ++i) {
    sine[i] = sine_value(i, amplitude);
  }
  return sine;
}

/* Rises from 0.1 to 0.9: every frame has a value of its own. */
static float
ramp_value(uint32_t frame)
{
  return 0.1f + 0.8f * (float)frame / (float)RAMP_FRAMES;
}

static float
largest_step(const float* samples, size_t count)
{
  float largest = 0.0f;
  for (size_t i = 0; i + 1 < count; ++i) {
    const float step = fabsf(samples[i + 1] - samples[i]);
    largest          = step > largest ? step : largest;
  }
  return largest;
}

/* Takes: one recording of one scenario */

static void
take_begin(void)
{
  fl_recorder_start(rig.recorder);
  assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
}

/*
  Wait until `frames` frames are recorded, stop recording and return true
  if the take is clean. A take the server spoiled is reported and its
  voices are stopped, for the caller to make it again.
*/
static bool
take_end(uint32_t frames, const char* what)
{
  const bool recorded = fl_recorder_wait(rig.recorder, frames, 10000);
  fl_recorder_stop(rig.recorder);
  const unsigned glitches = fl_recorder_glitches(rig.recorder);
  if (!glitches) {
    if (!recorded) {
      fprintf(stderr,
              "%s: %u of %u frames recorded\n",
              what,
              fl_recorder_frames(rig.recorder),
              frames);
    }
    assert_true(recorded);
    return true;
  }
  fprintf(stderr,
          "%s: %u xrun(s) or skipped period(s) while recording; recording "
          "again\n",
          what,
          glitches);
  assert_true(fl_rig_quiet(&rig, 2000));
  return false;
}

#define TAKES(attempt)                                               \
  for (int attempt = 1;; ++attempt)                                  \
    if (attempt > CAPTURE_ATTEMPTS) {                                \
      fail_msg("no clean capture in %d attempts", CAPTURE_ATTEMPTS); \
    } else

/*
  Wait for the first frame of `channel` from `from` on that is not 0, and
  for `after` frames past it. Returns its index, or fails.
*/
static long
wait_sound(unsigned channel, uint32_t from, uint32_t after)
{
  const int64_t deadline = fl_now_ms() + 5000;
  long          onset    = -1;
  while (onset < 0 && fl_now_ms() < deadline) {
    const uint32_t frames = fl_recorder_frames(rig.recorder);
    fl_recorder_wait(rig.recorder, frames + PERIOD, 100);
    onset = fl_recorder_onset(rig.recorder, channel, 0.0f, from);
  }
  if (onset < 0 ||
      !fl_recorder_wait(rig.recorder, (uint32_t)onset + after, 10000)) {
    fprintf(stderr,
            "no sound on out_%u from frame %u on (or not %u frames after "
            "it); %u frames recorded\n",
            channel + 1,
            from,
            after,
            fl_recorder_frames(rig.recorder));
    fail();
  }
  return onset;
}

static void
wait_recorded(long frames)
{
  assert_true(fl_recorder_wait(rig.recorder, (uint32_t)frames, 5000));
}

static const float*
recorded(unsigned channel)
{
  return fl_recorder_channel(rig.recorder, channel);
}

/* Every frame of `channel` in [from, to) is exactly 0. */
static void
assert_silent(unsigned channel, long from, long to)
{
  const float* const out = recorded(channel);
  for (long i = from; i < to; ++i) {
    if (out[i] != 0.0f) {
      fprintf(stderr,
              "out_%u frame %ld is %.9g, expected silence in [%ld, %ld)\n",
              channel + 1,
              i,
              (double)out[i],
              from,
              to);
      fail();
    }
  }
}

/* Frame `index` of `channel` is within `tolerance` of `expected`. */
static void
assert_frame_at(int         line,
                unsigned    channel,
                long        index,
                double      expected,
                double      tolerance,
                const char* what)
{
  const double got = recorded(channel)[index];
  if (!(fabs(got - expected) <= tolerance)) {
    fprintf(stderr,
            "line %d: %s: out_%u frame %ld is %.9g, expected %.9g "
            "(difference %.3g > %.3g)\n",
            line,
            what,
            channel + 1,
            index,
            got,
            expected,
            fabs(got - expected),
            tolerance);
    fail();
  }
}

#define assert_frame(channel, index, expected, tolerance, what) \
  assert_frame_at(__LINE__, (channel), (index), (expected), (tolerance), (what))

static int
group_setup(void** state)
{
  (void)state;
  if (!fl_rig_start(&rig, "pads", NULL, true)) {
    return -1;
  }
  listener = fl_osc_new(rig.daemon.port);
  return listener && probe_open(rig.daemon.port) ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  probe_close();
  fl_osc_free(listener);
  listener = NULL;
  return fl_rig_stop(&rig) ? 0 : -1;
}

/* Before each test: silence, default settings, master at 0 dB. */
static int
test_setup(void** state)
{
  (void)state;
  if (!rig.recorder || !fl_rig_quiet(&rig, 2000)) {
    return -1;
  }
  fl_osc_send(rig.osc, "/master/gain", "f", 0.0);
  for (int slot = 0; slot < SLOTS_USED; ++slot) {
    fl_osc_send(rig.osc, "/slot/reset", "i", slot);
  }
  const char* const pong = CALL("/ping", "");
  fl_osc_collect(listener, 20);
  fl_osc_clear(listener);
  return strncmp(pong, "/pong ", 6) ? -1 : 0;
}

/* Settings */

static void
test_settings_roundtrip(void** state)
{
  (void)state;
  // A setting may be changed on an empty slot; every number form is taken,
  // and /slot/get answers each key in the table's order and type.
  assert_string_equal(settings_of(SLOT_SETTINGS), DEFAULT_SETTINGS);
  SET("isssdsisfsfsfsisi",
      SLOT_SETTINGS,
      "mode",
      "loop",
      "start",
      0.125,
      "end",
      1,
      "xfade",
      2.5,
      "gain",
      -3.5,
      "pan",
      -0.25,
      "voices",
      4,
      "group",
      9);
  assert_string_equal(settings_of(SLOT_SETTINGS),
                      "mode loop start 0.125 end 1 xfade 2.5 gain -3.5 pan "
                      "-0.25 voices 4 group 9");
  // A key given twice: the last one counts.
  SET("isfsf", SLOT_SETTINGS, "gain", 1.0, "gain", 2.0);
  assert_string_equal(settings_of(SLOT_SETTINGS),
                      "mode loop start 0.125 end 1 xfade 2.5 gain 2 pan "
                      "-0.25 voices 4 group 9");
  SEND_OK("/slot/reset", "i", SLOT_SETTINGS);
  assert_string_equal(settings_of(SLOT_SETTINGS), DEFAULT_SETTINGS);

  // /load keeps a pad's settings, clamping a region that no longer fits;
  // /unload forgets them.
  float* const samples = new_samples(RATE);
  load_mono(SLOT_RELOAD, "one-second.wav", samples, RATE);
  SET("isssfsfsf",
      SLOT_RELOAD,
      "mode",
      "loop",
      "start",
      0.25,
      "end",
      0.75,
      "gain",
      -6.0);
  load_mono(SLOT_RELOAD, "half-second.wav", samples, RATE / 2);
  assert_string_equal(
    settings_of(SLOT_RELOAD),
    "mode loop start 0.25 end 0 xfade 0 gain -6 pan 0 voices 0 group 0");
  assert_string_equal(CALL("/unload", "i", SLOT_RELOAD),
                      text("/done ,si \"/unload\" %d", SLOT_RELOAD));
  assert_string_equal(settings_of(SLOT_RELOAD), DEFAULT_SETTINGS);
  free(samples);
}

/* Loops and regions */

static void
load_sine(void)
{
  float* const sine = new_sine(RATE, 0.5f);
  load_mono(SLOT_SINE, "sine.wav", sine, RATE);
  free(sine);
}

/* Play SLOT_SINE and record `frames` frames from its onset; returns it. */
static long
capture_sine(uint32_t frames, const char* what)
{
  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_SINE, 1.0));
    onset = wait_sound(0, 0, frames + PERIOD);
    if (take_end(0, what)) {
      break;
    }
  }
  fl_osc_send(rig.osc, "/stop", "i", SLOT_SINE);
  assert_true(fl_osc_wait_voices(rig.osc, 0, 2000));
  assert_silent(0, 0, onset);
  assert_silent(1, 0, onset);
  return onset;
}

static void
test_loop_region_tiles(void** state)
{
  (void)state;
  load_sine();
  SET("isssfsf", SLOT_SINE, "mode", "loop", "start", 0.25, "end", 0.5);
  assert_string_equal(
    settings_of(SLOT_SINE),
    "mode loop start 0.25 end 0.5 xfade 0 gain 0 pan 0 voices 0 group 0");

  const uint32_t length = 2U * RATE;
  const long     onset  = capture_sine(length, "loop");

  // 2 s of the region tiled exactly, on both outputs.
  float* const sine  = new_sine(RATE, 0.5f);
  float* const tiled = new_samples(length);
  for (uint32_t k = 0; k < length; ++k) {
    tiled[k] = sine[REGION_START + k % REGION_FRAMES];
  }
  for (unsigned c = 0; c < 2; ++c) {
    assert_int_equal(
      fl_recorder_compare(rig.recorder, c, onset, tiled, length, 1, 1.0f, 0.0f),
      -1);
  }

  // Every pass, found by its seam (a step the sine never makes), is
  // exactly end - start frames long.
  const float* const out   = recorded(0);
  const float        own   = largest_step(sine, RATE);
  long               last  = onset - 1;
  unsigned           seams = 0;
  float              seam  = 0.0f;
  for (long i = onset; i + 1 < onset + (long)length; ++i) {
    if (fabsf(out[i + 1] - out[i]) > own) {
      assert_int_equal(i - last, REGION_FRAMES);
      seam = fabsf(out[i + 1] - out[i]);
      last = i;
      ++seams;
    }
  }
  fprintf(stderr,
          "loop without xfade: %u seams 12000 frames apart in 2 s, each a "
          "step of %.4f (the sine's largest: %.4f)\n",
          seams,
          (double)seam,
          (double)own);
  assert_int_equal(seams, length / REGION_FRAMES - 1U);
  free(tiled);
  free(sine);
}

static void
test_oneshot_region_once(void** state)
{
  (void)state;
  load_sine();
  SET("isfsf", SLOT_SINE, "start", 0.25, "end", 0.5);
  const long   onset = capture_sine(REGION_FRAMES + RATE / 2, "one-shot");
  float* const sine  = new_sine(RATE, 0.5f);
  for (unsigned c = 0; c < 2; ++c) {
    assert_int_equal(fl_recorder_compare(rig.recorder,
                                         c,
                                         onset,
                                         sine + REGION_START,
                                         REGION_FRAMES,
                                         1,
                                         1.0f,
                                         0.0f),
                     -1);
    assert_silent(c, onset + REGION_FRAMES, onset + REGION_FRAMES + RATE / 2);
  }
  free(sine);
}

static void
test_loop_xfade(void** state)
{
  (void)state;
  load_sine();
  SET("isssfsfsf",
      SLOT_SINE,
      "mode",
      "loop",
      "start",
      0.25,
      "end",
      0.5,
      "xfade",
      5.0);
  assert_string_equal(
    settings_of(SLOT_SINE),
    "mode loop start 0.25 end 0.5 xfade 5 gain 0 pan 0 voices 0 group 0");

  const uint32_t length = 2U * RATE;
  const long     onset  = capture_sine(length, "loop with xfade");

  // The model (process.c, refresh_region()): there are 12000 frames before
  // the start, so the last 240 frames of every pass fade into the 240
  // frames before the start, which then run on into the region's first
  // frame. Frame k of the fade weighs the audio before the start by
  // (k + 1) / 241.
  float* const sine = new_sine(RATE, 0.5f);
  float* const pass = new_samples(REGION_FRAMES);
  memcpy(pass, sine + REGION_START, REGION_FRAMES * sizeof(float));
  for (int k = 0; k < XFADE_FRAMES; ++k) {
    const int    at     = REGION_FRAMES - XFADE_FRAMES + k;
    const double weight = (double)(k + 1) / (XFADE_FRAMES + 1);
    const double from   = sine[REGION_START + at];
    const double to     = sine[at];
    pass[at]            = (float)(from + weight * (to - from));
  }
  float* const tiled = new_samples(length);
  for (uint32_t k = 0; k < length; ++k) {
    tiled[k] = pass[k % REGION_FRAMES];
  }
  for (unsigned c = 0; c < 2; ++c) {
    assert_int_equal(fl_recorder_compare(
                       rig.recorder, c, onset, tiled, length, 1, 1.0f, 1e-6f),
                     -1);
  }

  // The pass length is unchanged: each pass repeats the one before.
  const float* const out = recorded(0);
  for (long i = onset + REGION_FRAMES; i < onset + (long)length; ++i) {
    assert_frame(0, i, out[i - REGION_FRAMES], 1e-6, "one pass later");
  }

  // No step is larger than the sine's own largest, where without the
  // crossfade every seam was a step of 0.6: not in the whole take, and not
  // in the seams alone (the fade, and the step into the next pass).
  const float own     = largest_step(sine, RATE);
  const float largest = largest_step(out + onset, length);
  float       seams   = 0.0f;
  for (long next = onset + REGION_FRAMES; next < onset + (long)length;
       next += REGION_FRAMES) {
    const float step =
      largest_step(out + next - XFADE_FRAMES - 1, XFADE_FRAMES + 2);
    seams = step > seams ? step : seams;
  }
  fprintf(stderr,
          "loop with a 5 ms xfade: largest step %.5f, in the seams %.5f, the "
          "sine's own %.5f, the unfaded seam's %.4f\n",
          (double)largest,
          (double)seams,
          (double)own,
          (double)fabsf(sine[REGION_START] - sine[REGION_END - 1]));
  assert_true(largest <= own);
  assert_true(seams <= own);
  free(tiled);
  free(pass);
  free(sine);
}

/* Gain and pan */

static void
load_tone(float** tone)
{
  *tone = new_sine(RATE / 10, 0.25f);
  load_mono(SLOT_TONE, "tone.wav", *tone, RATE / 10);
}

/* Play SLOT_TONE; return its onset on `channel`. */
static long
capture_tone(unsigned channel, const char* what)
{
  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_TONE, 1.0));
    onset = wait_sound(channel, 0, RATE / 10 + PERIOD);
    if (take_end(0, what)) {
      break;
    }
  }
  return onset;
}

static void
assert_tone(unsigned     channel,
            long         onset,
            const float* tone,
            double       gain,
            const char*  what)
{
  for (long i = 0; i < onset; ++i) {
    assert_frame(channel, i, 0.0, 0.0, what);
  }
  for (long k = 0; k < (long)(RATE / 10); ++k) {
    assert_frame(channel, onset + k, gain * tone[k], 1e-6, what);
  }
  assert_silent(channel, onset + RATE / 10, onset + RATE / 10 + PERIOD);
}

static void
test_gain_and_pan(void** state)
{
  (void)state;
  float* tone = NULL;
  load_tone(&tone);

  // -6.02 dB is 10^(-6.02 / 20) = 0.5000345: that factor to 1e-6, and
  // half the tone (at most 0.25) to 1e-5.
  SET("isf", SLOT_TONE, "gain", -6.02);
  assert_string_equal(
    settings_of(SLOT_TONE),
    "mode oneshot start 0 end 0 xfade 0 gain -6.02 pan 0 voices 0 group 0");
  long         onset  = capture_tone(0, "gain -6.02 dB");
  const double factor = pow(10.0, (double)-6.02f / 20.0);
  for (unsigned c = 0; c < 2; ++c) {
    assert_tone(c, onset, tone, factor, "gain -6.02 dB");
    assert_int_equal(fl_recorder_compare(
                       rig.recorder, c, onset, tone, RATE / 10, 1, 0.5f, 1e-5f),
                     -1);
  }

  // Balance: -1 is out_1 only, at unity; 0.5 halves out_1; 1 is out_2 only.
  SET("isfsf", SLOT_TONE, "gain", 0.0, "pan", -1.0);
  onset = capture_tone(0, "pan -1");
  assert_tone(0, onset, tone, 1.0, "pan -1, out_1");
  assert_silent(1, 0, (long)fl_recorder_frames(rig.recorder));

  SET("isf", SLOT_TONE, "pan", 0.5);
  onset = capture_tone(0, "pan 0.5");
  assert_tone(0, onset, tone, 0.5, "pan 0.5, out_1");
  assert_tone(1, onset, tone, 1.0, "pan 0.5, out_2");

  SET("isf", SLOT_TONE, "pan", 1.0);
  onset = capture_tone(1, "pan 1");
  assert_tone(1, onset, tone, 1.0, "pan 1, out_2");
  assert_silent(0, 0, (long)fl_recorder_frames(rig.recorder));
  free(tone);
}

/*
  From `from` to `to`, `channel` holds levels[0], then ramps linearly over
  `ramp_frames` to levels[1], holds it, ramps to levels[2], ... Each ramp
  starts at the first frame of a period (a change applies at the period
  after it arrives) and its frame k is at level + (next - level) * (k + 1)
  / ramp_frames. No frame-to-frame step is larger than the largest ramp's.
*/
static void
assert_levels(unsigned     channel,
              long         from,
              long         to,
              const float* levels,
              int          count,
              long         ramp_frames)
{
  const float* const out          = recorded(channel);
  long               n            = from;
  float              largest_ramp = 0.0f;
  for (int t = 0; t + 1 < count; ++t) {
    const double level = levels[t];
    const double next  = levels[t + 1];
    while (n < to && fabs(out[n] - level) <= 1e-6) {
      ++n;
    }
    if (n + ramp_frames > to) {
      fprintf(stderr,
              "out_%u: no ramp from %g to %g after frame %ld\n",
              channel + 1,
              level,
              next,
              n);
      fail();
    }
    fprintf(stderr,
            "out_%u: %g to %g from frame %ld (period offset %ld)\n",
            channel + 1,
            level,
            next,
            n - from,
            (n - from) % PERIOD);
    assert_int_equal((n - from) % PERIOD, 0);
    for (long k = 0; k < ramp_frames; ++k) {
      assert_frame(channel,
                   n + k,
                   level + (next - level) * (double)(k + 1) / ramp_frames,
                   1e-5,
                   "ramp");
    }
    const float ramp_step = (float)(fabs(next - level) / ramp_frames);
    largest_ramp          = ramp_step > largest_ramp ? ramp_step : largest_ramp;
    n += ramp_frames;
  }
  for (; n < to; ++n) {
    assert_frame(channel, n, levels[count - 1], 1e-6, "after the last ramp");
  }
  const float largest = largest_step(out + from, (size_t)(to - from));
  fprintf(stderr,
          "out_%u: largest step %.3g, largest ramp step %.3g\n",
          channel + 1,
          (double)largest,
          (double)largest_ramp);
  assert_true(largest <= largest_ramp * 1.001f);
}

static void
load_dc(int slot, unsigned channels, uint32_t frames)
{
  char path[PATH_MAX];
  fl_env_path(
    &rig.env, text("dc-%u-%u.wav", channels, frames), path, sizeof(path));
  assert_true(fl_write_sample(
    path, FL_FILE_WAV_FLOAT, FL_SIGNAL_DC, channels, RATE, frames));
  load(slot, path, frames, channels);
}

static void
test_gain_change_ramps(void** state)
{
  (void)state;
  load_dc(SLOT_MONO_DC, 1, 3 * RATE);
  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_MONO_DC, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SET("isf", SLOT_MONO_DC, "gain", -20.0);
    wait_recorded(onset + RATE / 5);
    SET("isf", SLOT_MONO_DC, "gain", -60.0);
    wait_recorded(onset + RATE * 3 / 10);
    SET("isf", SLOT_MONO_DC, "gain", 0.0);
    if (take_end((uint32_t)onset + RATE / 2, "gain changes")) {
      break;
    }
  }
  // 0.5, then 0.05 (-20 dB), silence (-60 dB), and 0.5 again, each change
  // a ramp of 10 ms.
  const float levels[] = { 0.5f, 0.05f, 0.0f, 0.5f };
  for (unsigned c = 0; c < 2; ++c) {
    assert_levels(c, onset, onset + RATE / 2, levels, 4, GAIN_RAMP_FRAMES);
  }
}

static void
test_master_gain(void** state)
{
  (void)state;
  load_dc(SLOT_STEREO_DC, 2, 3 * RATE);
  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_STEREO_DC, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SEND_OK("/master/gain", "f", -6.02);
    wait_recorded(onset + RATE / 5);
    SEND_OK("/master/gain", "i", -20);
    wait_recorded(onset + RATE * 3 / 10);
    SEND_OK("/master/gain", "d", 0.0);
    if (take_end((uint32_t)onset + RATE / 2, "master gain changes")) {
      break;
    }
  }
  const float factor  = (float)pow(10.0, (double)-6.02f / 20.0);
  const float left[]  = { 0.5f, 0.5f * factor, 0.05f, 0.5f };
  const float right[] = { -0.25f, -0.25f * factor, -0.025f, -0.25f };
  assert_levels(0, onset, onset + RATE / 2, left, 4, GAIN_RAMP_FRAMES);
  assert_levels(1, onset, onset + RATE / 2, right, 4, GAIN_RAMP_FRAMES);
}

/* Voices: per-slot limits, choke groups, /play/exclusive */

static float*      pad_signal[PAD_COUNT];
static const float pad_level[PAD_COUNT] = { 0.2f, 0.15f, 0.1f, 0.25f };

static void
load_pads(void)
{
  for (int pad = 0; pad < PAD_COUNT; ++pad) {
    if (!pad_signal[pad]) {
      pad_signal[pad] = new_samples(PAD_FRAMES);
      for (uint32_t i = 0; i < PAD_FRAMES; ++i) {
        pad_signal[pad][i] =
          pad_level[pad] * (0.5f + 0.5f * (float)i / (float)PAD_FRAMES);
      }
    }
    load_mono(
      SLOT_PAD_A + pad, text("pad-%d.wav", pad), pad_signal[pad], PAD_FRAMES);
  }
}

typedef struct {
  int  pad;       /* 0..3: slot SLOT_PAD_A + pad */
  bool exclusive; /* /play/exclusive instead of /play */
  int  at_ms;     /* timetag, after the take's start */
  int  choked_by; /* the launch whose start fades this voice out, or -1 */

  /* Filled in by run_launches(): */
  jack_time_t usecs;     /* the timetag on JACK's clock */
  long        predicted; /* the recorded frame of that time */
  long        start;     /* the recorded frame the voice starts on */
} Launch;

/* The model: what launch `index` contributes to recorded frame `n`. */
static double
launch_output(const Launch* launches, int index, long n)
{
  const Launch* const launch = &launches[index];
  const long          played = n - launch->start;
  if (played < 0 || played >= (long)PAD_FRAMES) {
    return 0.0;
  }
  double gain = 1.0;
  if (launch->choked_by >= 0 && n >= launches[launch->choked_by].start) {
    const long k = n - launches[launch->choked_by].start;
    gain =
      k >= STEAL_FADE_FRAMES ? 0.0 : 1.0 - (double)(k + 1) / STEAL_FADE_FRAMES;
  }
  return gain * pad_signal[launch->pad][played];
}

/*
  Send every launch at once, each in a bundle timetagged `at_ms` after
  now, and record until all have started and every fade has ended. Then:
  /status counts `voices_after` voices; each voice starts within a frame of
  its timetag; and both outputs are, frame by frame, the sum the model
  gives: every voice plays its pad from its start frame, and each choked
  voice fades out over 2 ms from the start frame of the voice that chokes
  it, no sooner and no later.
*/
static void
run_launches(Launch*     launches,
             int         count,
             int32_t     voices_after,
             const char* what)
{
  int last_ms = 0;
  for (int i = 0; i < count; ++i) {
    last_ms = launches[i].at_ms > last_ms ? launches[i].at_ms : last_ms;
  }
  const uint32_t frames = (uint32_t)(last_ms + 200) * (RATE / 1000U);
  assert_true(frames < PAD_FRAMES);

  TAKES(attempt)
  {
    take_begin();
    struct timespec   realtime;
    const jack_time_t now = fl_clock_pair(&realtime);
    for (int i = 0; i < count; ++i) {
      const int64_t ahead_us = (int64_t)launches[i].at_ms * 1000;
      launches[i].usecs      = (jack_time_t)((int64_t)now + ahead_us);
      assert_true(
        fl_osc_send_bundle(rig.osc,
                           fl_timetag_after(&realtime, ahead_us),
                           launches[i].exclusive ? "/play/exclusive" : "/play",
                           "if",
                           SLOT_PAD_A + launches[i].pad,
                           1.0));
    }
    wait_recorded(frames);
    FlDaemonStatus status;
    assert_true(fl_osc_status(rig.osc, &status));
    if (take_end(frames, what)) {
      fprintf(stderr,
              "%s: voices_active %d (expected %d)\n",
              what,
              status.voices_active,
              voices_after);
      assert_int_equal(status.voices_active, voices_after);
      break;
    }
  }

  // Each voice's start: the one frame near its timetag where the sum
  // jumps by half a pad level or more (fades and ramps move it by less
  // than a hundredth per frame).
  const float* const   out   = recorded(0);
  const jack_nframes_t first = fl_recorder_first_frame(rig.recorder);
  for (int i = 0; i < count; ++i) {
    Launch* const  launch = &launches[i];
    jack_nframes_t frame  = 0;
    assert_true(fl_recorder_time_to_frame(rig.recorder, launch->usecs, &frame));
    launch->predicted = (long)(int32_t)(frame - first);
    launch->start     = -1;
    for (long n = launch->predicted - 3; n <= launch->predicted + 3; ++n) {
      if (n > 0 && out[n] - out[n - 1] > 0.03f) {
        assert_int_equal(launch->start, -1);
        launch->start = n;
      }
    }
    fprintf(stderr,
            "%s: %s %d at %d ms: timetag at frame %ld, started at %ld "
            "(period offset %ld)\n",
            what,
            launch->exclusive ? "/play/exclusive" : "/play",
            SLOT_PAD_A + launch->pad,
            launch->at_ms,
            launch->predicted,
            launch->start,
            launch->start % PERIOD);
    assert_true(launch->start >= 0);
    assert_between(launch->start - launch->predicted, -1, 1);
  }

  for (long n = 0; n < (long)frames; ++n) {
    double expected = 0.0;
    for (int i = 0; i < count; ++i) {
      expected += launch_output(launches, i, n);
    }
    for (unsigned c = 0; c < 2; ++c) {
      const double got = recorded(c)[n];
      if (fabs(got - expected) > 1e-5) {
        fprintf(stderr,
                "%s: out_%u frame %ld is %.9g, the model says %.9g\n",
                what,
                c + 1,
                n,
                got,
                expected);
        for (int i = 0; i < count; ++i) {
          fprintf(stderr,
                  "  launch %d (slot %d from %ld): %.9g\n",
                  i,
                  SLOT_PAD_A + launches[i].pad,
                  launches[i].start,
                  launch_output(launches, i, n));
        }
        fail();
      }
    }
  }
}

static void
test_voices_retrigger(void** state)
{
  (void)state;
  load_pads();
  SET("isi", SLOT_PAD_A, "voices", 1);
  // Pad A restarts at each launch; pad B, polyphonic, plays on.
  Launch launches[] = {
    { 0, false, 100, 2, 0, 0, 0 },  { 1, false, 150, -1, 0, 0, 0 },
    { 0, false, 200, 3, 0, 0, 0 },  { 0, false, 300, -1, 0, 0, 0 },
    { 1, false, 330, -1, 0, 0, 0 },
  };
  run_launches(launches, 5, 3, "voices=1");
}

static void
test_voices_limit(void** state)
{
  (void)state;
  load_pads();
  SET("isi", SLOT_PAD_A, "voices", 2);
  // Five launches of A: each beyond two steals A's oldest voice.
  Launch launches[] = {
    { 0, false, 100, 2, 0, 0, 0 },  { 0, false, 150, 3, 0, 0, 0 },
    { 0, false, 200, 4, 0, 0, 0 },  { 0, false, 250, -1, 0, 0, 0 },
    { 0, false, 300, -1, 0, 0, 0 },
  };
  run_launches(launches, 5, 2, "voices=2");
}

static void
test_choke_group(void** state)
{
  (void)state;
  load_pads();
  SET("isi", SLOT_PAD_A, "group", 5);
  SET("isi", SLOT_PAD_A + 1, "group", 5);
  SET("isi", SLOT_PAD_A + 3, "group", 6);
  // A and B in group 5, C in none, D alone in group 6. B chokes A, but not
  // its own earlier voice; A chokes both of B's; C and D play on.
  Launch launches[] = {
    { 0, false, 100, 3, 0, 0, 0 },  { 2, false, 130, -1, 0, 0, 0 },
    { 3, false, 160, -1, 0, 0, 0 }, { 1, false, 200, 5, 0, 0, 0 },
    { 1, false, 250, 5, 0, 0, 0 },  { 0, false, 300, -1, 0, 0, 0 },
    { 3, false, 350, -1, 0, 0, 0 },
  };
  run_launches(launches, 7, 4, "choke group");
}

static void
test_play_exclusive(void** state)
{
  (void)state;
  load_pads();
  // /play/exclusive D fades every other voice, D's own earlier one too; a
  // plain /play after it fades nothing.
  Launch launches[] = {
    { 0, false, 100, 4, 0, 0, 0 }, { 1, false, 150, 4, 0, 0, 0 },
    { 2, false, 200, 4, 0, 0, 0 }, { 3, false, 250, 4, 0, 0, 0 },
    { 3, true, 300, -1, 0, 0, 0 }, { 0, false, 400, -1, 0, 0, 0 },
  };
  run_launches(launches, 6, 2, "/play/exclusive");
}

/* Pause, resume, seek */

static float*
load_ramp(void)
{
  float* const ramp = new_samples(RAMP_FRAMES);
  for (uint32_t i = 0; i < RAMP_FRAMES; ++i) {
    ramp[i] = ramp_value(i);
  }
  load_mono(SLOT_RAMP, "ramp.wav", ramp, RAMP_FRAMES);
  return ramp;
}

/* Sample frame a voice plays at `k` frames after it was placed at
   `target`: on to the region's end, then round the region. */
static uint32_t
placed_position(uint32_t target, uint32_t k, bool looping)
{
  const uint32_t position = target + k;
  if (!looping || position < REGION_END) {
    return position;
  }
  return REGION_START + (position - REGION_END) % REGION_FRAMES;
}

/* The first frame from `from` on where `channel` leaves the ramp played
   from sample frame `position` at recorded frame `from` (round the region
   if `looping`), or -1. */
static long
deviation_from(unsigned channel,
               long     from,
               long     to,
               uint32_t position,
               bool     looping)
{
  const float* const out = recorded(channel);
  for (long n = from; n < to; ++n) {
    const uint32_t played =
      placed_position(position, (uint32_t)(n - from), looping);
    if (fabsf(out[n] - ramp_value(played)) > 1e-6f) {
      return n;
    }
  }
  return -1;
}

static long
first_deviation(unsigned channel, long from, long to, uint32_t position)
{
  return deviation_from(channel, from, to, position, false);
}

static void
test_pause_resume(void** state)
{
  (void)state;
  float* const ramp  = load_ramp();
  long         onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_RAMP, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SEND_OK("/pause", "i", SLOT_RAMP);
    wait_recorded(onset + RATE / 5);
    FlDaemonStatus status;
    assert_true(fl_osc_status(rig.osc, &status));
    assert_int_equal(status.voices_active, 1); // paused, not ended
    SEND_OK("/resume", "i", SLOT_RAMP);
    if (take_end((uint32_t)onset + RATE * 4 / 10, "pause and resume")) {
      break;
    }
  }
  const long end = onset + RATE * 4 / 10;

  for (unsigned c = 0; c < 2; ++c) {
    assert_silent(c, 0, onset);
    // The pause: a fade of 5 ms from the first frame of a period...
    const long paused = first_deviation(c, onset, end, 0);
    assert_true(paused > onset);
    assert_int_equal((paused - onset) % PERIOD, 0);
    for (long k = 0; k < PAUSE_FADE_FRAMES; ++k) {
      assert_frame(c,
                   paused + k,
                   ramp[paused - onset + k] *
                     (1.0 - (double)(k + 1) / PAUSE_FADE_FRAMES),
                   1e-6,
                   "pause fade");
    }
    // ...silence...
    const long position = paused + PAUSE_FADE_FRAMES - onset;
    const long resumed =
      fl_recorder_onset(rig.recorder, c, 0.0f, (uint32_t)paused + 240U);
    assert_true(resumed > paused + PAUSE_FADE_FRAMES);
    assert_int_equal((resumed - onset) % PERIOD, 0);
    // ...and the sample again from where the fade left it, faded in.
    for (long k = 0; k < PAUSE_FADE_FRAMES; ++k) {
      assert_frame(c,
                   resumed + k,
                   ramp[position + k] * (double)(k + 1) / PAUSE_FADE_FRAMES,
                   1e-6,
                   "resume fade");
    }
    const long deviation = first_deviation(
      c, resumed + PAUSE_FADE_FRAMES, end, (uint32_t)position + 240U);
    if (deviation >= 0) {
      assert_frame(c,
                   deviation,
                   ramp[position + deviation - resumed],
                   1e-6,
                   "after the resume");
    }
    if (c == 0) {
      fprintf(stderr,
              "paused %ld frames after the onset, at sample frame %ld "
              "after the 5 ms fade; resumed %ld frames later from it\n",
              paused - onset,
              position,
              resumed - paused - PAUSE_FADE_FRAMES);
    }
  }
  free(ramp);
}

/*
  A playing voice seeked at recorded frame `at`: it fades out over 5 ms
  (playing from `old_position` on) while the sample from `target` fades
  in, then the sample plays on from target + 240.
*/
static void
assert_seek(unsigned channel,
            long     at,
            long     end,
            uint32_t old_position,
            uint32_t target,
            bool     looping)
{
  for (long k = 0; k < PAUSE_FADE_FRAMES; ++k) {
    const uint32_t old    = placed_position(old_position, (uint32_t)k, looping);
    const double   weight = (double)(k + 1) / PAUSE_FADE_FRAMES;
    assert_frame(channel,
                 at + k,
                 ramp_value(old) * (1.0 - weight) +
                   ramp_value(placed_position(target, (uint32_t)k, looping)) *
                     weight,
                 1e-6,
                 "seek crossfade");
  }
  for (long n = at + PAUSE_FADE_FRAMES; n < end; ++n) {
    assert_frame(
      channel,
      n,
      ramp_value(placed_position(target, (uint32_t)(n - at), looping)),
      1e-6,
      "after the seek");
  }
}

static void
test_seek(void** state)
{
  (void)state;
  float* const ramp  = load_ramp();
  long         onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_RAMP, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SEND_OK("/seek", "if", SLOT_RAMP, 0.5);
    if (take_end((uint32_t)onset + RATE / 4, "seek")) {
      break;
    }
  }
  for (unsigned c = 0; c < 2; ++c) {
    const long at = first_deviation(c, onset, onset + RATE / 4, 0);
    assert_true(at > onset);
    assert_int_equal((at - onset) % PERIOD, 0);
    if (c == 0) {
      fprintf(
        stderr, "seek to 0.5 s at %ld frames after the onset\n", at - onset);
    }
    assert_seek(c, at, onset + RATE / 4, (uint32_t)(at - onset), 24000U, false);
  }
  free(ramp);
}

static void
test_seek_paused_and_loop(void** state)
{
  (void)state;
  float* const ramp = load_ramp();

  // A paused voice just moves: it resumes, faded in, at the frame asked
  // for (0.25 s as a double: frame 12000).
  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_RAMP, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SEND_OK("/pause", "i", SLOT_RAMP);
    wait_recorded(onset + RATE / 5);
    SEND_OK("/seek", "id", SLOT_RAMP, 0.25);
    SEND_OK("/resume", "i", SLOT_RAMP);
    if (take_end((uint32_t)onset + RATE * 4 / 10, "seek while paused")) {
      break;
    }
  }
  long end = onset + RATE * 4 / 10;
  for (unsigned c = 0; c < 2; ++c) {
    const long paused  = first_deviation(c, onset, end, 0);
    const long resumed = fl_recorder_onset(
      rig.recorder, c, 0.0f, (uint32_t)paused + PAUSE_FADE_FRAMES);
    assert_true(paused > onset && resumed > paused + PAUSE_FADE_FRAMES);
    for (long k = 0; k < PAUSE_FADE_FRAMES; ++k) {
      assert_frame(c,
                   resumed + k,
                   ramp[12000 + k] * (double)(k + 1) / PAUSE_FADE_FRAMES,
                   1e-6,
                   "resume after a seek");
    }
    for (long n = resumed + PAUSE_FADE_FRAMES; n < end; ++n) {
      assert_frame(c, n, ramp[12000 + n - resumed], 1e-6, "after the resume");
    }
  }
  fl_osc_send(rig.osc, "/stop", "i", SLOT_RAMP);
  assert_true(fl_osc_wait_voices(rig.osc, 0, 2000));

  // A loop voice placed before its region (0.1 s, frame 4800) plays on
  // into it, then round the region.
  SET("isssfsf", SLOT_RAMP, "mode", "loop", "start", 0.25, "end", 0.5);
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_RAMP, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SEND_OK("/seek", "if", SLOT_RAMP, 0.1);
    if (take_end((uint32_t)onset + RATE, "seek a loop")) {
      break;
    }
  }
  end = onset + RATE;
  for (unsigned c = 0; c < 2; ++c) {
    const long at = deviation_from(c, onset, end, REGION_START, true);
    assert_true(at > onset);
    assert_seek(c,
                at,
                end,
                placed_position(REGION_START, (uint32_t)(at - onset), true),
                4800U,
                true);
  }
  free(ramp);
}

/* Telemetry */

/*
  Collect the slot events the listener gets until `count` have come (3 s at
  most) and FL_TEST_SILENCE_MS more, and return them as "started 12,
  stopped 12", sorted if `any_order`.
*/
static int
compare_items(const void* a, const void* b)
{
  return strcmp((const char*)a, (const char*)b);
}

static const char*
events(int count, bool any_order)
{
  static char   list[1024];
  char          items[32][32];
  int           found    = 0;
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  int64_t       quiet_at = -1;
  while (found < 32) {
    const int64_t now = fl_now_ms();
    if (found >= count && quiet_at < 0) {
      quiet_at = now + FL_TEST_SILENCE_MS;
    }
    const int64_t until = quiet_at >= 0 ? quiet_at : deadline;
    if (now >= until) {
      break;
    }
    FlReply* const reply = fl_osc_wait(listener, NULL, (int)(until - now));
    if (!reply) {
      continue;
    }
    if (!strncmp(reply->path, "/event/", 7) &&
        strcmp(reply->path, "/event/xrun")) {
      snprintf(items[found++],
               sizeof(items[0]),
               "%s %d",
               reply->path + 7,
               reply->argc == 1 && reply->types[0] == 'i'
                 ? reply->argv[0].value.i
                 : -1);
    }
    fl_reply_free(reply);
  }
  if (any_order) {
    qsort(items, (size_t)found, sizeof(items[0]), compare_items);
  }
  size_t length = 0U;
  list[0]       = '\0';
  for (int i = 0; i < found; ++i) {
    length += (size_t)snprintf(
      list + length, sizeof(list) - length, "%s%s", i ? ", " : "", items[i]);
  }
  return list;
}

static void
play(int slot)
{
  assert_true(fl_osc_send(rig.osc, "/play", "if", slot, 1.0));
}

static void
test_events(void** state)
{
  (void)state;
  float* const level = new_samples(RATE);
  for (uint32_t i = 0; i < RATE; ++i) {
    level[i] = 0.25f;
  }
  load_mono(SLOT_EVENT_SHORT, "event-short.wav", level, RATE / 10);
  load_mono(SLOT_EVENT_LOOP, "event-loop.wav", level, RATE / 20);
  load_mono(SLOT_EVENT_LONG, "event-long.wav", level, RATE);
  load_mono(SLOT_EVENT_CHOKE, "event-choke-a.wav", level, RATE / 20);
  load_mono(SLOT_EVENT_CHOKE + 1, "event-choke-b.wav", level, RATE / 20);
  free(level);
  SET("iss", SLOT_EVENT_LOOP, "mode", "loop");
  SET("isssi", SLOT_EVENT_CHOKE, "mode", "loop", "group", 7);
  SET("isssi", SLOT_EVENT_CHOKE + 1, "mode", "loop", "group", 7);

  assert_string_equal(
    fl_osc_call(listener, FL_TEST_REPLY_MS, "/notify", "i", 1),
    "/done ,si \"/notify\" 1");

  // A one-shot starts and ends by itself.
  play(SLOT_EVENT_SHORT);
  assert_string_equal(events(2, false), "started 12, stopped 12");

  // A loop of 50 ms plays on (no stop in the 250 ms of listening) until
  // /stop; so does a one-shot of 1 s.
  play(SLOT_EVENT_LOOP);
  assert_string_equal(events(1, false), "started 13");
  fl_osc_send(rig.osc, "/stop", "i", SLOT_EVENT_LOOP);
  assert_string_equal(events(1, false), "stopped 13");
  play(SLOT_EVENT_LONG);
  assert_string_equal(events(1, false), "started 14");
  fl_osc_send(rig.osc, "/stop", "");
  assert_string_equal(events(1, false), "stopped 14");

  // A choke ends the other slot of the group.
  play(SLOT_EVENT_CHOKE);
  assert_string_equal(events(1, false), "started 15");
  play(SLOT_EVENT_CHOKE + 1);
  assert_string_equal(events(2, false), "started 16, stopped 15");
  fl_osc_send(rig.osc, "/stop", "i", SLOT_EVENT_CHOKE + 1);
  assert_string_equal(events(1, false), "stopped 16");

  // A retriggered pad keeps sounding: one start, no stop in between.
  SET("isi", SLOT_EVENT_LOOP, "voices", 1);
  play(SLOT_EVENT_LOOP);
  play(SLOT_EVENT_LOOP);
  play(SLOT_EVENT_LOOP);
  assert_string_equal(events(1, false), "started 13");
  fl_osc_send(rig.osc, "/stop", "i", SLOT_EVENT_LOOP);
  assert_string_equal(events(1, false), "stopped 13");

  // /play/exclusive ends every other slot.
  play(SLOT_EVENT_LOOP);
  play(SLOT_EVENT_CHOKE);
  assert_string_equal(events(2, true), "started 13, started 15");
  assert_true(
    fl_osc_send(rig.osc, "/play/exclusive", "if", SLOT_EVENT_LONG, 1.0));
  assert_string_equal(events(3, true), "started 14, stopped 13, stopped 15");

  // Pause, resume and seek end nothing.
  SEND_OK("/pause", "i", SLOT_EVENT_LONG);
  SEND_OK("/resume", "i", SLOT_EVENT_LONG);
  SEND_OK("/seek", "if", SLOT_EVENT_LONG, 0.1);
  assert_string_equal(events(0, false), "");
  fl_osc_send(rig.osc, "/stop", "");
  assert_string_equal(events(1, false), "stopped 14");

  assert_string_equal(
    fl_osc_call(listener, FL_TEST_REPLY_MS, "/notify", "i", 0),
    "/done ,si \"/notify\" 0");
}

/* One /meter/slot of one slot, and the bundle it came in. */
typedef struct {
  int   bundle;
  float peak;
  float position;
} SlotMeter;

typedef struct {
  float left;
  float right;
} MasterMeter;

#define MAX_BUNDLES 256

/*
  Check one slot's meters against the recording: the voice that played
  `frames` frames from recorded frame `onset` with no other sound. Each
  meter's window runs from the previous meter's position (or the voice's
  start) to its own (or, for the last, the voice's end: the block the voice
  ends in does not move the playhead). Its peak is the largest |sample| of
  both outputs in the window, before the master gain; the master meters of
  its bundle are the largest of each output.
*/
static void
assert_slot_meters(int                slot,
                   const SlotMeter*   meters,
                   int                count,
                   const MasterMeter* masters,
                   long               onset,
                   long               frames,
                   float              master_gain)
{
  assert_true(count >= 2);
  long from = 0;
  for (int i = 0; i < count; ++i) {
    const double position = (double)meters[i].position * RATE;
    const long   played   = lround(position);
    assert_true(fabs(position - (double)played) < 0.05);
    const long to = i + 1 < count ? played : frames;
    assert_true(to > from && to <= frames);
    if (i > 0 && i + 1 < count) {
      // 30 bundles a second of 256-frame blocks: 1536 to 2048 frames apart.
      assert_between(played - from, 1536, 2048);
      assert_int_equal((played - from) % PERIOD, 0);
    }

    float peak_l = 0.0f;
    float peak_r = 0.0f;
    for (long n = onset + from; n < onset + to; ++n) {
      peak_l = fabsf(recorded(0)[n]) > peak_l ? fabsf(recorded(0)[n]) : peak_l;
      peak_r = fabsf(recorded(1)[n]) > peak_r ? fabsf(recorded(1)[n]) : peak_r;
    }
    const float peak = (peak_l > peak_r ? peak_l : peak_r) / master_gain;
    const MasterMeter* const master = &masters[meters[i].bundle];
    if (fabsf(meters[i].peak - peak) > 1e-4f ||
        fabsf(master->left - peak_l) > 1e-4f ||
        fabsf(master->right - peak_r) > 1e-4f) {
      fprintf(stderr,
              "slot %d, meter %d of %d (frames %ld to %ld of the voice): "
              "peak %.6f, recorded %.6f; master %.6f %.6f, recorded %.6f "
              "%.6f\n",
              slot,
              i,
              count,
              from,
              to,
              (double)meters[i].peak,
              (double)peak,
              (double)master->left,
              (double)master->right,
              (double)peak_l,
              (double)peak_r);
      fail();
    }
    from = to;
  }
  assert_int_equal(from, frames);
}

static void
test_meters(void** state)
{
  (void)state;
  // A mono tone growing louder and a stereo one fading, one after the
  // other: every window of a meter has a peak of its own.
  float* const mono   = new_samples(METER_FRAMES);
  float* const stereo = new_samples(2U * METER_FRAMES);
  for (uint32_t i = 0; i < METER_FRAMES; ++i) {
    const float rise  = 0.2f + 0.6f * (float)i / (float)METER_FRAMES;
    const float fall  = 0.8f - 0.6f * (float)i / (float)METER_FRAMES;
    mono[i]           = sine_value(i, rise);
    stereo[2 * i]     = sine_value(i, fall);
    stereo[2 * i + 1] = -0.7f * sine_value(i, fall);
  }
  load_mono(SLOT_METER_MONO, "meter-mono.wav", mono, METER_FRAMES);
  char path[PATH_MAX];
  write_sample("meter-stereo.wav", stereo, METER_FRAMES, 2, path, sizeof(path));
  load(SLOT_METER_STEREO, path, METER_FRAMES, 2);
  free(mono);
  free(stereo);
  // Slot peaks are after gain and balance, before the master gain.
  SET("isf", SLOT_METER_MONO, "gain", -3.0);
  SET("isf", SLOT_METER_STEREO, "pan", 0.5);
  SEND_OK("/master/gain", "f", -6.02);
  const float master_gain = (float)pow(10.0, (double)-6.02f / 20.0);

  static SlotMeter   meters[2][MAX_BUNDLES];
  static MasterMeter masters[MAX_BUNDLES];
  int                meter_count[2] = { 0, 0 };
  int                bundles        = 0;
  int                in_two_seconds = 0;
  long               onset[2]       = { -1, -1 };
  TAKES(attempt)
  {
    meter_count[0] = meter_count[1] = 0;
    bundles                         = 0;
    fl_osc_clear(listener);
    take_begin();
    assert_string_equal(
      fl_osc_call(listener, FL_TEST_REPLY_MS, "/meters", "i", 30),
      "/done ,si \"/meters\" 30");
    struct timespec realtime;
    fl_clock_pair(&realtime);
    assert_true(fl_osc_send_bundle(rig.osc,
                                   fl_timetag_after(&realtime, 100000),
                                   "/play",
                                   "if",
                                   SLOT_METER_MONO,
                                   1.0));
    assert_true(fl_osc_send_bundle(rig.osc,
                                   fl_timetag_after(&realtime, 1000000),
                                   "/play",
                                   "if",
                                   SLOT_METER_STEREO,
                                   1.0));

    // Bundles that arrive within 2 s; then every one until meters are off.
    fl_osc_collect(listener, 2000);
    const unsigned early = fl_osc_pending(listener);
    assert_true(fl_osc_send(listener, "/meters", "i", 0));
    FlReply* const done = fl_osc_wait(listener, "/done", FL_TEST_REPLY_MS);
    assert_non_null(done);
    char line[256];
    assert_string_equal(fl_reply_format(done, line, sizeof(line)),
                        "/done ,si \"/meters\" 0");
    fl_reply_free(done);

    in_two_seconds = 0;
    for (unsigned taken = 0; fl_osc_pending(listener) > 0; ++taken) {
      FlReply* const reply = fl_osc_wait(listener, NULL, 0);
      if (!strcmp(reply->path, "/meter/master")) {
        assert_string_equal(reply->types, "ff");
        assert_true(bundles < MAX_BUNDLES);
        masters[bundles].left  = reply->argv[0].value.f;
        masters[bundles].right = reply->argv[1].value.f;
        ++bundles;
        in_two_seconds += taken < early;
      } else if (!strcmp(reply->path, "/meter/slot")) {
        assert_string_equal(reply->types, "iff");
        const int slot = reply->argv[0].value.i;
        assert_true(slot == SLOT_METER_MONO || slot == SLOT_METER_STEREO);
        assert_true(bundles > 0); // after its bundle's /meter/master
        const int index = slot - SLOT_METER_MONO;
        assert_true(meter_count[index] < MAX_BUNDLES);
        SlotMeter* const meter = &meters[index][meter_count[index]++];
        meter->bundle          = bundles - 1;
        meter->peak            = reply->argv[1].value.f;
        meter->position        = reply->argv[2].value.f;
      } else if (strncmp(reply->path, "/event/", 7)) {
        fprintf(stderr, "unexpected %s\n", reply->path);
        fail();
      }
      fl_reply_free(reply);
    }

    // Off means off: after what was on its way, nothing more comes.
    fl_osc_collect(listener, 100);
    fl_osc_clear(listener);
    assert_int_equal(fl_osc_collect(listener, FL_TEST_SILENCE_MS), 0);

    onset[0] = fl_recorder_onset(rig.recorder, 0, 0.0f, 0);
    assert_true(onset[0] >= 0);
    onset[1] = fl_recorder_onset(
      rig.recorder, 0, 0.0f, (uint32_t)onset[0] + METER_FRAMES);
    assert_true(onset[1] > onset[0] + (long)METER_FRAMES);
    if (take_end((uint32_t)onset[1] + METER_FRAMES + PERIOD, "meters")) {
      break;
    }
  }

  fprintf(stderr,
          "/meters 30: %d bundles within 2 s, %d in all; slot %d in %d, "
          "slot %d in %d\n",
          in_two_seconds,
          bundles,
          SLOT_METER_MONO,
          meter_count[0],
          SLOT_METER_STEREO,
          meter_count[1]);
  assert_between(in_two_seconds, 50, 70);

  // One slot at a time, silence around them.
  for (unsigned c = 0; c < 2; ++c) {
    assert_silent(c, 0, onset[0]);
    assert_silent(c, onset[0] + METER_FRAMES, onset[1]);
    assert_silent(c, onset[1] + METER_FRAMES, onset[1] + METER_FRAMES + PERIOD);
  }
  for (int index = 0; index < 2; ++index) {
    assert_slot_meters(SLOT_METER_MONO + index,
                       meters[index],
                       meter_count[index],
                       masters,
                       onset[index],
                       METER_FRAMES,
                       master_gain);
  }
  // A bundle in which no slot sounded meters silence.
  for (int bundle = 0; bundle < bundles; ++bundle) {
    bool sounded = false;
    for (int index = 0; index < 2; ++index) {
      for (int i = 0; i < meter_count[index]; ++i) {
        sounded = sounded || meters[index][i].bundle == bundle;
      }
    }
    if (!sounded) {
      assert_true(masters[bundle].left == 0.0f);
      assert_true(masters[bundle].right == 0.0f);
    }
  }
}

/* Bad input */

/* `got` is `expected`, and the settings of `slot` are still `before`. */
static void
assert_refused_at(int         line,
                  const char* got,
                  const char* expected,
                  int         slot,
                  const char* before)
{
  if (strcmp(got, expected)) {
    fprintf(
      stderr, "line %d:\n  got      %s\n  expected %s\n", line, got, expected);
    fail();
  }
  const char* const now = all_settings_of(slot);
  if (strcmp(now, before)) {
    fprintf(stderr,
            "line %d: slot %d changed:\n  before %s\n  after  %s\n",
            line,
            slot,
            before,
            now);
    fail();
  }
}

/* Send PATH TYPES ARGS... from the harness's client: the reply must be
   `expected` and the settings of `slot` unchanged. */
#define REFUSED_ON(slot, expected, ...)                              \
  do {                                                               \
    char before_[1024];                                              \
    snprintf(before_, sizeof(before_), "%s", all_settings_of(slot)); \
    assert_refused_at(                                               \
      __LINE__, CALL(__VA_ARGS__), (expected), (slot), before_);     \
  } while (0)

/* A /slot/set of the DC slot that must fail with `reason`. */
#define REFUSED_SET(reason, ...)                                          \
  REFUSED_ON(SLOT_DC,                                                     \
             text("/fail ,sis \"/slot/set\" %d \"%s\"", SLOT_DC, reason), \
             "/slot/set",                                                 \
             __VA_ARGS__)

/* Any other refused request: the DC slot stays as it is. */
#define REFUSED(expected, ...) REFUSED_ON(SLOT_DC, (expected), __VA_ARGS__)

/* An accepted /slot/set of the edge slot, and the settings it leads to. */
#define ACCEPTED(settings, ...)                               \
  do {                                                        \
    SET(__VA_ARGS__);                                         \
    assert_string_equal(settings_of(SLOT_EDGES), (settings)); \
  } while (0)

/* /slot/set of `pairs` pairs of `key` and ints 1, 2 ..., from the probe. */
static lo_message
many_pairs(int slot, const char* key, int pairs)
{
  lo_message const message = lo_message_new();
  lo_message_add_int32(message, slot);
  for (int i = 1; i <= pairs; ++i) {
    lo_message_add_string(message, key);
    lo_message_add_int32(message, i);
  }
  return message;
}

static void
bad_slot_settings(void)
{
  const char* const gain_range = "gain must be a number from -60 to 12 dB";
  const char* const pan_range  = "pan must be a number from -1 to 1";

  // Unknown keys, missing values, values where a key belongs. Every one
  // is all or nothing: the good pairs before a bad one change nothing
  // either (the DC loop would get quieter, or stop looping).
  REFUSED_SET("unknown key 'volume'", "isf", SLOT_DC, "volume", 1.0);
  REFUSED_SET("unknown key 'volume'",
              "isfsfsf",
              SLOT_DC,
              "gain",
              -20.0,
              "pan",
              0.5,
              "volume",
              1.0);
  REFUSED_SET("unknown key 'Gain'", "isf", SLOT_DC, "Gain", 1.0);
  REFUSED_SET("unknown key ''", "isf", SLOT_DC, "", 1.0);
  REFUSED_SET("key 'gain' has no value", "is", SLOT_DC, "gain");
  REFUSED_SET("key 'pan' has no value", "isfs", SLOT_DC, "gain", -20.0, "pan");
  REFUSED_SET("argument 2 must be a key (a string)", "if", SLOT_DC, 1.0);
  REFUSED_SET("argument 4 must be a key (a string)",
              "isfif",
              SLOT_DC,
              "gain",
              -20.0,
              3,
              1.0);
  REFUSED("/fail ,ss \"/slot/set\" \"bad arguments: expected ,i(*)+\"",
          "/slot/set",
          "i",
          SLOT_DC);
  REFUSED("/fail ,ss \"/slot/set\" \"bad arguments: expected ,i(*)+\"",
          "/slot/set",
          "isT",
          SLOT_DC,
          "gain");
  REFUSED("/fail ,sis \"/slot/set\" 32 \"slot 32 is out of range (0..31)\"",
          "/slot/set",
          "isf",
          32,
          "gain",
          -20.0);

  // Wrong types.
  REFUSED_SET("gain takes a number (float, double or int)",
              "iss",
              SLOT_DC,
              "gain",
              "loud");
  REFUSED_SET(
    "mode takes a string: oneshot or loop", "isi", SLOT_DC, "mode", 0);
  REFUSED_SET("mode must be oneshot or loop (got 'pingpong')",
              "iss",
              SLOT_DC,
              "mode",
              "pingpong");
  REFUSED_SET(
    "mode must be oneshot or loop (got '')", "iss", SLOT_DC, "mode", "");
  REFUSED_SET("mode must be oneshot or loop (got 'LOOP')",
              "isssss",
              SLOT_DC,
              "mode",
              "oneshot",
              "mode",
              "LOOP",
              "gain",
              "0");
  REFUSED_SET(
    "voices takes a whole number (int32)", "isf", SLOT_DC, "voices", 1.0);
  REFUSED_SET(
    "group takes a whole number (int32)", "isd", SLOT_DC, "group", 2.0);

  // NaN and infinities, as float and as double.
  REFUSED_SET(
    text("%s (got nan)", gain_range), "isf", SLOT_DC, "gain", (double)NAN);
  REFUSED_SET(
    text("%s (got inf)", gain_range), "isd", SLOT_DC, "gain", INFINITY);
  REFUSED_SET(
    text("%s (got -inf)", gain_range), "isf", SLOT_DC, "gain", -INFINITY);
  REFUSED_SET(
    text("%s (got nan)", pan_range), "isd", SLOT_DC, "pan", (double)NAN);
  REFUSED_SET("start must be a number from 0 to 86400 s (got nan)",
              "isf",
              SLOT_DC,
              "start",
              (double)NAN);
  REFUSED_SET("end must be a number from 0 to 86400 s (got inf)",
              "isf",
              SLOT_DC,
              "end",
              INFINITY);
  REFUSED_SET("xfade must be a number from 0 to 50 ms (got nan)",
              "isf",
              SLOT_DC,
              "xfade",
              (double)NAN);

  // One step past each edge (the edges themselves: accepted_edges()).
  REFUSED_SET(
    text("%s (got 12.001)", gain_range), "isf", SLOT_DC, "gain", 12.001);
  REFUSED_SET(
    text("%s (got -60.001)", gain_range), "isf", SLOT_DC, "gain", -60.001);
  REFUSED_SET(text("%s (got 13)", gain_range), "isi", SLOT_DC, "gain", 13);
  REFUSED_SET(text("%s (got 1.001)", pan_range), "isf", SLOT_DC, "pan", 1.001);
  REFUSED_SET(
    text("%s (got -1.001)", pan_range), "isf", SLOT_DC, "pan", -1.001);
  REFUSED_SET("xfade must be a number from 0 to 50 ms (got 50.001)",
              "isf",
              SLOT_DC,
              "xfade",
              50.001);
  REFUSED_SET("xfade must be a number from 0 to 50 ms (got -0.001)",
              "isf",
              SLOT_DC,
              "xfade",
              -0.001);
  REFUSED_SET("voices must be a whole number from 0 to 32 (got 33)",
              "isi",
              SLOT_DC,
              "voices",
              33);
  REFUSED_SET("voices must be a whole number from 0 to 32 (got -1)",
              "isi",
              SLOT_DC,
              "voices",
              -1);
  REFUSED_SET("group must be a whole number from 0 to 64 (got 65)",
              "isi",
              SLOT_DC,
              "group",
              65);
  REFUSED_SET("group must be a whole number from 0 to 64 (got -1)",
              "isi",
              SLOT_DC,
              "group",
              -1);
  REFUSED_SET("start must be a number from 0 to 86400 s (got -0.001)",
              "isf",
              SLOT_DC,
              "start",
              -0.001);
  REFUSED_SET("end must be a number from 0 to 86400 s (got -0.001)",
              "isf",
              SLOT_DC,
              "end",
              -0.001);

  // Regions: start >= end, and beyond the 1 s sample.
  REFUSED_SET("start (0.5 s) must be before end (0.5 s)",
              "isfsf",
              SLOT_DC,
              "start",
              0.5,
              "end",
              0.5);
  REFUSED_SET("start (0.6 s) must be before end (0.5 s)",
              "isfsf",
              SLOT_DC,
              "start",
              0.6,
              "end",
              0.5);
  REFUSED_SET("start (1 s) must be before the end of the sample (1 s)",
              "isf",
              SLOT_DC,
              "start",
              1.0);
  REFUSED_SET("start (2 s) must be before the end of the sample (1 s)",
              "isi",
              SLOT_DC,
              "start",
              2);
  REFUSED_SET("end (1.00002 s) is beyond the end of the sample (1 s)",
              "isd",
              SLOT_DC,
              "end",
              1.0 + 1.0 / RATE);
  REFUSED_SET("end (2 s) is beyond the end of the sample (1 s)",
              "isf",
              SLOT_DC,
              "end",
              2.0);
  // A gain that is fine, then a bad one: nothing.
  REFUSED_SET(text("%s (got 13)", gain_range),
              "isssfsf",
              SLOT_DC,
              "mode",
              "oneshot",
              "gain",
              -20.0,
              "gain",
              13.0);

  // 200 pairs, from the probe (a reply of this size goes to its sender).
  char before[1024];
  snprintf(before, sizeof(before), "%s", all_settings_of(SLOT_DC));
  assert_refused_at(__LINE__,
                    probe_call("/slot/set", many_pairs(SLOT_DC, "group", 200)),
                    text("/fail ,sis \"/slot/set\" %d \"too many settings: "
                         "200 pairs (at most 32)\"",
                         SLOT_DC),
                    SLOT_DC,
                    before);
  assert_refused_at(__LINE__,
                    probe_call("/slot/set", many_pairs(SLOT_DC, "group", 33)),
                    text("/fail ,sis \"/slot/set\" %d \"too many settings: "
                         "33 pairs (at most 32)\"",
                         SLOT_DC),
                    SLOT_DC,
                    before);
}

/* The other side of each edge, on the edge slot (a 1 s sample, silent). */
static void
accepted_edges(void)
{
  ACCEPTED("mode oneshot start 0 end 0 xfade 0 gain 12 pan 0 voices 0 "
           "group 0",
           "isf",
           SLOT_EDGES,
           "gain",
           12.0);
  ACCEPTED("mode oneshot start 0 end 0 xfade 0 gain -60 pan 0 voices 0 "
           "group 0",
           "isi",
           SLOT_EDGES,
           "gain",
           -60);
  ACCEPTED("mode oneshot start 0 end 0 xfade 0 gain -60 pan 1 voices 0 "
           "group 0",
           "isf",
           SLOT_EDGES,
           "pan",
           1.0);
  ACCEPTED("mode oneshot start 0 end 0 xfade 0 gain -60 pan -1 voices 0 "
           "group 0",
           "isf",
           SLOT_EDGES,
           "pan",
           -1.0);
  ACCEPTED("mode oneshot start 0 end 0 xfade 50 gain -60 pan -1 voices 32 "
           "group 64",
           "isfsisi",
           SLOT_EDGES,
           "xfade",
           50.0,
           "voices",
           32,
           "group",
           64);
  ACCEPTED(DEFAULT_SETTINGS,
           "isfsfsfsisi",
           SLOT_EDGES,
           "xfade",
           0.0,
           "gain",
           0.0,
           "pan",
           0.0,
           "voices",
           0,
           "group",
           0);
  // The region's edges on the 1 s sample: end at its length, start on its
  // last frame, start just before end.
  ACCEPTED("mode oneshot start 0 end 1 xfade 0 gain 0 pan 0 voices 0 group 0",
           "isf",
           SLOT_EDGES,
           "end",
           1.0);
  ACCEPTED(
    "mode oneshot start 0.999979 end 0 xfade 0 gain 0 pan 0 voices 0 group 0",
    "isfsf",
    SLOT_EDGES,
    "end",
    0.0,
    "start",
    1.0 - 1.0 / RATE);
  ACCEPTED(
    "mode oneshot start 0.499979 end 0.5 xfade 0 gain 0 pan 0 voices 0 group 0",
    "isfsf",
    SLOT_EDGES,
    "start",
    0.5 - 1.0 / RATE,
    "end",
    0.5);
  // start >= end across two messages: the second one is refused.
  REFUSED_ON(SLOT_EDGES,
             text("/fail ,sis \"/slot/set\" %d \"start (0.5 s) must be before "
                  "end (0.5 s)\"",
                  SLOT_EDGES),
             "/slot/set",
             "isf",
             SLOT_EDGES,
             "start",
             0.5);
  // 32 pairs are taken; the last of a key counts.
  lo_message const message = many_pairs(SLOT_EDGES, "group", 32);
  probe.got                = false;
  assert_true(lo_send_message_from(
                probe.daemon, probe.server, "/slot/set", message) >= 0);
  lo_message_free(message);
  assert_string_equal(settings_of(SLOT_EDGES),
                      "mode oneshot start 0.499979 end 0.5 xfade 0 gain 0 "
                      "pan 0 voices 0 group 32");
  SEND_OK("/slot/reset", "i", SLOT_EDGES);
  assert_string_equal(settings_of(SLOT_EDGES), DEFAULT_SETTINGS);
}

static void
bad_other_addresses(void)
{
  // /meters: 0..60.
  const char* const meters = "/fail ,ss \"/meters\" \"rate %d is not in 0..60 "
                             "(0 turns meters off)\"";
  REFUSED(text(meters, 1000), "/meters", "i", 1000);
  REFUSED(text(meters, 61), "/meters", "i", 61);
  REFUSED(text(meters, -1), "/meters", "i", -1);
  REFUSED("/fail ,ss \"/meters\" \"bad arguments: expected ,i\"",
          "/meters",
          "f",
          30.0);

  // /seek: inside the sample of a loaded slot.
  const char* const seek = "/fail ,sis \"/seek\" %d \"position %s s is not in "
                           "the sample (0 to 1 s)\"";
  REFUSED(text(seek, SLOT_DC, "1"), "/seek", "if", SLOT_DC, 1.0);
  REFUSED(text(seek, SLOT_DC, "5"), "/seek", "ii", SLOT_DC, 5);
  REFUSED(text(seek, SLOT_DC, "-0.001"), "/seek", "id", SLOT_DC, -0.001);
  REFUSED(text(seek, SLOT_DC, "nan"), "/seek", "if", SLOT_DC, (double)NAN);
  REFUSED(text(seek, SLOT_DC, "inf"), "/seek", "if", SLOT_DC, INFINITY);
  REFUSED(text("/fail ,sis \"/seek\" %d \"slot %d is empty\"",
               SLOT_EMPTY,
               SLOT_EMPTY),
          "/seek",
          "if",
          SLOT_EMPTY,
          0.0);
  REFUSED("/fail ,sis \"/seek\" 32 \"slot 32 is out of range (0..31)\"",
          "/seek",
          "if",
          32,
          0.0);
  REFUSED("/fail ,ss \"/seek\" \"bad arguments: expected ,iX\"",
          "/seek",
          "is",
          SLOT_DC,
          "0.5");

  // /master/gain: -60..12 (the DC voice would change level).
  const char* const master = "/fail ,ss \"/master/gain\" \"gain must be a "
                             "number from -60 to 12 dB (got %s)\"";
  REFUSED(text(master, "12.001"), "/master/gain", "f", 12.001);
  REFUSED(text(master, "-60.001"), "/master/gain", "d", -60.001);
  REFUSED(text(master, "nan"), "/master/gain", "f", (double)NAN);
  REFUSED(text(master, "-inf"), "/master/gain", "f", -INFINITY);
  REFUSED("/fail ,ss \"/master/gain\" \"bad arguments: expected ,X\"",
          "/master/gain",
          "s",
          "-6");

  // Launches and transport of a pad: bad ids, an empty slot, velocities.
  // An accepted /play/exclusive would fade the DC voice.
  REFUSED(text("/fail ,sis \"/play/exclusive\" %d \"slot %d is empty\"",
               SLOT_EMPTY,
               SLOT_EMPTY),
          "/play/exclusive",
          "if",
          SLOT_EMPTY,
          1.0);
  REFUSED(text("/fail ,sis \"/play/exclusive\" %d \"velocity 1.5 is not in "
               "[0, 1]\"",
               SLOT_DC),
          "/play/exclusive",
          "if",
          SLOT_DC,
          1.5);
  REFUSED(text("/fail ,sis \"/play/exclusive\" %d \"velocity 128 is not in "
               "0..127\"",
               SLOT_DC),
          "/play/exclusive",
          "ii",
          SLOT_DC,
          128);
  const char* const addresses[] = {
    "/slot/get", "/slot/reset", "/pause", "/resume", "/play/exclusive"
  };
  for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); ++i) {
    const bool launch = !strcmp(addresses[i], "/play/exclusive");
    REFUSED(text("/fail ,sis \"%s\" -1 \"slot -1 is out of range (0..31)\"",
                 addresses[i]),
            addresses[i],
            launch ? "if" : "i",
            -1,
            1.0);
  }
}

static void
test_bad_input(void** state)
{
  (void)state;
  load_dc(SLOT_DC, 2, RATE);
  float* const silence = new_samples(RATE);
  load_mono(SLOT_EDGES, "edges.wav", silence, RATE);
  free(silence);
  SET("iss", SLOT_DC, "mode", "loop");
  const char* const dc_settings =
    "mode loop start 0 end 0 xfade 0 gain 0 pan 0 voices 0 group 0";
  assert_string_equal(settings_of(SLOT_DC), dc_settings);

  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    play(SLOT_DC);
    onset = wait_sound(0, 0, PERIOD);
    bad_slot_settings();
    accepted_edges();
    bad_other_addresses();
    assert_string_equal(settings_of(SLOT_DC), dc_settings);
    // The whole battery takes a few milliseconds: record on for longer
    // than a pass of the 1 s loop, so that anything applied by mistake
    // (a gain, a mode, a seek, a master gain) would have been heard.
    const uint32_t battery = fl_recorder_frames(rig.recorder);
    wait_recorded((long)battery + RATE * 12 / 10);
    FlDaemonStatus status;
    assert_true(fl_osc_status(rig.osc, &status));
    assert_int_equal(status.voices_active, 1);
    if (take_end(fl_recorder_frames(rig.recorder) + PERIOD, "bad input")) {
      fprintf(stderr,
              "bad input: the battery took %ld frames of the take\n",
              (long)battery - onset);
      break;
    }
  }

  // The DC loop played on, unharmed, through all of it.
  const uint32_t frames = fl_recorder_frames(rig.recorder);
  fprintf(stderr,
          "bad input: %u frames (%.1f s) of the DC loop recorded\n",
          frames - (uint32_t)onset,
          (double)(frames - (uint32_t)onset) / RATE);
  for (long n = onset; n < (long)frames; ++n) {
    assert_frame(0, n, 0.5, 0.0, "the DC loop, out_1");
    assert_frame(1, n, -0.25, 0.0, "the DC loop, out_2");
  }
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_settings_roundtrip, test_setup),
    cmocka_unit_test_setup(test_loop_region_tiles, test_setup),
    cmocka_unit_test_setup(test_oneshot_region_once, test_setup),
    cmocka_unit_test_setup(test_loop_xfade, test_setup),
    cmocka_unit_test_setup(test_gain_and_pan, test_setup),
    cmocka_unit_test_setup(test_gain_change_ramps, test_setup),
    cmocka_unit_test_setup(test_master_gain, test_setup),
    cmocka_unit_test_setup(test_voices_retrigger, test_setup),
    cmocka_unit_test_setup(test_voices_limit, test_setup),
    cmocka_unit_test_setup(test_choke_group, test_setup),
    cmocka_unit_test_setup(test_play_exclusive, test_setup),
    cmocka_unit_test_setup(test_pause_resume, test_setup),
    cmocka_unit_test_setup(test_seek, test_setup),
    cmocka_unit_test_setup(test_seek_paused_and_loop, test_setup),
    cmocka_unit_test_setup(test_events, test_setup),
    cmocka_unit_test_setup(test_meters, test_setup),
    cmocka_unit_test_setup(test_bad_input, test_setup),
  };

  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  for (int pad = 0; pad < PAD_COUNT; ++pad) {
    free(pad_signal[pad]);
  }
  return fl_rig_finish(&rig, failures);
}
