/*
  Pads: the slot settings of osc-api-v2 §1, §2, §4 (master gain) and §5
  (telemetry) as the RT engine renders them, measured on its output like an
  audio engineer would: regions and loop passes to the frame, seam
  crossfades by their largest sample-to-sample step, gain ramps by their
  step, chokes by the frame their fade starts at, meters against the peaks
  of the rendered audio, and the untouched slot against v1 bit for bit.

  No server: the test thread plays every thread role (control, loader, RT,
  reaper, telemetry) and drives fl_engine_process() with synthetic JACK
  timing, as test_engine.c and test_mixer.c do. Frame n of a test is the
  n-th frame the rig rendered; its time is START_USECS + n / RATE seconds,
  rounded to the microsecond as JACK's clock would be.
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/mixer.h>
#include <flitzi/sample.h>
#include <flitzi/status.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define RATE 48000U
#define PERIOD_FRAMES 256U
#define MAX_PERIOD_FRAMES 4096U
#define START_USECS 1000000
#define SLOTS 8U

/* Fade lengths at 48 kHz, from common.h's milliseconds. */
#define STEAL_FADE_FRAMES 96U  /* FL_STEAL_FADE_MS: voice limit, chokes */
#define PAUSE_FADE_FRAMES 240U /* FL_PAUSE_FADE_MS: pause, resume, seek */
#define GAIN_RAMP_FRAMES 480U  /* FL_GAIN_RAMP_MS: slot and master gain */
#define XFADE_FRAMES 240U      /* a 5 ms seam crossfade */

/* Written into the outputs before each period: the engine overwrites it. */
#define GARBAGE 1234.5f

/* Allowed error where a value is computed along a ramp in float (gain +
   step * i against our double (i + 1) / n): a few ulps of values <= 2. */
#define TOLERANCE 1e-6f

#define PI 3.14159265358979323846

/* ---- The rig: an engine whose every thread role is the test thread ---- */

typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  uint32_t  output_count;
  uint64_t  frame; /* frames rendered so far: the next period's first */
  float     out[FL_MAX_OUTPUTS][MAX_PERIOD_FRAMES]; /* the last period */
} Rig;

/* A recording of a rig's outputs: frame i is rendered frame first + i. */
typedef struct {
  float*   channel[FL_MAX_OUTPUTS];
  uint32_t frames;
  uint64_t first;
} Take;

/* The time of rendered frame `frame`, rounded to the microsecond. */
static int64_t
usecs_at(uint64_t frame)
{
  return START_USECS +
         (int64_t)((frame * 1000000U + RATE / 2U) / (uint64_t)RATE);
}

static Rig*
rig_new(uint32_t output_count, uint32_t max_voices)
{
  Rig* const rig = (Rig*)calloc(1, sizeof(Rig));
  assert_non_null(rig);
  const FlEngineConfig config = {
    RATE, output_count, max_voices, 0U, NULL, NULL
  };
  rig->bank = fl_bank_new(SLOTS);
  assert_non_null(rig->bank);
  rig->engine = fl_engine_new(&config, rig->bank);
  assert_non_null(rig->engine);
  rig->output_count = output_count;
  return rig;
}

static void
rig_free(Rig* rig)
{
  FlSample* sample = NULL;
  while ((sample = fl_engine_next_retired(rig->engine))) {
    fl_sample_free(sample);
  }
  fl_engine_free(rig->engine);
  fl_bank_free(rig->bank);
  free(rig);
}

/* Act as the RT thread: render one period of `frame_count` over garbage
   into rig->out, with JACK-like timing, and copy it into `take` at the
   frame it was rendered at (if `take` is not NULL). */
static void
rig_process(Rig* rig, uint32_t frame_count, Take* take)
{
  assert_true(frame_count <= MAX_PERIOD_FRAMES);
  float* outputs[FL_MAX_OUTPUTS] = { rig->out[0], rig->out[1] };
  for (uint32_t c = 0U; c < FL_MAX_OUTPUTS; ++c) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      rig->out[c][i] = GARBAGE;
    }
  }
  const FlPeriod period = { frame_count,
                            (uint32_t)rig->frame,
                            usecs_at(rig->frame),
                            usecs_at(rig->frame + frame_count) };
  fl_engine_process(rig->engine, &period, outputs);

  if (take) {
    assert_true(rig->frame >= take->first &&
                rig->frame - take->first + frame_count <= take->frames);
    for (uint32_t c = 0U; c < rig->output_count; ++c) {
      memcpy(take->channel[c] + (rig->frame - take->first),
             rig->out[c],
             frame_count * sizeof(float));
    }
  }
  rig->frame += frame_count;
}

/* Render `frame_count` frames in periods of `period_frames`. */
static void
rig_render(Rig* rig, uint32_t frame_count, uint32_t period_frames, Take* take)
{
  for (uint32_t done = 0U; done < frame_count; done += period_frames) {
    const uint32_t left = frame_count - done;
    rig_process(rig, left < period_frames ? left : period_frames, take);
  }
}

static uint32_t
rig_voices_active(const Rig* rig)
{
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  return stats.voices_active;
}

/* Act as the telemetry thread: take up to `max` records; return how many.
   Fails if there were more. */
static uint32_t
rig_events(Rig* rig, FlEvent* events, uint32_t max)
{
  uint32_t count = 0U;
  FlEvent  event;
  while (fl_engine_next_event(rig->engine, &event)) {
    assert_true(count < max);
    events[count++] = event;
  }
  return count;
}

static void
rig_set_slot(Rig* rig, uint32_t slot, const FlSlotParams* params)
{
  assert_int_equal(fl_engine_set_slot(rig->engine, slot, params), FL_SUCCESS);
}

static void
rig_play(Rig* rig, uint32_t slot, float velocity)
{
  assert_int_equal(fl_engine_play(rig->engine, slot, velocity, FL_PLAY_NOW),
                   FL_SUCCESS);
}

/* Launch a voice of `slot` whose first frame is rendered frame `frame`. */
static void
rig_launch_at(Rig*     rig,
              uint32_t slot,
              float    velocity,
              uint64_t frame,
              bool     exclusive)
{
  assert_int_equal(
    fl_engine_launch(rig->engine, slot, velocity, usecs_at(frame), exclusive),
    FL_SUCCESS);
}

/* A take of `frames` frames from the rig's next frame on. */
static Take*
take_new(const Rig* rig, uint32_t frames)
{
  Take* const take = (Take*)calloc(1, sizeof(Take));
  assert_non_null(take);
  for (uint32_t c = 0U; c < FL_MAX_OUTPUTS; ++c) {
    take->channel[c] = (float*)calloc(frames, sizeof(float));
    assert_non_null(take->channel[c]);
  }
  take->frames = frames;
  take->first  = rig->frame;
  return take;
}

/* Record again, from the rig's next frame on. */
static void
take_restart(Take* take, const Rig* rig)
{
  take->first = rig->frame;
}

static void
take_free(Take* take)
{
  for (uint32_t c = 0U; c < FL_MAX_OUTPUTS; ++c) {
    free(take->channel[c]);
  }
  free(take);
}

/* ---- Samples ---- */

/* A silent sample of `frame_count` frames at the engine rate, to fill. */
static FlSample*
sample_new(uint32_t frame_count, uint32_t channels)
{
  FlSample* const sample =
    fl_sample_new(frame_count, channels, RATE, RATE, "/test/pad.wav");
  assert_non_null(sample);
  return sample;
}

/* Publish `sample` into `slot` and return its frames, which stay valid and
   unchanged while it is there (the test is the loader, which may read it). */
static const float*
rig_load(Rig* rig, uint32_t slot, FlSample* sample)
{
  fl_engine_publish(rig->engine, slot, sample);
  return sample->frames;
}

/* Channel `c` of a ramp: (frame + 1) / 65536 (x2 on the right), exact in
   float and different at every frame, so an offset of one frame shows. */
static FlSample*
make_ramp(uint32_t frame_count, uint32_t channels)
{
  FlSample* const sample = sample_new(frame_count, channels);
  for (uint32_t f = 0U; f < frame_count; ++f) {
    for (uint32_t c = 0U; c < channels; ++c) {
      sample->frames[f * channels + c] =
        (float)(f + 1U) * (c ? 2.0f : 1.0f) / 65536.0f;
    }
  }
  return sample;
}

