/*
  The mixer, first as a pure function (fl_mix_add), then through the engine:
  exact output of fl_engine_process() for voices, timing, fades and stealing.

  The engine tests play every thread role (control, loader, RT, reaper) from
  the test thread, which the engine allows as long as the calls do not
  overlap. Sample values are multiples of 1/1024 and gains are powers of two
  where possible, so most expectations are exact.
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/mixer.h>
#include <flitzi/sample.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define RATE 48000U
#define PERIOD_FRAMES 256U
#define PERIOD_USECS 5333 /* 256 frames at 48 kHz */
#define START_USECS 1000000

/* Written into the outputs before each period: the engine overwrites it. */
#define GARBAGE 1234.5f

/* Allowed error where a value is not exact (fades by 1/240 and so on). */
#define TOLERANCE 1e-6f

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

/* Check that `count` floats of `actual` all equal `value`. */
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

/* Source frames: channel 0 is (frame + 1) / 1024, channel 1 three times
   that, so a swap or a frame offset shows and every value is exact. */
static float
source_value(uint32_t frame, uint32_t channel)
{
  return (float)(frame + 1U) * (channel ? 3.0f : 1.0f) / 1024.0f;
}

/* ---- fl_mix_add ---- */

static void
test_mix_mono_to_one(void** state)
{
  (void)state;

  const float source[4] = { 1.0f, 2.0f, 3.0f, 4.0f };
  float       output[6] = { 10.0f, 10.0f, 10.0f, 10.0f, 10.0f, 10.0f };
  float*      outputs[] = { output };

  fl_mix_add(source, 1U, 4U, 0.5f, 0.0f, outputs, 1U, 1U);

  const float expected[6] = { 10.0f, 10.5f, 11.0f, 11.5f, 12.0f, 10.0f };
  check_frames(output, expected, 6U, 0.0f, "mono -> 1");
}

static void
test_mix_mono_to_two(void** state)
{
  (void)state;

  const float source[3] = { 1.0f, -2.0f, 4.0f };
  float       left[3]   = { 0.0f, 0.0f, 0.0f };
  float       right[3]  = { 1.0f, 1.0f, 1.0f };
  float*      outputs[] = { left, right };

  fl_mix_add(source, 1U, 3U, 0.25f, 0.0f, outputs, 2U, 0U);

  const float expected_left[3]  = { 0.25f, -0.5f, 1.0f };
  const float expected_right[3] = { 1.25f, 0.5f, 2.0f };
  check_frames(left, expected_left, 3U, 0.0f, "mono -> left");
  check_frames(right, expected_right, 3U, 0.0f, "mono -> right");
}

static void
test_mix_stereo_to_two(void** state)
{
  (void)state;

  const float source[6] = { 1.0f, -1.0f, 2.0f, -2.0f, 3.0f, -3.0f };
  float       left[5]   = { 0 };
  float       right[5]  = { 0 };
  float*      outputs[] = { left, right };

  fl_mix_add(source, 2U, 3U, 1.0f, 0.0f, outputs, 2U, 2U);

  const float expected_left[5]  = { 0.0f, 0.0f, 1.0f, 2.0f, 3.0f };
  const float expected_right[5] = { 0.0f, 0.0f, -1.0f, -2.0f, -3.0f };
  check_frames(left, expected_left, 5U, 0.0f, "stereo -> left");
  check_frames(right, expected_right, 5U, 0.0f, "stereo -> right");
}

static void
test_mix_stereo_to_one(void** state)
{
  (void)state;

  const float source[6] = { 1.0f, 3.0f, 2.0f, 6.0f, -1.0f, 1.0f };
  float       output[3] = { 0.5f, 0.5f, 0.5f };
  float*      outputs[] = { output };

  fl_mix_add(source, 2U, 3U, 1.0f, 0.0f, outputs, 1U, 0U);

  const float expected[3] = { 2.5f, 4.5f, 0.5f };
  check_frames(output, expected, 3U, 0.0f, "stereo -> 1 (average)");

  /* Scaled by velocity too. */
  fl_mix_add(source, 2U, 3U, 0.5f, 0.0f, outputs, 1U, 0U);
  const float scaled[3] = { 3.5f, 6.5f, 0.5f };
  check_frames(output, scaled, 3U, 0.0f, "stereo -> 1 at 0.5");
}

