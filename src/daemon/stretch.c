#include <flitzi/stretch.h>

#include <rubberband/rubberband-c.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Audio of the loop on each side of a render, at most this long. */
#define PAD_SECONDS 0.5

/* Ratios this near 1 are rendered by the faster engine (R2). */
#define FAST_RATIOS 0.15

/* Frames handed to Rubber Band at a time. */
#define CHUNK 16384U

/* A loop's render ends in a crossfade of this length into the audio that
   leads into its first frame. */
#define SEAM_MS 10.0

/* Frame `index` of the input: the region with its pads, a loop's pads being
   the loop itself. */
static const float*
input_frame(const FlSample* source,
            uint32_t        start,
            uint32_t        end,
            uint32_t        pad,
            bool            loop,
            int64_t         index)
{
  static const float silence[2] = { 0.0f, 0.0f };
  const int64_t      span       = (int64_t)end - start;
  int64_t            frame      = (int64_t)start + index - (int64_t)pad;
  if (loop) {
    frame = (int64_t)start + ((frame - start) % span + span) % span;
  } else if (frame < 0 || frame >= (int64_t)source->frame_count) {
    return silence;
  }
  return source->frames + (size_t)frame * source->channels;
}

FlSample*
fl_stretch_render(const FlSample* source,
                  uint32_t        start,
                  uint32_t        end,
                  double          ratio,
                  bool            loop,
                  char*           reason,
                  size_t          reason_size)
{
  if (end <= start || end > source->frame_count || !(ratio >= 0.25) ||
      !(ratio <= 4.0)) {
    snprintf(reason, reason_size, "no region to stretch");
    return NULL;
  }
  const uint32_t channels = source->channels;
  const uint32_t span     = end - start;
  const uint32_t most     = (uint32_t)(PAD_SECONDS * source->sample_rate);
  const uint32_t pad      = loop ? (span < most ? span : most) : 0U;
  const uint32_t total    = span + 2U * pad;
  const uint32_t frames   = (uint32_t)llround((double)span / ratio);
  const uint32_t skip     = (uint32_t)llround((double)pad / ratio);
  /* The seam: a stretched loop is not periodic in the render's length (a
     tone of c cycles a loop has c / ratio cycles a render), so its end
     does not meet its start. The output just before `skip` is what leads
     into the render's first frame: the render's last frames fade into it,
     as a plain loop's seam does (SEAM_PRE in the engine). */
  uint32_t seam = (uint32_t)llround(SEAM_MS * source->sample_rate / 1000.0);
  seam          = seam < skip ? seam : skip;
  seam          = seam < frames / 2U ? seam : frames / 2U;

  /* The engine: R2 (faster) for the ratios a DJ mostly plays, within
     FAST_RATIOS of 1: a render of a 4 s loop costs 0.16 s of a core instead
     of R3's 0.42 s, so a tempo change's renders are back 2.7 times sooner,
     and R2 places a transient as near the straight time line there as R3
     does (about 60 frames at 1.05). Further out R3 (finer), whose time map
     bends much less (75 frames at 0.8 and 1.5, R2's 300 to 400). */
  const int engine = fabs(ratio - 1.0) <= FAST_RATIOS
                       ? RubberBandOptionEngineFaster
                       : RubberBandOptionEngineFiner;

  /* Time ratio in Rubber Band's sense: output duration over input. */
  RubberBandState stretcher = rubberband_new(
    source->sample_rate,
    channels,
    RubberBandOptionProcessOffline | engine | RubberBandOptionPitchHighQuality,
    1.0 / ratio,
    1.0);
  FlSample* const render = fl_sample_new_unfilled(frames ? frames : 1U,
                                                  channels,
                                                  source->sample_rate,
                                                  source->source_rate,
                                                  source->path);
  float* const input[2]  = { (float*)malloc(CHUNK * sizeof(float)),
                             (float*)malloc(CHUNK * sizeof(float)) };
  float* const output[2] = { (float*)malloc(CHUNK * sizeof(float)),
                             (float*)malloc(CHUNK * sizeof(float)) };
  float* const lead_in =
    (float*)malloc(((size_t)seam + 1U) * channels * sizeof(float));
  if (!stretcher || !render || !input[0] || !input[1] || !output[0] ||
      !output[1] || !lead_in) {
    snprintf(reason, reason_size, "out of memory");
    if (stretcher) {
      rubberband_delete(stretcher);
    }
    fl_sample_free(render);
    free(input[0]);
    free(input[1]);
    free(output[0]);
    free(output[1]);
    free(lead_in);
    return NULL;
  }
  rubberband_set_expected_input_duration(stretcher, total);
  rubberband_set_max_process_size(stretcher, CHUNK);

  /* Two passes over the input: study, then process. */
  uint64_t kept = 0U; /* output frames taken (after `skip`) */
  uint64_t seen = 0U; /* output frames retrieved */
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t done = 0U; done < total;) {
      const uint32_t count = total - done < CHUNK ? total - done : CHUNK;
      for (uint32_t i = 0U; i < count; ++i) {
        const float* const frame =
          input_frame(source, start, end, pad, loop, (int64_t)done + i);
        input[0][i] = frame[0];
        input[1][i] = frame[channels - 1U];
      }
      done += count;
      const int last = done == total;
      if (pass == 0) {
        rubberband_study(stretcher, (const float* const*)input, count, last);
        continue;
      }
      rubberband_process(stretcher, (const float* const*)input, count, last);
      for (int available = rubberband_available(stretcher); available > 0;
           available     = rubberband_available(stretcher)) {
        const unsigned got = rubberband_retrieve(
          stretcher,
          output,
          available < (int)CHUNK ? (unsigned)available : CHUNK);
        for (unsigned i = 0U; i < got; ++i, ++seen) {
          if (seen < skip && seen + seam >= skip) {
            float* const to = lead_in + (size_t)(seen + seam - skip) * channels;
            for (uint32_t c = 0U; c < channels; ++c) {
              to[c] = output[c][i];
            }
          }
          if (seen < skip || kept >= frames) {
            continue;
          }
          float* const to = render->frames + (size_t)kept * channels;
          for (uint32_t c = 0U; c < channels; ++c) {
            to[c] = output[c][i];
          }
          ++kept;
        }
      }
    }
  }
  rubberband_delete(stretcher);
  free(input[0]);
  free(input[1]);
  free(output[0]);
  free(output[1]);

  /* Rubber Band's offline output is its input's length over the ratio, give
     or take a frame at the end: fill what it did not give with silence. */
  if (kept < frames) {
    memset(render->frames + (size_t)kept * channels,
           0,
           (size_t)(frames - kept) * channels * sizeof(float));
  }
  /* The seam: frame k of the last `seam` moves towards the lead-in with
     weight (k + 1) / (seam + 1), so the last frame is nearly the one before
     the render's first. */
  for (uint32_t k = 0U; loop && k < seam; ++k) {
    const float  w    = (float)(k + 1U) / (float)(seam + 1U);
    float* const to   = render->frames + (size_t)(frames - seam + k) * channels;
    const float* from = lead_in + (size_t)k * channels;
    for (uint32_t c = 0U; c < channels; ++c) {
      to[c] += w * (from[c] - to[c]);
    }
  }
  free(lead_in);
  render->stretch_ratio  = ratio;
  render->stretch_source = source->serial;
  render->stretch_start  = start;
  render->stretch_end    = end;
  return render;
}
