#include <flitzi/analysis.h>

#include <aubio/aubio.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* aubio's beat tracker: a window of 2048 frames, a hop of 512. */
#define WINDOW 2048U
#define HOP 512U

/* Below this confidence of aubio's, what it tracked is no steady beat. */
#define MIN_CONFIDENCE 0.5

/* Fewer beats than this are no tempo. */
#define MIN_ONSETS 8U

/* A beat within this share of a beat of a grid line is on the grid, and
   the grid must hold this share of the beats. */
#define ON_GRID 0.08
#define MIN_ON_GRID 0.75

/* Fit beat time = at + k * period by least squares to the beats within
   ON_GRID of the grid `at`, `period`; returns the share of beats on it. */
static double
fit_grid(const double* onsets, uint32_t count, double* at, double* period)
{
  double   sk = 0.0, st = 0.0, skk = 0.0, skt = 0.0;
  uint32_t on = 0U;
  for (uint32_t i = 0U; i < count; ++i) {
    const double k = floor((onsets[i] - *at) / *period + 0.5);
    if (fabs(onsets[i] - (*at + k * *period)) > ON_GRID * *period) {
      continue;
    }
    sk += k;
    st += onsets[i];
    skk += k * k;
    skt += k * onsets[i];
    ++on;
  }
  const double n = (double)on;
  if (on < MIN_ONSETS || n * skk - sk * sk <= 0.0) {
    return 0.0;
  }
  *period = (n * skt - sk * st) / (n * skk - sk * sk);
  *at     = (st - *period * sk) / n;
  return n / (double)count;
}