static void
test_mix_velocity(void** state)
{
  (void)state;

  const float source[4] = { 1.0f, 1.0f, -1.0f, 0.5f };
  float       output[4] = { 0 };
  float*      outputs[] = { output };

  fl_mix_add(source, 1U, 4U, 0.125f, 0.0f, outputs, 1U, 0U);
  const float expected[4] = { 0.125f, 0.125f, -0.125f, 0.0625f };
  check_frames(output, expected, 4U, 0.0f, "velocity 0.125");

  /* Velocity 0 adds nothing. */
  fl_mix_add(source, 1U, 4U, 0.0f, 0.0f, outputs, 1U, 0U);
  check_frames(output, expected, 4U, 0.0f, "velocity 0");
}

static void
test_mix_gain_ramp(void** state)
{
  (void)state;

  /* Mono: 1, 0.75, 0.5, 0.25, 0 times the source. */
  const float mono[5]     = { 1.0f, 2.0f, 4.0f, 8.0f, 16.0f };
  float       output[5]   = { 0 };
  float*      one_out[]   = { output };
  const float expected[5] = { 1.0f, 1.5f, 2.0f, 2.0f, 0.0f };
  fl_mix_add(mono, 1U, 5U, 1.0f, -0.25f, one_out, 1U, 0U);
  check_frames(output, expected, 5U, 0.0f, "mono ramp");

  /* Stereo into two outputs, rising ramp. */
  const float stereo[8] = {
    1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f
  };
  float  left[4]    = { 0 };
  float  right[4]   = { 0 };
  float* two_outs[] = { left, right };
  fl_mix_add(stereo, 2U, 4U, 0.25f, 0.25f, two_outs, 2U, 0U);
  const float up[4]   = { 0.25f, 0.5f, 0.75f, 1.0f };
  const float down[4] = { -0.25f, -0.5f, -0.75f, -1.0f };
  check_frames(left, up, 4U, 0.0f, "stereo ramp left");
  check_frames(right, down, 4U, 0.0f, "stereo ramp right");

  /* Stereo into one output: the ramp applies to the average. */
  const float pairs[8]   = { 2.0f, 2.0f, 2.0f, 2.0f, 2.0f, 2.0f, 2.0f, 2.0f };
  float       average[4] = { 0 };
  float*      avg_out[]  = { average };
  fl_mix_add(pairs, 2U, 4U, 1.0f, -0.25f, avg_out, 1U, 0U);
  const float ramp[4] = { 2.0f, 1.5f, 1.0f, 0.5f };
  check_frames(average, ramp, 4U, 0.0f, "stereo -> 1 ramp");
}

static void
test_mix_zero_frames(void** state)
{
  (void)state;

  const float source[2] = { 1.0f, 1.0f };
  float       output[2] = { 7.0f, 7.0f };
  float*      outputs[] = { output, output };
  fl_mix_add(source, 1U, 0U, 1.0f, 0.0f, outputs, 2U, 0U);
  fl_mix_add(source, 2U, 0U, 1.0f, 0.5f, outputs, 1U, 0U);
  assert_true(output[0] == 7.0f && output[1] == 7.0f);
}

/* Long, odd lengths and offsets, so vectorized bodies and their scalar tails
   are both exercised, against a plain double-precision reference. */