/* White noise in [-1, 1) on multiples of 2^-15 (exact in float). */
static FlSample*
make_noise(uint32_t frame_count, uint32_t channels, uint32_t seed)
{
  FlSample* const sample = sample_new(frame_count, channels);
  uint32_t        lcg    = seed;
  for (uint32_t i = 0U; i < frame_count * channels; ++i) {
    lcg               = lcg * 1664525U + 1013904223U;
    sample->frames[i] = (float)((int32_t)(lcg >> 16) - 32768) / 32768.0f;
  }
  return sample;
}

static FlSample*
make_dc(uint32_t frame_count, float value)
{
  FlSample* const sample = sample_new(frame_count, 1U);
  for (uint32_t f = 0U; f < frame_count; ++f) {
    sample->frames[f] = value;
  }
  return sample;
}

/* Channel `c` is amplitude[c] * sin(2 pi hz[c] n / RATE + phase[c]). */
static FlSample*
make_sine(uint32_t     frame_count,
          uint32_t     channels,
          const double hz[],
          const double amplitude[],
          const double phase[])
{
  FlSample* const sample = sample_new(frame_count, channels);
  for (uint32_t f = 0U; f < frame_count; ++f) {
    for (uint32_t c = 0U; c < channels; ++c) {
      const double omega = 2.0 * PI * hz[c] / (double)RATE;
      sample->frames[f * channels + c] =
        (float)(amplitude[c] * sin(omega * (double)f + phase[c]));
    }
  }
  return sample;
}

/* ---- Measurements ---- */

/* Check that `count` floats of `actual` equal `expected` within `tolerance`,
   naming the first frame that does not. */
static void
check_frames(const float* actual,
             const float* expected,
             uint32_t     count,
             float        tolerance,
             const char*  what)
{
  for (uint32_t i = 0U; i < count; ++i) {
    if (!(fabsf(actual[i] - expected[i]) <= tolerance)) {
      print_error("%s: frame %u is %.9g, expected %.9g\n",
                  what,
                  i,
                  (double)actual[i],
                  (double)expected[i]);
      fail();
    }
  }
}

static void
check_constant(const float* actual,
               uint32_t     count,
               float        value,
               float        tolerance,
               const char*  what)
{
  for (uint32_t i = 0U; i < count; ++i) {
    if (!(fabsf(actual[i] - value) <= tolerance)) {
      print_error("%s: frame %u is %.9g, expected %.9g\n",
                  what,
                  i,
                  (double)actual[i],
                  (double)value);
      fail();
    }
  }
}

static void
check_value(float actual, float expected, float tolerance, const char* what)
{
  if (!(fabsf(actual - expected) <= tolerance)) {
    print_error(
      "%s: %.9g, expected %.9g\n", what, (double)actual, (double)expected);
    fail();
  }
}

/* The largest |x[n + 1] - x[n]| of `count` values `stride` apart. */
static float
largest_step(const float* x, uint32_t count, uint32_t stride)
{
  float largest = 0.0f;
  for (uint32_t n = 1U; n < count; ++n) {
    const float step =
      fabsf(x[(size_t)n * stride] - x[(size_t)(n - 1U) * stride]);
    largest = step > largest ? step : largest;
  }
  return largest;
}

/* The largest |x[n]| of `count` values `stride` apart. */
static float
largest_magnitude(const float* x, uint32_t count, uint32_t stride)
{
  float largest = 0.0f;
  for (uint32_t n = 0U; n < count; ++n) {
    const float value = fabsf(x[(size_t)n * stride]);
    largest           = value > largest ? value : largest;
  }
  return largest;
}

/* Check that no step of `x` is larger than `limit`. */
static void
check_steps(const float* x, uint32_t count, float limit, const char* what)
{
  for (uint32_t n = 1U; n < count; ++n) {
    const float step = fabsf(x[n] - x[n - 1U]);
    if (!(step <= limit)) {
      print_error("%s: step %.9g at frame %u (from %.9g to %.9g), limit %.9g\n",
                  what,
                  (double)step,
                  n,
                  (double)x[n - 1U],
                  (double)x[n],
                  (double)limit);
      fail();
    }
  }
}

/* Gain of frame i of a linear ramp over `frames` from `from` to `to`: the
   first ramped frame is one step along, the last one at the target. */
static float
ramp_gain(uint32_t i, uint32_t frames, float from, float to)
{
  if (i + 1U >= frames) {
    return to;
  }
  return (float)((double)from + ((double)to - (double)from) * (double)(i + 1U) /
                                  (double)frames);
}

/* ---- Loops and regions ---- */

/* A loop of a 0.25 s region of a 1 s sample repeats exactly that region:
   2 s of output is the region tiled, every pass 12000 frames. */
static void
test_loop_region_tiles(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_noise(RATE, 1U, 1U));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.mode               = FL_MODE_LOOP;
  params.start_seconds      = 0.25;
  params.end_seconds        = 0.5;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);

  const uint32_t frames = 2U * RATE;
  const uint32_t start  = RATE / 4U;
  const uint32_t pass   = RATE / 4U; /* 12000 frames */
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, frames, PERIOD_FRAMES, take);

  for (uint32_t n = 0U; n < frames; ++n) {
    const float expected = source[start + n % pass];
    if (take->channel[0][n] != expected || take->channel[1][n] != expected) {
      print_error("frame %u (pass %u, frame %u of it) is %.9g/%.9g, "
                  "expected %.9g\n",
                  n,
                  n / pass,
                  n % pass,
                  (double)take->channel[0][n],
                  (double)take->channel[1][n],
                  (double)expected);
      fail();
    }
  }
  assert_int_equal(rig_voices_active(rig), 1U);

  /* A stereo region shorter than a period (37 frames) wraps several times
     in every period, each pass still exactly its length. */
  const float* const stereo = rig_load(rig, 1U, make_noise(RATE, 2U, 2U));
  params.start_seconds      = 1000.0 / RATE;
  params.end_seconds        = 1037.0 / RATE;
  rig_set_slot(rig, 1U, &params);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL); /* stop fade */
  rig_play(rig, 1U, 1.0f);
  Take* const short_take = take_new(rig, 4U * PERIOD_FRAMES);
  rig_render(rig, 4U * PERIOD_FRAMES, PERIOD_FRAMES, short_take);
  for (uint32_t n = 0U; n < 4U * PERIOD_FRAMES; ++n) {
    const uint32_t frame = 1000U + n % 37U;
    for (uint32_t c = 0U; c < 2U; ++c) {
      if (short_take->channel[c][n] != stereo[2U * frame + c]) {
        print_error("short loop: frame %u channel %u is %.9g, expected "
                    "%.9g\n",
                    n,
                    c,
                    (double)short_take->channel[c][n],
                    (double)stereo[2U * frame + c]);
        fail();
      }
    }
  }

  take_free(short_take);
  take_free(take);
  rig_free(rig);
}

/* A one-shot region plays once, then silence; the voice ends, and the
   telemetry ring says STARTED, then STOPPED in the period it ended. */
static void
test_oneshot_region_once(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_noise(RATE, 1U, 3U));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.start_seconds      = 0.25;
  params.end_seconds        = 0.5;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);

  const uint32_t start   = RATE / 4U;
  const uint32_t length  = RATE / 4U;
  const uint32_t periods = 94U; /* 24064 frames: the region and as much */
  Take* const    take    = take_new(rig, periods * PERIOD_FRAMES);
  const uint32_t last    = (length - 1U) / PERIOD_FRAMES; /* it ends here */
  for (uint32_t p = 0U; p < periods; ++p) {
    rig_process(rig, PERIOD_FRAMES, take);
    FlEvent        events[4];
    const uint32_t count = rig_events(rig, events, 4U);
    if (p == 0U) {
      assert_int_equal(count, 1U);
      assert_int_equal(events[0].type, FL_EVENT_STARTED);
      assert_int_equal(events[0].slot, 0U);
    } else if (p == last) {
      assert_int_equal(count, 1U);
      assert_int_equal(events[0].type, FL_EVENT_STOPPED);
      assert_int_equal(events[0].slot, 0U);
    } else {
      assert_int_equal(count, 0U);
    }
    assert_int_equal(rig_voices_active(rig), p < last ? 1U : 0U);
  }

  check_frames(take->channel[0], source + start, length, 0.0f, "region");
  check_frames(take->channel[1], source + start, length, 0.0f, "region");
  check_constant(take->channel[0] + length,
                 periods * PERIOD_FRAMES - length,
                 0.0f,
                 0.0f,
                 "after the region");

  /* The default region (end 0) is the whole sample. */
  rig_set_slot(rig, 0U, &FL_SLOT_PARAMS_DEFAULT);
  rig_play(rig, 0U, 1.0f);
  take_restart(take, rig);
  rig_render(rig, periods * PERIOD_FRAMES, PERIOD_FRAMES, take);
  check_frames(
    take->channel[0], source, periods * PERIOD_FRAMES, 0.0f, "whole sample");

  take_free(take);
  rig_free(rig);
}

