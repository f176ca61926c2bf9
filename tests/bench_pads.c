/*
  The callback's cost with pads: the slot stage against the v1 mixer.

  Everything runs offline through fl_engine_process() on synthetic periods
  (48 kHz, 256 frames, two outputs), no JACK. Cases, each on samples of its
  own so that no case finds another's audio in the caches:

    1a  v1 mixer: 32 voices mixed with bare fl_mix_add() into two zeroed
        outputs a period, each reading its own stereo sample (the v1 inner
        loop, no engine);
    1b  the engine with 32 one-shot voices on 32 slots at default settings
        (neutral stage: the v1 playback path);
    2   the engine with 32 looping voices on 32 slots (mode loop, a region,
        a seam crossfade) at gain_left 0.7, gain_right 0.4: every voice goes
        through its slot's scratch block and slot stage;
    3   as 2, but 216 slots loaded and set so (engine of 256 voices), of
        which the same 32 sound: the cost must follow the sounding voices;
    4a  216 slots all sounding (216 loops, 256 voices), gain 0.7/0.4,
        meters off;
    4b  the same engine and voices with fl_engine_set_meters(engine, 60).
        The telemetry ring is drained between periods (every engine's, so
        no record is dropped), outside the timed region.

  The machine is shared and noisy, so every case runs a chunk of periods in
  turn (1a 1b 2 3 4a 4b 1a ..., the first case rotating each round), each
  period timed alone with CLOCK_MONOTONIC; a case's figure for a round is
  the mean over its chunk, and the table shows the median over all rounds.
  A ratio is the median of the per-round ratios of two cases, which ran
  next to each other in time.

  Voices never end inside a timed chunk: loops do not end, and the one-shots
  of 1b are stopped and launched again (untimed) before a chunk would reach
  their end. Any engine whose voice count is not what it should be before a
  chunk is relaunched too, and counted.

  Memory: 30 s stereo samples are 11 MiB each; 1a, 1b, 2, 3 and 4 hold
  32 + 32 + 32 + 32 + 216 of them (about 4 GiB). The 184 silent slots of 3
  hold 1 s samples: nothing of a slot that does not sound is read.

  Run: meson test -C build --benchmark pads -v   (or build/tests/bench_pads)
  Optional arguments: rounds (default 400), sample seconds (default 30).
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/mixer.h>
#include <flitzi/sample.h>

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
#define CHUNK_PERIODS 32U
#define WARMUP_ROUNDS 3U
#define VELOCITY 0.8f
#define GAIN_LEFT 0.7f
#define GAIN_RIGHT 0.4f
#define LOOP_START_SECONDS 0.5
#define LOOP_TAIL_SECONDS 0.5 /* the loop ends this long before the end */
#define XFADE_MS 10.0f
#define METER_HZ 60U
#define FEW_VOICES 32U
#define BANK_SLOTS 216U
#define BANK_VOICES 256U
#define SILENT_SECONDS 1U

/* Keeps the outputs alive so the compiler cannot drop the mixing. */
static volatile float sink;

static int64_t
now_ns(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000LL + (int64_t)now.tv_nsec;
}

/* A stereo sample of `frames` frames, every frame written (so every page is
   resident) with a pattern that differs per sample and is never denormal. */
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

/* An engine with its bank: `slots` loaded, the first `sounding` of them
   played at VELOCITY. */
typedef struct {
  FlBank*      bank;
  FlEngine*    engine;
  FlSlotParams params;
  uint32_t     slots;
  uint32_t     sounding;
  uint32_t     voice_periods; /* periods a one-shot voice sounds */
  uint32_t     periods_left;  /* of the current launch, for one-shots */
  uint32_t     launches;
  uint32_t     meter_hz;
  uint64_t     meter_records;
  FlPeriod     period;
} Rig;

/* The bare mixer of 1a: its own samples, one position per voice. */
typedef struct {
  FlSample** samples;
  uint32_t*  positions;
  uint32_t   voices;
} Mixer;

static float        left[PERIOD_FRAMES];
static float        right[PERIOD_FRAMES];
static float* const outputs[OUTPUTS] = { left, right };

