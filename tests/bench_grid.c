/*
  Trigger-to-grid accuracy: 1000 quantized launches through a real jackd.

  A dummy jackd (48 kHz, period 256), flitzid with its internal clock, a
  one-frame click in slot 0 and a recorder on out_1. For 120 BPM and for
  87.5 BPM (a beat is 230400/7 frames, so no grid line of 1/16 = 57600/7
  frames but every 7th falls on a whole frame): /tempo, /quantize 1/16, a
  /transport/downbeat in a bundle timetagged 100 ms ahead, then 1000 /play
  of the click, each sent at a random phase of the grid (a uniform random
  wait of up to one line after the previous onset). Beat 0's recorded frame
  is found exactly as tests/test_daemon_tempo.c does (the timetag's frame by
  its period's JACK timing, to +-1, and /transport's beats, which put beat 0
  a whole number of frames before a period's first frame). Each onset is
  the first recorded frame above 0.5 after the previous one; its grid line
  is the nearest line k to it, and its error the onset minus the line's
  exact frame, round(k x line) frames after beat 0 (at 87.5 BPM the line is
  between frames: the rounded exact line is the frame flitzid must pick).

  Prints, per tempo, the histogram of the errors in frames, and how many
  launches did not take the first line after the period that took them
  (a line is "first" if it is at or after the frames recorded when the
  /play was sent and less than a line plus TAKE_PERIODS periods after
  them), and the recording's glitches (xruns, skipped periods). A launch
  during which the recording glitched is discarded and beat 0 put down
  again (a period that one client ran and the other did not shifts the
  recorder's frames against flitzid's), until 1000 launches are measured.

  Run: meson test -C build --benchmark grid -v
*/
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAUNCHES 1000
#define ONSET_THRESHOLD 0.5f
#define TAKE_PERIODS 16
#define HISTOGRAM_SPAN 8 /* errors -8..+8 frames, and beyond */

static FlRig rig;

static uint32_t
next_random(uint32_t* seed)
{
  *seed = *seed * 1103515245U + 12345U;
  return *seed >> 8;
}

/* The recorder index of absolute JACK frame `frame`, if recorded. */
static bool
index_of_frame(FlRecorder* recorder, jack_nframes_t frame, uint32_t* index)
{
  const uint32_t periods = fl_recorder_period_count(recorder);
  for (uint32_t p = 0; p < periods; ++p) {
    jack_nframes_t first = 0;
    if (!fl_recorder_frame_at(recorder, p * FL_TEST_PERIOD, &first)) {
      return false;
    }
    if ((jack_nframes_t)(frame - first) < FL_TEST_PERIOD) {
      *index = p * FL_TEST_PERIOD + (frame - first);
      return true;
    }
  }
  return false;
}

/* /transport's beat position at the first frame of the current period. */
static bool
transport_beats(double* beats)
{
  fl_osc_send(rig.osc, "/transport", "");
  FlReply* const reply =
    fl_osc_wait(rig.osc, "/transport.reply", FL_TEST_REPLY_MS);
  const bool ok = reply && !strcmp(reply->types, "sfidi");
  if (ok) {
    *beats = reply->argv[3].value.d;
  }
  fl_reply_free(reply);
  return ok;
}

/* Beat 0 on the frame of a timetag 100 ms ahead; its recorded index, or -1. */
static int64_t
timetagged_downbeat(double frames_per_beat)
{
  struct timespec   realtime;
  const jack_time_t now  = fl_clock_pair(&realtime);
  const jack_time_t at   = now + 100000U;
  const lo_timetag  when = fl_timetag_after(&realtime, 100000);
  fl_osc_send_bundle(rig.osc, when, "/transport/downbeat", "");
  fl_sleep_ms(200);

  jack_nframes_t frame = 0;
  uint32_t       near  = 0;
  double         beats = 0.0;
  if (!fl_recorder_time_to_frame(rig.recorder, at, &frame) ||
      !index_of_frame(rig.recorder, frame, &near) || !transport_beats(&beats)) {
    fprintf(stderr, "bench_grid: cannot place the downbeat\n");
    return -1;
  }
  const double  since  = beats * frames_per_beat;
  const int64_t whole  = llround(since);
  const int64_t period = FL_TEST_PERIOD;
  const int64_t phase  = ((-whole) % period + period) % period;
  if (fabs(since - (double)whole) > 1e-4) {
    fprintf(stderr, "bench_grid: %.6f frames since beat 0\n", since);
    return -1;
  }
  for (int64_t index = (int64_t)near - 2; index <= (int64_t)near + 2; ++index) {
    if (index >= 0 && index % period == phase) {
      printf("  beat 0 at recorded frame %lld (the timetag's frame by its "
             "period's timing: %+lld)\n",
             (long long)index,
             (long long)((int64_t)near - index));
      return index;
    }
  }
  fprintf(stderr, "bench_grid: no frame near %u is beat 0\n", near);
  return -1;
}

