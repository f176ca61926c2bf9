/*
  Three threads hammer the engine as flitzid does. They never sleep; the
  control and loader threads only yield until the RT thread has processed
  another period, so that their work interleaves with periods (about four
  commands and one publish a period) rather than racing ahead of them:

  - RT: fl_engine_process() in a loop over a synthetic advancing period,
    checking that every output frame is a sum of plausible voice values;
  - control: fl_engine_play() of random slots (now, timed ahead, late) and
    an occasional fl_engine_stop();
  - loader and reaper: publishes, replaces and unloads small samples of
    random length thousands of times, and frees what the engine hands back.

  Every sample has a serial number in its path. The test wraps
  fl_sample_free() at link time (-Wl,--wrap, see tests/meson.build) to count
  the frees of each serial, including those done inside fl_engine_free() and
  fl_bank_free(): at the end every sample must have been freed exactly once.
  Use-after-free and races are for the sanitizer builds to find
  (-Db_sanitize=address,undefined and -Db_sanitize=thread).
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/sample.h>
#include <flitzi/status.h>

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define SLOTS 8U
#define MAX_VOICES 16U
#define PUBLISHES 20000U
#define MAX_SAMPLE_FRAMES 2000U
#define RATE 48000U
#define PERIOD_FRAMES 256U
#define PERIOD_USECS 5333
#define PATH_PREFIX "/stress/"

/* Each sample frame holds this; voices play it at a velocity in [0, 1]. */
#define SAMPLE_VALUE 1.0f

/* Frees of each sample, by serial number (the number in its path). */
static atomic_uint frees[PUBLISHES];
static atomic_uint stray_frees; /* freed samples that are not ours */

void __real_fl_sample_free(FlSample* sample);

void __wrap_fl_sample_free(FlSample* sample);

void
__wrap_fl_sample_free(FlSample* sample)
{
  if (sample) {
    unsigned serial = 0U;
    if (sscanf(sample->path, PATH_PREFIX "%u", &serial) == 1 &&
        serial < PUBLISHES) {
      atomic_fetch_add_explicit(&frees[serial], 1U, memory_order_relaxed);
    } else {
      atomic_fetch_add_explicit(&stray_frees, 1U, memory_order_relaxed);
    }
  }
  __real_fl_sample_free(sample);
}

typedef struct {
  FlBank*   bank;
  FlEngine* engine;

  atomic_bool   control_done; /* set by the main thread to stop control */
  atomic_bool   rt_done;      /* set by the main thread to stop RT */
  atomic_llong  period_usecs; /* the RT thread's current period, for plays */
  atomic_ullong periods;      /* periods the RT thread has processed */

  /* Results, written by one thread each and read after the joins. */
  uint64_t bad_frames;   /* RT: output frames out of range */
  float    first_bad[2]; /* RT: the first of them, left and right */
  uint64_t plays_queued; /* control */
  uint64_t plays_empty;  /* control: slot empty */
  uint64_t plays_full;   /* control: queue full */
  uint64_t bad_statuses; /* control: any other status */
  uint32_t allocated;    /* loader */
  uint64_t reaped;       /* reaper: samples freed from the event ring */
} Stress;

/* A small per-thread generator (xorshift32); rand() is not thread-safe. */
static uint32_t
next_random(uint32_t* state)
{
  uint32_t x = *state;
  x ^= x << 13U;
  x ^= x >> 17U;
  x ^= x << 5U;
  return *state = x;
}

/* Wait until the RT thread has processed a period after `*seen`, so that
   the other threads interleave with periods instead of running ahead. */
static void
wait_for_period(Stress* stress, uint64_t* seen)
{
  uint64_t now = 0U;
  while ((now = atomic_load_explicit(&stress->periods, memory_order_relaxed)) ==
           *seen &&
         !atomic_load_explicit(&stress->rt_done, memory_order_relaxed)) {
    sched_yield();
  }
  *seen = now;
}

