/*
  The DJ isolator, through the engine (no server): sines at 60 Hz, 1 kHz
  and 10 kHz through each band setting, measured by a fitted sine against
  the ideal LR4 response. "Ideal" is the analog Linkwitz-Riley response at
  the frequency the bilinear transform maps f to (tan(pi f / fs) over
  tan(pi fc / fs), as the crossovers are prewarped at fc): what a perfect
  digital LR4 at 250 Hz and 4 kHz does. Also: 0 dB everywhere is bit for
  bit the dry signal, and a swept band gain has no step larger than its
  ramp's.
*/
#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/isolator.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE 48000.0
#define PERIOD 256U
#define FRAMES 48000U

static double complex
butterworth(double f, double fc, bool high)
{
  const double         warped = tan(M_PI * f / RATE) / tan(M_PI * fc / RATE);
  const double complex s      = I * warped;
  const double complex d      = s * s + M_SQRT2 * s + 1.0;
  return high ? s * s / d : 1.0 / d;
}

/* The ideal three-band response at f for linear band gains. */
static double
ideal_db(double f, double low, double mid, double high)
{
  const double complex lp1   = cpow(butterworth(f, FL_EQ_LOW_HZ, false), 2);
  const double complex hp1   = cpow(butterworth(f, FL_EQ_LOW_HZ, true), 2);
  const double complex lp2   = cpow(butterworth(f, FL_EQ_HIGH_HZ, false), 2);
  const double complex hp2   = cpow(butterworth(f, FL_EQ_HIGH_HZ, true), 2);
  const double complex align = lp2 + hp2; /* an LR4 pair sums to an allpass */
  return 20.0 *
         log10(cabs(low * lp1 * align + mid * hp1 * lp2 + high * hp1 * hp2));
}

typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  float     left[PERIOD];
  float     right[PERIOD];
  int64_t   usecs;
} Rig;

