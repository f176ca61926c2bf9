/*
  The engine's control API: validation and status codes, the life of a
  replaced or unloaded sample, timed plays, slot descriptions and
  configuration checks.

  Every thread role (control, loader, RT, reaper) is played by the test
  thread, which the engine allows as long as the calls do not overlap.
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
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
#define PERIOD_USECS 5333 /* 256 frames at 48 kHz */
#define START_USECS 1000000
#define SLOTS 8U

/* The engine with every thread role played by the test thread. */
typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  FlPeriod  period; /* the next period to process */
  float     out[FL_MAX_OUTPUTS][PERIOD_FRAMES];
  uint32_t  wakes; /* calls of the wake function */
} Rig;

static void
count_wake(void* data)
{
  ++((Rig*)data)->wakes;
}

static Rig*
rig_new(uint32_t max_voices, uint32_t command_capacity)
{
  Rig* const rig = (Rig*)calloc(1, sizeof(Rig));
  assert_non_null(rig);

  const FlEngineConfig config = { RATE,       2U, max_voices, command_capacity,
                                  count_wake, rig };
  rig->bank                   = fl_bank_new(SLOTS);
  assert_non_null(rig->bank);
  rig->engine = fl_engine_new(&config, rig->bank);
  assert_non_null(rig->engine);

  rig->period.frame_count = PERIOD_FRAMES;
  rig->period.first_frame = 0U;
  rig->period.usecs       = START_USECS;
  rig->period.next_usecs  = START_USECS + PERIOD_USECS;
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

/* Make a mono sample whose every frame is `value`. */
static FlSample*
make_sample(uint32_t frame_count, float value, const char* path)
{
  FlSample* const sample = fl_sample_new(frame_count, 1U, RATE, 44100U, path);
  assert_non_null(sample);
  for (uint32_t i = 0U; i < frame_count; ++i) {
    sample->frames[i] = value;
  }
  return sample;
}

static void
rig_process(Rig* rig)
{
  float* outputs[FL_MAX_OUTPUTS] = { rig->out[0], rig->out[1] };
  fl_engine_process(rig->engine, &rig->period, outputs);
  rig->period.first_frame += PERIOD_FRAMES;
  rig->period.usecs      = rig->period.next_usecs;
  rig->period.next_usecs = rig->period.usecs + PERIOD_USECS;
}

static FlEngineStats
rig_stats(const Rig* rig)
{
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  return stats;
}

static bool
all_equal(const float* frames, uint32_t count, float value)
{
  for (uint32_t i = 0U; i < count; ++i) {
    if (frames[i] != value) {
      return false;
    }
  }
  return true;
}

/* ---- Validation ---- */

static void
test_play_validation(void** state)
{
  (void)state;

  Rig* const rig = rig_new(32U, 0U);
  fl_engine_publish(rig->engine, 2U, make_sample(1000U, 1.0f, "/a.wav"));

  FlEngine* const engine = rig->engine;
  assert_int_equal(fl_engine_play(engine, SLOTS, 1.0f, FL_PLAY_NOW),
                   FL_ERR_BAD_SLOT);
  assert_int_equal(fl_engine_play(engine, FL_ALL_SLOTS, 1.0f, FL_PLAY_NOW),
                   FL_ERR_BAD_SLOT);
  assert_int_equal(fl_engine_play(engine, 2U, NAN, FL_PLAY_NOW),
                   FL_ERR_BAD_VELOCITY);
  assert_int_equal(fl_engine_play(engine, 2U, INFINITY, FL_PLAY_NOW),
                   FL_ERR_BAD_VELOCITY);
  assert_int_equal(fl_engine_play(engine, 2U, -INFINITY, FL_PLAY_NOW),
                   FL_ERR_BAD_VELOCITY);
  assert_int_equal(fl_engine_play(engine, 2U, -0.1f, FL_PLAY_NOW),
                   FL_ERR_BAD_VELOCITY);
  assert_int_equal(fl_engine_play(engine, 2U, 1.1f, FL_PLAY_NOW),
                   FL_ERR_BAD_VELOCITY);
  assert_int_equal(
    fl_engine_play(engine, 2U, nextafterf(1.0f, 2.0f), FL_PLAY_NOW),
    FL_ERR_BAD_VELOCITY);
  assert_int_equal(fl_engine_play(engine, 1U, 1.0f, FL_PLAY_NOW),
                   FL_ERR_EMPTY_SLOT);
  /* A bad slot is reported before a bad velocity. */
  assert_int_equal(fl_engine_play(engine, SLOTS, NAN, FL_PLAY_NOW),
                   FL_ERR_BAD_SLOT);

  /* Nothing was queued by the failures. */
  rig_process(rig);
  FlEngineStats stats = rig_stats(rig);
  assert_int_equal(stats.plays, 0U);
  assert_int_equal(stats.dropped_commands, 0U);
  assert_int_equal(stats.voices_active, 0U);
  assert_int_equal(stats.voices_max, 32U);

  /* The bounds are valid. */
  assert_int_equal(fl_engine_play(engine, 2U, 0.0f, FL_PLAY_NOW), FL_SUCCESS);
  assert_int_equal(fl_engine_play(engine, 2U, 1.0f, FL_PLAY_NOW), FL_SUCCESS);
  rig_process(rig);
  stats = rig_stats(rig);
  assert_int_equal(stats.plays, 2U);
  assert_int_equal(stats.voices_active, 2U);

  rig_free(rig);
}

static void
test_queue_full(void** state)
{
  (void)state;

  Rig* const rig = rig_new(32U, 4U);
  fl_engine_publish(rig->engine, 0U, make_sample(1000U, 1.0f, "/a.wav"));

  for (uint32_t i = 0U; i < 4U; ++i) {
    assert_int_equal(fl_engine_play(rig->engine, 0U, 0.5f, FL_PLAY_NOW),
                     FL_SUCCESS);
  }
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.5f, FL_PLAY_NOW),
                   FL_ERR_QUEUE_FULL);
  assert_int_equal(rig_stats(rig).dropped_commands, 1U);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_ERR_QUEUE_FULL);
  assert_int_equal(rig_stats(rig).dropped_commands, 2U);

  /* A period drains the queue: exactly the four queued plays sound. */
  rig_process(rig);
  FlEngineStats stats = rig_stats(rig);
  assert_int_equal(stats.plays, 4U);
  assert_int_equal(stats.voices_active, 4U);
  assert_int_equal(stats.dropped_commands, 2U);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 2.0f));

  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(rig_stats(rig).voices_active, 0U);

  rig_free(rig);
}

