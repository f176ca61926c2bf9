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
#include <string.h>

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

/* The magnitude of a float as its bit pattern: for non-negative floats the
   order of the bits is the order of the values, and an integer maximum
   vectorizes where a float one (NaN rules) does not. */
static inline uint32_t
magnitude_bits(float value)
{
  uint32_t bits = 0U;
  memcpy(&bits, &value, sizeof(bits));
  return bits & 0x7fffffffU;
}

static inline float
bits_to_float(uint32_t bits)
{
  float value = 0.0f;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

static FL_REALTIME void
stage_one(const float* restrict source,
          uint32_t frame_count,
          float    gain,
          float    gain_step,
          float* restrict output)
{
  /* A stage ramps only for FL_GAIN_RAMP_MS after a change: the constant
     gain gets a loop of its own, without the ramp's per-frame conversion
     and multiply (the same result: gain + 0 * i is gain). */
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

/* Peaks compare magnitude bits as int32_t: they are below 2^31, so the
   order is the same, and a signed compare is one SSE2 instruction where an
   unsigned one needs a bias on each side. */
static FL_REALTIME int32_t
stage_one_peak(const float* restrict source,
               uint32_t frame_count,
               float    gain,
               float    gain_step,
               float* restrict output,
               int32_t peak_bits)
{
  if (gain_step == 0.0f) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float   sample = gain * source[i];
      const int32_t bits   = (int32_t)magnitude_bits(sample);
      output[i] += sample;
      peak_bits = bits > peak_bits ? bits : peak_bits;
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float   sample = (gain + gain_step * (float)i) * source[i];
      const int32_t bits   = (int32_t)magnitude_bits(sample);
      output[i] += sample;
      peak_bits = bits > peak_bits ? bits : peak_bits;
    }
  }
  return peak_bits;
}

FL_REALTIME void
fl_mix_stage(const float* const* sources,
             float* const*       outputs,
             uint32_t            output_count,
             uint32_t            frame_count,
             float               left,
             float               left_step,
             float               right,
             float               right_step,
             float*              peak)
{
  if (output_count == 1U) {
    left      = 0.5f * (left + right);
    left_step = 0.5f * (left_step + right_step);
  }
  if (!peak) {
    stage_one(sources[0], frame_count, left, left_step, outputs[0]);
    if (output_count > 1U) {
      stage_one(sources[1], frame_count, right, right_step, outputs[1]);
    }
    return;
  }
  int32_t bits = (int32_t)magnitude_bits(*peak);
  bits =
    stage_one_peak(sources[0], frame_count, left, left_step, outputs[0], bits);
  if (output_count > 1U) {
    bits = stage_one_peak(
      sources[1], frame_count, right, right_step, outputs[1], bits);
  }
  *peak = bits_to_float((uint32_t)bits);
}

FL_REALTIME void
fl_mix_crossfade(float*       target,
                 const float* from,
                 const float* to,
                 uint32_t     channels,
                 uint32_t     frame_count,
                 float        weight,
                 float        weight_step)
{
  const uint32_t count = frame_count * channels;
  if (channels == 1U) {
    if (from && to) {
      for (uint32_t i = 0U; i < count; ++i) {
        const float w = weight + weight_step * (float)i;
        target[i]     = from[i] + w * (to[i] - from[i]);
      }
    } else {
      const float* const source = from ? from : to;
      const float        sign   = from ? -1.0f : 1.0f;
      const float        base   = from ? 1.0f : 0.0f;
      for (uint32_t i = 0U; i < count; ++i) {
        target[i] =
          (base + sign * (weight + weight_step * (float)i)) * source[i];
      }
    }
    return;
  }
  if (from && to) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float  w = weight + weight_step * (float)i;
      const size_t l = 2U * (size_t)i;
      target[l]      = from[l] + w * (to[l] - from[l]);
      target[l + 1U] = from[l + 1U] + w * (to[l + 1U] - from[l + 1U]);
    }
  } else {
    const float* const source = from ? from : to;
    const float        sign   = from ? -1.0f : 1.0f;
    const float        base   = from ? 1.0f : 0.0f;
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float  g = base + sign * (weight + weight_step * (float)i);
      const size_t l = 2U * (size_t)i;
      target[l]      = g * source[l];
      target[l + 1U] = g * source[l + 1U];
    }
  }
}