static long
wait_onset(uint32_t from, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  for (;;) {
    const long onset =
      fl_recorder_onset(rig.recorder, 0, ONSET_THRESHOLD, from);
    if (onset >= 0 || fl_now_ms() > deadline) {
      return onset;
    }
    fl_recorder_wait(
      rig.recorder, fl_recorder_frames(rig.recorder) + FL_TEST_PERIOD, 50);
  }
}

/* One tempo: 1000 launches on a grid of line_num / line_den frames. */
static int
run_tempo(double bpm, int64_t line_num, int64_t line_den, uint32_t seed)
{
  const double frames_per_beat = 60.0 * FL_TEST_RATE / bpm;
  const double line_frames     = (double)line_num / (double)line_den;
  const int    line_us         = (int)(line_frames * 1e6 / FL_TEST_RATE);
  printf("\n%g BPM, /quantize 1/16: a line every %.4f frames (%lld/%lld)\n",
         bpm,
         line_frames,
         (long long)line_num,
         (long long)line_den);

  fl_osc_send(rig.osc, "/tempo", "d", bpm);
  fl_osc_send(rig.osc, "/quantize", "s", "1/16");
  fl_recorder_start(rig.recorder);
  if (!fl_recorder_wait(rig.recorder, 1, 2000)) {
    return 1;
  }
  int64_t downbeat = timetagged_downbeat(frames_per_beat);
  if (downbeat < 0) {
    return 1;
  }

  long histogram[2 * HISTOGRAM_SPAN + 3] = {
    0
  }; /* [0]: below, [last]: above */
  long not_first = 0;
  long missing   = 0;
  long worst     = 0;
  long exact     = 0;
  long discarded = 0;
  long anchors   = 1;
  /* Where each error fell in the line's fraction, at 87.5 BPM: the line's
     place between frames (k x 57600 mod 7 sevenths). */
  long     by_phase[16][3] = { { 0 } }; /* [phase][error -1, 0, +1] */
  uint32_t from            = (uint32_t)downbeat;
  unsigned glitches        = fl_recorder_glitches(rig.recorder);
  for (int measured = 0; measured < LAUNCHES && discarded < LAUNCHES;) {
    const struct timespec wait = {
      0, (long)(next_random(&seed) % (uint32_t)line_us) * 1000L
    };
    nanosleep(&wait, NULL);
    const uint32_t sent = fl_recorder_frames(rig.recorder);
    fl_osc_send(rig.osc, "/play", "if", 0, 1.0);
    const long onset = wait_onset(from, 5000);
    if (onset < 0) {
      ++missing;
      ++measured;
      fprintf(stderr, "launch %d: no onset after frame %u\n", measured, from);
      continue;
    }
    from = (uint32_t)onset + 1U;

    /* A glitch (a period one client ran and the other did not) shifts the
       recorder's frames against flitzid's: that launch says nothing, and
       beat 0 is put down again. */
    if (fl_recorder_glitches(rig.recorder) != glitches) {
      ++discarded;
      ++anchors;
      downbeat = timetagged_downbeat(frames_per_beat);
      if (downbeat < 0) {
        return 1;
      }
      from     = (uint32_t)downbeat;
      glitches = fl_recorder_glitches(rig.recorder);
      continue;
    }
    ++measured;

    /* The nearest line k, and the onset against its rounded exact frame. */
    const int64_t since = onset - downbeat;
    const int64_t k     = (2 * since * line_den + line_num) / (2 * line_num);
    const int64_t line_at =
      (2 * k * line_num + line_den) / (2 * line_den); /* round(k x line) */
    const long error = (long)(since - line_at);
    const long bin   = error < -HISTOGRAM_SPAN  ? 0
                       : error > HISTOGRAM_SPAN ? 2 * HISTOGRAM_SPAN + 2
                                                : error + HISTOGRAM_SPAN + 1;
    ++histogram[bin];
    exact += error == 0;
    worst               = labs(error) > worst ? labs(error) : worst;
    const int64_t phase = (k * line_num) % line_den;
    if (line_den <= 16 && labs(error) <= 1) {
      ++by_phase[phase][error + 1];
    }
    if (onset < (long)sent ||
        (double)onset - line_frames >=
          (double)sent + TAKE_PERIODS * (double)FL_TEST_PERIOD) {
      ++not_first;
    }
  }
  fl_recorder_stop(rig.recorder);

  printf("  onset - exact grid frame (frames): launches\n");
  if (histogram[0]) {
    printf("    < %3d: %ld\n", -HISTOGRAM_SPAN, histogram[0]);
  }
  for (int e = -HISTOGRAM_SPAN; e <= HISTOGRAM_SPAN; ++e) {
    const long count = histogram[e + HISTOGRAM_SPAN + 1];
    if (count) {
      printf("    %+5d: %ld\n", e, count);
    }
  }
  if (histogram[2 * HISTOGRAM_SPAN + 2]) {
    printf(
      "    > %3d: %ld\n", HISTOGRAM_SPAN, histogram[2 * HISTOGRAM_SPAN + 2]);
  }
  if (line_den > 1 && line_den <= 16) {
    printf("  by the line's place between frames (k x %lld mod %lld "
           "%lldths): error -1 / 0 / +1\n",
           (long long)line_num,
           (long long)line_den,
           (long long)line_den);
    for (int64_t p = 0; p < line_den; ++p) {
      printf("    %lld/%lld: %ld / %ld / %ld\n",
             (long long)p,
             (long long)line_den,
             by_phase[p][0],
             by_phase[p][1],
             by_phase[p][2]);
    }
  }
  printf("  %d launches: %ld on the exact frame, largest |error| %ld; %ld "
         "not on the first line after they were taken; %ld without an "
         "onset; recording glitches (xruns, skipped periods): %u, %ld "
         "launches discarded for them and beat 0 put down %ld times\n",
         LAUNCHES,
         exact,
         worst,
         not_first,
         missing,
         glitches,
         discarded,
         anchors);
  return (int)(missing + not_first) + (exact == LAUNCHES - missing ? 0 : 1);
}