static void
test_stop_validation(void** state)
{
  (void)state;

  Rig* const rig = rig_new(32U, 0U);
  assert_int_equal(fl_engine_stop(rig->engine, SLOTS), FL_ERR_BAD_SLOT);
  assert_int_equal(fl_engine_stop(rig->engine, FL_ALL_SLOTS - 1U),
                   FL_ERR_BAD_SLOT);
  /* Stopping an empty slot, or everything, is fine. */
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  assert_int_equal(fl_engine_stop(rig->engine, FL_ALL_SLOTS), FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(rig_stats(rig).dropped_commands, 0U);
  rig_free(rig);
}

/* ---- The life of a sample ---- */

static void
test_replace_hands_back_after_voice(void** state)
{
  (void)state;

  Rig* const      rig = rig_new(32U, 0U);
  FlSample* const old = make_sample(1000U, 1.0f, "/old.wav");
  fl_engine_publish(rig->engine, 0U, old);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig); /* frames 0..255 */

  FlSample* const replacement = make_sample(1000U, 0.5f, "/new.wav");
  fl_engine_publish(rig->engine, 0U, replacement);
  assert_ptr_equal(fl_bank_get(rig->bank, 0U), replacement);

  /* The voice keeps playing the old sample to its end (frame 1000), and the
     old sample is not handed back while it does. */
  for (uint32_t p = 1U; p < 3U; ++p) {
    rig_process(rig);
    assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 1.0f));
    assert_null(fl_engine_next_retired(rig->engine));
    assert_int_equal(rig_stats(rig).retired_samples, 0U);
  }
  /* One wake so far: for the telemetry record of the slot's start. */
  assert_int_equal(rig->wakes, 1U);

  /* A new play uses the replacement, alongside the old voice. */
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig); /* old voice: frames 768..999, ends at 232 */
  assert_true(all_equal(rig->out[0], 232U, 1.5f));
  assert_true(all_equal(rig->out[0] + 232, PERIOD_FRAMES - 232U, 0.5f));

  /* Handed back once the voice ended, exactly once. */
  assert_ptr_equal(fl_engine_next_retired(rig->engine), old);
  assert_null(fl_engine_next_retired(rig->engine));
  assert_int_equal(rig_stats(rig).retired_samples, 1U);
  assert_int_equal(rig->wakes, 2U);
  fl_sample_free(old);

  rig_process(rig);
  assert_null(fl_engine_next_retired(rig->engine));
  rig_free(rig);
}