static void
test_mix_long_against_reference(void** state)
{
  (void)state;

  enum { FRAMES = 1003, OFFSET = 5, LENGTH = FRAMES + OFFSET + 3 };

  float* const source = (float*)malloc(2U * FRAMES * sizeof(float));
  assert_non_null(source);
  for (uint32_t i = 0U; i < 2U * FRAMES; ++i) {
    source[i] = (float)((i * 37U) % 101U) / 50.0f - 1.0f;
  }

  for (uint32_t channels = 1U; channels <= 2U; ++channels) {
    for (uint32_t output_count = 1U; output_count <= 2U; ++output_count) {
      for (int ramp = 0; ramp < 2; ++ramp) {
        const float gain = 0.7f;
        const float step = ramp ? -0.7f / (float)FRAMES : 0.0f;
        float       out[2][LENGTH];
        float*      outputs[] = { out[0], out[1] };
        for (uint32_t i = 0U; i < LENGTH; ++i) {
          out[0][i] = out[1][i] = 0.25f;
        }

        fl_mix_add(
          source, channels, FRAMES, gain, step, outputs, output_count, OFFSET);

        for (uint32_t c = 0U; c < output_count; ++c) {
          for (uint32_t i = 0U; i < LENGTH; ++i) {
            double expected = 0.25;
            if (i >= OFFSET && i < OFFSET + FRAMES) {
              const uint32_t f = i - OFFSET;
              const double   g = (double)gain + (double)step * f;
              if (channels == 1U) {
                expected += g * source[f];
              } else if (output_count == 1U) {
                expected += g * 0.5 * (source[2U * f] + source[2U * f + 1U]);
              } else {
                expected += g * source[2U * f + c];
              }
            }
            if (fabs(out[c][i] - expected) > 1e-5) {
              print_error("channels %u outputs %u ramp %d: out[%u][%u] is %g, "
                          "expected %g\n",
                          channels,
                          output_count,
                          ramp,
                          c,
                          i,
                          (double)out[c][i],
                          expected);
              fail();
            }
          }
        }
      }
    }
  }

  free(source);
}

/* ---- Through the engine ---- */

typedef float (*FillFunc)(uint32_t frame, uint32_t channel);

static float
fill_source(uint32_t frame, uint32_t channel)
{
  return source_value(frame, channel);
}

static float
fill_dc(uint32_t frame, uint32_t channel)
{
  (void)frame;
  (void)channel;
  return 1.0f;
}

static float
fill_dc_left(uint32_t frame, uint32_t channel)
{
  (void)frame;
  return channel ? 0.0f : 1.0f;
}

static float
fill_dc_right(uint32_t frame, uint32_t channel)
{
  (void)frame;
  return channel ? 1.0f : 0.0f;
}

/* The engine with every thread role played by the test thread. */
typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  FlPeriod  period; /* the next period to process */
  float     out[FL_MAX_OUTPUTS][PERIOD_FRAMES];
} Rig;

static Rig*
rig_new(uint32_t sample_rate, uint32_t output_count, uint32_t max_voices)
{
  Rig* const rig = (Rig*)calloc(1, sizeof(Rig));
  assert_non_null(rig);

  const FlEngineConfig config = { sample_rate, output_count, max_voices,
                                  0U,          NULL,         NULL };
  rig->bank                   = fl_bank_new(8U);
  assert_non_null(rig->bank);
  rig->engine = fl_engine_new(&config, rig->bank);
  assert_non_null(rig->engine);

  rig->period.frame_count = PERIOD_FRAMES;
  rig->period.first_frame = 0U;
  rig->period.usecs       = START_USECS;
  rig->period.next_usecs  = START_USECS + PERIOD_USECS;
  return rig;
}

/* Act as the reaper: free what the engine handed back; return how many. */
static uint32_t
rig_reap(Rig* rig)
{
  uint32_t  count  = 0U;
  FlSample* sample = NULL;
  while ((sample = fl_engine_next_retired(rig->engine))) {
    fl_sample_free(sample);
    ++count;
  }
  return count;
}

static void
rig_free(Rig* rig)
{
  rig_reap(rig);
  fl_engine_free(rig->engine);
  fl_bank_free(rig->bank);
  free(rig);
}

/* Act as the loader: publish a sample made by `fill` into `slot`. */
static void
rig_load(Rig*     rig,
         uint32_t slot,
         uint32_t frame_count,
         uint32_t channels,
         FillFunc fill)
{
  FlSample* const sample =
    fl_sample_new(frame_count, channels, RATE, RATE, "/test/sample.wav");
  assert_non_null(sample);
  for (uint32_t f = 0U; f < frame_count; ++f) {
    for (uint32_t c = 0U; c < channels; ++c) {
      sample->frames[f * channels + c] = fill(f, c);
    }
  }
  fl_engine_publish(rig->engine, slot, sample);
}

