/*
  The musical clock without a server: the transport's maths
  (include/flitzi/transport.h) and quantized launches in the engine, driven
  with synthetic periods.

  Exact means exact here. At 120 BPM a beat is 24000 frames at 48 kHz, so a
  grid line is an integer frame and an onset must be on it. At 87.5 BPM a
  beat is 230400/7 frames; line n must be the nearest frame to
  D + n * 230400 / 7, which the tests check in integers (|7 (f - D) -
  230400 n| <= 3), so no floating-point rounding in the test can hide an
  error in the engine.

  Every thread role (control, RT) is played by the test thread.
*/
#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/engine.h>
#include <flitzi/sample.h>
#include <flitzi/transport.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define RATE 48000U
#define START_USECS 1000000
#define SLOTS 4U
#define CLICK_SLOT 0U
#define CLICK_FRAMES 64U
#define MAX_ONSETS 256U
#define LINES 10000

/* Frames per beat at 120 BPM and 48 kHz. */
#define BEAT_120 24000

/* ---- The transport's maths ---- */

/* The nearest frame to D + n * num / den, for positive num and den, and
   n >= 0: floor((2 n num + den) / (2 den)). */
static int64_t
nearest_frame(int64_t downbeat, int64_t n, int64_t num, int64_t den)
{
  return downbeat + (2 * n * num + den) / (2 * den);
}

static void
test_lines_120(void** state)
{
  (void)state;
  /* Beat 0 on a frame that is not a multiple of anything in particular. */
  const int64_t downbeat  = 12345;
  FlTransport   transport = fl_transport_make(120.0, 4U, RATE);
  fl_transport_downbeat(&transport, downbeat);
  assert_true(fl_transport_frames_per_beat(&transport) == 24000.0);

  for (int64_t n = 0; n <= LINES; ++n) {
    const int64_t line = downbeat + n * BEAT_120;
    assert_int_equal(fl_transport_frame_of(&transport, (double)n), line);
    assert_true(fl_transport_beats_at(&transport, line) == (double)n);
    /* A line exactly on `from` counts; one frame later it is the next. */
    assert_int_equal(fl_transport_next_line(&transport, line, 1.0), line);
    assert_int_equal(fl_transport_next_line(&transport, line - 1, 1.0), line);
    assert_int_equal(fl_transport_next_line(&transport, line + 1, 1.0),
                     line + BEAT_120);
    /* 1/16 (a quarter beat, 6000 frames) and bars (96000 frames). */
    assert_int_equal(fl_transport_next_line(&transport, line - 5999, 0.25),
                     line);
    assert_int_equal(fl_transport_next_line(&transport, line + 1, 0.25),
                     line + 6000);
    const int64_t bar = downbeat + (n / 4) * 4 * BEAT_120;
    assert_int_equal(fl_transport_next_line(&transport, bar, 4.0), bar);
    assert_int_equal(fl_transport_next_line(&transport, bar + 1, 4.0),
                     bar + 4 * BEAT_120);
  }

  /* Before beat 0 the grid goes on backwards: lines at -1, -2 beats. */
  assert_int_equal(fl_transport_next_line(&transport, downbeat - 30000, 1.0),
                   downbeat - BEAT_120);
  assert_true(fl_transport_beats_at(&transport, downbeat - 36000) == -1.5);
}

/*
  87.5 BPM: 230400/7 = 32914.2857... frames a beat. Line n, found by
  stepping from the last line found plus one frame (as a performer's
  launches do), is the nearest frame to its exact place for every n up to
  10,000 (about 1.9 hours): the error does not grow with n.
*/
static void
test_lines_87_5(void** state)
{
  (void)state;
  const int64_t downbeat  = 777;
  FlTransport   transport = fl_transport_make(87.5, 4U, RATE);
  fl_transport_downbeat(&transport, downbeat);

  int64_t from       = downbeat;
  int64_t worst_7ths = 0; /* largest |7 (f - D) - 230400 n| seen */
  for (int64_t n = 0; n <= LINES; ++n) {
    const int64_t line = fl_transport_next_line(&transport, from, 1.0);
    assert_int_equal(line, nearest_frame(downbeat, n, 230400, 7));
    assert_int_equal(fl_transport_frame_of(&transport, (double)n), line);
    const int64_t error = llabs(7 * (line - downbeat) - 230400 * n);
    worst_7ths          = error > worst_7ths ? error : worst_7ths;
    assert_true(error <= 3); /* within half a frame: 3.5 sevenths */
    /* The position there is n beats to within a frame's worth. */
    assert_true(fabs(fl_transport_beats_at(&transport, line) - (double)n) <=
                0.5 / (230400.0 / 7.0));
    from = line + 1;
  }
  fprintf(stderr,
          "87.5 BPM, %d lines: largest error %.3f frames\n",
          LINES,
          (double)worst_7ths / 7.0);

  /* 1/16 at 87.5 BPM: 57600/7 frames a line. */
  from = downbeat;
  for (int64_t n = 0; n <= LINES; ++n) {
    const int64_t line = fl_transport_next_line(&transport, from, 0.25);
    assert_int_equal(line, nearest_frame(downbeat, n, 57600, 7));
    from = line + 1;
  }

  /* Far from the anchor (beat 0 ten hours in), still the nearest frame. */
  const int64_t late = 10LL * 3600LL * RATE + 5;
  fl_transport_downbeat(&transport, late);
  from = late;
  for (int64_t n = 0; n <= LINES; ++n) {
    const int64_t line = fl_transport_next_line(&transport, from, 1.0);
    assert_int_equal(line, nearest_frame(late, n, 230400, 7));
    from = line + 1;
  }
}