/* ---- Seam crossfades ----

   A crossfade of x frames from signal a to signal b, y[k] = (1 - w_k) a[k]
   + w_k b[k] with w_k = (k + 1) / (x + 1), steps by
     y[k+1] - y[k] = (1 - w) (a[k+1] - a[k]) + w (b[k+1] - b[k])
                     + (b[k] - a[k]) / (x + 1):
   a mean of the two signals' own steps (at most the larger of their largest
   steps) plus the difference of the two over x + 1. So the bound on a seam's
   step is the signal's largest step + max |b - a| / (x + 1): for a 5 ms
   crossfade of two signals of peak A that is 2A / 241 (0.4 % of the
   signal's peak-to-peak), against a jump of up to 2A without the crossfade.
   A dip (b or a is silence) is the same with the other signal 0: + A / 241.
   On top, TOLERANCE for float rounding. */

/* The largest |b[k] - a[k]| of a seam, a and b `stride` apart. */
static float
largest_difference(const float* a,
                   const float* b,
                   uint32_t     count,
                   uint32_t     stride)
{
  float largest = 0.0f;
  for (uint32_t k = 0U; k < count; ++k) {
    const float d = fabsf(b[(size_t)k * stride] - a[(size_t)k * stride]);
    largest       = d > largest ? d : largest;
  }
  return largest;
}

/* SEAM_PRE: the region starts 100 ms in, so the last 5 ms of every pass
   fade into the 5 ms before the start, which run on into the start. */
static void
test_seam_pre(void** state)
{
  (void)state;

  Rig* const   rig      = rig_new(2U, 32U);
  const double hz[2]    = { 440.0, 660.0 };
  const double amp[2]   = { 0.5, 0.4 };
  const double phase[2] = { 0.0, 2.5 };
  const float* source  = rig_load(rig, 0U, make_sine(RATE, 2U, hz, amp, phase));
  const uint32_t start = 4813U; /* not on a zero crossing */
  const uint32_t end   = 17891U;
  const uint32_t span  = end - start;
  FlSlotParams   params = FL_SLOT_PARAMS_DEFAULT;
  params.mode           = FL_MODE_LOOP;
  params.start_seconds  = (double)start / RATE;
  params.end_seconds    = (double)end / RATE;
  params.xfade_ms       = 5.0f;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);

  const uint32_t frames = 4U * span + 1000U;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, frames, PERIOD_FRAMES, take);

  for (uint32_t c = 0U; c < 2U; ++c) {
    const float* const x    = source + c;
    const float* const out  = take->channel[c];
    const float        step = largest_step(x, RATE, 2U);
    /* Without the crossfade the seam would jump by many of the sine's
       steps: the test would hear a click. */
    const float jump = fabsf(x[2U * start] - x[2U * (end - 1U)]);
    assert_true(jump > 4.0f * step);

    /* Every pass: the source up to the zone, the crossfade in it. */
    for (uint32_t n = 0U; n < frames; ++n) {
      const uint32_t j = n % span;
      float          expected;
      if (j < span - XFADE_FRAMES) {
        expected = x[2U * (start + j)];
        if (out[n] != expected) {
          print_error("channel %u frame %u (pass %u, frame %u) is %.9g, "
                      "expected the source %.9g\n",
                      c,
                      n,
                      n / span,
                      j,
                      (double)out[n],
                      (double)expected);
          fail();
        }
        continue;
      }
      const uint32_t k = j - (span - XFADE_FRAMES);
      const double   w = (double)(k + 1U) / (XFADE_FRAMES + 1U);
      const double   a = x[2U * (end - XFADE_FRAMES + k)];
      const double   b = x[2U * (start - XFADE_FRAMES + k)];
      expected         = (float)((1.0 - w) * a + w * b);
      if (!(fabsf(out[n] - expected) <= TOLERANCE)) {
        print_error("channel %u frame %u (seam frame %u) is %.9g, "
                    "expected %.9g\n",
                    c,
                    n,
                    k,
                    (double)out[n],
                    (double)expected);
        fail();
      }
    }

    const float difference = largest_difference(x + 2U * (end - XFADE_FRAMES),
                                                x + 2U * (start - XFADE_FRAMES),
                                                XFADE_FRAMES,
                                                2U);
    const float limit =
      step + difference / (float)(XFADE_FRAMES + 1U) + TOLERANCE;
    check_steps(out, frames, limit, "pre seam");
  }

  take_free(take);
  rig_free(rig);
}

/* SEAM_POST: the region starts at 0 with audio after its end, so the first
   5 ms of every pass after the first fade out of what follows the end. */
static void
test_seam_post(void** state)
{
  (void)state;

  Rig* const     rig      = rig_new(2U, 32U);
  const double   hz[1]    = { 440.0 };
  const double   amp[1]   = { 0.5 };
  const double   phase[1] = { 0.7 };
  const float*   x   = rig_load(rig, 0U, make_sine(RATE, 1U, hz, amp, phase));
  const uint32_t end = 17850U;
  FlSlotParams   params = FL_SLOT_PARAMS_DEFAULT;
  params.mode           = FL_MODE_LOOP;
  params.end_seconds    = (double)end / RATE;
  params.xfade_ms       = 5.0f;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);

  const float step = largest_step(x, RATE, 1U);
  assert_true(fabsf(x[0] - x[end - 1U]) > 4.0f * step);

  const uint32_t frames = 4U * end + 1000U;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, frames, PERIOD_FRAMES, take);
  const float* const out = take->channel[0];

  check_frames(out, x, end, 0.0f, "first pass");
  for (uint32_t n = end; n < frames; ++n) {
    const uint32_t j = n % end;
    float          expected;
    float          tolerance = 0.0f;
    if (j < XFADE_FRAMES) {
      const double w = (double)(j + 1U) / (XFADE_FRAMES + 1U);
      expected       = (float)((1.0 - w) * x[end + j] + w * x[j]);
      tolerance      = TOLERANCE;
    } else {
      expected = x[j];
    }
    if (!(fabsf(out[n] - expected) <= tolerance)) {
      print_error("frame %u (pass %u, frame %u) is %.9g, expected %.9g\n",
                  n,
                  n / end,
                  j,
                  (double)out[n],
                  (double)expected);
      fail();
    }
  }
  check_frames(take->channel[1], out, frames, 0.0f, "mono to both outputs");

  const float difference = largest_difference(x + end, x, XFADE_FRAMES, 1U);
  check_steps(out,
              frames,
              step + difference / (float)(XFADE_FRAMES + 1U) + TOLERANCE,
              "post seam");

  take_free(take);
  rig_free(rig);
}

/* SEAM_DIP: the region is the whole sample, so every pass's last 5 ms fade
   out and the next pass's first 5 ms fade in. */
