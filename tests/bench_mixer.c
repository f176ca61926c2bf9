/*
  Mixer throughput against memory bandwidth.

  Each voice reads its own region of a pool far larger than the caches, one
  period at a time, as voices playing long distinct samples do; the outputs
  (one period) stay in L1. The same access pattern is then done with
  memcpy() of the same source bytes into a second pool. If the mixer keeps
  up with memcpy it is bound by memory, not by arithmetic: the goal is a
  mixer/memcpy ratio of at least 0.70 at 1024 voices.

  The engine rows do the same through fl_engine_process(), with one sample
  of the pool's size divided by the voices per voice, to show what the voice
  bookkeeping costs on top of the mixer.

  Run: meson test -C build --benchmark mixer -v   (or build/tests/bench_mixer)
  Optional argument: pool size in MiB (default 256).
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/mixer.h>
#include <flitzi/sample.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PERIOD_FRAMES 256U
#define OUTPUTS 2U
#define REPETITIONS 7U
#define RATE 48000U
#define PERIOD_USECS 5333

static double
now_seconds(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* Keeps the outputs alive so the compiler cannot drop the mixing. */
static volatile float sink;

/* Mix `voices` voices over one pass of the pool: each voice reads its region
   of `region_frames` frames sequentially, a period at a time. Returns
   seconds. */
static double
run_mixer(const float* pool,
          uint32_t     channels,
          uint32_t     voices,
          uint32_t     region_frames)
{
  static float left[PERIOD_FRAMES];
  static float right[PERIOD_FRAMES];
  float* const outputs[OUTPUTS] = { left, right };
  const size_t region_floats    = (size_t)region_frames * channels;

  const double start = now_seconds();
  for (uint32_t frame = 0U; frame < region_frames; frame += PERIOD_FRAMES) {
    memset(left, 0, sizeof(left));
    memset(right, 0, sizeof(right));
    for (uint32_t v = 0U; v < voices; ++v) {
      const float* const source =
        pool + v * region_floats + (size_t)frame * channels;
      fl_mix_add(
        source, channels, PERIOD_FRAMES, 0.5f, 0.0f, outputs, OUTPUTS, 0U);
    }
    sink = left[frame % PERIOD_FRAMES] + right[0];
  }
  return now_seconds() - start;
}

/* The same pattern with memcpy() of each voice's period into `copy`. */
static double
run_memcpy(const float* pool,
           float*       copy,
           uint32_t     channels,
           uint32_t     voices,
           uint32_t     region_frames)
{
  const size_t region_floats = (size_t)region_frames * channels;
  const size_t period_bytes  = (size_t)PERIOD_FRAMES * channels * sizeof(float);

  const double start = now_seconds();
  for (uint32_t frame = 0U; frame < region_frames; frame += PERIOD_FRAMES) {
    for (uint32_t v = 0U; v < voices; ++v) {
      const size_t at = v * region_floats + (size_t)frame * channels;
      memcpy(copy + at, pool + at, period_bytes);
    }
  }
  sink = copy[(size_t)voices * region_floats - 1U];
  return now_seconds() - start;
}

/* The same pattern through the engine: `voices` samples, one voice each,
   played to their end. Returns seconds for the best pass, or -1. */
static double
run_engine(uint32_t channels, uint32_t voices, uint32_t region_frames)
{
  FlBank* const        bank   = fl_bank_new(voices);
  const FlEngineConfig config = { RATE, OUTPUTS, voices, 0U, NULL, NULL };
  FlEngine* const      engine = bank ? fl_engine_new(&config, bank) : NULL;
  double               best   = -1.0;
  static float         left[PERIOD_FRAMES];
  static float         right[PERIOD_FRAMES];
  float* const         outputs[OUTPUTS] = { left, right };
  FlPeriod             period = { PERIOD_FRAMES, 0U, 0, PERIOD_USECS };
  if (!engine) {
    goto done;
  }

  for (uint32_t v = 0U; v < voices; ++v) {
    FlSample* const sample =
      fl_sample_new(region_frames, channels, RATE, RATE, "bench");
    if (!sample) {
      goto done;
    }
    for (size_t i = 0U; i < (size_t)region_frames * channels; ++i) {
      sample->frames[i] = (float)(i % 255U) / 256.0f;
    }
    fl_engine_publish(engine, v, sample);
  }

  for (uint32_t r = 0U; r < REPETITIONS; ++r) {
    for (uint32_t v = 0U; v < voices; ++v) {
      fl_engine_play(engine, v, 0.5f, FL_PLAY_NOW);
    }
    const double start = now_seconds();
    for (uint32_t frame = 0U; frame < region_frames; frame += PERIOD_FRAMES) {
      fl_engine_process(engine, &period, outputs);
      period.first_frame += PERIOD_FRAMES;
      period.usecs      = period.next_usecs;
      period.next_usecs = period.usecs + PERIOD_USECS;
    }
    const double seconds = now_seconds() - start;
    sink                 = left[0] + right[0];
    if (best < 0.0 || seconds < best) {
      best = seconds;
    }
  }

done:
  fl_engine_free(engine);
  fl_bank_free(bank);
  return best;
}