/*
  A tempo change keeps the beat position where it was and moves on at the
  new tempo; after 1000 changes at random frames the position is the exact
  sum of the segments (computed here in integers and long double), and the
  next line is the nearest frame to it.
*/
static void
test_tempo_change_continuous(void** state)
{
  (void)state;
  FlTransport transport = fl_transport_make(120.0, 4U, RATE);
  fl_transport_downbeat(&transport, 1000);

  /* At 1.25 beats plus 77 frames, to 87.5 BPM. */
  const int64_t change = 1000 + 30000 + 77;
  const double  before = fl_transport_beats_at(&transport, change);
  assert_true(before == 1.25 + 77.0 / 24000.0);
  fl_transport_set_tempo(&transport, change, 87.5);
  assert_true(fl_transport_beats_at(&transport, change) == before);
  assert_int_equal(fl_transport_frame_of(&transport, before), change);
  /* 230400/7 frames later: one beat later. */
  assert_true(fabs(fl_transport_beats_at(&transport, change + 32914) -
                   (before + 32914.0 * 7.0 / 230400.0)) < 1e-12);
  /* Beat 2 is (2 - before) beats of 230400/7 frames after the change. */
  const double beat_two = (double)change + (2.0 - before) * 230400.0 / 7.0;
  assert_int_equal(fl_transport_next_line(&transport, change, 1.0),
                   llround(beat_two));

  /* A thousand changes at random frames, tempos anywhere in 20..300. */
  transport        = fl_transport_make(120.0, 4U, RATE);
  long double sum  = 0.0L; /* beats, the exact sum of the segments */
  int64_t     at   = 0;
  double      bpm  = 120.0;
  uint32_t    seed = 12345U;
  for (int i = 0; i < 1000; ++i) {
    seed                 = seed * 1103515245U + 12345U;
    const int64_t length = 1 + (int64_t)((seed >> 8) % 200000U);
    seed                 = seed * 1103515245U + 12345U;
    const double next    = 20.0 + (double)((seed >> 8) % 28001U) / 100.0;
    sum += (long double)length * (long double)bpm / (60.0L * RATE);
    at += length;
    const double seen = fl_transport_beats_at(&transport, at);
    assert_true(fabsl((long double)seen - sum) < 1e-9L);
    fl_transport_set_tempo(&transport, at, next);
    assert_true(fl_transport_beats_at(&transport, at) == seen);
    bpm = next;
  }
  const long double line = ceill(sum);
  const long double exact =
    (long double)at + (line - sum) * 60.0L * RATE / (long double)bpm;
  const int64_t found = fl_transport_next_line(&transport, at, 1.0);
  assert_true(fabsl((long double)found - exact) <= 0.5L + 1e-6L);
}