/* Take every telemetry record the RT thread wrote. */
static void
drain(Rig* rig)
{
  FlEvent event;
  while (fl_engine_next_event(rig->engine, &event)) {
    rig->meter_records += event.type == FL_EVENT_METER_SLOT;
  }
}

/* Process one period; returns its nanoseconds. */
static int64_t
process_period(Rig* rig)
{
  const int64_t start = now_ns();
  fl_engine_process(rig->engine, &rig->period, outputs);
  const int64_t elapsed = now_ns() - start;

  sink = left[0] + right[PERIOD_FRAMES - 1U];
  rig->period.first_frame += PERIOD_FRAMES;
  rig->period.usecs      = rig->period.next_usecs;
  rig->period.next_usecs = rig->period.usecs + PERIOD_USECS;
  if (rig->periods_left > 0U) {
    --rig->periods_left;
  }
  drain(rig);
  return elapsed;
}

/* Stop whatever sounds and play the first `sounding` slots again; the old
   voices' stop fades (5 ms) end in the first of two untimed periods. */
static bool
launch(Rig* rig)
{
  if (rig->launches > 0U && fl_engine_stop(rig->engine, FL_ALL_SLOTS)) {
    return false;
  }
  for (uint32_t slot = 0U; slot < rig->sounding; ++slot) {
    if (fl_engine_play(rig->engine, slot, VELOCITY, FL_PLAY_NOW)) {
      return false;
    }
  }
  process_period(rig);
  process_period(rig);
  rig->periods_left = rig->voice_periods - 2U;
  ++rig->launches;
  return true;
}

static bool
rig_init(Rig*                rig,
         uint32_t            slots,
         uint32_t            sounding,
         uint32_t            max_voices,
         const FlSlotParams* params,
         uint32_t            sample_frames,
         uint32_t            seed)
{
  const FlEngineConfig config = { RATE, OUTPUTS, max_voices, 0U, NULL, NULL };
  memset(rig, 0, sizeof(*rig));
  rig->params   = *params;
  rig->slots    = slots;
  rig->sounding = sounding;
  rig->period   = (FlPeriod){ PERIOD_FRAMES, 0U, 0, PERIOD_USECS };
  rig->bank     = fl_bank_new(slots);
  rig->engine   = rig->bank ? fl_engine_new(&config, rig->bank) : NULL;
  if (!rig->engine) {
    return false;
  }
  for (uint32_t slot = 0U; slot < slots; ++slot) {
    const uint32_t frames =
      slot < sounding ? sample_frames : SILENT_SECONDS * RATE;
    FlSample* const sample = new_sample(frames, seed + slot);
    if (!sample) {
      return false;
    }
    fl_engine_publish(rig->engine, slot, sample);
    if (fl_engine_set_slot(rig->engine, slot, params)) {
      return false;
    }
  }
  /* A one-shot of the whole sample; a loop never ends (the figure only
     matters for one-shots). */
  rig->voice_periods = sample_frames / PERIOD_FRAMES;
  return launch(rig);
}

static void
rig_free(Rig* rig)
{
  fl_engine_free(rig->engine);
  fl_bank_free(rig->bank);
}

/* Make sure the chunk about to be timed has every voice sounding from its
   first period to its last, at the wanted meter rate. */
static bool
rig_prepare(Rig* rig, uint32_t meter_hz)
{
  if (rig->meter_hz != meter_hz) {
    if (fl_engine_set_meters(rig->engine, meter_hz)) {
      return false;
    }
    rig->meter_hz = meter_hz;
    process_period(rig);
  }
  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  if (stats.voices_active != rig->sounding ||
      (rig->params.mode == FL_MODE_ONESHOT &&
       rig->periods_left < CHUNK_PERIODS + 1U)) {
    return launch(rig);
  }
  return true;
}

/* One timed chunk of an engine case; returns mean ns per period, or -1. */
static double
rig_chunk(Rig* rig, uint32_t meter_hz)
{
  if (!rig_prepare(rig, meter_hz)) {
    return -1.0;
  }
  int64_t total = 0;
  for (uint32_t p = 0U; p < CHUNK_PERIODS; ++p) {
    total += process_period(rig);
  }
  return (double)total / CHUNK_PERIODS;
}