/* Act as the RT thread: render one period over garbage, then advance. */
static void
rig_process(Rig* rig)
{
  float* outputs[FL_MAX_OUTPUTS] = { rig->out[0], rig->out[1] };
  for (uint32_t c = 0U; c < FL_MAX_OUTPUTS; ++c) {
    for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
      rig->out[c][i] = GARBAGE;
    }
  }

  fl_engine_process(rig->engine, &rig->period, outputs);

  rig->period.first_frame += PERIOD_FRAMES;
  rig->period.usecs      = rig->period.next_usecs;
  rig->period.next_usecs = rig->period.usecs + PERIOD_USECS;
}

static uint32_t
rig_voices_active(const Rig* rig)
{
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  return stats.voices_active;
}

/* Fill `expected` with `gain` times channel `channel` of the source from
   `first_frame`, placed at `offset`, silent elsewhere and past `frame_count`.
 */
static void
expect_source(float*   expected,
              uint32_t offset,
              uint32_t first_frame,
              uint32_t frame_count,
              uint32_t channel,
              float    gain)
{
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    const uint32_t frame = first_frame + (i - offset);
    expected[i]          = (i >= offset && frame < frame_count)
                             ? gain * source_value(frame, channel)
                             : 0.0f;
  }
}

static void
test_engine_mono_voice(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, 300U, 1U, fill_source);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);

  float expected[PERIOD_FRAMES];
  rig_process(rig);
  expect_source(expected, 0U, 0U, 300U, 0U, 1.0f);
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "mono left 1");
  check_frames(rig->out[1], expected, PERIOD_FRAMES, 0.0f, "mono right 1");
  assert_int_equal(rig_voices_active(rig), 1U);

  /* The last 44 frames, then silence; the voice ends. */
  rig_process(rig);
  expect_source(expected, 0U, 256U, 300U, 0U, 1.0f);
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "mono left 2");
  check_frames(rig->out[1], expected, PERIOD_FRAMES, 0.0f, "mono right 2");
  assert_int_equal(rig_voices_active(rig), 0U);

  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "after the end");
  check_constant(rig->out[1], PERIOD_FRAMES, 0.0f, 0.0f, "after the end");

  rig_free(rig);
}

static void
test_engine_stereo_voice(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 3U, 1000U, 2U, fill_source);
  assert_int_equal(fl_engine_play(rig->engine, 3U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);

  float expected[PERIOD_FRAMES];
  for (uint32_t p = 0U; p < 4U; ++p) {
    rig_process(rig);
    expect_source(expected, 0U, p * PERIOD_FRAMES, 1000U, 0U, 1.0f);
    check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "stereo left");
    expect_source(expected, 0U, p * PERIOD_FRAMES, 1000U, 1U, 1.0f);
    check_frames(rig->out[1], expected, PERIOD_FRAMES, 0.0f, "stereo right");
  }
  assert_int_equal(rig_voices_active(rig), 0U);

  rig_free(rig);
}

static void
test_engine_velocity(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, 1000U, 2U, fill_source);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.25f, FL_PLAY_NOW),
                   FL_SUCCESS);

  float expected[PERIOD_FRAMES];
  rig_process(rig);
  expect_source(expected, 0U, 0U, 1000U, 0U, 0.25f);
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "velocity left");
  expect_source(expected, 0U, 0U, 1000U, 1U, 0.25f);
  check_frames(rig->out[1], expected, PERIOD_FRAMES, 0.0f, "velocity right");

  rig_free(rig);
}

static void
test_engine_two_voices(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, 1000U, 1U, fill_source);
  rig_load(rig, 1U, 1000U, 2U, fill_source);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 1U, 0.5f, FL_PLAY_NOW),
                   FL_SUCCESS);

  rig_process(rig);
  assert_int_equal(rig_voices_active(rig), 2U);
  float expected[2][PERIOD_FRAMES];
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    expected[0][i] = source_value(i, 0U) + 0.5f * source_value(i, 0U);
    expected[1][i] = source_value(i, 0U) + 0.5f * source_value(i, 1U);
  }
  check_frames(rig->out[0], expected[0], PERIOD_FRAMES, TOLERANCE, "sum left");
  check_frames(rig->out[1], expected[1], PERIOD_FRAMES, TOLERANCE, "sum right");

  rig_free(rig);
}