static void*
run_rt(void* data)
{
  Stress* const stress = (Stress*)data;
  float         left[PERIOD_FRAMES];
  float         right[PERIOD_FRAMES];
  float* const  outputs[] = { left, right };
  FlPeriod      period = { PERIOD_FRAMES, 0U, 1000000, 1000000 + PERIOD_USECS };

  /* Every voice adds between 0 and SAMPLE_VALUE (a fade's last frame may
     round to a hair below 0), and at most two entries per voice (a sounding
     voice and a fade tail) play at once. */
  const float lowest  = -1e-3f;
  const float highest = 2.0f * MAX_VOICES * SAMPLE_VALUE + 1e-3f;

  while (!atomic_load_explicit(&stress->rt_done, memory_order_acquire)) {
    for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
      left[i] = right[i] = NAN;
    }

    fl_engine_process(stress->engine, &period, outputs);

    for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
      if (!(left[i] >= lowest && left[i] <= highest) ||
          !(right[i] >= lowest && right[i] <= highest)) {
        if (!stress->bad_frames) {
          stress->first_bad[0] = left[i];
          stress->first_bad[1] = right[i];
        }
        ++stress->bad_frames;
      }
    }

    period.first_frame += PERIOD_FRAMES;
    period.usecs      = period.next_usecs;
    period.next_usecs = period.usecs + PERIOD_USECS;
    atomic_store_explicit(
      &stress->period_usecs, period.usecs, memory_order_relaxed);
    atomic_fetch_add_explicit(&stress->periods, 1U, memory_order_relaxed);
    sched_yield(); /* two cores, three busy threads */
  }
  return NULL;
}

static void*
run_control(void* data)
{
  Stress* const stress = (Stress*)data;
  uint32_t      random = 0x2545F491U;
  uint64_t      seen   = 0U;

  while (!atomic_load_explicit(&stress->control_done, memory_order_acquire)) {
    const uint32_t r    = next_random(&random);
    const uint32_t slot = r % SLOTS;

    if ((r >> 8U) % 64U == 0U) {
      const uint32_t target = (r >> 16U) % 4U ? slot : FL_ALL_SLOTS;
      const FlStatus status = fl_engine_stop(stress->engine, target);
      stress->bad_statuses +=
        status != FL_SUCCESS && status != FL_ERR_QUEUE_FULL;
      continue;
    }

    /* Half now, the rest timed from a period ago to three periods ahead. */
    int64_t start = FL_PLAY_NOW;
    if ((r >> 8U) % 2U) {
      const int64_t now =
        atomic_load_explicit(&stress->period_usecs, memory_order_relaxed);
      start = now - PERIOD_USECS + (int64_t)((r >> 9U) % (4U * PERIOD_USECS));
    }
    const float    velocity = (float)((r >> 20U) % 1025U) / 1024.0f;
    const FlStatus status =
      fl_engine_play(stress->engine, slot, velocity, start);
    if (status == FL_SUCCESS) {
      ++stress->plays_queued;
    } else if (status == FL_ERR_EMPTY_SLOT) {
      ++stress->plays_empty;
    } else if (status == FL_ERR_QUEUE_FULL) {
      ++stress->plays_full;
    } else {
      ++stress->bad_statuses;
    }
    if (r % 4U == 0U) {
      wait_for_period(stress, &seen); /* about 4 commands a period */
    }
  }
  return NULL;
}

static void
reap(Stress* stress)
{
  FlSample* sample = NULL;
  while ((sample = fl_engine_next_retired(stress->engine))) {
    fl_sample_free(sample);
    ++stress->reaped;
  }
}

static void*
run_loader(void* data)
{
  Stress* const stress = (Stress*)data;
  uint32_t      random = 0x9E3779B9U;
  uint64_t      seen   = 0U;

  for (uint32_t serial = 0U; serial < PUBLISHES;) {
    const uint32_t r    = next_random(&random);
    const uint32_t slot = r % SLOTS;

    if ((r >> 8U) % 8U == 0U) {
      fl_engine_publish(stress->engine, slot, NULL); /* unload */
    } else {
      char path[32];
      snprintf(path, sizeof(path), PATH_PREFIX "%u", serial++);
      const uint32_t  frames   = 1U + (r >> 12U) % MAX_SAMPLE_FRAMES;
      const uint32_t  channels = 1U + ((r >> 11U) & 1U);
      FlSample* const sample =
        fl_sample_new(frames, channels, RATE, RATE, path);
      if (!sample) {
        break; /* counted as a mismatch at the end */
      }
      for (uint32_t i = 0U; i < frames * channels; ++i) {
        sample->frames[i] = SAMPLE_VALUE;
      }
      ++stress->allocated;
      fl_engine_publish(stress->engine, slot, sample);
    }

    reap(stress);
    if (r % 4U != 0U) {
      wait_for_period(stress, &seen); /* mostly one publish a period */
    }
  }

  return NULL;
}

