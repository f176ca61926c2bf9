/*
  Code used in the realtime process thread: the mixer's inner loops.

  Every loop is a contiguous pass over `restrict` pointers with a frame count
  known at entry, so gcc and clang vectorize them at -O2 with
  -ftree-vectorize (see docs/performance.md for how that is checked). A gain
  ramp is computed as gain + step * i rather than by accumulation, which keeps
  the iterations independent (vectorizable) and the ramp exact at its end.

  Interleaved frames are addressed as source[2 * (size_t)i]: with a 32-bit
  index, 2U * i could wrap, so the compiler cannot prove the accesses are
  contiguous and falls back to one scalar load per sample (gcc 12 does), which
  makes stereo mixing several times slower. A mono source into two outputs is
  one pass that reads each sample once.
*/
#include <flitzi/mixer.h>

#include <stddef.h>

static FL_REALTIME void
mix_mono(const float* restrict source,
         uint32_t frame_count,
         float    gain,
         float    gain_step,
         float* restrict output)
{
  if (gain_step == 0.0f) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      output[i] += gain * source[i];
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      output[i] += (gain + gain_step * (float)i) * source[i];
    }
  }
}

static FL_REALTIME void
mix_mono_to_two(const float* restrict source,
                uint32_t frame_count,
                float    gain,
                float    gain_step,
                float* restrict left,
                float* restrict right)
{
  if (gain_step == 0.0f) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float sample = gain * source[i];
      left[i] += sample;
      right[i] += sample;
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float sample = (gain + gain_step * (float)i) * source[i];
      left[i] += sample;
      right[i] += sample;
    }
  }
}

static FL_REALTIME void
mix_stereo(const float* restrict source,
           uint32_t frame_count,
           float    gain,
           float    gain_step,
           float* restrict left,
           float* restrict right)
{
  if (gain_step == 0.0f) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      left[i] += gain * source[2U * (size_t)i];
      right[i] += gain * source[2U * (size_t)i + 1U];
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float g = gain + gain_step * (float)i;
      left[i] += g * source[2U * (size_t)i];
      right[i] += g * source[2U * (size_t)i + 1U];
    }
  }
}

static FL_REALTIME void
mix_stereo_to_mono(const float* restrict source,
                   uint32_t frame_count,
                   float    gain,
                   float    gain_step,
                   float* restrict output)
{
  const float half = 0.5f * gain;
  const float step = 0.5f * gain_step;
  if (gain_step == 0.0f) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      output[i] +=
        half * (source[2U * (size_t)i] + source[2U * (size_t)i + 1U]);
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      output[i] += (half + step * (float)i) *
                   (source[2U * (size_t)i] + source[2U * (size_t)i + 1U]);
    }
  }
}

FL_REALTIME void
fl_mix_add(const float*  source,
           uint32_t      source_channels,
           uint32_t      frame_count,
           float         gain,
           float         gain_step,
           float* const* outputs,
           uint32_t      output_count,
           uint32_t      output_offset)
{
  if (source_channels == 1U) {
    if (output_count == 1U) {
      mix_mono(
        source, frame_count, gain, gain_step, outputs[0] + output_offset);
    } else {
      mix_mono_to_two(source,
                      frame_count,
                      gain,
                      gain_step,
                      outputs[0] + output_offset,
                      outputs[1] + output_offset);
    }
  } else if (output_count == 1U) {
    mix_stereo_to_mono(
      source, frame_count, gain, gain_step, outputs[0] + output_offset);
  } else {
    mix_stereo(source,
               frame_count,
               gain,
               gain_step,
               outputs[0] + output_offset,
               outputs[1] + output_offset);
  }
}
