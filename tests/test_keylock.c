/*
  Key lock, through the engine and the Rubber Band render the loader makes
  (fl_stretch_render(), published here as the loader would): a key-locked
  loop keeps its pitch at a tempo ratio, its passes last what the tempo
  says, a transient in it lands where the ratio puts it, and until the
  render is there the voice plays plain varispeed and counts the miss.
*/
#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/stretch.h>

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
  FlEvent   wanted; /* the last render request */
  uint32_t  requests;
} Rig;

static Rig*
rig_new(void)
{
  Rig* const rig              = (Rig*)calloc(1, sizeof(Rig));
  rig->bank                   = fl_bank_new(2U);
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
  const FlPeriod period     = { PERIOD,
                                (uint32_t)(rig->usecs / 1000),
                                rig->usecs,
                                rig->usecs + USECS_PER_PERIOD };
  fl_engine_process(rig->engine, &period, outputs);
  rig->usecs += USECS_PER_PERIOD;
  FlEvent event;
  while (fl_engine_next_event(rig->engine, &event)) {
    if (event.type == FL_EVENT_STRETCH_WANTED) {
      rig->wanted = event;
      ++rig->requests;
    }
  }
  FlSample* retired = NULL;
  while ((retired = fl_engine_next_retired(rig->engine))) {
    fl_sample_free(retired);
  }
}

static void
rig_render(Rig* rig, float* out, uint32_t frames)
{
  for (uint32_t done = 0U; done < frames; done += PERIOD) {
    rig_period(rig);
    const uint32_t n = frames - done < PERIOD ? frames - done : PERIOD;
    memcpy(out + done, rig->left, n * sizeof(float));
  }
}

/* The loader's part: render what the RT thread asked for, publish it. */
static void
serve_request(Rig* rig, FlSample* sample)
{
  assert_true(rig->requests > 0U);
  char            reason[128];
  FlSample* const render = fl_stretch_render(sample,
                                             rig->wanted.region_start,
                                             rig->wanted.region_end,
                                             rig->wanted.position,
                                             rig->wanted.peak > 0.5f,
                                             reason,
                                             sizeof(reason));
  assert_non_null(render);
  fl_engine_publish_stretch(rig->engine, rig->wanted.slot, render);
}

/* Frequency of the strongest sine in `y`: a fine scan of a least-squares
   fit around `guess`. */
static double
sine_frequency(const float* y, uint32_t count, double guess)
{
  double best = guess, best_power = -1.0;
  for (double hz = guess - 20.0; hz <= guess + 20.0; hz += 0.01) {
    const double w  = 2.0 * M_PI * hz / RATE;
    double       re = 0.0, im = 0.0;
    for (uint32_t i = 0U; i < count; i += 4U) {
      re += y[i] * cos(w * i);
      im += y[i] * sin(w * i);
    }
    if (re * re + im * im > best_power) {
      best_power = re * re + im * im;
      best       = hz;
    }
  }
  return best;
}

static FlSample*
tone_loop(uint32_t frames)
{
  FlSample* const sample = fl_sample_new(frames, 1U, RATE, RATE, "/tone.wav");
  for (uint32_t i = 0U; i < frames; ++i) {
    sample->frames[i] = (float)(0.5 * sin(2.0 * M_PI * 1000.0 * i / RATE));
  }
  return sample;
}

static void
start_locked(Rig* rig, FlSample* sample, bool keylock)
{
  fl_engine_publish(rig->engine, 0U, sample);
  assert_int_equal(fl_engine_set_tempo(rig->engine, 126.0), FL_SUCCESS);
  assert_int_equal(fl_engine_set_bpmlock(rig->engine, true), FL_SUCCESS);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  params.bpm          = 120.0f;
  params.keylock      = keylock ? 1U : 0U;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
}

/* A 1 kHz loop at tempo ratio 126 / 120 = 1.05: with key lock it stays at
   1000 Hz once its render is there; without, it is 1050 Hz. */
static void
test_pitch_kept(void** state)
{
  (void)state;
  enum { FRAMES = 16384 };
  float* const out = (float*)calloc(FRAMES, sizeof(float));

  Rig* const      rig    = rig_new();
  FlSample* const sample = tone_loop(2U * RATE);
  start_locked(rig, sample, true);
  rig_render(rig, out, 4U * PERIOD);
  /* Before the render: varispeed, counted, and one request for it. */
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  assert_true(stats.stretch_misses >= 1U);
  assert_int_equal(rig->requests, 1U);
  assert_true(fabs(rig->wanted.position - 1.05) < 1e-9);
  serve_request(rig, sample);
  rig_render(rig, out, FRAMES);
  fl_engine_stats(rig->engine, &stats);
  const uint64_t misses = stats.stretch_misses;
  const double   locked = sine_frequency(out + 1024, FRAMES - 1024, 1000.0);
  rig_render(rig, out, FRAMES);
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.stretch_misses, misses); /* no more misses */
  printf("key lock at ratio 1.05: %.2f Hz\n", locked);
  assert_true(fabs(locked - 1000.0) <= 0.5);
  rig_free(rig);

  Rig* const plain = rig_new();
  start_locked(plain, tone_loop(2U * RATE), false);
  rig_render(plain, out, FRAMES);
  const double moved = sine_frequency(out + 1024, FRAMES - 1024, 1050.0);
  printf("without key lock: %.2f Hz\n", moved);
  assert_true(fabs(moved - 1050.0) <= 0.5);
  rig_free(plain);
  free(out);
}