static void
test_engine_start_mid_period(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, 1000U, 1U, fill_source);

  /* 2083 us after the period starts is frame 99.99, which rounds to 100. */
  const int64_t start = rig->period.usecs + 2083;
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, start), FL_SUCCESS);

  float expected[PERIOD_FRAMES];
  rig_process(rig);
  expect_source(expected, 100U, 0U, 1000U, 0U, 1.0f);
  check_constant(rig->out[0], 100U, 0.0f, 0.0f, "before the start");
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "mid-period start");
  check_frames(rig->out[1], expected, PERIOD_FRAMES, 0.0f, "mid-period start");

  /* It continues seamlessly into the next period. */
  rig_process(rig);
  expect_source(expected, 0U, 156U, 1000U, 0U, 1.0f);
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "continuation");

  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.late_plays, 0U);

  rig_free(rig);
}

static void
test_engine_voice_ends_mid_period(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, 100U, 1U, fill_source);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);

  float expected[PERIOD_FRAMES];
  rig_process(rig);
  expect_source(expected, 0U, 0U, 100U, 0U, 1.0f);
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "ends at 100");
  check_constant(rig->out[0] + 100,
                 PERIOD_FRAMES - 100U,
                 0.0f,
                 0.0f,
                 "silent after the end");
  assert_int_equal(rig_voices_active(rig), 0U);

  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "next period");

  /* It can be played again. */
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  check_frames(rig->out[1], expected, PERIOD_FRAMES, 0.0f, "played again");

  rig_free(rig);
}

static void
test_engine_stereo_to_mono(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 1U, 32U);
  rig_load(rig, 0U, 1000U, 2U, fill_source);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.5f, FL_PLAY_NOW),
                   FL_SUCCESS);

  rig_process(rig);
  float expected[PERIOD_FRAMES];
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    /* 0.5 * (x + 3x) / 2 = x */
    expected[i] = source_value(i, 0U);
  }
  check_frames(rig->out[0], expected, PERIOD_FRAMES, 0.0f, "stereo -> mono");
  /* The second buffer is not an output of this engine: left alone. */
  check_constant(rig->out[1], PERIOD_FRAMES, GARBAGE, 0.0f, "unused buffer");

  rig_free(rig);
}

/* Check a linear fade to silence of `fade_frames` from `gain`, whose first
   frame is `done` frames into it: monotonic (to rounding), no step larger than
   one fade step, silent once done. Returns the frames of fade left. */
static uint32_t
check_fade(const float* out,
           float        previous,
           float        gain,
           uint32_t     fade_frames,
           uint32_t     done,
           const char*  what)
{
  const float step = gain / (float)fade_frames;
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    const uint32_t position = done + i + 1U; /* frames of fade applied */
    const float    expected =
      position >= fade_frames ? 0.0f : gain - step * (float)position;
    if (!(fabsf(out[i] - expected) <= TOLERANCE) ||
        out[i] > previous + TOLERANCE || previous - out[i] > step + TOLERANCE) {
      print_error("%s: frame %u is %.9g after %.9g, expected %.9g "
                  "(step %.9g)\n",
                  what,
                  i,
                  (double)out[i],
                  (double)previous,
                  (double)expected,
                  (double)step);
      fail();
    }
    if (position > fade_frames && out[i] != 0.0f) {
      print_error(
        "%s: frame %u is %.9g after the fade\n", what, i, (double)out[i]);
      fail();
    }
    previous = out[i];
  }
  return done + PERIOD_FRAMES >= fade_frames
           ? 0U
           : fade_frames - (done + PERIOD_FRAMES);
}