static FL_REALTIME void
scale_one(float* restrict output,
          uint32_t frame_count,
          float    gain,
          float    gain_step)
{
  for (uint32_t i = 0U; i < frame_count; ++i) {
    output[i] *= gain + gain_step * (float)i;
  }
}

FL_REALTIME void
fl_mix_scale(float* const* outputs,
             uint32_t      output_count,
             uint32_t      frame_count,
             float         gain,
             float         gain_step)
{
  scale_one(outputs[0], frame_count, gain, gain_step);
  if (output_count > 1U) {
    scale_one(outputs[1], frame_count, gain, gain_step);
  }
}

FL_REALTIME float
fl_mix_peak(const float* samples, uint32_t frame_count, float peak)
{
  int32_t bits = (int32_t)magnitude_bits(peak);
  for (uint32_t i = 0U; i < frame_count; ++i) {
    const int32_t b = (int32_t)magnitude_bits(samples[i]);
    bits            = b > bits ? b : bits;
  }
  return bits_to_float((uint32_t)bits);
}

static FL_REALTIME void
mix_mono_balanced(const float* restrict source,
                  uint32_t frame_count,
                  float    gain,
                  float    gain_step,
                  float    left,
                  float    right,
                  float* restrict out_left,
                  float* restrict out_right)
{
  if (gain_step == 0.0f) {
    const float gain_left  = gain * left;
    const float gain_right = gain * right;
    for (uint32_t i = 0U; i < frame_count; ++i) {
      out_left[i] += gain_left * source[i];
      out_right[i] += gain_right * source[i];
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float sample = (gain + gain_step * (float)i) * source[i];
      out_left[i] += left * sample;
      out_right[i] += right * sample;
    }
  }
}

static FL_REALTIME void
mix_stereo_balanced(const float* restrict source,
                    uint32_t frame_count,
                    float    gain,
                    float    gain_step,
                    float    left,
                    float    right,
                    float* restrict out_left,
                    float* restrict out_right)
{
  if (gain_step == 0.0f) {
    const float gain_left  = gain * left;
    const float gain_right = gain * right;
    for (uint32_t i = 0U; i < frame_count; ++i) {
      out_left[i] += gain_left * source[2U * (size_t)i];
      out_right[i] += gain_right * source[2U * (size_t)i + 1U];
    }
  } else {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float g = gain + gain_step * (float)i;
      out_left[i] += left * g * source[2U * (size_t)i];
      out_right[i] += right * g * source[2U * (size_t)i + 1U];
    }
  }
}

FL_REALTIME void
fl_mix_add_balanced(const float*  source,
                    uint32_t      source_channels,
                    uint32_t      frame_count,
                    float         gain,
                    float         gain_step,
                    float         left,
                    float         right,
                    float* const* outputs,
                    uint32_t      output_count,
                    uint32_t      output_offset)
{
  if (output_count == 1U) {
    const float scale = 0.5f * (left + right);
    fl_mix_add(source,
               source_channels,
               frame_count,
               gain * scale,
               gain_step * scale,
               outputs,
               output_count,
               output_offset);
  } else if (source_channels == 1U) {
    mix_mono_balanced(source,
                      frame_count,
                      gain,
                      gain_step,
                      left,
                      right,
                      outputs[0] + output_offset,
                      outputs[1] + output_offset);
  } else {
    mix_stereo_balanced(source,
                        frame_count,
                        gain,
                        gain_step,
                        left,
                        right,
                        outputs[0] + output_offset,
                        outputs[1] + output_offset);
  }
}

/* The peak loops compare the magnitudes' bits as signed integers (they are
   below 2^31): one instruction on SSE2, where an unsigned maximum is three.
   A constant gain gets its own loop: no ramp to compute per frame. */