static void
test_seam_dip(void** state)
{
  (void)state;

  Rig* const     rig      = rig_new(2U, 32U);
  const uint32_t length   = 12345U; /* 113.2 cycles: the ends do not meet */
  const double   hz[2]    = { 440.0, 440.0 };
  const double   amp[2]   = { 0.5, 0.25 };
  const double   phase[2] = { PI / 2.0, 1.0 };
  const float*   source =
    rig_load(rig, 0U, make_sine(length, 2U, hz, amp, phase));
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  params.xfade_ms     = 5.0f;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);

  const uint32_t frames = 4U * length + 1000U;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, frames, PERIOD_FRAMES, take);

  for (uint32_t c = 0U; c < 2U; ++c) {
    const float* const x    = source + c;
    const float* const out  = take->channel[c];
    const float        step = largest_step(x, length, 2U);
    if (c == 0U) {
      assert_true(fabsf(x[0] - x[2U * (length - 1U)]) > 4.0f * step);
    }
    for (uint32_t n = 0U; n < frames; ++n) {
      const uint32_t j    = n % length;
      float          gain = 1.0f;
      if (j >= length - XFADE_FRAMES) {
        gain = (float)(XFADE_FRAMES - (j - (length - XFADE_FRAMES))) /
               (float)(XFADE_FRAMES + 1U);
      } else if (j < XFADE_FRAMES && n >= length) {
        gain = (float)(j + 1U) / (float)(XFADE_FRAMES + 1U);
      }
      const float expected = gain * x[2U * j];
      if (!(fabsf(out[n] - expected) <= (gain == 1.0f ? 0.0f : TOLERANCE))) {
        print_error("channel %u frame %u (pass %u, frame %u) is %.9g, "
                    "expected %.9g\n",
                    c,
                    n,
                    n / length,
                    j,
                    (double)out[n],
                    (double)expected);
        fail();
      }
    }
    const float peak = largest_magnitude(x, length, 2U);
    check_steps(out,
                frames,
                step + peak / (float)(XFADE_FRAMES + 1U) + TOLERANCE,
                "dip seam");
  }

  take_free(take);
  rig_free(rig);
}

/* ---- Slot gain and balance ---- */

static void
test_slot_gain(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_noise(RATE, 2U, 4U));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.gain_left          = 0.5f;
  params.gain_right         = 0.5f;

  /* Set on a silent slot: no ramp, 0.5x from the first frame. */
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);
  const uint32_t frames = 8U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  for (uint32_t n = 0U; n < 2U * PERIOD_FRAMES; ++n) {
    for (uint32_t c = 0U; c < 2U; ++c) {
      check_value(take->channel[c][n],
                  0.5f * source[2U * n + c],
                  TOLERANCE,
                  "gain 0.5 set while silent");
    }
  }

  /* Back to unity while sounding: a 480-frame ramp, then exactly 1x. Then
     0.5 again: the same ramp down, then 0.5x. */
  params.gain_left = params.gain_right = 1.0f;
  rig_set_slot(rig, 0U, &params);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  params.gain_left = params.gain_right = 0.5f;
  rig_set_slot(rig, 0U, &params);
  rig_render(rig, 4U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  for (uint32_t i = 0U; i < 2U * PERIOD_FRAMES; ++i) {
    const uint32_t n    = 2U * PERIOD_FRAMES + i;
    const float    up   = ramp_gain(i, GAIN_RAMP_FRAMES, 0.5f, 1.0f);
    const uint32_t m    = 4U * PERIOD_FRAMES + i;
    const float    down = ramp_gain(i, GAIN_RAMP_FRAMES, 1.0f, 0.5f);
    for (uint32_t c = 0U; c < 2U; ++c) {
      check_value(take->channel[c][n],
                  up * source[2U * n + c],
                  TOLERANCE,
                  "ramp up to unity");
      check_value(take->channel[c][m],
                  down * source[2U * m + c],
                  TOLERANCE,
                  "ramp down to 0.5");
    }
  }
  /* After the ramp up it is the neutral stage again: exactly the source. */
  for (uint32_t n = 2U * PERIOD_FRAMES + GAIN_RAMP_FRAMES;
       n < 4U * PERIOD_FRAMES;
       ++n) {
    assert_true(take->channel[0][n] == source[2U * n]);
    assert_true(take->channel[1][n] == source[2U * n + 1U]);
  }
  for (uint32_t n = 4U * PERIOD_FRAMES + GAIN_RAMP_FRAMES; n < frames; ++n) {
    for (uint32_t c = 0U; c < 2U; ++c) {
      check_value(take->channel[c][n],
                  0.5f * source[2U * n + c],
                  TOLERANCE,
                  "0.5x after the ramp");
    }
  }

  take_free(take);
  rig_free(rig);
}

/* A gain change while sounding, measured on DC: the gain curve itself. */
static void
test_slot_gain_ramp_steps(void** state)
{
  (void)state;

  Rig* const rig = rig_new(2U, 32U);
  rig_load(rig, 0U, make_dc(RATE, 1.0f));
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);

  /* Left 1 -> 0.5, right 1 -> 0.25 over 10 ms. The take starts one frame
     early, with the last frame before the change (1.0), so the first step
     of the ramp is measured too. */
  params.gain_left  = 0.5f;
  params.gain_right = 0.25f;
  rig_set_slot(rig, 0U, &params);
  const uint32_t frames = 4U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames + 1U);
  take->first -= 1U;
  take->channel[0][0] = rig->out[0][PERIOD_FRAMES - 1U];
  take->channel[1][0] = rig->out[1][PERIOD_FRAMES - 1U];
  assert_true(take->channel[0][0] == 1.0f && take->channel[1][0] == 1.0f);
  rig_render(rig, frames, PERIOD_FRAMES, take);
  const float* const left  = take->channel[0] + 1;
  const float* const right = take->channel[1] + 1;

  for (uint32_t i = 0U; i < frames; ++i) {
    check_value(left[i],
                ramp_gain(i, GAIN_RAMP_FRAMES, 1.0f, 0.5f),
                TOLERANCE,
                "left ramp");
    check_value(right[i],
                ramp_gain(i, GAIN_RAMP_FRAMES, 1.0f, 0.25f),
                TOLERANCE,
                "right ramp");
  }
  /* The ramp takes the whole 480 frames and then holds the target. */
  assert_true(left[GAIN_RAMP_FRAMES - 2U] > 0.5f + 0.5f / 960.0f);
  check_constant(left + GAIN_RAMP_FRAMES,
                 frames - GAIN_RAMP_FRAMES,
                 0.5f,
                 0.0f,
                 "left after the ramp");
  check_constant(right + GAIN_RAMP_FRAMES,
                 frames - GAIN_RAMP_FRAMES,
                 0.25f,
                 0.0f,
                 "right after the ramp");
  check_steps(take->channel[0],
              frames + 1U,
              0.5f / (float)GAIN_RAMP_FRAMES + TOLERANCE,
              "left ramp step");
  check_steps(take->channel[1],
              frames + 1U,
              0.75f / (float)GAIN_RAMP_FRAMES + TOLERANCE,
              "right ramp step");

  /* Balance: right to 0 (ramped), then output 1 is silent, output 0 goes
     on at 0.5. */
  params.gain_right = 0.0f;
  rig_set_slot(rig, 0U, &params);
  take_restart(take, rig);
  take->first -= 1U; /* take[0]: the frame before the change */
  take->channel[0][0] = rig->out[0][PERIOD_FRAMES - 1U];
  take->channel[1][0] = rig->out[1][PERIOD_FRAMES - 1U];
  rig_render(rig, frames, PERIOD_FRAMES, take);
  check_steps(take->channel[1],
              frames + 1U,
              0.25f / (float)GAIN_RAMP_FRAMES + TOLERANCE,
              "right to 0");
  check_constant(take->channel[1] + 1U + GAIN_RAMP_FRAMES,
                 frames - GAIN_RAMP_FRAMES,
                 0.0f,
                 0.0f,
                 "right silenced");
  check_constant(take->channel[0], frames + 1U, 0.5f, 0.0f, "left unchanged");

  take_free(take);
  rig_free(rig);
}

/* gain_right 0 silences output 1 of a stereo sample; into one output the
   gain is the mean of the two. */
static void
test_slot_balance(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_noise(RATE, 2U, 5U));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.gain_right         = 0.0f;
  rig_set_slot(rig, 0U, &params);
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    assert_true(rig->out[0][i] == source[2U * i]);
    assert_true(rig->out[1][i] == 0.0f);
  }
  rig_free(rig);

  Rig* const         mono = rig_new(1U, 32U);
  const float* const ramp = rig_load(mono, 0U, make_ramp(RATE, 1U));
  rig_set_slot(mono, 0U, &params);
  rig_play(mono, 0U, 1.0f);
  rig_render(mono, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    check_value(mono->out[0][i], 0.5f * ramp[i], 0.0f, "mean gain into one");
    assert_true(mono->out[1][i] == GARBAGE); /* not an output */
  }
  rig_free(mono);
}