static bool
mixer_init(Mixer* mixer, uint32_t voices, uint32_t frames, uint32_t seed)
{
  mixer->voices    = voices;
  mixer->samples   = (FlSample**)calloc(voices, sizeof(FlSample*));
  mixer->positions = (uint32_t*)calloc(voices, sizeof(uint32_t));
  if (!mixer->samples || !mixer->positions) {
    return false;
  }
  for (uint32_t v = 0U; v < voices; ++v) {
    mixer->samples[v] = new_sample(frames, seed + v);
    if (!mixer->samples[v]) {
      return false;
    }
  }
  return true;
}

static void
mixer_free(Mixer* mixer)
{
  for (uint32_t v = 0U; mixer->samples && v < mixer->voices; ++v) {
    fl_sample_free(mixer->samples[v]);
  }
  free(mixer->samples);
  free(mixer->positions);
}

/* One timed chunk of the v1 mixer: per period, zero the outputs and add
   every voice's next period at VELOCITY, as v1's process did. Positions
   wrap at the end of the sample (a whole number of periods). */
static double
mixer_chunk(Mixer* mixer)
{
  int64_t total = 0;
  for (uint32_t p = 0U; p < CHUNK_PERIODS; ++p) {
    const int64_t start = now_ns();
    memset(left, 0, sizeof(left));
    memset(right, 0, sizeof(right));
    for (uint32_t v = 0U; v < mixer->voices; ++v) {
      const FlSample* const sample = mixer->samples[v];
      fl_mix_add(sample->frames + (size_t)mixer->positions[v] * 2U,
                 2U,
                 PERIOD_FRAMES,
                 VELOCITY,
                 0.0f,
                 outputs,
                 OUTPUTS,
                 0U);
    }
    total += now_ns() - start;
    sink = left[0] + right[PERIOD_FRAMES - 1U];
    for (uint32_t v = 0U; v < mixer->voices; ++v) {
      mixer->positions[v] += PERIOD_FRAMES;
      if (mixer->positions[v] + PERIOD_FRAMES >
          mixer->samples[v]->frame_count) {
        mixer->positions[v] = 0U;
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

/* The q-quantile (0..1) of `values`, sorting a copy into `scratch`. */
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

/* The median of over_what[r] / against[r] over the rounds, and its
   quartiles. */
static void
paired_ratio(const double* over_what,
             const double* against,
             uint32_t      rounds,
             double*       ratios,
             double*       scratch,
             double        out[3])
{
  for (uint32_t r = 0U; r < rounds; ++r) {
    ratios[r] = over_what[r] / against[r];
  }
  out[0] = quantile(ratios, rounds, 0.25, scratch);
  out[1] = quantile(ratios, rounds, 0.50, scratch);
  out[2] = quantile(ratios, rounds, 0.75, scratch);
}

enum { CASE_MIXER, CASE_V1, CASE_LOOPS, CASE_BANK, CASE_OFF, CASE_ON, CASES };

static const char* const case_ids[CASES] = { "1a", "1b", "2", "3", "4a", "4b" };
static const char* const case_names[CASES] = {
  "v1 mixer: bare fl_mix_add",     "engine, one-shots, default settings",
  "engine, loops, gain 0.7/0.4",   "engine, 216 slots set, 32 loops sound",
  "engine, 216 loops, meters off", "engine, 216 loops, meters 60 Hz",
};

int
main(int argc, char** argv)
{
  const uint32_t rounds =
    argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 400U;
  const uint32_t seconds =
    argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 30U;
  if (rounds < 3U || seconds < 2U || seconds > 600U) {
    fprintf(stderr, "bench_pads: want rounds >= 3 and 2..600 seconds\n");
    return 1;
  }
  const uint32_t frames = seconds * RATE / PERIOD_FRAMES * PERIOD_FRAMES;

  FlSlotParams loop        = FL_SLOT_PARAMS_DEFAULT;
  loop.mode                = FL_MODE_LOOP;
  loop.xfade_ms            = XFADE_MS;
  loop.start_seconds       = LOOP_START_SECONDS;
  loop.end_seconds         = (double)frames / RATE - LOOP_TAIL_SECONDS;
  loop.gain_left           = GAIN_LEFT;
  loop.gain_right          = GAIN_RIGHT;
  const FlSlotParams plain = FL_SLOT_PARAMS_DEFAULT;

  static const uint32_t voices[CASES] = { FEW_VOICES, FEW_VOICES, FEW_VOICES,
                                          FEW_VOICES, BANK_SLOTS, BANK_SLOTS };
  static const uint32_t slots[CASES]  = { 0U,         FEW_VOICES, FEW_VOICES,
                                          BANK_SLOTS, BANK_SLOTS, BANK_SLOTS };

  printf("flitzi pads benchmark: fl_engine_process offline, %u Hz, period %u "
         "frames, %u outputs\n"
         "stereo samples of %u s; loops %.1f..%.1f s with a %.0f ms seam "
         "crossfade; velocity %.1f\n"
         "%u rounds of %u periods per case, cases interleaved; median of the "
         "rounds' means\n\n",
         RATE,
         PERIOD_FRAMES,
         OUTPUTS,
         seconds,
         loop.start_seconds,
         loop.end_seconds,
         (double)XFADE_MS,
         (double)VELOCITY,
         rounds,
         CHUNK_PERIODS);
  fflush(stdout);

  Mixer        mixer = { NULL, NULL, 0U };
  Rig          v1;
  Rig          loops;
  Rig          bank;
  Rig          full;
  const double setup_start = (double)now_ns();
  if (!mixer_init(&mixer, FEW_VOICES, frames, 1000U) ||
      !rig_init(
        &v1, FEW_VOICES, FEW_VOICES, FEW_VOICES, &plain, frames, 2000U) ||
      !rig_init(
        &loops, FEW_VOICES, FEW_VOICES, FEW_VOICES, &loop, frames, 3000U) ||
      !rig_init(
        &bank, BANK_SLOTS, FEW_VOICES, BANK_VOICES, &loop, frames, 4000U) ||
      !rig_init(
        &full, BANK_SLOTS, BANK_SLOTS, BANK_VOICES, &loop, frames, 5000U)) {
    fprintf(stderr, "bench_pads: setup failed (out of memory?)\n");
    return 1;
  }
  printf("setup (samples filled, voices launched): %.1f s\n",
         ((double)now_ns() - setup_start) * 1e-9);

  /* The timer's own cost, for reference: a pair of reads. */
  double timer_pairs[64];
  for (uint32_t i = 0U; i < 64U; ++i) {
    const int64_t a = now_ns();
    const int64_t b = now_ns();
    timer_pairs[i]  = (double)(b - a);
  }
  double scratch_for_timer[64];
  printf("timer (two CLOCK_MONOTONIC reads): %.0f ns, in every period's "
         "figure\n\n",
         quantile(timer_pairs, 64U, 0.5, scratch_for_timer));
  fflush(stdout);

  double* const figures =
    (double*)calloc((size_t)CASES * rounds, sizeof(double));
  double* const ratios  = (double*)calloc(rounds, sizeof(double));
  double* const scratch = (double*)calloc(rounds, sizeof(double));
  if (!figures || !ratios || !scratch) {
    fprintf(stderr, "bench_pads: out of memory\n");
    return 1;
  }

  for (uint32_t r = 0U; r < WARMUP_ROUNDS + rounds; ++r) {
    for (uint32_t i = 0U; i < CASES; ++i) {
      const uint32_t which = (r + i) % CASES;
      double         ns    = -1.0;
      switch (which) {
        case CASE_MIXER:
          ns = mixer_chunk(&mixer);
          break;
        case CASE_V1:
          ns = rig_chunk(&v1, 0U);
          break;
        case CASE_LOOPS:
          ns = rig_chunk(&loops, 0U);
          break;
        case CASE_BANK:
          ns = rig_chunk(&bank, 0U);
          break;
        case CASE_OFF:
          ns = rig_chunk(&full, 0U);
          break;
        default:
          ns = rig_chunk(&full, METER_HZ);
          break;
      }
      if (ns < 0.0) {
        fprintf(stderr, "bench_pads: an engine refused a command\n");
        return 1;
      }
      if (r >= WARMUP_ROUNDS) {
        figures[(size_t)which * rounds + (r - WARMUP_ROUNDS)] = ns;
      }
    }
  }

  printf("%-3s %-38s %6s %5s %10s %17s %9s %7s\n",
         "",
         "case",
         "voices",
         "slots",
         "ns/period",
         "quartiles",
         "ns/v-frame",
         "% period");
  for (uint32_t c = 0U; c < CASES; ++c) {
    const double* const of     = figures + (size_t)c * rounds;
    const double        median = quantile(of, rounds, 0.50, scratch);
    char                slot_text[16];
    snprintf(slot_text, sizeof(slot_text), "%u", slots[c]);
    printf("%-3s %-38s %6u %5s %10.0f %8.0f..%-8.0f %9.3f %7.2f\n",
           case_ids[c],
           case_names[c],
           voices[c],
           slots[c] ? slot_text : "-",
           median,
           quantile(of, rounds, 0.25, scratch),
           quantile(of, rounds, 0.75, scratch),
           median / ((double)voices[c] * PERIOD_FRAMES),
           median / (PERIOD_FRAMES * 1e9 / RATE) * 100.0);
  }

  /* Ratios of cases that ran side by side, round by round. */
  static const struct {
    uint32_t    over_what;
    uint32_t    against;
    const char* meaning;
    double      goal; /* largest ratio wanted, or 0 */
  } comparisons[] = {
    { CASE_V1, CASE_MIXER, "engine's v1 path over the bare mixer", 0.0 },
    { CASE_LOOPS, CASE_MIXER, "loops with gain/pan over the v1 mixer", 1.2 },
    { CASE_LOOPS, CASE_V1, "loops with gain/pan over the v1 path", 0.0 },
    { CASE_BANK, CASE_LOOPS, "216 slots, 32 sounding, over 32 slots", 0.0 },
    { CASE_ON, CASE_OFF, "meters on over off, 216 voices", 0.0 },
  };
  printf("\n%-7s %-40s %6s %13s  %s\n",
         "ratio",
         "meaning",
         "median",
         "quartiles",
         "goal");
  for (size_t i = 0U; i < sizeof(comparisons) / sizeof(comparisons[0]); ++i) {
    double quartiles[3];
    paired_ratio(figures + (size_t)comparisons[i].over_what * rounds,
                 figures + (size_t)comparisons[i].against * rounds,
                 rounds,
                 ratios,
                 scratch,
                 quartiles);
    char pair[16];
    snprintf(pair,
             sizeof(pair),
             "%s/%s",
             case_ids[comparisons[i].over_what],
             case_ids[comparisons[i].against]);
    printf("%-7s %-40s %6.2f %6.2f..%-5.2f  ",
           pair,
           comparisons[i].meaning,
           quartiles[1],
           quartiles[0],
           quartiles[2]);
    if (comparisons[i].goal > 0.0) {
      printf("<= %.2f %s\n",
             comparisons[i].goal,
             quartiles[1] <= comparisons[i].goal ? "met" : "NOT met");
    } else {
      printf("-\n");
    }
  }

  /* What the engines did besides sounding: nothing may have been lost. */
  const Rig* const  rigs[]      = { &v1, &loops, &bank, &full };
  const char* const rig_names[] = { "1b", "2", "3", "4" };
  printf("\n");
  int status = 0;
  for (size_t i = 0U; i < sizeof(rigs) / sizeof(rigs[0]); ++i) {
    FlEngineStats stats;
    fl_engine_stats(rigs[i]->engine, &stats);
    printf("engine %-2s: launches %u, stolen %llu, unplayed %llu, dropped "
           "events %llu, meter records read %llu\n",
           rig_names[i],
           rigs[i]->launches,
           (unsigned long long)stats.stolen_voices,
           (unsigned long long)stats.unplayed,
           (unsigned long long)stats.dropped_events,
           (unsigned long long)rigs[i]->meter_records);
    if (stats.stolen_voices || stats.unplayed || stats.dropped_events ||
        (rigs[i]->params.mode == FL_MODE_LOOP && rigs[i]->launches != 1U)) {
      status = 1;
    }
  }
  if (status) {
    fprintf(stderr, "bench_pads: a voice was stolen, lost or relaunched\n");
  }

  free(scratch);
  free(ratios);
  free(figures);
  rig_free(&full);
  rig_free(&bank);
  rig_free(&loops);
  rig_free(&v1);
  mixer_free(&mixer);
  return status;
}