static void
test_grid_parse(void** state)
{
  (void)state;
  static const struct {
    const char* text;
    double      grid;
    double      beats_in_4;
    double      beats_in_3;
  } good[] = {
    { "1/64", 0.0625, 0.0625, 0.0625 },
    { "1/32", 0.125, 0.125, 0.125 },
    { "1/16", 0.25, 0.25, 0.25 },
    { "1/8", 0.5, 0.5, 0.5 },
    { "1/4", 1.0, 1.0, 1.0 },
    { "1/2", 2.0, 2.0, 2.0 },
    { "1", -1.0, 4.0, 3.0 },
    { "2", -2.0, 8.0, 6.0 },
    { "4", -4.0, 16.0, 12.0 },
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); ++i) {
    double grid = 0.0;
    assert_true(fl_transport_parse_grid(good[i].text, &grid));
    assert_true(grid == good[i].grid);
    assert_true(fl_transport_grid_beats(grid, 4U) == good[i].beats_in_4);
    assert_true(fl_transport_grid_beats(grid, 3U) == good[i].beats_in_3);
  }

  static const char* const bad[] = {
    "off", "",        "1/3",    "1/128", "1/1",  "3",    "8",
    "0",   "-1",      "1.0",    "1/4 ",  " 1/4", "1/04", "1/4x",
    "01",  "quarter", "global", "1//4",  "1/",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
    double grid = 123.0;
    if (fl_transport_parse_grid(bad[i], &grid)) {
      fprintf(stderr, "'%s' was taken as a grid (%g)\n", bad[i], grid);
      fail();
    }
    assert_true(grid == 123.0); /* untouched */
  }
}

/* ---- Quantized launches in the engine ---- */

typedef struct {
  FlBank*   bank;
  FlEngine* engine;
  uint32_t  period_frames;
  int64_t   frame; /* the engine frame of the next period's first frame */
  float*    out[FL_MAX_OUTPUTS];
  int64_t   onsets[MAX_ONSETS]; /* engine frames where a click sounded */
  unsigned  onset_count;
  float*    recording; /* out_1 from frame 0, if asked for */
  int64_t   recording_frames;
} Rig;

/* The time of engine frame `frame`: 48 kHz from START_USECS, to the
   microsecond. */
static int64_t
usecs_of(int64_t frame)
{
  return START_USECS + llround((double)frame * 1e6 / (double)RATE);
}

static Rig*
rig_new(uint32_t period_frames, int64_t recording_frames)
{
  Rig* const rig = (Rig*)calloc(1, sizeof(Rig));
  assert_non_null(rig);
  const FlEngineConfig config = { RATE, 2U, 32U, 0U, NULL, NULL };
  rig->bank                   = fl_bank_new(SLOTS);
  assert_non_null(rig->bank);
  rig->engine = fl_engine_new(&config, rig->bank);
  assert_non_null(rig->engine);
  rig->period_frames = period_frames;
  for (unsigned c = 0; c < FL_MAX_OUTPUTS; ++c) {
    rig->out[c] = (float*)calloc(period_frames, sizeof(float));
    assert_non_null(rig->out[c]);
  }
  if (recording_frames > 0) {
    rig->recording = (float*)calloc((size_t)recording_frames, sizeof(float));
    assert_non_null(rig->recording);
    rig->recording_frames = recording_frames;
  }

  /* A click: 1.0 at its first frame, then silence. */
  FlSample* const click =
    fl_sample_new(CLICK_FRAMES, 1U, RATE, RATE, "/click.wav");
  assert_non_null(click);
  click->frames[0] = 1.0f;
  fl_engine_publish(rig->engine, CLICK_SLOT, click);
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
  for (unsigned c = 0; c < FL_MAX_OUTPUTS; ++c) {
    free(rig->out[c]);
  }
  free(rig->recording);
  free(rig);
}

/* The period that starts at engine frame rig->frame. */
static FlPeriod
rig_period(const Rig* rig)
{
  const FlPeriod period = { rig->period_frames,
                            (uint32_t)(rig->frame + 5000000),
                            usecs_of(rig->frame),
                            usecs_of(rig->frame + rig->period_frames) };
  return period;
}

/* Process one period and note where clicks start (|out_1| >= 0.5). */
static void
rig_process(Rig* rig)
{
  float*         outputs[FL_MAX_OUTPUTS] = { rig->out[0], rig->out[1] };
  const FlPeriod period                  = rig_period(rig);
  fl_engine_process(rig->engine, &period, outputs);
  for (uint32_t i = 0; i < rig->period_frames; ++i) {
    const int64_t frame = rig->frame + i;
    if (rig->out[0][i] >= 0.5f) {
      assert_true(rig->onset_count < MAX_ONSETS);
      rig->onsets[rig->onset_count++] = frame;
    }
    if (frame < rig->recording_frames) {
      rig->recording[frame] = rig->out[0][i];
    }
  }
  rig->frame += rig->period_frames;
}

static void
rig_run(Rig* rig, int periods)
{
  for (int i = 0; i < periods; ++i) {
    rig_process(rig);
  }
}

/* Process periods until there are more than `seen` onsets; return onset
   number `seen`. */