static int
compare_doubles(const void* a, const void* b)
{
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static float
loudness(const FlSample* sample, uint32_t frame)
{
  const float* const samples =
    sample->frames + (size_t)frame * sample->channels;
  return sample->channels == 2U ? fmaxf(fabsf(samples[0]), fabsf(samples[1]))
                                : fabsf(samples[0]);
}

static double
refine(const FlSample* sample, double seconds, double period)
{
  const double  rate   = (double)sample->sample_rate;
  const int64_t reach  = (int64_t)(0.3 * period * rate);
  const int64_t centre = (int64_t)llround(seconds * rate);
  const int64_t first  = centre - reach > 0 ? centre - reach : 0;
  const int64_t last   = centre + reach < (int64_t)sample->frame_count
                           ? centre + reach
                           : (int64_t)sample->frame_count;
  float         peak   = 0.0f;
  for (int64_t f = first; f < last; ++f) {
    peak = fmaxf(peak, loudness(sample, (uint32_t)f));
  }
  for (int64_t f = first; f < last && peak > 0.0f; ++f) {
    if (loudness(sample, (uint32_t)f) >= 0.5f * peak) {
      return (double)f / rate;
    }
  }
  return seconds;
}

/* The beat from aubio's tracker: its beats, numbered on the grid of its
   tempo estimate, and straight-line fits through those on that grid (over a
   growing stretch of them, then all) make the tempo exact; a tracker that
   is not confident, or a grid that most beats are not on, is no tempo. The
   first beat is the grid's line at the first onset of the audio (the
   tracker finds its first beats late, while it locks on). */
FlStatus
fl_analysis_tempo(const FlSample* sample,
                  FlTempo*        tempo,
                  char*           reason,
                  size_t          reason_size)
{
  aubio_tempo_t* const tracker =
    new_aubio_tempo("default", WINDOW, HOP, sample->sample_rate);
  fvec_t* const  input     = new_fvec(HOP);
  fvec_t* const  output    = new_fvec(1);
  const uint32_t most      = sample->frame_count / HOP + 1U;
  double* const  beats     = (double*)calloc(most, sizeof(double));
  double* const  intervals = (double*)calloc(most, sizeof(double));
  FlStatus       status    = FL_SUCCESS;
  if (!tracker || !input || !output || !beats || !intervals) {
    snprintf(reason, reason_size, "out of memory");
    status = FL_ERR_NO_MEMORY;
    goto done;
  }

  uint32_t       count    = 0U;
  uint_t         previous = 0U;
  float          peak     = 0.0f;
  uint32_t       loud     = 0U; /* the first frame near the peak */
  const uint32_t channels = sample->channels;
  for (uint32_t from = 0U; from + HOP <= sample->frame_count; from += HOP) {
    for (uint32_t i = 0U; i < HOP; ++i) {
      const float* const frame = sample->frames + (size_t)(from + i) * channels;
      input->data[i] = channels == 2U ? 0.5f * (frame[0] + frame[1]) : frame[0];
      peak           = fmaxf(peak, fabsf(input->data[i]));
    }
    aubio_tempo_do(tracker, input, output);
    /* A new beat moves the tracker's last beat (the output's value is the
       beat's place in the hop, which may be 0). */
    const uint_t last = aubio_tempo_get_last(tracker);
    if (last != previous && count < most) {
      beats[count++] = (double)aubio_tempo_get_last_s(tracker);
      previous       = last;
    }
  }
  for (uint32_t f = 0U; f < sample->frame_count; ++f) {
    const float* const frame = sample->frames + (size_t)f * channels;
    if (fabsf(frame[0]) >= 0.25f * peak ||
        fabsf(frame[channels - 1U]) >= 0.25f * peak) {
      loud = f;
      break;
    }
  }
  tempo->confidence     = (double)aubio_tempo_get_confidence(tracker);
  const double estimate = (double)aubio_tempo_get_bpm(tracker);
  if (count < MIN_ONSETS || !(estimate > 0.0) ||
      tempo->confidence < MIN_CONFIDENCE) {
    snprintf(reason,
             reason_size,
             "no tempo found (%u beats, confidence %.2f)",
             count,
             tempo->confidence);
    status = FL_ERR_FORMAT;
    goto done;
  }

  /* aubio's beats are its predictions, tens of milliseconds off the audio
     as its estimate drifts: move each to the onset it stands for, the first
     frame within 0.3 beat of it that reaches half the loudest there. */
  for (uint32_t i = 0U; i < count; ++i) {
    beats[i] = refine(sample, beats[i], 60.0 / estimate);
  }

  /* Fit a growing stretch of the last beats: each fit numbers the next,
     longer stretch, so a guess a little off never loses count. */
  /* The first guess of the beat: the median interval between neighbouring
     beats once they are on the audio (aubio's own estimate may be a little
     off, or half or twice the tempo). */
  uint32_t distinct = 0U;
  for (uint32_t i = 1U; i < count; ++i) {
    if (beats[i] - beats[i - 1U] > 0.05) {
      intervals[distinct++] = beats[i] - beats[i - 1U];
    }
  }
  qsort(intervals, distinct, sizeof(double), compare_doubles);
  double period = distinct ? intervals[distinct / 2U] : 60.0 / estimate;
  /* Anchor the grid on one of the last beats (the very last may be a
     stray one): the anchor whose fits hold the most beats wins. */
  double best_share = 0.0, best_at = 0.0, best_period = period;
  for (uint32_t anchor = 0U; anchor < 4U && anchor < count; ++anchor) {
    double   at    = beats[count - 1U - anchor];
    double   guess = period;
    double   share = 0.0;
    uint32_t span  = 2U * MIN_ONSETS;
    for (;;) {
      const uint32_t take = span < count ? span : count;
      share               = fit_grid(beats + (count - take), take, &at, &guess);
      if (share <= 0.0 || take == count) {
        break;
      }
      span *= 2U;
    }
    if (share > best_share) {
      best_share  = share;
      best_at     = at;
      best_period = guess;
    }
  }
  double at    = best_at;
  double share = best_share;
  period       = best_period;
  share        = share > 0.0 ? fit_grid(beats, count, &at, &period) : 0.0;
  if (share < MIN_ON_GRID || !(period > 0.0)) {
    snprintf(reason,
             reason_size,
             "no tempo found (%.0f %% of %u beats on a steady grid)",
             share * 100.0,
             count);
    status = FL_ERR_FORMAT;
    goto done;
  }
  tempo->bpm         = 60.0 / period;
  const double onset = (double)loud / (double)sample->sample_rate;
  tempo->first_beat  = at + floor((onset - at) / period + 0.5) * period;

done:
  if (tracker) {
    del_aubio_tempo(tracker);
  }
  if (input) {
    del_fvec(input);
  }
  if (output) {
    del_fvec(output);
  }
  free(beats);
  free(intervals);
  return status;
}

void
fl_analysis_waveform(const FlSample* sample,
                     uint32_t        start,
                     uint32_t        end,
                     uint32_t        points,
                     float*          pairs)
{
  const uint32_t channels = sample->channels;
  const double   span     = (double)(end - start) / (double)points;
  for (uint32_t p = 0U; p < points; ++p) {
    uint32_t first = start + (uint32_t)floor(span * p);
    uint32_t last  = start + (uint32_t)floor(span * (p + 1U));
    first          = first < end ? first : end - 1U;
    last           = last > first ? last : first + 1U;
    float low      = sample->frames[(size_t)first * channels];
    float high     = low;
    for (uint32_t f = first + 1U; f < last; ++f) {
      const float value = sample->frames[(size_t)f * channels];
      low               = value < low ? value : low;
      high              = value > high ? value : high;
    }
    pairs[2U * p]      = low;
    pairs[2U * p + 1U] = high;
  }
}
