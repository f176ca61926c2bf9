/*
  The DJ isolator's cost in the callback: 32 sounding slots with the
  isolator engaged against the same 32 slots without EQ.

  Everything runs offline through fl_engine_process() on synthetic periods
  (48 kHz, 256 frames, two outputs), no JACK, as tests/bench_pads.c does.
  Cases, each on samples of its own so that no case finds another's audio
  in the caches:

    1  the engine, 32 looping stereo slots at default settings (no EQ:
       every voice mixed straight to the outputs);
    2  the same, with eq_low at -20 dB on every slot (the isolator
       engaged: each slot's block goes through nine biquads per channel,
       in its slot stage);
    3  the floor for those filters, no engine: per slot and channel, the
       next 256 frames of its sample copied out of the interleaved frames,
       fl_isolator_process() on them, and the result added to the output
       (what case 2 must do at the least).

  The machine is shared and noisy, so the cases run a chunk of periods in
  turn (1 2 3 1 ..., the first case rotating each round), each period
  timed alone with CLOCK_MONOTONIC; a case's figure for a round is the
  mean over its chunk, the table shows the median over all rounds, and a
  ratio is the median of the per-round ratios of two cases, which ran
  next to each other in time.

  Run: meson test -C build --benchmark isolator -v  (or
  build/tests/bench_isolator) Optional arguments: rounds (default 400), sample
  seconds (default 10).
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/isolator.h>
#include <flitzi/sample.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RATE 48000U
#define PERIOD_FRAMES 256U
#define PERIOD_USECS 5333
#define OUTPUTS 2U
#define SLOTS 32U
#define CHUNK_PERIODS 32U
#define WARMUP_ROUNDS 3U
#define VELOCITY 0.8f
#define LOOP_START_SECONDS 0.5
#define LOOP_TAIL_SECONDS 0.5
#define XFADE_MS 10.0f
#define EQ_LOW_DB (-20.0)
#define GOAL 1.5

/* Keeps the outputs alive so the compiler cannot drop the work. */
static volatile float sink;

static int64_t
now_ns(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000LL + (int64_t)now.tv_nsec;
}

/* A stereo sample, every frame written (every page resident) with a
   pattern that differs per sample and is never denormal. */
static FlSample*
new_sample(uint32_t frames, uint32_t seed)
{
  FlSample* const sample = fl_sample_new(frames, 2U, RATE, RATE, "bench");
  if (!sample) {
    return NULL;
  }
  const size_t count = (size_t)frames * 2U;
  for (size_t i = 0U; i < count; ++i) {
    sample->frames[i] = (float)((i + seed) % 255U) / 256.0f - 0.5f;
  }
  return sample;
}

static float        left[PERIOD_FRAMES];
static float        right[PERIOD_FRAMES];
static float* const outputs[OUTPUTS] = { left, right };

typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  FlPeriod  period;
} Rig;

static void
drain(Rig* rig)
{
  FlEvent event;
  while (fl_engine_next_event(rig->engine, &event)) {
  }
}

static int64_t
process_period(Rig* rig)
{
  const int64_t start = now_ns();
  fl_engine_process(rig->engine, &rig->period, outputs);
  const int64_t elapsed = now_ns() - start;
  sink                  = left[0] + right[PERIOD_FRAMES - 1U];
  rig->period.first_frame += PERIOD_FRAMES;
  rig->period.usecs      = rig->period.next_usecs;
  rig->period.next_usecs = rig->period.usecs + PERIOD_USECS;
  drain(rig);
  return elapsed;
}