static void
test_replace_idle_hands_back_next_period(void** state)
{
  (void)state;

  Rig* const      rig = rig_new(32U, 0U);
  FlSample* const old = make_sample(10U, 1.0f, "/old.wav");
  fl_engine_publish(rig->engine, 0U, old);
  fl_engine_publish(rig->engine, 0U, make_sample(10U, 1.0f, "/new.wav"));

  /* Nothing comes back before the RT thread has seen the retirement. */
  assert_null(fl_engine_next_retired(rig->engine));
  rig_process(rig);
  assert_ptr_equal(fl_engine_next_retired(rig->engine), old);
  assert_null(fl_engine_next_retired(rig->engine));
  fl_sample_free(old);

  rig_free(rig);
}

static void
test_unload_fades_and_hands_back(void** state)
{
  (void)state;

  Rig* const      rig    = rig_new(32U, 0U);
  FlSample* const sample = make_sample(RATE, 1.0f, "/a.wav");
  FlSample* const other  = make_sample(RATE, 0.25f, "/b.wav");
  fl_engine_publish(rig->engine, 0U, sample);
  fl_engine_publish(rig->engine, 1U, other);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 1U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 2.25f));

  fl_engine_publish(rig->engine, 0U, NULL);
  assert_null(fl_bank_get(rig->bank, 0U));
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_ERR_EMPTY_SLOT);

  /* Slot 0's voices fade over 240 frames; slot 1's voice goes on. */
  rig_process(rig);
  float previous = 2.25f;
  for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
    assert_true(rig->out[0][i] <= previous + 1e-6f);
    assert_true(previous - rig->out[0][i] <= 2.0f / 240.0f + 1e-6f);
    previous = rig->out[0][i];
  }
  assert_float_equal(rig->out[0][239], 0.25f, 1e-6f);
  assert_true(all_equal(rig->out[0] + 240, PERIOD_FRAMES - 240U, 0.25f));
  assert_int_equal(rig_stats(rig).voices_active, 1U);

  /* The fade ended in this period, so the sample is back. */
  assert_ptr_equal(fl_engine_next_retired(rig->engine), sample);
  assert_null(fl_engine_next_retired(rig->engine));
  fl_sample_free(sample);

  rig_free(rig);
}

/* A play queued for a later period holds its sample; unloading the slot
   before it starts must hand the sample back exactly once. */
static void
test_unload_pending_voice(void** state)
{
  (void)state;

  Rig* const      rig    = rig_new(32U, 0U);
  FlSample* const sample = make_sample(1000U, 1.0f, "/a.wav");
  fl_engine_publish(rig->engine, 0U, sample);
  const int64_t later = rig->period.usecs + 3 * PERIOD_USECS;
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, later), FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(rig_stats(rig).voices_active, 1U);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.0f));

  fl_engine_publish(rig->engine, 0U, NULL);
  rig_process(rig);
  assert_int_equal(rig_stats(rig).voices_active, 0U);
  assert_ptr_equal(fl_engine_next_retired(rig->engine), sample);
  assert_null(fl_engine_next_retired(rig->engine));
  fl_sample_free(sample);

  for (uint32_t p = 0U; p < 4U; ++p) {
    rig_process(rig);
    assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.0f));
    assert_null(fl_engine_next_retired(rig->engine));
  }
  assert_int_equal(rig_stats(rig).retired_samples, 1U);
  rig_free(rig);
}