/* ---- Master gain ---- */

static void
test_master_gain(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_noise(RATE, 2U, 6U));

  /* Set before anything sounds: its ramp runs over silence. */
  assert_int_equal(fl_engine_set_master_gain(rig->engine, 0.5f), FL_SUCCESS);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    for (uint32_t c = 0U; c < 2U; ++c) {
      check_value(
        rig->out[c][i], 0.5f * source[2U * i + c], TOLERANCE, "master 0.5");
    }
  }
  /* With a slot gain too: the product. */
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.gain_left    = 0.5f;
  params.gain_right   = 0.5f;
  rig_set_slot(rig, 1U, &params);
  const float* const other = rig_load(rig, 1U, make_noise(RATE, 2U, 7U));
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  rig_play(rig, 1U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    for (uint32_t c = 0U; c < 2U; ++c) {
      check_value(rig->out[c][i],
                  0.25f * other[2U * i + c],
                  TOLERANCE,
                  "master 0.5 x slot 0.5");
    }
  }
  rig_free(rig);

  /* A change while sounding, on DC: 1 -> 0.25 over 480 frames, then back
     to 1, after which the output is the v1 output exactly. */
  Rig* const dc = rig_new(2U, 32U);
  rig_load(dc, 0U, make_dc(RATE, 1.0f));
  rig_play(dc, 0U, 1.0f);
  rig_render(dc, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  check_constant(dc->out[0], PERIOD_FRAMES, 1.0f, 0.0f, "before");
  assert_int_equal(fl_engine_set_master_gain(dc->engine, 0.25f), FL_SUCCESS);
  const uint32_t frames = 4U * PERIOD_FRAMES;
  Take* const    take   = take_new(dc, frames + 1U);
  take->first -= 1U; /* take[0]: the frame before the change */
  take->channel[0][0] = take->channel[1][0] = 1.0f;
  rig_render(dc, frames, PERIOD_FRAMES, take);
  for (uint32_t i = 0U; i < frames; ++i) {
    check_value(take->channel[0][1U + i],
                ramp_gain(i, GAIN_RAMP_FRAMES, 1.0f, 0.25f),
                TOLERANCE,
                "master ramp");
    assert_true(take->channel[1][1U + i] == take->channel[0][1U + i]);
  }
  check_steps(take->channel[0],
              frames + 1U,
              0.75f / (float)GAIN_RAMP_FRAMES + TOLERANCE,
              "master ramp step");
  check_constant(take->channel[0] + 1U + GAIN_RAMP_FRAMES,
                 frames - GAIN_RAMP_FRAMES,
                 0.25f,
                 0.0f,
                 "master after the ramp");

  assert_int_equal(fl_engine_set_master_gain(dc->engine, 1.0f), FL_SUCCESS);
  rig_render(dc, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  rig_render(dc, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  check_constant(dc->out[0], PERIOD_FRAMES, 1.0f, 0.0f, "master back at 1");

  take_free(take);
  rig_free(dc);
}

/* ---- Voice limit, choke groups, exclusive launches ---- */

/* Expected output of voice `i` of a test: `velocity` x the source from its
   start frame, times a steal fade from `fade_at` (UINT64_MAX: never). */
typedef struct {
  const float* source;
  uint32_t     frame_count;
  float        velocity;
  uint64_t     start;
  uint64_t     fade_at;
} ExpectedVoice;

static float
expected_voice(const ExpectedVoice* voice, uint64_t n)
{
  if (n < voice->start || n - voice->start >= voice->frame_count) {
    return 0.0f;
  }
  float gain = voice->velocity;
  if (n >= voice->fade_at) {
    const uint64_t i = n - voice->fade_at;
    gain             = i + 1U >= STEAL_FADE_FRAMES
                         ? 0.0f
                         : ramp_gain((uint32_t)i, STEAL_FADE_FRAMES, voice->velocity, 0.0f);
  }
  return gain * voice->source[n - voice->start];
}

static void
check_voices(const Take*          take,
             const ExpectedVoice* voices,
             uint32_t             voice_count,
             const char*          what)
{
  for (uint32_t n = 0U; n < take->frames; ++n) {
    float expected = 0.0f;
    for (uint32_t v = 0U; v < voice_count; ++v) {
      expected += expected_voice(&voices[v], n);
    }
    if (!(fabsf(take->channel[0][n] - expected) <= TOLERANCE)) {
      print_error("%s: frame %u is %.9g, expected %.9g\n",
                  what,
                  n,
                  (double)take->channel[0][n],
                  (double)expected);
      fail();
    }
  }
}

/* voice_limit 1: a launch restarts the pad; the old voice fades over 2 ms
   starting exactly at the frame the new one starts, in a later period. */
static void
test_voice_limit_one(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(1U, 32U);
  const float* const source = rig_load(rig, 0U, make_ramp(RATE, 1U));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.voice_limit        = 1U;
  rig_set_slot(rig, 0U, &params);

  const uint32_t frames = 8U * PERIOD_FRAMES;
  const uint64_t second = 4U * PERIOD_FRAMES + 100U;
  Take* const    take   = take_new(rig, frames);
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, take);
  rig_launch_at(rig, 0U, 0.75f, second, false);
  for (uint32_t p = 1U; p < 8U; ++p) {
    rig_process(rig, PERIOD_FRAMES, take);
    /* The pending voice counts until it starts and chokes the old one. */
    assert_int_equal(rig_voices_active(rig), p < 4U ? 2U : 1U);
  }
  const ExpectedVoice voices[] = {
    { source, RATE, 1.0f, 0U, second },
    { source, RATE, 0.75f, second, UINT64_MAX },
  };
  check_voices(take, voices, 2U, "voice limit 1");
  /* The frame before the new start is the old voice alone, unfaded. */
  assert_true(take->channel[0][second - 1U] == source[second - 1U]);

  /* The pad never stopped: one STARTED, no STOPPED. */
  FlEvent events[4];
  assert_int_equal(rig_events(rig, events, 4U), 1U);
  assert_int_equal(events[0].type, FL_EVENT_STARTED);

  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.plays, 2U);
  assert_int_equal(stats.unplayed, 0U);
  assert_int_equal(stats.late_plays, 0U);

  take_free(take);
  rig_free(rig);
}

/* voice_limit 2: the third voice steals the slot's oldest, not the second
   one, and not another slot's. */
static void
test_voice_limit_two(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(1U, 32U);
  const float* const source = rig_load(rig, 0U, make_ramp(RATE, 1U));
  const float* const dc     = rig_load(rig, 1U, make_dc(RATE, 1.0f));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.voice_limit        = 2U;
  rig_set_slot(rig, 0U, &params);

  rig_play(rig, 0U, 0.5f);
  rig_play(rig, 1U, 0.125f);
  rig_launch_at(rig, 0U, 0.25f, 300U, false);
  rig_launch_at(rig, 0U, 1.0f, 700U, false);

  const uint32_t frames = 6U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, frames, PERIOD_FRAMES, take);
  const ExpectedVoice voices[] = {
    { source, RATE, 0.5f, 0U, 700U },
    { dc, RATE, 0.125f, 0U, UINT64_MAX },
    { source, RATE, 0.25f, 300U, UINT64_MAX },
    { source, RATE, 1.0f, 700U, UINT64_MAX },
  };
  check_voices(take, voices, 4U, "voice limit 2");
  assert_int_equal(rig_voices_active(rig), 3U);

  take_free(take);
  rig_free(rig);
}

/* Choke group: a voice starting in group g fades the other slots' voices
   in g at its start frame; its own slot's and other groups' play on. */