int
main(void)
{
  static const char* const args[] = { "-q", NULL };
  if (!fl_rig_start(&rig, "grid", args, false)) {
    return fl_rig_finish(&rig, 1);
  }
  /* One channel, 400 s: the longer of the two runs is about 200 s. */
  rig.recorder =
    fl_recorder_new(rig.jackd.name, rig.daemon.name, 1, 400U * FL_TEST_RATE);
  char path[PATH_MAX];
  fl_env_path(&rig.env, "click.wav", path, sizeof(path));
  if (!rig.recorder ||
      !fl_write_sample(
        path, FL_FILE_WAV_FLOAT, FL_SIGNAL_CLICK, 1, FL_TEST_RATE, 64)) {
    return fl_rig_finish(&rig, 1);
  }
  fl_osc_send(rig.osc, "/load", "is", 0, path);
  FlReply* const done = fl_osc_wait(rig.osc, "/done", FL_TEST_REPLY_MS);
  if (!done) {
    return fl_rig_finish(&rig, 1);
  }
  fl_reply_free(done);

  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("trigger-to-grid accuracy: %d quantized /play of a one-frame click "
         "at random phases, dummy jackd %u Hz, period %u\n",
         LAUNCHES,
         FL_TEST_RATE,
         FL_TEST_PERIOD);
  int       failures = 0;
  const int start_ms = (int)fl_now_ms();
  failures += run_tempo(120.0, 6000, 1, 20261124U);
  failures += run_tempo(87.5, 57600, 7, 87500U);
  printf("\n%s in %.0f s\n",
         failures ? "NOT all launches on their exact grid frame"
                  : "every launch on its exact grid frame",
         (double)((int)fl_now_ms() - start_ms) / 1000.0);
  fl_rig_stop(&rig);
  fl_env_remove(&rig.env);
  return failures ? 1 : 0;
}