/* A stopped or stolen pending voice never sounds, and its entry is reused. */
static void
test_stop_and_steal_pending_voice(void** state)
{
  (void)state;

  Rig* const rig = rig_new(1U, 0U);
  fl_engine_publish(rig->engine, 0U, make_sample(1000U, 1.0f, "/a.wav"));
  const int64_t later = rig->period.usecs + 3 * PERIOD_USECS;

  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, later), FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(fl_engine_stop(rig->engine, 0U), FL_SUCCESS);
  for (uint32_t p = 0U; p < 4U; ++p) {
    rig_process(rig);
    assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.0f));
  }
  assert_int_equal(rig_stats(rig).voices_active, 0U);

  /* With one voice, a play now steals a pending one. */
  const int64_t much_later = rig->period.usecs + 3 * PERIOD_USECS;
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, much_later),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.5f, FL_PLAY_NOW),
                   FL_SUCCESS);
  for (uint32_t p = 0U; p < 3U; ++p) {
    rig_process(rig);
    assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.5f));
  }
  FlEngineStats stats = rig_stats(rig);
  assert_int_equal(stats.stolen_voices, 1U);
  assert_int_equal(stats.voices_active, 1U);

  /* Many rounds of the same, so a leaked voice entry would run out. */
  for (uint32_t round = 0U; round < 10U; ++round) {
    const int64_t start = rig->period.usecs + 2 * PERIOD_USECS;
    assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, start), FL_SUCCESS);
    assert_int_equal(fl_engine_stop(rig->engine, FL_ALL_SLOTS), FL_SUCCESS);
    rig_process(rig);
    rig_process(rig);
  }
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.25f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.25f));
  stats = rig_stats(rig);
  assert_int_equal(stats.dropped_commands, 0U);

  rig_free(rig);
}

/* ---- Timing ---- */

static void
test_late_plays(void** state)
{
  (void)state;

  Rig* const rig = rig_new(32U, 0U);
  fl_engine_publish(rig->engine, 0U, make_sample(1000U, 1.0f, "/a.wav"));

  /* Before the period's first frame: late, and it starts at once. */
  assert_int_equal(
    fl_engine_play(rig->engine, 0U, 1.0f, rig->period.usecs - 10000),
    FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(rig_stats(rig).late_plays, 1U);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 1.0f));

  /* Exactly at the period's first frame, or a now-play: not late. */
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, rig->period.usecs),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  assert_int_equal(rig_stats(rig).late_plays, 1U);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 3.0f));

  rig_free(rig);
}

static void
test_play_three_periods_ahead(void** state)
{
  (void)state;

  Rig* const      rig    = rig_new(32U, 0U);
  FlSample* const sample = make_sample(1000U, 0.0f, "/ramp.wav");
  for (uint32_t i = 0U; i < 1000U; ++i) {
    sample->frames[i] = (float)(i + 1U);
  }
  fl_engine_publish(rig->engine, 0U, sample);

  /* Frame 100 of the period three after the next one. */
  const int64_t start = rig->period.usecs + 3 * PERIOD_USECS + 2083;
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, start), FL_SUCCESS);

  for (uint32_t p = 0U; p < 3U; ++p) {
    rig_process(rig);
    assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.0f));
    assert_int_equal(rig_stats(rig).voices_active, 1U);
  }
  rig_process(rig);
  assert_true(all_equal(rig->out[0], 100U, 0.0f));
  for (uint32_t i = 100U; i < PERIOD_FRAMES; ++i) {
    assert_true(rig->out[0][i] == (float)(i - 100U + 1U));
  }
  assert_int_equal(rig_stats(rig).late_plays, 0U);

  rig_free(rig);
}