static void
test_bank_stress(void** state)
{
  (void)state;

  static Stress        stress;
  const FlEngineConfig config = { RATE, 2U, MAX_VOICES, 0U, NULL, NULL };
  stress.bank                 = fl_bank_new(SLOTS);
  assert_non_null(stress.bank);
  stress.engine = fl_engine_new(&config, stress.bank);
  assert_non_null(stress.engine);
  atomic_init(&stress.control_done, false);
  atomic_init(&stress.rt_done, false);
  atomic_init(&stress.period_usecs, 1000000);
  atomic_init(&stress.periods, 0U);

  pthread_t rt;
  pthread_t control;
  pthread_t loader;
  assert_int_equal(pthread_create(&rt, NULL, run_rt, &stress), 0);
  assert_int_equal(pthread_create(&control, NULL, run_control, &stress), 0);
  assert_int_equal(pthread_create(&loader, NULL, run_loader, &stress), 0);

  /* The loader decides when the test ends; then control, then RT. */
  assert_int_equal(pthread_join(loader, NULL), 0);
  atomic_store_explicit(&stress.control_done, true, memory_order_release);
  assert_int_equal(pthread_join(control, NULL), 0);
  atomic_store_explicit(&stress.rt_done, true, memory_order_release);
  assert_int_equal(pthread_join(rt, NULL), 0);

  /* The main thread is now every role: reap, then tear down. */
  reap(&stress);
  FlEngineStats stats;
  fl_engine_stats(stress.engine, &stats);
  fl_engine_free(stress.engine);
  fl_bank_free(stress.bank);

  uint32_t freed        = 0U;
  uint32_t double_freed = 0U;
  uint32_t leaked       = 0U;
  for (uint32_t i = 0U; i < stress.allocated; ++i) {
    const unsigned count = atomic_load(&frees[i]);
    freed += count;
    double_freed += count > 1U;
    leaked += count == 0U;
  }

  printf("periods %llu, plays queued %llu (applied %llu, late %llu, "
         "stolen %llu), empty slot %llu, queue full %llu\n"
         "samples allocated %u, freed %u (reaped %llu, handed back %llu), "
         "leaked %u, freed twice %u\n",
         (unsigned long long)atomic_load(&stress.periods),
         (unsigned long long)stress.plays_queued,
         (unsigned long long)stats.plays,
         (unsigned long long)stats.late_plays,
         (unsigned long long)stats.stolen_voices,
         (unsigned long long)stress.plays_empty,
         (unsigned long long)stress.plays_full,
         stress.allocated,
         freed,
         (unsigned long long)stress.reaped,
         (unsigned long long)stats.retired_samples,
         leaked,
         double_freed);

  if (stress.bad_frames) {
    print_error("%llu output frames out of range, the first %g, %g\n",
                (unsigned long long)stress.bad_frames,
                (double)stress.first_bad[0],
                (double)stress.first_bad[1]);
  }
  assert_int_equal(stress.allocated, PUBLISHES);
  assert_int_equal(stress.bad_frames, 0U);
  assert_int_equal(stress.bad_statuses, 0U);
  assert_int_equal(atomic_load(&stray_frees), 0U);
  assert_int_equal(leaked, 0U);
  assert_int_equal(double_freed, 0U);
  assert_int_equal(freed, stress.allocated);
  assert_true(stress.reaped <= stats.retired_samples);
  assert_true(stats.plays > 0U);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bank_stress),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