static int64_t
rig_onset_after(Rig* rig, unsigned seen, int64_t within_frames)
{
  const int64_t limit = rig->frame + within_frames;
  while (rig->onset_count == seen && rig->frame < limit) {
    rig_process(rig);
  }
  assert_true(rig->onset_count > seen);
  return rig->onsets[seen];
}

/* Process periods until a new onset appears; return it. */
static int64_t
rig_next_onset(Rig* rig, int64_t within_frames)
{
  return rig_onset_after(rig, rig->onset_count, within_frames);
}

static void
set_quantize(Rig* rig, const char* text)
{
  double grid = 0.0;
  assert_true(!strcmp(text, "off") || fl_transport_parse_grid(text, &grid));
  assert_int_equal(fl_engine_set_quantize(rig->engine, grid), FL_SUCCESS);
}

/* Downbeat on the frame `offset` into the next period, by its time. */
static int64_t
downbeat_at_offset(Rig* rig, uint32_t offset)
{
  const int64_t frame = rig->frame + offset;
  assert_int_equal(fl_engine_downbeat(rig->engine, usecs_of(frame)),
                   FL_SUCCESS);
  rig_process(rig);
  return frame;
}

static uint32_t
next_random(uint32_t* seed)
{
  *seed = *seed * 1103515245U + 12345U;
  return *seed >> 8;
}

/*
  Launch `count` quantized plays, each queued before a period chosen at
  random (up to `spread` periods after the last onset), and check that each
  sounds on the first line at or after that period's first frame: frame
  downbeat + k * line_num / line_den, the nearest frame to it.
*/
static void
assert_launches_on_grid(Rig*        rig,
                        int64_t     downbeat,
                        int64_t     line_num,
                        int64_t     line_den,
                        int         count,
                        uint32_t    spread,
                        uint32_t    seed,
                        const char* what)
{
  const int64_t line_frames = line_num / line_den + 1;
  for (int i = 0; i < count; ++i) {
    rig_run(rig, (int)(next_random(&seed) % spread));
    const int64_t from = rig->frame;
    assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                     FL_SUCCESS);
    int64_t k = (from - downbeat) * line_den / line_num - 1;
    while (nearest_frame(downbeat, k, line_num, line_den) < from) {
      ++k;
    }
    const int64_t expected = nearest_frame(downbeat, k, line_num, line_den);
    const int64_t onset    = rig_next_onset(rig, line_frames + 4096);
    if (onset != expected) {
      fprintf(stderr,
              "%s, launch %d queued for frame %lld: sounded at %lld, "
              "line %lld is at %lld\n",
              what,
              i,
              (long long)from,
              (long long)onset,
              (long long)k,
              (long long)expected);
      fail();
    }
  }
}

static void
test_quantized_beats_120(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  rig_run(rig, 3);
  set_quantize(rig, "1/4");
  /* 23 frames into a period, so lines fall at four phases of the period. */
  const int64_t downbeat = downbeat_at_offset(rig, 23U);
  assert_launches_on_grid(rig, downbeat, BEAT_120, 1, 20, 200U, 1U, "1/4");
  rig_free(rig);
}

static void
test_quantized_bars_and_sixteenths(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1");
  const int64_t downbeat = downbeat_at_offset(rig, 100U);
  assert_launches_on_grid(rig, downbeat, 4 * BEAT_120, 1, 20, 800U, 2U, "1");

  /* 3/4: a bar is three beats from the next launch on. */
  assert_int_equal(fl_engine_set_signature(rig->engine, 3U), FL_SUCCESS);
  rig_process(rig);
  assert_launches_on_grid(
    rig, downbeat, 3 * BEAT_120, 1, 10, 600U, 3U, "1 in 3/4");
  assert_int_equal(fl_engine_set_signature(rig->engine, 4U), FL_SUCCESS);

  set_quantize(rig, "1/16");
  rig_process(rig);
  assert_launches_on_grid(rig, downbeat, BEAT_120 / 4, 1, 20, 60U, 4U, "1/16");
  rig_free(rig);
}

static void
test_quantized_87_5(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  assert_int_equal(fl_engine_set_tempo(rig->engine, 87.5), FL_SUCCESS);
  set_quantize(rig, "1/4");
  rig_process(rig);
  const int64_t downbeat = downbeat_at_offset(rig, 201U);
  assert_launches_on_grid(rig, downbeat, 230400, 7, 20, 300U, 5U, "87.5 BPM");
  rig_free(rig);
}

/* A period of 4096 frames is rendered in blocks of FL_BLOCK_FRAMES; the
   lines land on the same frames. */
