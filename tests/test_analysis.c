/*
  Tempo analysis and the waveform overview (no server): click tracks made
  here at 90, 120.5 and 174 BPM give their tempo within 0.5 BPM and their
  first beat within 10 ms; noise gives no tempo; the overview equals the
  min/max computed here.
*/
#include <flitzi/analysis.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define RATE 48000U

/* 30 s of short 2 kHz clicks (10 ms, decaying) on every beat from `first`
   seconds on, at `bpm`. */
static FlSample*
click_track(double bpm, double first)
{
  const uint32_t  frames = 30U * RATE;
  FlSample* const sample = fl_sample_new(frames, 1U, RATE, RATE, "/clicks");
  for (double t = first; t < 30.0; t += 60.0 / bpm) {
    const uint32_t at = (uint32_t)llround(t * RATE);
    for (uint32_t i = 0U; i < RATE / 100U && at + i < frames; ++i) {
      sample->frames[at + i] = (float)(0.8 * exp(-(double)i / 96.0) *
                                       sin(2.0 * M_PI * 2000.0 * i / RATE));
    }
  }
  return sample;
}

static void
test_click_tracks(void** state)
{
  (void)state;
  static const double bpms[]   = { 90.0, 120.5, 174.0 };
  static const double firsts[] = { 0.25, 0.6, 0.1 };
  for (size_t i = 0U; i < 3U; ++i) {
    FlSample* const sample = click_track(bpms[i], firsts[i]);
    FlTempo         tempo  = { 0.0, 0.0, 0.0 };
    char            reason[128];
    assert_int_equal(fl_analysis_tempo(sample, &tempo, reason, sizeof(reason)),
                     FL_SUCCESS);
    /* A grid line at t is also one at t + a beat: compare modulo a beat. */
    const double beat  = 60.0 / bpms[i];
    double       error = fmod(fabs(tempo.first_beat - firsts[i]), beat);
    error              = fmin(error, beat - error);
    printf("%.1f BPM from %.3f s: found %.3f BPM, first beat %.4f s "
           "(%.1f ms off), confidence %.2f\n",
           bpms[i],
           firsts[i],
           tempo.bpm,
           tempo.first_beat,
           error * 1000.0,
           tempo.confidence);
    assert_true(fabs(tempo.bpm - bpms[i]) <= 0.5);
    assert_true(error <= 0.010);
    fl_sample_free(sample);
  }
}

static void
test_noise_has_no_tempo(void** state)
{
  (void)state;
  FlSample* const sample = fl_sample_new(20U * RATE, 1U, RATE, RATE, "/noise");
  uint32_t        seed   = 12345U;
  for (uint32_t i = 0U; i < 20U * RATE; ++i) {
    seed              = seed * 1664525U + 1013904223U;
    sample->frames[i] = (float)((double)(seed >> 8) / 16777216.0 - 0.5);
  }
  FlTempo tempo = { 0.0, 0.0, 0.0 };
  char    reason[128];
  assert_int_equal(fl_analysis_tempo(sample, &tempo, reason, sizeof(reason)),
                   FL_ERR_FORMAT);
  printf("noise: %s\n", reason);
  fl_sample_free(sample);
}

static void
test_waveform(void** state)
{
  (void)state;
  FlSample* const sample = fl_sample_new(1000U, 2U, RATE, RATE, "/w");
  for (uint32_t i = 0U; i < 1000U; ++i) {
    sample->frames[2U * i]      = (float)sin(i * 0.05) * (float)i / 1000.0f;
    sample->frames[2U * i + 1U] = 5.0f; /* not the first channel */
  }
  float pairs[2U * 7U];
  fl_analysis_waveform(sample, 100U, 800U, 7U, pairs);
  for (uint32_t p = 0U; p < 7U; ++p) {
    float low = 1e9f, high = -1e9f;
    for (uint32_t f = 100U + p * 100U; f < 200U + p * 100U; ++f) {
      low  = fminf(low, sample->frames[2U * f]);
      high = fmaxf(high, sample->frames[2U * f]);
    }
    assert_true(pairs[2U * p] == low && pairs[2U * p + 1U] == high);
  }
  /* More points than frames: each point is its nearest frame. */
  float many[2U * 16U];
  fl_analysis_waveform(sample, 0U, 4U, 16U, many);
  for (uint32_t p = 0U; p < 16U; ++p) {
    assert_true(many[2U * p] == sample->frames[2U * (p / 4U)]);
  }
  fl_sample_free(sample);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_click_tracks),
    cmocka_unit_test(test_noise_has_no_tempo),
    cmocka_unit_test(test_waveform),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
