/*
  Varispeed and BPM lock, through the engine (no server): fitted sines for
  the band-limited interpolation's SNR and alias rejection, rate 1 bit for
  bit, a rate change without a click, and a BPM-locked loop that stays on
  the grid for ten minutes of audio at a ratio that is not a whole number.
*/
#include <flitzi/bank.h>
#include <flitzi/engine.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE 48000U
#define PERIOD 256U
#define USECS_PER_PERIOD 5333

typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  float     left[PERIOD];
  float     right[PERIOD];
  int64_t   usecs;
  uint32_t  frame;
} Rig;

static Rig*
rig_new(void)
{
  Rig* const rig              = (Rig*)calloc(1, sizeof(Rig));
  rig->bank                   = fl_bank_new(4U);
  const FlEngineConfig config = { RATE, 2U, 8U, 0U, NULL, NULL };
  rig->engine                 = fl_engine_new(&config, rig->bank);
  assert_non_null(rig->engine);
  return rig;
}

static void
rig_free(Rig* rig)
{
  fl_engine_free(rig->engine);
  fl_bank_free(rig->bank);
  free(rig);
}

static void
rig_period(Rig* rig)
{
  float* const   outputs[2] = { rig->left, rig->right };
  const FlPeriod period     = {
        PERIOD, rig->frame, rig->usecs, rig->usecs + USECS_PER_PERIOD
  };
  fl_engine_process(rig->engine, &period, outputs);
  rig->usecs += USECS_PER_PERIOD;
  rig->frame += PERIOD;
  FlEvent event;
  while (fl_engine_next_event(rig->engine, &event)) {
  }
}

/* Render `frames` frames of output 0 into `out`. */
static void
rig_render(Rig* rig, float* out, uint32_t frames)
{
  for (uint32_t done = 0U; done < frames; done += PERIOD) {
    rig_period(rig);
    const uint32_t n = frames - done < PERIOD ? frames - done : PERIOD;
    memcpy(out + done, rig->left, n * sizeof(float));
  }
}

/* A mono sine sample of amplitude 0.5, a whole number of cycles long. */
static FlSample*
sine_sample(double hz, uint32_t frames)
{
  FlSample* const sample = fl_sample_new(frames, 1U, RATE, RATE, "/sine.wav");
  for (uint32_t i = 0U; i < frames; ++i) {
    sample->frames[i] = (float)(0.5 * sin(2.0 * M_PI * hz * i / RATE));
  }
  return sample;
}

static void
play_at(Rig* rig, FlSample* sample, float rate, uint32_t mode)
{
  fl_engine_publish(rig->engine, 0U, sample);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.rate         = rate;
  params.mode         = mode;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
}

/* Least-squares fit of a sine of `omega` radians a frame; returns the SNR
   in dB and stores the amplitude. */
static double
fit_sine(const float* y, uint32_t count, double omega, double* amplitude)
{
  double ss = 0.0, cc = 0.0, sc = 0.0, ys = 0.0, yc = 0.0;
  for (uint32_t i = 0U; i < count; ++i) {
    const double s = sin(omega * i), c = cos(omega * i);
    ss += s * s;
    cc += c * c;
    sc += s * c;
    ys += y[i] * s;
    yc += y[i] * c;
  }
  const double det    = ss * cc - sc * sc;
  const double a      = (ys * cc - yc * sc) / det;
  const double b      = (yc * ss - ys * sc) / det;
  double       signal = 0.0, noise = 0.0;
  for (uint32_t i = 0U; i < count; ++i) {
    const double fitted = a * sin(omega * i) + b * cos(omega * i);
    signal += fitted * fitted;
    noise += (y[i] - fitted) * (y[i] - fitted);
  }
  *amplitude = sqrt(a * a + b * b);
  return 10.0 * log10(signal / noise);
}

#define MEASURED 32768U
#define SETTLE 1024U