static void
test_quantized_long_period(void** state)
{
  (void)state;
  Rig* const rig = rig_new(4096U, 0);
  set_quantize(rig, "1/4");
  const int64_t downbeat = downbeat_at_offset(rig, 3000U);
  assert_launches_on_grid(rig, downbeat, BEAT_120, 1, 20, 20U, 6U, "4096, 1/4");

  assert_int_equal(fl_engine_set_tempo(rig->engine, 87.5), FL_SUCCESS);
  rig_process(rig);
  const int64_t again = downbeat_at_offset(rig, 1500U);
  assert_launches_on_grid(rig, again, 230400, 7, 20, 20U, 7U, "4096, 87.5");
  set_quantize(rig, "1/16");
  rig_process(rig);
  assert_launches_on_grid(rig, again, 57600, 7, 20, 6U, 8U, "4096, 1/16");
  rig_free(rig);
}

/* A line on the first frame of the period that takes the play counts. */
static void
test_line_on_period_start(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1/4");
  /* Beat 0 at offset 64: beat 1 is 24064 frames after the period's start,
     94 periods on, exactly on a period's first frame. */
  const int64_t downbeat = downbeat_at_offset(rig, 64U);
  const int64_t beat_one = downbeat + BEAT_120;
  assert_int_equal(beat_one % 256, 0);
  while (rig->frame < beat_one) {
    rig_process(rig);
  }
  assert_true(rig->frame == beat_one);
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 256), beat_one);

  /* One period later, the next line. */
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 2 * BEAT_120), beat_one + BEAT_120);
  rig_free(rig);
}

/*
  A tempo change between a launch and its line moves the line with the
  beats: queued at beat 0.32 for beat 1, the tempo goes from 120 to 90 at
  beat 0.5333 (frame 12800 after the downbeat), so beat 1 is (1 - 12800 /
  24000) * 32000 frames after the change: frame 27733.33, the nearest being
  27733. Faster (180 BPM, 16000 frames a beat) moves it earlier.
*/
static void
test_tempo_change_moves_line(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1/4");
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  const int64_t downbeat = rig->frame;
  rig_run(rig, 30);
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_run(rig, 20);
  assert_int_equal(rig->frame - downbeat, 12800);
  assert_int_equal(rig->onset_count, 0U);
  assert_int_equal(fl_engine_set_tempo(rig->engine, 90.0), FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 40000), downbeat + 27733);

  /* Lines after it: beat k at 12800 + (k - 12800/24000) * 32000, i.e.
     downbeat + 32000 k - 4266.67. */
  for (int64_t k = 2; k <= 5; ++k) {
    assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                     FL_SUCCESS);
    assert_int_equal(rig_next_onset(rig, 40000), downbeat + 32000 * k - 4267);
  }

  /* Faster, between a launch and its line: from 90 to 180 BPM. */
  rig_run(rig, 7);
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_run(rig, 10);
  const int64_t change = rig->frame;
  /* The position at the change, exact: frames since the 90 BPM anchor. */
  const double at_change =
    (12800.0 / 24000.0) + (double)(change - downbeat - 12800) / 32000.0;
  const double line = ceil(at_change);
  assert_int_equal(fl_engine_set_tempo(rig->engine, 180.0), FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 40000),
                   change + llround((line - at_change) * 16000.0));
  rig_free(rig);
}

/* The slot's own grid, or off, over the global one. */
static void
test_slot_quantize(void** state)
{
  (void)state;
  Rig* const      rig = rig_new(256U, 0);
  FlSample* const other =
    fl_sample_new(CLICK_FRAMES, 1U, RATE, RATE, "/click2.wav");
  assert_non_null(other);
  other->frames[0] = 1.0f;
  fl_engine_publish(rig->engine, 1U, other);
  FlSample* const third =
    fl_sample_new(CLICK_FRAMES, 1U, RATE, RATE, "/click3.wav");
  assert_non_null(third);
  third->frames[0] = 1.0f;
  fl_engine_publish(rig->engine, 2U, third);

  set_quantize(rig, "1");
  FlSlotParams sixteenth = FL_SLOT_PARAMS_DEFAULT;
  sixteenth.quantize     = FL_QUANTIZE_GRID;
  assert_true(fl_transport_parse_grid("1/16", &sixteenth.quantize_grid));
  assert_int_equal(fl_engine_set_slot(rig->engine, 1U, &sixteenth), FL_SUCCESS);
  FlSlotParams unquantized = FL_SLOT_PARAMS_DEFAULT;
  unquantized.quantize     = FL_QUANTIZE_OFF;
  assert_int_equal(fl_engine_set_slot(rig->engine, 2U, &unquantized),
                   FL_SUCCESS);
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  const int64_t downbeat = rig->frame;
  rig_run(rig, 10); /* 2560 frames: line 1/16 at 6000, bar at 96000 */

  assert_int_equal(fl_engine_play(rig->engine, 1U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 8000), downbeat + 6000);
  const int64_t now = rig->frame;
  assert_int_equal(fl_engine_play(rig->engine, 2U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 256), now);
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 100000), downbeat + 96000);

  /* Global off: the slot with its own grid is still quantized. */
  set_quantize(rig, "off");
  rig_run(rig, 3);
  const int64_t from = rig->frame;
  assert_int_equal(fl_engine_play(rig->engine, 1U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 8000),
                   downbeat + ((from - downbeat + 5999) / 6000) * 6000);
  const int64_t plain = rig->frame;
  assert_int_equal(fl_engine_play(rig->engine, 0U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 256), plain);
  rig_free(rig);
}