/* A key-locked loop launched on a grid line beside a plain one: both sound
   from the same frame (the render needs no delay compensation: offline,
   Rubber Band's output starts with its input), and a click in the loop
   comes back exactly one locked pass later each time. Inside the pass,
   Rubber Band places a transient to within its analysis hop (about 1 ms at
   48 kHz, measured: up to 75 frames), which the test allows. */
static void
test_onset_and_passes(void** state)
{
  (void)state;
  const uint32_t  length = 2U * RATE; /* 4 beats at 120 BPM */
  FlSample* const locked = fl_sample_new(length, 1U, RATE, RATE, "/c.wav");
  FlSample* const plain  = fl_sample_new(length, 1U, RATE, RATE, "/p.wav");
  const uint32_t  click  = 60000U;
  for (uint32_t i = 0U; i < RATE / 4U; ++i) { /* a tone from frame 0 */
    const float value = (float)(0.5 * sin(2.0 * M_PI * 1000.0 * i / RATE));
    locked->frames[i] = plain->frames[i] = value;
  }
  locked->frames[click] = 1.0f;

  Rig* const rig = rig_new();
  fl_engine_publish(rig->engine, 0U, locked);
  fl_engine_publish(rig->engine, 1U, plain);
  char            reason[128];
  FlSample* const render =
    fl_stretch_render(locked, 0U, length, 1.05, true, reason, sizeof(reason));
  assert_non_null(render);
  fl_engine_publish_stretch(rig->engine, 0U, render);

  assert_int_equal(fl_engine_set_tempo(rig->engine, 126.0), FL_SUCCESS);
  assert_int_equal(fl_engine_set_bpmlock(rig->engine, true), FL_SUCCESS);
  assert_int_equal(fl_engine_set_quantize(rig->engine, 1.0), FL_SUCCESS);
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.mode         = FL_MODE_LOOP;
  params.bpm          = 120.0f;
  params.keylock      = 1U;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  enum { FRAMES = 10 * RATE };
  float* const left  = (float*)calloc(FRAMES, sizeof(float));
  float* const right = (float*)calloc(FRAMES, sizeof(float));
  float* const out   = (float*)calloc(FRAMES, sizeof(float));
  rig_render(rig, out, PERIOD);

  /* Slot 0 key-locked on out_1, slot 1 plain on out_2: balance apart. */
  params.gain_right = 0.0f;
  assert_int_equal(fl_engine_set_slot(rig->engine, 0U, &params), FL_SUCCESS);
  FlSlotParams other = FL_SLOT_PARAMS_DEFAULT;
  other.gain_left    = 0.0f;
  assert_int_equal(fl_engine_set_slot(rig->engine, 1U, &other), FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 1U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  for (uint32_t done = PERIOD; done < FRAMES; done += PERIOD) {
    rig_period(rig);
    memcpy(left + done, rig->left, PERIOD * sizeof(float));
    memcpy(right + done, rig->right, PERIOD * sizeof(float));
  }
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.stretch_misses, 0U);

  long onset_locked = -1, onset_plain = -1;
  for (long i = 0; i < FRAMES && (onset_locked < 0 || onset_plain < 0); ++i) {
    onset_locked =
      onset_locked < 0 && fabsf(left[i]) > 1e-3f ? i : onset_locked;
    onset_plain = onset_plain < 0 && fabsf(right[i]) > 1e-3f ? i : onset_plain;
  }
  const double beat = 60.0 * RATE / 126.0;
  printf("onsets: key-locked %ld, plain %ld, grid line %.1f\n",
         onset_locked,
         onset_plain,
         beat);
  assert_true(onset_plain >= 0 && labs(onset_locked - onset_plain) <= 1);
  assert_true(fabs((double)onset_plain - beat) <= 1.0);

  const double pass  = 4.0 * 60.0 * RATE / 126.0;
  long         first = -1;
  for (unsigned k = 0U; k < 4U; ++k) {
    const double expected = beat + k * pass + click / 1.05;
    const long   from     = (long)expected - 2000;
    long         peak     = from;
    for (long i = from; i < from + 4000 && i < FRAMES; ++i) {
      peak = fabsf(left[i]) > fabsf(left[peak]) ? i : peak;
    }
    printf("pass %u: click at %ld (%.3f), straight-line place %.1f\n",
           k,
           peak,
           (double)left[peak],
           expected);
    assert_true(fabsf(left[peak]) > 0.1f);
    assert_true(fabs((double)peak - expected) <= 96.0);
    if (first < 0) {
      first = peak;
    }
    /* Pass after pass, exactly where the tempo puts it. */
    assert_true(fabs((double)(peak - first) - k * pass) <= 1.0);
  }
  free(left);
  free(right);
  free(out);
  rig_free(rig);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pitch_kept),
    cmocka_unit_test(test_onset_and_passes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