static double
measure_snr(double hz, float rate, double* amplitude)
{
  Rig* const   rig = rig_new();
  float* const out = (float*)calloc(SETTLE + MEASURED, sizeof(float));
  play_at(rig, sine_sample(hz, 4U * RATE), rate, FL_MODE_LOOP);
  rig_render(rig, out, SETTLE + MEASURED);
  /* The engine plays the rate as the float it was given. */
  const double snr = fit_sine(
    out + SETTLE, MEASURED, 2.0 * M_PI * hz * (double)rate / RATE, amplitude);
  free(out);
  rig_free(rig);
  return snr;
}

static void
test_snr(void** state)
{
  (void)state;
  static const float rates[] = { 0.5f, 0.75f, 1.0595f, 1.5f, 2.0f };
  for (size_t r = 0U; r < sizeof(rates) / sizeof(rates[0]); ++r) {
    double       amplitude = 0.0;
    const double low       = measure_snr(1000.0, rates[r], &amplitude);
    assert_true(fabs(amplitude - 0.5) < 0.005);
    const double high = measure_snr(10000.0, rates[r], &amplitude);
    printf("rate %.4f: 1 kHz %.1f dB SNR, 10 kHz %.1f dB SNR (level %.2f "
           "dB)\n",
           (double)rates[r],
           low,
           high,
           20.0 * log10(amplitude / 0.5));
    assert_true(low >= 90.0);
    assert_true(high >= 80.0);
  }
}

/* A 15 kHz sine at rate 2 would sound at 30 kHz, above Nyquist: it must be
   suppressed, not folded to 18 kHz. */
static void
test_alias_rejection(void** state)
{
  (void)state;
  Rig* const   rig = rig_new();
  float* const out = (float*)calloc(SETTLE + MEASURED, sizeof(float));
  play_at(rig, sine_sample(15000.0, 4U * RATE), 2.0f, FL_MODE_LOOP);
  rig_render(rig, out, SETTLE + MEASURED);
  double power = 0.0;
  for (uint32_t i = SETTLE; i < SETTLE + MEASURED; ++i) {
    power += (double)out[i] * out[i];
  }
  const double down_db = 10.0 * log10(power / MEASURED / 0.125);
  printf("15 kHz at rate 2: %.1f dB below the input\n", down_db);
  assert_true(down_db <= -80.0);
  free(out);
  rig_free(rig);
}

static void
test_rate_one_bit_exact(void** state)
{
  (void)state;
  Rig* const      rig    = rig_new();
  float* const    out    = (float*)calloc(8192U, sizeof(float));
  FlSample* const sample = sine_sample(1234.5, 8192U);
  play_at(rig, sample, 1.0f, FL_MODE_ONESHOT);
  rig_render(rig, out, 8192U);
  assert_memory_equal(out, sample->frames, 8192U * sizeof(float));
  free(out);
  rig_free(rig);
}

/* A rate change while sounding glides over a block: the largest step
   between output frames stays that of the sine at the higher rate. */
static void
test_rate_change_glides(void** state)
{
  (void)state;
  Rig* const   rig = rig_new();
  const double hz  = 2000.0;
  float* const out = (float*)calloc(8192U, sizeof(float));
  play_at(rig, sine_sample(hz, 4U * RATE), 1.0f, FL_MODE_LOOP);
  rig_render(rig, out, 2048U);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  params.rate         = 1.5f;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  rig_render(rig, out + 2048U, 6144U);
  const double limit = 0.5 * 2.0 * M_PI * hz * 1.5 / RATE * 1.02;
  double       worst = 0.0;
  for (uint32_t i = 1U; i < 8192U; ++i) {
    const double step = fabs((double)out[i] - out[i - 1U]);
    worst             = step > worst ? step : worst;
  }
  printf("largest step %.5f (a 2 kHz sine at rate 1.5: %.5f)\n", worst, limit);
  assert_true(worst <= limit);
  free(out);
  rig_free(rig);
}