static void
test_choke_group(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(1U, 32U);
  const float* const ramp   = rig_load(rig, 0U, make_ramp(RATE, 1U));
  const float* const hat    = rig_load(rig, 1U, make_dc(RATE, 1.0f));
  const float* const bass   = rig_load(rig, 2U, make_dc(RATE, 1.0f));
  const float* const keys   = rig_load(rig, 3U, make_dc(RATE, 1.0f));
  FlSlotParams       params = FL_SLOT_PARAMS_DEFAULT;
  params.group              = 5U;
  rig_set_slot(rig, 0U, &params);
  rig_set_slot(rig, 1U, &params);
  params.group = 6U;
  rig_set_slot(rig, 3U, &params); /* slot 2 in no group */

  const uint64_t first  = 2U * PERIOD_FRAMES + 77U;
  const uint64_t middle = 4U * PERIOD_FRAMES + 10U;
  const uint64_t second = 5U * PERIOD_FRAMES + 201U;
  rig_play(rig, 0U, 1.0f);
  rig_play(rig, 0U, 0.5f); /* its own slot: no choke */
  rig_play(rig, 2U, 0.25f);
  rig_play(rig, 3U, 0.125f);
  rig_launch_at(rig, 1U, 0.0625f, first, false);   /* chokes both of 0 */
  rig_launch_at(rig, 1U, 0.5f, middle, false);     /* chokes nothing */
  rig_launch_at(rig, 0U, 0.03125f, second, false); /* chokes both of 1 */

  const uint32_t frames = 8U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames);
  for (uint32_t p = 0U; p < 8U; ++p) {
    rig_process(rig, PERIOD_FRAMES, take);
    const uint64_t end = rig->frame;
    /* Pending voices count; faded ones do not. */
    const uint32_t expected = end <= first ? 7U : end <= second ? 5U : 3U;
    assert_int_equal(rig_voices_active(rig), expected);
  }
  const ExpectedVoice voices[] = {
    { ramp, RATE, 1.0f, 0U, first },
    { ramp, RATE, 0.5f, 0U, first },
    { bass, RATE, 0.25f, 0U, UINT64_MAX },
    { keys, RATE, 0.125f, 0U, UINT64_MAX },
    { hat, RATE, 0.0625f, first, second },
    { hat, RATE, 0.5f, middle, second },
    { ramp, RATE, 0.03125f, second, UINT64_MAX },
  };
  check_voices(take, voices, 7U, "choke group");

  take_free(take);
  rig_free(rig);
}

/* /play/exclusive: at the frame the new voice starts every other voice
   fades, its own slot's too. */
static void
test_exclusive_launch(void** state)
{
  (void)state;

  Rig* const         rig  = rig_new(1U, 32U);
  const float* const ramp = rig_load(rig, 0U, make_ramp(RATE, 1U));
  const float* const dc   = rig_load(rig, 1U, make_dc(RATE, 1.0f));
  rig_play(rig, 0U, 1.0f);
  rig_play(rig, 1U, 0.5f);
  rig_play(rig, 1U, 0.25f);
  const uint64_t at = 3U * PERIOD_FRAMES + 13U;
  rig_launch_at(rig, 1U, 0.125f, at, true);

  const uint32_t frames = 6U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames);
  for (uint32_t p = 0U; p < 6U; ++p) {
    rig_process(rig, PERIOD_FRAMES, take);
    assert_int_equal(rig_voices_active(rig), rig->frame <= at ? 4U : 1U);
  }
  const ExpectedVoice voices[] = {
    { ramp, RATE, 1.0f, 0U, at },
    { dc, RATE, 0.5f, 0U, at },
    { dc, RATE, 0.25f, 0U, at },
    { dc, RATE, 0.125f, at, UINT64_MAX },
  };
  check_voices(take, voices, 4U, "exclusive");

  /* A plain launch afterwards chokes nothing. */
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(rig_voices_active(rig), 2U);

  take_free(take);
  rig_free(rig);
}

/* ---- Pause, resume, seek ---- */

static void
test_pause_resume(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_ramp(RATE, 1U));
  rig_play(rig, 0U, 1.0f);
  const uint32_t frames = 12U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  check_frames(take->channel[0], source, 2U * PERIOD_FRAMES, 0.0f, "playing");

  /* Pause: a 5 ms fade, then silence; the voice keeps its entry. */
  assert_int_equal(fl_engine_pause(rig->engine, 0U, true), FL_SUCCESS);
  rig_render(rig, 4U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  assert_int_equal(rig_voices_active(rig), 1U);
  const uint32_t paused_at = 2U * PERIOD_FRAMES;
  for (uint32_t i = 0U; i < PAUSE_FADE_FRAMES; ++i) {
    check_value(take->channel[0][paused_at + i],
                ramp_gain(i, PAUSE_FADE_FRAMES, 1.0f, 0.0f) *
                  source[paused_at + i],
                TOLERANCE,
                "pause fade");
  }
  check_constant(take->channel[0] + paused_at + PAUSE_FADE_FRAMES,
                 4U * PERIOD_FRAMES - PAUSE_FADE_FRAMES,
                 0.0f,
                 0.0f,
                 "paused");
  check_constant(take->channel[1] + paused_at + PAUSE_FADE_FRAMES,
                 4U * PERIOD_FRAMES - PAUSE_FADE_FRAMES,
                 0.0f,
                 0.0f,
                 "paused");

  /* Resume: from the frame where the fade ended, fading in over 5 ms, then
     the source continuing exactly. */
  const uint32_t position   = paused_at + PAUSE_FADE_FRAMES;
  const uint32_t resumed_at = 6U * PERIOD_FRAMES;
  assert_int_equal(fl_engine_pause(rig->engine, 0U, false), FL_SUCCESS);
  rig_render(rig, 6U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  for (uint32_t i = 0U; i < PAUSE_FADE_FRAMES; ++i) {
    check_value(take->channel[0][resumed_at + i],
                ramp_gain(i, PAUSE_FADE_FRAMES, 0.0f, 1.0f) *
                  source[position + i],
                TOLERANCE,
                "resume fade");
  }
  check_frames(take->channel[0] + resumed_at + PAUSE_FADE_FRAMES,
               source + position + PAUSE_FADE_FRAMES,
               frames - resumed_at - PAUSE_FADE_FRAMES,
               0.0f,
               "after the resume");
  check_frames(take->channel[1], take->channel[0], frames, 0.0f, "both");

  /* Pause, seek while paused, resume: it resumes at the seek target. */
  assert_int_equal(fl_engine_pause(rig->engine, 0U, true), FL_SUCCESS);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(fl_engine_seek(rig->engine, 0U, 1000.0 / RATE), FL_SUCCESS);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "seek while paused");
  assert_int_equal(fl_engine_pause(rig->engine, 0U, false), FL_SUCCESS);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    check_value(rig->out[0][i],
                ramp_gain(i, PAUSE_FADE_FRAMES, 0.0f, 1.0f) * source[1000U + i],
                TOLERANCE,
                "resume at the seek target");
  }
  assert_int_equal(rig_voices_active(rig), 1U);

  take_free(take);
  rig_free(rig);
}

static void
test_seek(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const source = rig_load(rig, 0U, make_ramp(RATE, 1U));
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);

  /* To 0.5 s = frame 24000: a 5 ms crossfade from the old position into
     the new one, then exactly the source from frame 24000 + 240. */
  const uint32_t target = RATE / 2U;
  const uint32_t from   = 2U * PERIOD_FRAMES;
  assert_int_equal(fl_engine_seek(rig->engine, 0U, 0.5), FL_SUCCESS);
  Take* const take = take_new(rig, 3U * PERIOD_FRAMES);
  rig_render(rig, 3U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  for (uint32_t i = 0U; i < PAUSE_FADE_FRAMES; ++i) {
    const float expected =
      ramp_gain(i, PAUSE_FADE_FRAMES, 1.0f, 0.0f) * source[from + i] +
      ramp_gain(i, PAUSE_FADE_FRAMES, 0.0f, 1.0f) * source[target + i];
    check_value(take->channel[0][i], expected, TOLERANCE, "seek crossfade");
  }
  check_frames(take->channel[0] + PAUSE_FADE_FRAMES,
               source + target + PAUSE_FADE_FRAMES,
               3U * PERIOD_FRAMES - PAUSE_FADE_FRAMES,
               0.0f,
               "after the seek");
  assert_int_equal(rig_voices_active(rig), 1U);

  /* A loop voice placed before its region plays on into it and loops. */
  FlSlotParams params  = FL_SLOT_PARAMS_DEFAULT;
  params.mode          = FL_MODE_LOOP;
  params.start_seconds = 0.25;
  params.end_seconds   = 0.25 + 300.0 / RATE;
  rig_set_slot(rig, 0U, &params);
  assert_int_equal(fl_engine_seek(rig->engine, 0U, 0.25 - 100.0 / RATE),
                   FL_SUCCESS);
  take_restart(take, rig);
  rig_render(rig, 3U * PERIOD_FRAMES, PERIOD_FRAMES, take);
  for (uint32_t i = PAUSE_FADE_FRAMES; i < 3U * PERIOD_FRAMES; ++i) {
    const uint32_t frame =
      i < 100U ? 12000U - 100U + i : 12000U + (i - 100U) % 300U;
    check_value(
      take->channel[0][i], source[frame], 0.0f, "seek before the region");
  }

  FlEvent        events[8];
  const uint32_t count = rig_events(rig, events, 8U);
  assert_int_equal(count, 1U); /* STARTED; a seek neither stops nor starts */
  assert_int_equal(events[0].type, FL_EVENT_STARTED);

  take_free(take);
  rig_free(rig);
}