static FL_REALTIME int32_t
peak_mono_to_two(const float* restrict source,
                 uint32_t frame_count,
                 float    gain,
                 float    gain_step,
                 float    left,
                 float    right,
                 float* restrict out_left,
                 float* restrict out_right,
                 int32_t bits)
{
  if (gain_step == 0.0f) {
    const float gain_left  = gain * left;
    const float gain_right = gain * right;
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float   l  = gain_left * source[i];
      const float   r  = gain_right * source[i];
      const int32_t lb = (int32_t)magnitude_bits(l);
      const int32_t rb = (int32_t)magnitude_bits(r);
      out_left[i] += l;
      out_right[i] += r;
      bits = lb > bits ? lb : bits;
      bits = rb > bits ? rb : bits;
    }
    return bits;
  }
  for (uint32_t i = 0U; i < frame_count; ++i) {
    const float   sample = (gain + gain_step * (float)i) * source[i];
    const float   l      = left * sample;
    const float   r      = right * sample;
    const int32_t lb     = (int32_t)magnitude_bits(l);
    const int32_t rb     = (int32_t)magnitude_bits(r);
    out_left[i] += l;
    out_right[i] += r;
    bits = lb > bits ? lb : bits;
    bits = rb > bits ? rb : bits;
  }
  return bits;
}

static FL_REALTIME int32_t
peak_stereo_to_two(const float* restrict source,
                   uint32_t frame_count,
                   float    gain,
                   float    gain_step,
                   float    left,
                   float    right,
                   float* restrict out_left,
                   float* restrict out_right,
                   int32_t bits)
{
  if (gain_step == 0.0f) {
    const float gain_left  = gain * left;
    const float gain_right = gain * right;
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float   l  = gain_left * source[2U * (size_t)i];
      const float   r  = gain_right * source[2U * (size_t)i + 1U];
      const int32_t lb = (int32_t)magnitude_bits(l);
      const int32_t rb = (int32_t)magnitude_bits(r);
      out_left[i] += l;
      out_right[i] += r;
      bits = lb > bits ? lb : bits;
      bits = rb > bits ? rb : bits;
    }
    return bits;
  }
  for (uint32_t i = 0U; i < frame_count; ++i) {
    const float   g  = gain + gain_step * (float)i;
    const float   l  = left * g * source[2U * (size_t)i];
    const float   r  = right * g * source[2U * (size_t)i + 1U];
    const int32_t lb = (int32_t)magnitude_bits(l);
    const int32_t rb = (int32_t)magnitude_bits(r);
    out_left[i] += l;
    out_right[i] += r;
    bits = lb > bits ? lb : bits;
    bits = rb > bits ? rb : bits;
  }
  return bits;
}

static FL_REALTIME int32_t
peak_to_one(const float* restrict source,
            uint32_t channels,
            uint32_t frame_count,
            float    gain,
            float    gain_step,
            float* restrict output,
            int32_t bits)
{
  if (channels == 1U) {
    for (uint32_t i = 0U; i < frame_count; ++i) {
      const float   sample = (gain + gain_step * (float)i) * source[i];
      const int32_t b      = (int32_t)magnitude_bits(sample);
      output[i] += sample;
      bits = b > bits ? b : bits;
    }
    return bits;
  }
  for (uint32_t i = 0U; i < frame_count; ++i) {
    const float sample = (gain + gain_step * (float)i) * 0.5f *
                         (source[2U * (size_t)i] + source[2U * (size_t)i + 1U]);
    const int32_t b = (int32_t)magnitude_bits(sample);
    output[i] += sample;
    bits = b > bits ? b : bits;
  }
  return bits;
}

FL_REALTIME float
fl_mix_add_peak(const float*  source,
                uint32_t      source_channels,
                uint32_t      frame_count,
                float         gain,
                float         gain_step,
                float         left,
                float         right,
                float* const* outputs,
                uint32_t      output_count,
                uint32_t      output_offset,
                float         peak)
{
  int32_t bits = (int32_t)magnitude_bits(peak);
  if (output_count == 1U) {
    const float scale = 0.5f * (left + right);
    bits              = peak_to_one(source,
                       source_channels,
                       frame_count,
                       gain * scale,
                       gain_step * scale,
                       outputs[0] + output_offset,
                       bits);
  } else if (source_channels == 1U) {
    bits = peak_mono_to_two(source,
                            frame_count,
                            gain,
                            gain_step,
                            left,
                            right,
                            outputs[0] + output_offset,
                            outputs[1] + output_offset,
                            bits);
  } else {
    bits = peak_stereo_to_two(source,
                              frame_count,
                              gain,
                              gain_step,
                              left,
                              right,
                              outputs[0] + output_offset,
                              outputs[1] + output_offset,
                              bits);
  }
  return bits_to_float((uint32_t)bits);
}