/* ---- Bank ---- */

static void
test_bank_info(void** state)
{
  (void)state;

  assert_null(fl_bank_new(0U));
  assert_null(fl_bank_new(FL_MAX_SLOTS + 1U));
  FlBank* const big = fl_bank_new(FL_MAX_SLOTS);
  assert_non_null(big);
  assert_int_equal(fl_bank_slot_count(big), FL_MAX_SLOTS);
  fl_bank_free(big);

  Rig* const rig = rig_new(32U, 0U);
  FlSlotInfo info;
  memset(&info, 0xFF, sizeof(info));
  assert_true(fl_bank_info(rig->bank, 0U, &info));
  assert_false(info.loaded);
  assert_string_equal(info.path, "");
  assert_false(fl_bank_info(rig->bank, SLOTS, &info));
  assert_int_equal(fl_bank_loaded_count(rig->bank), 0U);

  FlSample* const stereo =
    fl_sample_new(123U, 2U, RATE, 44100U, "/samples/kick.wav");
  assert_non_null(stereo);
  fl_engine_publish(rig->engine, 5U, stereo);
  fl_engine_publish(rig->engine, 7U, make_sample(9U, 1.0f, "/snare.wav"));
  assert_int_equal(fl_bank_loaded_count(rig->bank), 2U);

  assert_true(fl_bank_info(rig->bank, 5U, &info));
  assert_true(info.loaded);
  assert_int_equal(info.frame_count, 123U);
  assert_int_equal(info.channels, 2U);
  assert_int_equal(info.sample_rate, RATE);
  assert_int_equal(info.source_rate, 44100U);
  assert_string_equal(info.path, "/samples/kick.wav");

  fl_engine_publish(rig->engine, 5U, NULL);
  assert_int_equal(fl_bank_loaded_count(rig->bank), 1U);
  assert_true(fl_bank_info(rig->bank, 5U, &info));
  assert_false(info.loaded);
  assert_int_equal(info.frame_count, 0U);
  assert_string_equal(info.path, "");

  rig_process(rig);
  assert_ptr_equal(fl_engine_next_retired(rig->engine), stereo);
  fl_sample_free(stereo);
  rig_free(rig);
}

static void
test_sample_new(void** state)
{
  (void)state;

  assert_null(fl_sample_new(10U, 0U, RATE, RATE, "/x.wav"));
  assert_null(fl_sample_new(10U, 3U, RATE, RATE, "/x.wav"));

  FlSample* const sample = fl_sample_new(10U, 2U, RATE, 22050U, NULL);
  assert_non_null(sample);
  assert_string_equal(sample->path, "");
  assert_int_equal(fl_sample_bytes(sample), 10U * 2U * sizeof(float));
  for (uint32_t i = 0U; i < 20U; ++i) {
    assert_true(sample->frames[i] == 0.0f);
  }
  fl_sample_free(sample);
}

/* ---- Engine configuration ---- */

static void
test_engine_new_bad_config(void** state)
{
  (void)state;

  FlBank* const bank = fl_bank_new(4U);
  assert_non_null(bank);

  const FlEngineConfig good = { RATE, 2U, 32U, 0U, NULL, NULL };
  FlEngineConfig       config;

  assert_null(fl_engine_new(&good, NULL));

  config             = good;
  config.sample_rate = 0U;
  assert_null(fl_engine_new(&config, bank));

  config              = good;
  config.output_count = 0U;
  assert_null(fl_engine_new(&config, bank));
  config.output_count = FL_MAX_OUTPUTS + 1U;
  assert_null(fl_engine_new(&config, bank));

  config            = good;
  config.max_voices = 0U;
  assert_null(fl_engine_new(&config, bank));
  config.max_voices = FL_MAX_VOICES + 1U;
  assert_null(fl_engine_new(&config, bank));

  config                  = good;
  config.command_capacity = UINT32_MAX;
  assert_null(fl_engine_new(&config, bank));

  /* The limits themselves are valid. */
  config              = good;
  config.output_count = 1U;
  config.max_voices   = FL_MAX_VOICES;
  FlEngine* engine    = fl_engine_new(&config, bank);
  assert_non_null(engine);
  assert_int_equal(fl_bank_slot_count(bank), 4U);
  fl_engine_free(engine);

  config            = good;
  config.max_voices = 1U;
  engine            = fl_engine_new(&config, bank);
  assert_non_null(engine);
  fl_engine_free(engine);

  fl_bank_free(bank);
}