/*
  A play in a bundle timetagged for the future keeps its exact frame, even
  with quantize on; one whose timetag has passed goes to the grid (and is
  late).
*/
static void
test_timetag_and_quantize(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1/4");
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  const int64_t downbeat = rig->frame;
  rig_run(rig, 4);

  const int64_t target = rig->frame + 3 * 256 + 77;
  assert_int_equal(
    fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, usecs_of(target)),
    FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, 2048), target);

  FlEngineStats stats;
  fl_engine_stats(rig->engine, &stats);
  const uint64_t late_before = stats.late_plays;
  assert_int_equal(
    fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, usecs_of(rig->frame - 1000)),
    FL_SUCCESS);
  assert_int_equal(rig_next_onset(rig, BEAT_120 + 256), downbeat + BEAT_120);
  fl_engine_stats(rig->engine, &stats);
  assert_int_equal(stats.late_plays, late_before + 1U);
  rig_free(rig);
}

/*
  /play/exclusive on the grid: the other voices sound up to the line and
  fade from it (2 ms), not from the period the launch was queued in.
*/
static void
test_exclusive_on_grid(void** state)
{
  (void)state;
  Rig* const      rig = rig_new(256U, 4 * BEAT_120);
  FlSample* const hum = fl_sample_new(RATE, 1U, RATE, RATE, "/hum.wav");
  assert_non_null(hum);
  for (uint32_t i = 0; i < RATE; ++i) {
    hum->frames[i] = 0.25f;
  }
  fl_engine_publish(rig->engine, 3U, hum);
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  const int64_t downbeat = rig->frame;
  set_quantize(rig, "off");
  assert_int_equal(fl_engine_play(rig->engine, 3U, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_run(rig, 2);
  set_quantize(rig, "1/4");
  assert_int_equal(
    fl_engine_launch(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW, true),
    FL_SUCCESS);
  const int64_t onset = rig_next_onset(rig, BEAT_120 + 256);
  assert_int_equal(onset, downbeat + BEAT_120);
  rig_run(rig, 2);
  const float* const out = rig->recording;
  for (int64_t f = downbeat + 512; f < onset; ++f) {
    if (out[f] != 0.25f) {
      fprintf(stderr,
              "frame %lld before the line: %g\n",
              (long long)f,
              (double)out[f]);
      fail();
    }
  }
  /* The hum fades out over 96 frames from the line; then silence. */
  assert_true(out[onset] > 1.0f && out[onset] < 1.25f);
  for (int64_t f = onset + 96; f < onset + 512; ++f) {
    assert_true(out[f] == 0.0f);
  }
  rig_free(rig);
}

/*
  The published transport (/transport): the beat position at the first
  frame of the period being processed, the tempo, the bar, internal and
  rolling.
*/
static void
test_published_transport(void** state)
{
  (void)state;
  Rig* const       rig = rig_new(256U, 0);
  FlTransportState clock;
  fl_engine_transport(rig->engine, &clock);
  assert_int_equal(clock.source, FL_CLOCK_INTERNAL);
  assert_true(clock.bpm == 120.0);
  assert_int_equal(clock.beats_per_bar, 4U);
  assert_int_equal(clock.rolling, 1U);

  const int64_t downbeat = downbeat_at_offset(rig, 10U);
  rig_run(rig, 99);
  /* The last period processed started 99 * 256 - 10 frames after beat 0. */
  const int64_t last = rig->frame - 256;
  assert_int_equal(last - downbeat, 99 * 256 - 10);
  fl_engine_transport(rig->engine, &clock);
  assert_true(clock.beats == (double)(last - downbeat) / 24000.0);
  assert_int_equal(fl_engine_set_signature(rig->engine, 7U), FL_SUCCESS);
  assert_int_equal(fl_engine_set_tempo(rig->engine, 87.5), FL_SUCCESS);
  rig_run(rig, 2);
  fl_engine_transport(rig->engine, &clock);
  assert_int_equal(clock.beats_per_bar, 7U);
  assert_true(clock.bpm == 87.5);
  const double expected =
    (double)(100 * 256 - 10) / 24000.0 + 256.0 * 7.0 / 230400.0;
  assert_true(fabs(clock.beats - expected) < 1e-12);
  rig_free(rig);
}

/* The backend's reading of a JACK timebase master: the beat position from
   the transport frame, as follow_transport() computes it. */
static FlOutsideClock
jack_clock(int64_t transport_frame, bool rolling, double bpm)
{
  const FlOutsideClock clock = {
    true, rolling, bpm, 4U, (double)transport_frame * bpm / (60.0 * RATE)
  };
  return clock;
}

/*
  Following a JACK timebase master at 128 BPM (22500 frames a beat): a
  quantized launch waits while the transport is stopped, and starts on the
  first line once it rolls, at the transport frame of that line; without a
  master the internal clock carries on from where the master left it.
*/
static void
test_follow_jack(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1/4");
  int64_t transport_frame = 10000;
  for (int i = 0; i < 4; ++i) {
    const FlOutsideClock clock = jack_clock(transport_frame, false, 128.0);
    fl_engine_follow(rig->engine, &clock);
    rig_process(rig);
  }
  FlTransportState state_now;
  fl_engine_transport(rig->engine, &state_now);
  assert_int_equal(state_now.source, FL_CLOCK_JACK);
  assert_int_equal(state_now.rolling, 0U);
  assert_true(state_now.bpm == 128.0);

  /* Stopped: the launch waits, however long. */
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  for (int i = 0; i < 200; ++i) {
    const FlOutsideClock clock = jack_clock(transport_frame, false, 128.0);
    fl_engine_follow(rig->engine, &clock);
    rig_process(rig);
  }
  assert_int_equal(rig->onset_count, 0U);

  /* Rolling from transport frame 10000: beat 1 is transport frame 22500. */
  const int64_t rolled = rig->frame;
  while (rig->onset_count == 0U && rig->frame < rolled + 48000) {
    const FlOutsideClock clock = jack_clock(transport_frame, true, 128.0);
    fl_engine_follow(rig->engine, &clock);
    rig_process(rig);
    transport_frame += 256;
  }
  assert_int_equal(rig->onset_count, 1U);
  assert_int_equal(rig->onsets[0] - rolled + 10000, 22500);

  /* Rolling: each launch on the first line of transport frames k * 22500
     at or after the period that takes it. */
  uint32_t seed = 9U;
  for (int i = 0; i < 10; ++i) {
    const int wait = (int)(next_random(&seed) % 150U);
    for (int p = 0; p < wait; ++p) {
      const FlOutsideClock clock = jack_clock(transport_frame, true, 128.0);
      fl_engine_follow(rig->engine, &clock);
      rig_process(rig);
      transport_frame += 256;
    }
    const int64_t from   = transport_frame;
    const int64_t offset = rig->frame - transport_frame; /* engine - JACK */
    assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                     FL_SUCCESS);
    const unsigned before = rig->onset_count;
    while (rig->onset_count == before) {
      const FlOutsideClock clock = jack_clock(transport_frame, true, 128.0);
      fl_engine_follow(rig->engine, &clock);
      rig_process(rig);
      transport_frame += 256;
    }
    const int64_t line = (from + 22499) / 22500 * 22500;
    assert_int_equal(rig->onsets[before] - offset, line);
  }

  /* The master goes: the internal clock keeps time from where it was. */
  fl_engine_transport(rig->engine, &state_now);
  const double last = state_now.beats;
  fl_engine_follow(rig->engine, NULL);
  rig_process(rig);
  fl_engine_transport(rig->engine, &state_now);
  assert_int_equal(state_now.source, FL_CLOCK_INTERNAL);
  assert_int_equal(state_now.rolling, 1U);
  assert_true(state_now.bpm == 128.0);
  assert_true(fabs(state_now.beats - (last + 256.0 / 22500.0)) < 1e-9);
  rig_free(rig);
}

/*
  A downbeat while a quantized launch waits for its line: beat 0 moves, and
  the launch takes the next line of the new grid (the downbeat itself for
  bars), not its old beat number counted from the new beat 0.
*/
static void
test_downbeat_while_waiting(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1");
  assert_int_equal(fl_engine_downbeat(rig->engine, FL_PLAY_NOW), FL_SUCCESS);
  rig_run(rig, 1 + 400 * 3); /* three bars and a bit */
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_run(rig, 50);
  assert_int_equal(rig->onset_count, 0U);
  const int64_t downbeat = downbeat_at_offset(rig, 99U);
  const int64_t onset    = rig_onset_after(rig, 0U, 20 * 96000);
  fprintf(stderr,
          "launch waiting for bar 4, then a downbeat: sounded %lld frames "
          "after the new beat 0\n",
          (long long)(onset - downbeat));
  assert_int_equal(onset, downbeat);

  /* A beat grid, the downbeat in the middle of the wait: the next beat of
     the new grid. */
  set_quantize(rig, "1/4");
  rig_run(rig, 10);
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  rig_run(rig, 1);
  const unsigned seen  = rig->onset_count;
  const int64_t  again = downbeat_at_offset(rig, 0U);
  assert_int_equal(rig_onset_after(rig, seen, 2 * BEAT_120), again);
  rig_free(rig);
}

/* One period following a JACK master at `*transport_frame`, which then
   moves on by a period if rolling. */
static void
follow_period(Rig* rig, int64_t* transport_frame, bool rolling, double bpm)
{
  const FlOutsideClock clock = jack_clock(*transport_frame, rolling, bpm);
  fl_engine_follow(rig->engine, &clock);
  rig_process(rig);
  *transport_frame += rolling ? 256 : 0;
}

/*
  The JACK master relocates, or changes its tempo (the beat position is
  frame x tempo, so it jumps), while a launch waits: the launch takes the
  next line of the transport's grid as it now is.
*/
static void
test_follow_jack_jumps(void** state)
{
  (void)state;
  Rig* const rig = rig_new(256U, 0);
  set_quantize(rig, "1/4");

  /* 128 BPM at beat 100.22 (transport frame 2255000): waits for beat 101,
     then the transport is located to frame 1000; beat 1 is 22500. */
  int64_t transport_frame = 2255000;
  follow_period(rig, &transport_frame, true, 128.0);
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  for (int i = 0; i < 10; ++i) {
    follow_period(rig, &transport_frame, true, 128.0);
  }
  assert_int_equal(rig->onset_count, 0U);
  transport_frame       = 1000;
  const int64_t located = rig->frame;
  while (rig->onset_count == 0U && rig->frame < located + 48000) {
    follow_period(rig, &transport_frame, true, 128.0);
  }
  assert_int_equal(rig->onset_count, 1U);
  assert_int_equal(rig->onsets[0] - located + 1000, 22500);

  /* 120 BPM at beat 100.25 (frame 2406000), waiting for beat 101 (frame
     2424000); the master goes to 128 BPM: the position is now 106.93
     beats, beat 101 has passed, and beat 107 is transport frame 2407500. */
  transport_frame = 2406000;
  follow_period(rig, &transport_frame, true, 120.0);
  assert_int_equal(fl_engine_play(rig->engine, CLICK_SLOT, 1.0f, FL_PLAY_NOW),
                   FL_SUCCESS);
  follow_period(rig, &transport_frame, true, 120.0);
  const int64_t offset = rig->frame - transport_frame;
  while (rig->onset_count == 1U && rig->frame < located + 10 * 48000) {
    follow_period(rig, &transport_frame, true, 128.0);
  }
  assert_int_equal(rig->onset_count, 2U);
  assert_int_equal(rig->onsets[1] - offset, 2407500);
  rig_free(rig);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lines_120),
    cmocka_unit_test(test_lines_87_5),
    cmocka_unit_test(test_tempo_change_continuous),
    cmocka_unit_test(test_grid_parse),
    cmocka_unit_test(test_quantized_beats_120),
    cmocka_unit_test(test_quantized_bars_and_sixteenths),
    cmocka_unit_test(test_quantized_87_5),
    cmocka_unit_test(test_quantized_long_period),
    cmocka_unit_test(test_line_on_period_start),
    cmocka_unit_test(test_tempo_change_moves_line),
    cmocka_unit_test(test_slot_quantize),
    cmocka_unit_test(test_timetag_and_quantize),
    cmocka_unit_test(test_exclusive_on_grid),
    cmocka_unit_test(test_published_transport),
    cmocka_unit_test(test_follow_jack),
    cmocka_unit_test(test_downbeat_while_waiting),
    cmocka_unit_test(test_follow_jack_jumps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