static Rig*
rig_new(double hz)
{
  Rig* const rig              = (Rig*)calloc(1, sizeof(Rig));
  rig->bank                   = fl_bank_new(2U);
  const FlEngineConfig config = { 48000U, 2U, 4U, 0U, NULL, NULL };
  rig->engine                 = fl_engine_new(&config, rig->bank);
  FlSample* const sample =
    fl_sample_new(2U * FRAMES, 1U, 48000U, 48000U, "/sine.wav");
  for (uint32_t i = 0U; i < 2U * FRAMES; ++i) {
    sample->frames[i] = (float)(0.5 * sin(2.0 * M_PI * hz * i / RATE));
  }
  fl_engine_publish(rig->engine, 0U, sample);
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
rig_render(Rig* rig, float* out, uint32_t frames)
{
  float* const outputs[2] = { rig->left, rig->right };
  for (uint32_t done = 0U; done < frames; done += PERIOD) {
    const FlPeriod period = { PERIOD, done, rig->usecs, rig->usecs + 5333 };
    fl_engine_process(rig->engine, &period, outputs);
    rig->usecs += 5333;
    const uint32_t n = frames - done < PERIOD ? frames - done : PERIOD;
    memcpy(out + done, rig->left, n * sizeof(float));
    FlEvent event;
    while (fl_engine_next_event(rig->engine, &event)) {
    }
  }
}

static double
fitted_db(const float* y, uint32_t count, uint32_t first, double hz)
{
  double ss = 0.0, cc = 0.0, sc = 0.0, ys = 0.0, yc = 0.0;
  for (uint32_t n = first; n < first + count; ++n) {
    const double s = sin(2.0 * M_PI * hz * n / RATE);
    const double c = cos(2.0 * M_PI * hz * n / RATE);
    ss += s * s;
    cc += c * c;
    sc += s * c;
    ys += y[n] * s;
    yc += y[n] * c;
  }
  const double det = ss * cc - sc * sc;
  const double a   = (ys * cc - yc * sc) / det;
  const double b   = (yc * ss - ys * sc) / det;
  return 20.0 * log10(sqrt(a * a + b * b) / 0.5);
}

static double
measure_db(double hz, float low, float mid, float high)
{
  Rig* const   rig    = rig_new(hz);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  params.eq_low       = low;
  params.eq_mid       = mid;
  params.eq_high      = high;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  float* const out = (float*)calloc(FRAMES, sizeof(float));
  rig_render(rig, out, FRAMES);
  /* After the filters settle: the sine's sample index is the output's. */
  const double level = fitted_db(out, FRAMES / 2U, FRAMES / 2U, hz);
  free(out);
  rig_free(rig);
  return level;
}

static void
test_band_response(void** state)
{
  (void)state;
  static const double hz[]      = { 60.0, 1000.0, 10000.0 };
  static const float  sets[][3] = { { 0.0f, 1.0f, 1.0f },
                                    { 1.0f, 0.0f, 1.0f },
                                    { 1.0f, 1.0f, 0.0f },
                                    { 0.5f, 1.0f, 2.0f } };
  for (size_t s = 0U; s < sizeof(sets) / sizeof(sets[0]); ++s) {
    for (size_t f = 0U; f < 3U; ++f) {
      const float* const g     = sets[s];
      const double       got   = measure_db(hz[f], g[0], g[1], g[2]);
      const double       ideal = ideal_db(hz[f], g[0], g[1], g[2]);
      /* Is this the band that is killed at this frequency? */
      const bool killed = g[f] == 0.0f;
      printf("bands %.1f/%.1f/%.1f, %5.0f Hz: %8.3f dB (ideal LR4 %8.3f "
             "dB)%s\n",
             (double)g[0],
             (double)g[1],
             (double)g[2],
             hz[f],
             got,
             ideal,
             killed ? ", killed" : "");
      assert_true(fabs(got - ideal) <= (killed ? 1.0 : 0.1));
    }
  }
}

/* All bands at 0 dB: the isolator is out of the way, bit for bit. */
static void
test_neutral_is_bit_exact(void** state)
{
  (void)state;
  Rig* const   rig    = rig_new(1000.0);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  float* const out = (float*)calloc(8192U, sizeof(float));
  rig_render(rig, out, 8192U);
  for (uint32_t i = 0U; i < 8192U; ++i) {
    assert_true(out[i] == (float)(0.5 * sin(2.0 * M_PI * 1000.0 * i / RATE)));
  }
  free(out);
  rig_free(rig);
}

/* Sweeping the high band from 0 dB to -60 dB and back while a 10 kHz sine
   sounds, and engaging the isolator from its bypass: every step of the
   output stays within the sine's own largest step plus what a 10 ms ramp
   adds (the ramp moves the gain by at most 1/480 a frame). */
static void
test_sweep_has_no_step(void** state)
{
  (void)state;
  const double hz     = 10000.0;
  Rig* const   rig    = rig_new(hz);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  float* const out  = (float*)calloc(FRAMES, sizeof(float));
  uint32_t     done = 0U;
  for (int k = 0; k <= 40; ++k) {
    params.eq_high =
      (float)pow(10.0, -60.0 * (k <= 20 ? k : 40 - k) / 20.0 / 20.0);
    params.eq_high = k == 0 || k == 40 ? 1.0f : params.eq_high;
    assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
    rig_render(rig, out + done, 1024U);
    done += 1024U;
  }
  const double own   = 0.5 * 2.0 * M_PI * hz / RATE;
  const double limit = own * 1.2 + 1.0 / 480.0;
  double       worst = 0.0;
  for (uint32_t i = 1U; i < done; ++i) {
    const double step = fabs((double)out[i] - out[i - 1U]);
    worst             = step > worst ? step : worst;
  }
  printf(
    "largest step %.4f (the sine's own %.4f, limit %.4f)\n", worst, own, limit);
  assert_true(worst <= limit);
  free(out);
  rig_free(rig);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_band_response),
    cmocka_unit_test(test_neutral_is_bit_exact),
    cmocka_unit_test(test_sweep_has_no_step),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