/* ---- Meters ---- */

/* At 60 Hz a snapshot is due every 800 frames: per-slot records whose peak
   is the slot's largest |sample| after its gains (before master gain),
   closed by a master record with the output peaks. */
static void
test_meters(void** state)
{
  (void)state;

  Rig* const rig = rig_new(2U, 32U);
  rig_load(rig, 0U, make_noise(RATE, 2U, 8U));
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.gain_left    = 0.5f;
  params.gain_right   = 0.25f;
  rig_set_slot(rig, 0U, &params);
  /* Master 0.5, its ramp done before metering starts; a power of two, so
     the slot's own output is exactly twice the rendered output. */
  assert_int_equal(fl_engine_set_master_gain(rig->engine, 0.5f), FL_SUCCESS);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);

  assert_int_equal(fl_engine_set_meters(rig->engine, 60U), FL_SUCCESS);
  rig_play(rig, 0U, 1.0f);
  const uint32_t frames = 2U * RATE;
  Take* const    take   = take_new(rig, frames);

  uint32_t snapshots    = 0U;
  uint32_t window_first = 0U; /* first frame since the last snapshot */
  uint32_t slot_records = 0U;
  bool     started = false, stopped = false;
  double   last_position = 0.0;
  for (uint32_t p = 0U; p < frames / PERIOD_FRAMES; ++p) {
    rig_process(rig, PERIOD_FRAMES, take);
    const uint32_t end = (uint32_t)(rig->frame - take->first);
    FlEvent        events[8];
    const uint32_t count        = rig_events(rig, events, 8U);
    bool           slot_in_this = false;
    for (uint32_t e = 0U; e < count; ++e) {
      const FlEvent* const event = &events[e];
      const uint32_t       width = end - window_first;
      const float          left =
        largest_magnitude(take->channel[0] + window_first, width, 1U);
      const float right =
        largest_magnitude(take->channel[1] + window_first, width, 1U);
      switch (event->type) {
        case FL_EVENT_STARTED:
          assert_false(started);
          assert_int_equal(event->slot, 0U);
          started = true;
          break;
        case FL_EVENT_STOPPED:
          assert_false(stopped);
          assert_int_equal(event->slot, 0U);
          /* The 1 s one-shot ends in the period of frame 48000. */
          assert_true(end > RATE && end - PERIOD_FRAMES < RATE);
          stopped = true;
          break;
        case FL_EVENT_METER_SLOT: {
          assert_int_equal(event->slot, 0U);
          assert_false(slot_in_this);
          slot_in_this = true;
          ++slot_records;
          const float slot_peak = 2.0f * (left > right ? left : right);
          check_value(event->peak, slot_peak, 0.0f, "slot peak");
          if (end <= RATE) {
            /* The newest voice's playhead, at the end of the window. */
            assert_true(fabs(event->position - (double)end / RATE) < 1e-9);
            assert_true(event->position > last_position);
            last_position = event->position;
          }
          break;
        }
        case FL_EVENT_METER_MASTER:
          check_value(event->peak, left, 0.0f, "master left peak");
          check_value(event->peak_right, right, 0.0f, "master right peak");
          /* It closes the snapshot: nothing after it in this period. */
          assert_int_equal(e, count - 1U);
          /* A slot record in every window the voice sounded in. */
          assert_true(slot_in_this == (window_first < RATE));
          ++snapshots;
          window_first = end;
          break;
        default:
          fail();
      }
    }
    /* One snapshot each time another 800 frames have been rendered. */
    assert_int_equal(snapshots, end / 800U);
  }
  assert_true(started);
  assert_true(stopped);
  assert_int_equal(snapshots, 120U);
  assert_int_equal(slot_records, 60U); /* windows up to the one of 48000 */

  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.dropped_events, 0U);

  /* Meters off: no more records. */
  assert_int_equal(fl_engine_set_meters(rig->engine, 0U), FL_SUCCESS);
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, 8U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  FlEvent events[4];
  assert_int_equal(rig_events(rig, events, 4U), 1U);
  assert_int_equal(events[0].type, FL_EVENT_STARTED);

  take_free(take);
  rig_free(rig);
}

/* A snapshot covers what sounded since the last one: turning meters off
   and on again starts a fresh one, without peaks from before. */
static void
test_meters_restart_fresh(void** state)
{
  (void)state;

  Rig* const rig = rig_new(2U, 32U);
  rig_load(rig, 0U, make_dc(RATE, 1.0f));
  rig_load(rig, 1U, make_dc(RATE, 0.25f));
  assert_int_equal(fl_engine_set_meters(rig->engine, 60U), FL_SUCCESS);
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL); /* < 800 */
  assert_int_equal(fl_engine_set_meters(rig->engine, 0U), FL_SUCCESS);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);

  assert_int_equal(fl_engine_set_meters(rig->engine, 60U), FL_SUCCESS);
  rig_play(rig, 1U, 1.0f);
  rig_render(rig, 4U * PERIOD_FRAMES, PERIOD_FRAMES, NULL); /* >= 800 */
  FlEvent        events[8];
  const uint32_t count = rig_events(rig, events, 8U);
  /* STARTED 0, STOPPED 0, STARTED 1, then one snapshot of slot 1 alone. */
  assert_int_equal(count, 5U);
  assert_int_equal(events[0].type, FL_EVENT_STARTED);
  assert_int_equal(events[1].type, FL_EVENT_STOPPED);
  assert_int_equal(events[2].type, FL_EVENT_STARTED);
  assert_int_equal(events[3].type, FL_EVENT_METER_SLOT);
  assert_int_equal(events[3].slot, 1U);
  check_value(events[3].peak, 0.25f, 0.0f, "fresh slot peak");
  assert_int_equal(events[4].type, FL_EVENT_METER_MASTER);
  check_value(events[4].peak, 0.25f, 0.0f, "fresh master peak");
  check_value(events[4].peak_right, 0.25f, 0.0f, "fresh master peak");

  rig_free(rig);
}

/* ---- v1 compatibility ---- */

/* A slot nobody touched (or set to the defaults) renders what v1 did: the
   plain fl_mix_add of each voice's source x velocity, in age order. */
static void
test_default_slot_is_v1(void** state)
{
  (void)state;

  Rig* const         rig    = rig_new(2U, 32U);
  const float* const stereo = rig_load(rig, 0U, make_noise(3000U, 2U, 9U));
  const float* const mono   = rig_load(rig, 1U, make_noise(2000U, 1U, 10U));
  rig_set_slot(rig, 1U, &FL_SLOT_PARAMS_DEFAULT);
  rig_play(rig, 0U, 0.8f);
  rig_launch_at(rig, 1U, 0.3f, 100U, false);
  rig_launch_at(rig, 0U, 0.55f, 700U, false);
  rig_launch_at(rig, 1U, 0.9f, 1500U, false);

  const uint32_t frames = 16U * PERIOD_FRAMES;
  Take* const    take   = take_new(rig, frames);
  rig_render(rig, frames, PERIOD_FRAMES, take);

  Take* const  v1         = take_new(rig, frames);
  float* const outputs[2] = { v1->channel[0], v1->channel[1] };
  fl_mix_add(stereo, 2U, 3000U, 0.8f, 0.0f, outputs, 2U, 0U);
  fl_mix_add(mono, 1U, 2000U, 0.3f, 0.0f, outputs, 2U, 100U);
  fl_mix_add(stereo, 2U, 3000U, 0.55f, 0.0f, outputs, 2U, 700U);
  fl_mix_add(mono, 1U, 2000U, 0.9f, 0.0f, outputs, 2U, 1500U);
  for (uint32_t c = 0U; c < 2U; ++c) {
    assert_memory_equal(
      take->channel[c], v1->channel[c], frames * sizeof(float));
  }

  take_free(v1);
  take_free(take);
  rig_free(rig);
}