int
main(int argc, char** argv)
{
  const size_t pool_mib    = argc > 1 ? strtoul(argv[1], NULL, 10) : 256U;
  const size_t pool_floats = pool_mib * 1024U * 1024U / sizeof(float);
  if (pool_floats < 2U * 1024U * PERIOD_FRAMES) {
    fprintf(stderr, "bench_mixer: pool of %zu MiB is too small\n", pool_mib);
    return 1;
  }

  float* const pool = (float*)malloc(pool_floats * sizeof(float));
  float* const copy = (float*)malloc(pool_floats * sizeof(float));
  if (!pool || !copy) {
    fprintf(stderr, "bench_mixer: cannot allocate 2 x %zu MiB\n", pool_mib);
    return 1;
  }
  for (size_t i = 0U; i < pool_floats; ++i) {
    pool[i] = (float)(i % 255U) / 256.0f; /* touch every page */
  }
  memset(copy, 0, pool_floats * sizeof(float));

  static const uint32_t voice_counts[] = { 32U, 256U, 1024U };

  printf("flitzi mixer benchmark: fl_mix_add, period %u frames, %u outputs, "
         "gain 0.5\npool %zu MiB (each voice reads its own region once), "
         "best of %u repetitions\n\n",
         PERIOD_FRAMES,
         OUTPUTS,
         pool_mib,
         REPETITIONS);
  printf("%6s  %-6s  %15s  %12s  %12s  %12s\n",
         "voices",
         "source",
         "voice-frames/s",
         "source MB/s",
         "memcpy MB/s",
         "mixer/memcpy");

  double ratio_at_1024[2] = { 0.0, 0.0 };
  for (uint32_t channels = 1U; channels <= 2U; ++channels) {
    for (size_t n = 0U; n < sizeof(voice_counts) / sizeof(voice_counts[0]);
         ++n) {
      const uint32_t voices = voice_counts[n];
      /* Whole periods per region; the pool is split between the voices. */
      const uint32_t region_frames =
        (uint32_t)(pool_floats / channels / voices / PERIOD_FRAMES *
                   PERIOD_FRAMES);
      const double bytes =
        (double)voices * region_frames * channels * sizeof(float);

      double best_mixer  = 1e30;
      double best_memcpy = 1e30;
      for (uint32_t r = 0U; r < REPETITIONS; ++r) {
        const double mixer = run_mixer(pool, channels, voices, region_frames);
        const double copying =
          run_memcpy(pool, copy, channels, voices, region_frames);
        best_mixer  = mixer < best_mixer ? mixer : best_mixer;
        best_memcpy = copying < best_memcpy ? copying : best_memcpy;
      }

      const double ratio = best_memcpy / best_mixer;
      if (voices == 1024U) {
        ratio_at_1024[channels - 1U] = ratio;
      }
      printf("%6u  %-6s  %15.4g  %12.0f  %12.0f  %12.2f\n",
             voices,
             channels == 1U ? "mono" : "stereo",
             (double)voices * region_frames / best_mixer,
             bytes / best_mixer / 1e6,
             bytes / best_memcpy / 1e6,
             ratio);
      fflush(stdout);
    }
  }

  /* For context: one memcpy() of the whole pool, which may use
     non-temporal stores that the per-period copies above do not. */
  double best_bulk = 1e30;
  for (uint32_t r = 0U; r < REPETITIONS; ++r) {
    const double start = now_seconds();
    memcpy(copy, pool, pool_floats * sizeof(float));
    const double seconds = now_seconds() - start;
    best_bulk            = seconds < best_bulk ? seconds : best_bulk;
  }
  sink = copy[pool_floats / 2U];
  printf("\none memcpy() of the whole pool: %.0f MB/s\n",
         (double)pool_floats * sizeof(float) / best_bulk / 1e6);

  free(copy);
  free(pool);

  /* The engine at full polyphony, on samples of the same total size. */
  printf("\nfl_engine_process, %u voices on %u distinct samples:\n",
         FL_MAX_VOICES,
         FL_MAX_VOICES);
  printf("%6s  %-6s  %15s  %12s\n",
         "voices",
         "source",
         "voice-frames/s",
         "source MB/s");
  for (uint32_t channels = 1U; channels <= 2U; ++channels) {
    const uint32_t voices        = FL_MAX_VOICES;
    const uint32_t region_frames = (uint32_t)(pool_floats / channels / voices /
                                              PERIOD_FRAMES * PERIOD_FRAMES);
    const double   seconds       = run_engine(channels, voices, region_frames);
    if (seconds <= 0.0) {
      fprintf(stderr, "bench_mixer: engine setup failed\n");
      return 1;
    }
    printf("%6u  %-6s  %15.4g  %12.0f\n",
           voices,
           channels == 1U ? "mono" : "stereo",
           (double)voices * region_frames / seconds,
           (double)voices * region_frames * channels * sizeof(float) / seconds /
             1e6);
  }

  printf("\nmixer/memcpy at 1024 voices: mono %.2f, stereo %.2f (goal 0.70)\n",
         ratio_at_1024[0],
         ratio_at_1024[1]);
  return 0;
}