static void
test_strerror(void** state)
{
  (void)state;

  for (int status = FL_SUCCESS; status <= FL_ERR_BAD_ARGUMENT; ++status) {
    const char* const message = fl_strerror((FlStatus)status);
    assert_non_null(message);
    assert_true(strlen(message) > 0U);
    for (int other = FL_SUCCESS; other < status; ++other) {
      assert_string_not_equal(message, fl_strerror((FlStatus)other));
    }
  }
  const char* const unknown = fl_strerror((FlStatus)(FL_ERR_BAD_ARGUMENT + 1));
  assert_non_null(unknown);
  assert_true(strlen(unknown) > 0U);
}

/* ---- Teardown ---- */

static void
test_process_offline(void** state)
{
  (void)state;

  Rig* const      rig = rig_new(32U, 0U);
  FlSample* const old = make_sample(RATE, 1.0f, "/old.wav");
  fl_engine_publish(rig->engine, 0U, old);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(
    fl_engine_play(rig->engine, 0U, 1.0f, rig->period.usecs + 100000),
    FL_SUCCESS);
  rig_process(rig);
  fl_engine_publish(rig->engine, 0U, make_sample(RATE, 1.0f, "/new.wav"));
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);

  /* The server is gone: every voice ends and the old sample comes back; the
     queued play is discarded. */
  fl_engine_process_offline(rig->engine);
  assert_ptr_equal(fl_engine_next_retired(rig->engine), old);
  assert_null(fl_engine_next_retired(rig->engine));
  fl_sample_free(old);
  FlEngineStats stats = rig_stats(rig);
  assert_int_equal(stats.voices_active, 0U);
  assert_int_equal(stats.plays, 2U);

  /* The engine runs again afterwards. */
  assert_int_equal(fl_engine_play(rig->engine, 0U, 0.5f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  assert_true(all_equal(rig->out[0], PERIOD_FRAMES, 0.5f));

  rig_free(rig);
}

/* fl_engine_free() frees retired samples still held by voices or queued;
   run under ASan/valgrind, a leak or double free shows. */
static void
test_free_with_retired_samples(void** state)
{
  (void)state;

  Rig* const rig = rig_new(32U, 0U);
  fl_engine_publish(rig->engine, 0U, make_sample(RATE, 1.0f, "/a.wav"));
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_process(rig);
  fl_engine_publish(rig->engine, 0U, make_sample(RATE, 1.0f, "/b.wav"));
  rig_process(rig);                         /* b retired, voice holds a */
  fl_engine_publish(rig->engine, 0U, NULL); /* b queued, not seen yet */
  fl_engine_publish(rig->engine, 1U, make_sample(10U, 1.0f, "/c.wav"));
  rig_free(rig); /* frees a, b (engine) and c (bank) */
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_play_validation),
    cmocka_unit_test(test_queue_full),
    cmocka_unit_test(test_stop_validation),
    cmocka_unit_test(test_replace_hands_back_after_voice),
    cmocka_unit_test(test_replace_idle_hands_back_next_period),
    cmocka_unit_test(test_unload_fades_and_hands_back),
    cmocka_unit_test(test_unload_pending_voice),
    cmocka_unit_test(test_stop_and_steal_pending_voice),
    cmocka_unit_test(test_late_plays),
    cmocka_unit_test(test_play_three_periods_ahead),
    cmocka_unit_test(test_bank_info),
    cmocka_unit_test(test_sample_new),
    cmocka_unit_test(test_engine_new_bad_config),
    cmocka_unit_test(test_strerror),
    cmocka_unit_test(test_process_offline),
    cmocka_unit_test(test_free_with_retired_samples),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