/* ---- Periods longer than a block ---- */

/* The same scene: a loop with a seam, a timed start that chokes it (choke
   group) at a frame inside the third block, slot gains, master gain and
   meters. */
static Rig*
long_scene(void)
{
  Rig* const rig = rig_new(2U, 32U);
  rig_load(rig, 0U, make_noise(RATE, 2U, 11U));
  rig_load(rig, 1U, make_ramp(RATE, 1U));
  rig_load(rig, 2U, make_noise(5000U, 2U, 12U));

  FlSlotParams loop  = FL_SLOT_PARAMS_DEFAULT;
  loop.mode          = FL_MODE_LOOP;
  loop.start_seconds = 0.1;
  loop.end_seconds   = 0.13; /* 1440 frames: wraps inside blocks */
  loop.xfade_ms      = 5.0f;
  loop.group         = 2U;
  rig_set_slot(rig, 0U, &loop);

  FlSlotParams timed = FL_SLOT_PARAMS_DEFAULT;
  timed.group        = 2U;
  timed.gain_left    = 0.5f;
  timed.gain_right   = 0.75f;
  rig_set_slot(rig, 1U, &timed);

  FlSlotParams whole = FL_SLOT_PARAMS_DEFAULT;
  whole.mode         = FL_MODE_LOOP;
  whole.xfade_ms     = 3.0f; /* a dip */
  rig_set_slot(rig, 2U, &whole);

  assert_int_equal(fl_engine_set_master_gain(rig->engine, 0.7f), FL_SUCCESS);
  assert_int_equal(fl_engine_set_meters(rig->engine, 60U), FL_SUCCESS);
  rig_play(rig, 0U, 0.9f);
  rig_play(rig, 2U, 0.6f);
  rig_launch_at(rig, 1U, 1.0f, 2U * 1024U + 300U, false);
  return rig;
}

static void
test_long_period_equals_blocks(void** state)
{
  (void)state;

  const uint32_t frames = 4U * MAX_PERIOD_FRAMES;
  Rig* const     whole  = long_scene();
  Rig* const     split  = long_scene();
  Take* const    a      = take_new(whole, frames);
  Take* const    b      = take_new(split, frames);
  FlEvent        events_a[64];
  FlEvent        events_b[64];

  for (uint32_t p = 0U; p < 4U; ++p) {
    rig_process(whole, MAX_PERIOD_FRAMES, a);
    for (uint32_t q = 0U; q < 4U; ++q) {
      rig_process(split, FL_BLOCK_FRAMES, b);
    }
    assert_int_equal(rig_voices_active(whole), rig_voices_active(split));
    const uint32_t count = rig_events(whole, events_a, 64U);
    assert_int_equal(rig_events(split, events_b, 64U), count);
    for (uint32_t e = 0U; e < count; ++e) {
      assert_int_equal(events_a[e].type, events_b[e].type);
      assert_int_equal(events_a[e].slot, events_b[e].slot);
      assert_true(events_a[e].peak == events_b[e].peak);
      assert_true(events_a[e].peak_right == events_b[e].peak_right);
      assert_true(events_a[e].position == events_b[e].position);
    }
  }
  for (uint32_t c = 0U; c < 2U; ++c) {
    for (uint32_t n = 0U; n < frames; ++n) {
      if (a->channel[c][n] != b->channel[c][n]) {
        print_error("channel %u frame %u: %.9g in one 4096 period, %.9g in "
                    "1024 periods\n",
                    c,
                    n,
                    (double)a->channel[c][n],
                    (double)b->channel[c][n]);
        fail();
      }
    }
  }
  assert_int_equal(rig_voices_active(whole), 2U); /* slots 1 and 2 */

  /* And the timed start is on its frame: slot 1 alone in a 4096 period. */
  Rig* const         alone  = rig_new(2U, 32U);
  const float* const source = rig_load(alone, 1U, make_ramp(RATE, 1U));
  const uint32_t     at     = 2U * 1024U + 300U;
  rig_launch_at(alone, 1U, 1.0f, at, false);
  rig_process(alone, MAX_PERIOD_FRAMES, NULL);
  check_constant(alone->out[0], at, 0.0f, 0.0f, "before the timed start");
  check_frames(alone->out[0] + at,
               source,
               MAX_PERIOD_FRAMES - at,
               0.0f,
               "timed start in a long period");

  rig_free(alone);
  take_free(b);
  take_free(a);
  rig_free(split);
  rig_free(whole);
}

/* ---- Fades that start from silence ---- */

/* A loop voice at velocity 0 (a valid /play) that is stopped, and a voice
   stopped in the same period as its resume or its seek (both start from
   gain 0), must still end when their fade does: STOPPED, voice freed. */
static void
test_fade_from_silence_ends(void** state)
{
  (void)state;

  Rig* const rig = rig_new(2U, 32U);
  rig_load(rig, 0U, make_dc(RATE, 1.0f));
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  rig_set_slot(rig, 0U, &params);
  FlEvent events[8];

  /* Velocity 0, stopped. */
  rig_play(rig, 0U, 0.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(rig_events(rig, events, 8U), 2U);
  assert_int_equal(events[0].type, FL_EVENT_STARTED);
  assert_int_equal(events[1].type, FL_EVENT_STOPPED);

  /* Paused, then resumed and stopped in one period. */
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(fl_engine_pause(rig->engine, 0U, true), FL_SUCCESS);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(fl_engine_pause(rig->engine, 0U, false), FL_SUCCESS);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "resumed, stopped");
  assert_int_equal(rig_events(rig, events, 8U), 2U);
  assert_int_equal(events[1].type, FL_EVENT_STOPPED);

  /* Seeked and stopped in one period: the seek's copy fades in from 0. */
  rig_play(rig, 0U, 1.0f);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_int_equal(fl_engine_seek(rig->engine, 0U, 0.5), FL_SUCCESS);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_render(rig, 2U * PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "seeked, stopped");
  assert_int_equal(rig_events(rig, events, 8U), 2U);
  assert_int_equal(events[1].type, FL_EVENT_STOPPED);
  assert_int_equal(rig_voices_active(rig), 0U);

  /* Unloading the slot hands the sample back at once: no voice holds it. */
  FlSample* const sample = fl_bank_get(rig->bank, 0U);
  fl_engine_publish(rig->engine, 0U, NULL);
  rig_render(rig, PERIOD_FRAMES, PERIOD_FRAMES, NULL);
  assert_ptr_equal(fl_engine_next_retired(rig->engine), sample);
  fl_sample_free(sample);

  rig_free(rig);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_loop_region_tiles),
    cmocka_unit_test(test_oneshot_region_once),
    cmocka_unit_test(test_seam_pre),
    cmocka_unit_test(test_seam_post),
    cmocka_unit_test(test_seam_dip),
    cmocka_unit_test(test_slot_gain),
    cmocka_unit_test(test_slot_gain_ramp_steps),
    cmocka_unit_test(test_slot_balance),
    cmocka_unit_test(test_master_gain),
    cmocka_unit_test(test_voice_limit_one),
    cmocka_unit_test(test_voice_limit_two),
    cmocka_unit_test(test_choke_group),
    cmocka_unit_test(test_exclusive_launch),
    cmocka_unit_test(test_pause_resume),
    cmocka_unit_test(test_seek),
    cmocka_unit_test(test_meters),
    cmocka_unit_test(test_meters_restart_fresh),
    cmocka_unit_test(test_default_slot_is_v1),
    cmocka_unit_test(test_long_period_equals_blocks),
    cmocka_unit_test(test_fade_from_silence_ends),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