static bool
rig_init(Rig* rig, const FlSlotParams* params, uint32_t frames, uint32_t seed)
{
  const FlEngineConfig config = { RATE, OUTPUTS, SLOTS, 0U, NULL, NULL };
  memset(rig, 0, sizeof(*rig));
  rig->period = (FlPeriod){ PERIOD_FRAMES, 0U, 0, PERIOD_USECS };
  rig->bank   = fl_bank_new(SLOTS);
  rig->engine = rig->bank ? fl_engine_new(&config, rig->bank) : NULL;
  if (!rig->engine) {
    return false;
  }
  for (uint32_t slot = 0U; slot < SLOTS; ++slot) {
    FlSample* const sample = new_sample(frames, seed + slot);
    if (!sample) {
      return false;
    }
    fl_engine_publish(rig->engine, slot, sample);
    if (fl_engine_set_slot(rig->engine, slot, params) ||
        fl_engine_play(rig->engine, slot, VELOCITY, FL_PLAY_NOW)) {
      return false;
    }
  }
  /* Past the launch and any ramp into the settings. */
  for (uint32_t p = 0U; p < 8U; ++p) {
    process_period(rig);
  }
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  return stats.voices_active == SLOTS;
}

static void
rig_free(Rig* rig)
{
  fl_engine_free(rig->engine);
  fl_bank_free(rig->bank);
}

static double
rig_chunk(Rig* rig)
{
  int64_t total = 0;
  for (uint32_t p = 0U; p < CHUNK_PERIODS; ++p) {
    total += process_period(rig);
  }
  return (double)total / CHUNK_PERIODS;
}

/* Case 3: the filters without the engine. */
typedef struct {
  FlSample*        samples[SLOTS];
  uint32_t         positions[SLOTS];
  FlIsolatorDesign design;
  FlIsolatorState  states[SLOTS][OUTPUTS];
  FlIsolatorGains  gains;
  float            block[PERIOD_FRAMES];
} Floor;

static bool
bare_init(Floor* bare, uint32_t frames, uint32_t seed)
{
  memset(bare, 0, sizeof(*bare));
  fl_isolator_design(&bare->design, RATE, FL_EQ_LOW_HZ, FL_EQ_HIGH_HZ);
  bare->gains = (FlIsolatorGains){
    (float)pow(10.0, EQ_LOW_DB / 20.0), 1.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f
  };
  for (uint32_t s = 0U; s < SLOTS; ++s) {
    bare->samples[s] = new_sample(frames, seed + s);
    if (!bare->samples[s]) {
      return false;
    }
  }
  return true;
}

static void
bare_free(Floor* bare)
{
  for (uint32_t s = 0U; s < SLOTS; ++s) {
    fl_sample_free(bare->samples[s]);
  }
}

static double
bare_chunk(Floor* bare)
{
  int64_t total = 0;
  for (uint32_t p = 0U; p < CHUNK_PERIODS; ++p) {
    const int64_t start = now_ns();
    memset(left, 0, sizeof(left));
    memset(right, 0, sizeof(right));
    for (uint32_t s = 0U; s < SLOTS; ++s) {
      const float* const frames =
        bare->samples[s]->frames + (size_t)bare->positions[s] * 2U;
      for (uint32_t c = 0U; c < OUTPUTS; ++c) {
        for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
          bare->block[i] = frames[2U * i + c] * VELOCITY;
        }
        fl_isolator_process(&bare->design,
                            &bare->states[s][c],
                            &bare->gains,
                            bare->block,
                            PERIOD_FRAMES);
        float* const out = outputs[c];
        for (uint32_t i = 0U; i < PERIOD_FRAMES; ++i) {
          out[i] += bare->block[i];
        }
      }
    }
    total += now_ns() - start;
    sink = left[0] + right[PERIOD_FRAMES - 1U];
    for (uint32_t s = 0U; s < SLOTS; ++s) {
      bare->positions[s] += PERIOD_FRAMES;
      if (bare->positions[s] + PERIOD_FRAMES > bare->samples[s]->frame_count) {
        bare->positions[s] = 0U;
      }
    }
  }
  return (double)total / CHUNK_PERIODS;
}

static int
compare_doubles(const void* a, const void* b)
{
  const double x = *(const double*)a;
  const double y = *(const double*)b;
  return (x > y) - (x < y);
}