/* /speed scales every voice as a rate would. */
static void
test_speed(void** state)
{
  (void)state;
  float* const out[2] = { (float*)calloc(8192U, sizeof(float)),
                          (float*)calloc(8192U, sizeof(float)) };
  for (int i = 0; i < 2; ++i) {
    Rig* const rig = rig_new();
    if (i == 1) {
      assert_int_equal(fl_engine_set_speed(rig->engine, 1.25), FL_SUCCESS);
    }
    play_at(
      rig, sine_sample(500.0, 4U * RATE), i == 0 ? 1.25f : 1.0f, FL_MODE_LOOP);
    rig_render(rig, out[i], 8192U);
    rig_free(rig);
  }
  assert_memory_equal(out[0], out[1], 8192U * sizeof(float));
  free(out[0]);
  free(out[1]);
  Rig* const rig = rig_new();
  assert_int_equal(fl_engine_set_speed(rig->engine, 2.5), FL_ERR_BAD_ARGUMENT);
  assert_int_equal(fl_engine_set_speed(rig->engine, 0.49), FL_ERR_BAD_ARGUMENT);
  rig_free(rig);
}

/*
  BPM lock for ten minutes of audio: a loop of two bars at 120 BPM (192000
  frames) played at 126.3 BPM lasts 182422.8 frames a pass, never a whole
  number. A click marks the loop's first frame; every pass's click peaks
  within a frame of where the grid puts it: launch + k * 182422.8.
*/
static void
test_bpm_lock_ten_minutes(void** state)
{
  (void)state;
  Rig* const      rig    = rig_new();
  const uint32_t  length = 192000U;
  FlSample* const sample = fl_sample_new(length, 1U, RATE, RATE, "/bars.wav");
  sample->frames[0]      = 1.0f;
  fl_engine_publish(rig->engine, 0U, sample);
  assert_int_equal(fl_engine_set_tempo(rig->engine, 126.3), FL_SUCCESS);
  assert_int_equal(fl_engine_set_bpmlock(rig->engine, true), FL_SUCCESS);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  params.bpm          = 120.0f;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_set_quantize(rig->engine, 1.0), FL_SUCCESS);
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  rig_period(rig); /* beat 0 at frame 0 */
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);

  const double   pass    = 8.0 * 60.0 * RATE / 126.3;
  const double   beat    = 60.0 * RATE / 126.3;
  const uint64_t total   = 10ULL * 60U * RATE;
  double         launch  = -1.0;
  uint32_t       passes  = 0U;
  double         worst   = 0.0;
  float          best    = 0.0f;
  int64_t        best_at = -1;
  for (uint64_t frame = PERIOD; frame < total; frame += PERIOD) {
    rig_period(rig);
    for (uint32_t i = 0U; i < PERIOD; ++i) {
      const float   value = fabsf(rig->left[i]);
      const int64_t at    = (int64_t)(frame + i);
      if (value > 0.3f && value > best) {
        best    = value;
        best_at = at;
      } else if (best_at >= 0 && at - best_at > 64) {
        /* A click's peak: the first is the launch (the next beat line). */
        if (launch < 0.0) {
          launch = ceil((double)best_at / beat - 0.5) * beat;
        }
        const double expected = launch + passes * pass;
        const double error    = fabs((double)best_at - expected);
        worst                 = error > worst ? error : worst;
        if (getenv("FLITZI_PASS_LOG")) { /* for scripts/plot-timing */
          printf("pass %u %.3f %.3f\n",
                 passes,
                 (double)best_at / RATE,
                 (double)best_at - expected);
        }
        ++passes;
        best    = 0.0f;
        best_at = -1;
      }
    }
  }
  printf("BPM lock: %u passes in 10 minutes, worst distance from the grid "
         "%.2f frames\n",
         passes,
         worst);
  assert_true(passes >= 150U);
  assert_true(worst <= 1.0);
  rig_free(rig);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_snr),
    cmocka_unit_test(test_alias_rejection),
    cmocka_unit_test(test_rate_one_bit_exact),
    cmocka_unit_test(test_rate_change_glides),
    cmocka_unit_test(test_speed),
    cmocka_unit_test(test_bpm_lock_ten_minutes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