static void
test_engine_voice_stealing(void** state)
{
  (void)state;

  /* The oldest voice plays a left-only DC sample and the 32 others a
     right-only one, so the left output is exactly the stolen voice. */
  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, RATE, 2U, fill_dc_left);
  rig_load(rig, 1U, RATE, 2U, fill_dc_right);

  const float velocity = 0.75f; /* fade step 0.75 / 96 = 1/128, exact */
  assert_int_equal(fl_engine_play(rig->engine, 0U, velocity, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  for (uint32_t v = 1U; v < 32U; ++v) {
    assert_int_equal(fl_engine_play(rig->engine, 1U, velocity, FL_PLAY_NOW),
                     FL_SUCCESS);
  }
  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, velocity, 0.0f, "oldest voice");
  check_constant(rig->out[1], PERIOD_FRAMES, 31.0f * velocity, 0.0f, "others");
  assert_int_equal(rig_voices_active(rig), 32U);

  /* The 33rd play steals the oldest voice: 2 ms = 96 frames of fade. */
  assert_int_equal(fl_engine_play(rig->engine, 1U, velocity, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  check_fade(rig->out[0], velocity, velocity, 96U, 0U, "stolen voice");
  check_constant(rig->out[1],
                 PERIOD_FRAMES,
                 32.0f * velocity,
                 0.0f,
                 "32 voices after the steal");

  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.stolen_voices, 1U);
  assert_int_equal(stats.voices_active, 32U);
  assert_int_equal(stats.plays, 33U);

  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "after the steal");

  rig_free(rig);
}

static void
test_engine_stop_fade(void** state)
{
  (void)state;

  Rig* const rig = rig_new(RATE, 2U, 32U);
  rig_load(rig, 0U, RATE, 1U, fill_dc);
  rig_load(rig, 1U, RATE, 1U, fill_dc);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 1.0f, 0.0f, "before the stop");

  /* Stopping another slot changes nothing. */
  assert_int_equal(fl_engine_stop(rig->engine, 1U), FL_SUCCESS);
  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 1.0f, 0.0f, "other slot stopped");

  /* 5 ms = 240 frames, within this period. */
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_process(rig);
  check_fade(rig->out[0], 1.0f, 1.0f, 240U, 0U, "stop fade left");
  check_fade(rig->out[1], 1.0f, 1.0f, 240U, 0U, "stop fade right");
  assert_int_equal(rig_voices_active(rig), 0U);

  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.0f, 0.0f, "after the stop");

  /* FL_ALL_SLOTS stops both slots' voices. */
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.5f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 1U, 0.25f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  check_constant(rig->out[0], PERIOD_FRAMES, 0.75f, 0.0f, "two voices");
  assert_int_equal(fl_engine_stop(rig->engine, FL_ALL_SLOTS), FL_SUCCESS);
  rig_process(rig);
  check_fade(rig->out[0], 0.75f, 0.75f, 240U, 0U, "stop all");
  assert_int_equal(rig_voices_active(rig), 0U);

  rig_free(rig);
}

static void
test_engine_fade_across_periods(void** state)
{
  (void)state;

  /* At 96 kHz the stop fade is 480 frames: it spans two periods and must
     continue where it left off. */
  Rig* const rig = rig_new(96000U, 2U, 32U);
  rig_load(rig, 0U, RATE, 1U, fill_dc);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);

  rig_process(rig);
  const uint32_t left =
    check_fade(rig->out[0], 1.0f, 1.0f, 480U, 0U, "first half of the fade");
  assert_int_equal(left, 480U - PERIOD_FRAMES);
  const float last = rig->out[0][PERIOD_FRAMES - 1U];

  rig_process(rig);
  check_fade(
    rig->out[0], last, 1.0f, 480U, PERIOD_FRAMES, "second half of the fade");

  rig_free(rig);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_mix_mono_to_one),
    cmocka_unit_test(test_mix_mono_to_two),
    cmocka_unit_test(test_mix_stereo_to_two),
    cmocka_unit_test(test_mix_stereo_to_one),
    cmocka_unit_test(test_mix_velocity),
    cmocka_unit_test(test_mix_gain_ramp),
    cmocka_unit_test(test_mix_zero_frames),
    cmocka_unit_test(test_mix_long_against_reference),
    cmocka_unit_test(test_engine_mono_voice),
    cmocka_unit_test(test_engine_stereo_voice),
    cmocka_unit_test(test_engine_velocity),
    cmocka_unit_test(test_engine_two_voices),
    cmocka_unit_test(test_engine_start_mid_period),
    cmocka_unit_test(test_engine_voice_ends_mid_period),
    cmocka_unit_test(test_engine_stereo_to_mono),
    cmocka_unit_test(test_engine_voice_stealing),
    cmocka_unit_test(test_engine_stop_fade),
    cmocka_unit_test(test_engine_fade_across_periods),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