static double
quantile(const double* values, uint32_t count, double q, double* scratch)
{
  memcpy(scratch, values, count * sizeof(double));
  qsort(scratch, count, sizeof(double), compare_doubles);
  const double   at   = q * (double)(count - 1U);
  const uint32_t low  = (uint32_t)at;
  const uint32_t high = low + 1U < count ? low + 1U : low;
  return scratch[low] + (at - (double)low) * (scratch[high] - scratch[low]);
}

enum { CASE_PLAIN, CASE_EQ, CASE_FLOOR, CASES };

static const char* const case_names[CASES] = {
  "engine, 32 loops, no EQ",
  "engine, 32 loops, eq_low -20 dB",
  "floor: copy + fl_isolator_process + add",
};

int
main(int argc, char** argv)
{
  const uint32_t rounds =
    argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 400U;
  const uint32_t seconds =
    argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 10U;
  if (rounds < 3U || seconds < 2U || seconds > 600U) {
    fprintf(stderr, "bench_isolator: want rounds >= 3 and 2..600 seconds\n");
    return 1;
  }
  const uint32_t frames = seconds * RATE / PERIOD_FRAMES * PERIOD_FRAMES;

  FlSlotParams plain  = FL_SLOT_PARAMS_DEFAULT;
  plain.mode          = FL_MODE_LOOP;
  plain.xfade_ms      = XFADE_MS;
  plain.start_seconds = LOOP_START_SECONDS;
  plain.end_seconds   = (double)frames / RATE - LOOP_TAIL_SECONDS;
  FlSlotParams eq     = plain;
  eq.eq_low           = (float)pow(10.0, EQ_LOW_DB / 20.0);

  printf("flitzi isolator benchmark: fl_engine_process offline, %u Hz, "
         "period %u frames, %u outputs\n"
         "%u stereo loops of %u s (%.1f..%.1f s, %.0f ms seam crossfade), "
         "velocity %.1f; EQ case: eq_low %.0f dB\n"
         "%u rounds of %u periods per case, cases interleaved; median of the "
         "rounds' means\n\n",
         RATE,
         PERIOD_FRAMES,
         OUTPUTS,
         SLOTS,
         seconds,
         plain.start_seconds,
         plain.end_seconds,
         (double)XFADE_MS,
         (double)VELOCITY,
         EQ_LOW_DB,
         rounds,
         CHUNK_PERIODS);
  fflush(stdout);

  static Floor bare;
  Rig          without;
  Rig          with;
  if (!rig_init(&without, &plain, frames, 1000U) ||
      !rig_init(&with, &eq, frames, 2000U) ||
      !bare_init(&bare, frames, 3000U)) {
    fprintf(stderr, "bench_isolator: setup failed (out of memory?)\n");
    return 1;
  }

  double* const figures =
    (double*)calloc((size_t)CASES * rounds, sizeof(double));
  double* const ratios  = (double*)calloc(rounds, sizeof(double));
  double* const scratch = (double*)calloc(rounds, sizeof(double));
  if (!figures || !ratios || !scratch) {
    fprintf(stderr, "bench_isolator: out of memory\n");
    return 1;
  }

  for (uint32_t r = 0U; r < WARMUP_ROUNDS + rounds; ++r) {
    for (uint32_t i = 0U; i < CASES; ++i) {
      const uint32_t which = (r + i) % CASES;
      const double   ns    = which == CASE_PLAIN ? rig_chunk(&without)
                             : which == CASE_EQ  ? rig_chunk(&with)
                                                 : bare_chunk(&bare);
      if (r >= WARMUP_ROUNDS) {
        figures[(size_t)which * rounds + (r - WARMUP_ROUNDS)] = ns;
      }
    }
  }

  printf("%-2s %-42s %10s %17s %10s %12s %8s\n",
         "",
         "case",
         "ns/period",
         "quartiles",
         "ns/slot",
         "ns/slot-frame",
         "% period");
  double medians[CASES];
  for (uint32_t c = 0U; c < CASES; ++c) {
    const double* const of = figures + (size_t)c * rounds;
    medians[c]             = quantile(of, rounds, 0.50, scratch);
    printf("%-2u %-42s %10.0f %8.0f..%-8.0f %10.1f %12.3f %8.2f\n",
           c + 1U,
           case_names[c],
           medians[c],
           quantile(of, rounds, 0.25, scratch),
           quantile(of, rounds, 0.75, scratch),
           medians[c] / SLOTS,
           medians[c] / (SLOTS * PERIOD_FRAMES),
           medians[c] / (PERIOD_FRAMES * 1e9 / RATE) * 100.0);
  }

  /* Ratios of cases that ran side by side, round by round. */
  static const struct {
    uint32_t    over_what;
    uint32_t    against;
    const char* meaning;
    double      goal;
  } comparisons[] = {
    { CASE_EQ, CASE_PLAIN, "isolator engaged over no EQ, per slot", GOAL },
    { CASE_FLOOR, CASE_PLAIN, "the filters alone over no EQ", 0.0 },
    { CASE_EQ, CASE_FLOOR, "engine with EQ over the filters alone", 0.0 },
  };
  printf("\n%-5s %-40s %6s %13s  %s\n",
         "ratio",
         "meaning",
         "median",
         "quartiles",
         "goal");
  int status = 0;
  for (size_t i = 0U; i < sizeof(comparisons) / sizeof(comparisons[0]); ++i) {
    for (uint32_t r = 0U; r < rounds; ++r) {
      ratios[r] = figures[(size_t)comparisons[i].over_what * rounds + r] /
                  figures[(size_t)comparisons[i].against * rounds + r];
    }
    const double low    = quantile(ratios, rounds, 0.25, scratch);
    const double median = quantile(ratios, rounds, 0.50, scratch);
    const double high   = quantile(ratios, rounds, 0.75, scratch);
    printf("%u/%-3u %-40s %6.2f %6.2f..%-5.2f  ",
           comparisons[i].over_what + 1U,
           comparisons[i].against + 1U,
           comparisons[i].meaning,
           median,
           low,
           high);
    if (comparisons[i].goal > 0.0) {
      printf("<= %.2f %s\n",
             comparisons[i].goal,
             median <= comparisons[i].goal ? "met" : "NOT met");
    } else {
      printf("-\n");
    }
  }
  printf("\nper sounding slot: %.0f ns a period without EQ, %.0f ns with the "
         "isolator (+%.0f ns: %.2f ns per frame, %.2f ns per channel-sample "
         "through 9 biquads)\n",
         medians[CASE_PLAIN] / SLOTS,
         medians[CASE_EQ] / SLOTS,
         (medians[CASE_EQ] - medians[CASE_PLAIN]) / SLOTS,
         (medians[CASE_EQ] - medians[CASE_PLAIN]) / (SLOTS * PERIOD_FRAMES),
         (medians[CASE_EQ] - medians[CASE_PLAIN]) /
           (SLOTS * PERIOD_FRAMES * OUTPUTS));

  /* Nothing may have been lost: every voice sounded in every chunk. */
  const Rig* const rigs[] = { &without, &with };
  for (size_t i = 0U; i < 2U; ++i) {
    FlEngineStats stats;
    fl_engine_stats(rigs[i]->engine, &stats);
    if (stats.voices_active != SLOTS || stats.stolen_voices || stats.unplayed ||
        stats.dropped_events) {
      fprintf(stderr,
              "bench_isolator: engine %zu has %u voices, %llu stolen, %llu "
              "unplayed\n",
              i + 1U,
              stats.voices_active,
              (unsigned long long)stats.stolen_voices,
              (unsigned long long)stats.unplayed);
      status = 1;
    }
  }

  free(scratch);
  free(ratios);
  free(figures);
  bare_free(&bare);
  rig_free(&with);
  rig_free(&without);
  return status;
}
