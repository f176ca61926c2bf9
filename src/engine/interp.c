/*
  The interpolation kernels (include/flitzi/interp.h). Building the tables
  is non-RT; fl_interp_kernel() and fl_interp_frame() run in the RT thread.
*/
#include <flitzi/interp.h>

#include <math.h>
#include <stdlib.h>

/* The design, in cycles per source frame: the kernel's cutoff sits between
   a pass band to 14.5/48 and a stop band from 23.5/48. */
#define CUTOFF (19.0 / 48.0)
#define KAISER_BETA 9.5

struct FlInterpImpl {
  FlInterpKernel kernels[FL_INTERP_CUTOFFS];
  float*         tables[FL_INTERP_CUTOFFS];
};

/* The zeroth-order modified Bessel function of the first kind (series). */
static double
bessel_i0(double x)
{
  double sum  = 1.0;
  double term = 1.0;
  for (int k = 1; k < 50; ++k) {
    term *= (x / (2.0 * k)) * (x / (2.0 * k));
    sum += term;
    if (term < sum * 1e-17) {
      break;
    }
  }
  return sum;
}

/* The kernel at `t` source frames from the read position, for cutoff
   factor `c` and half width `half` frames. */
static double
kernel_at(double t, double c, double half)
{
  if (fabs(t) >= half) {
    return 0.0;
  }
  const double fc   = CUTOFF * c;
  const double x    = 2.0 * fc * t;
  const double sinc = fabs(x) < 1e-12 ? 1.0 : sin(M_PI * x) / (M_PI * x);
  const double r    = t / half;
  const double window =
    bessel_i0(KAISER_BETA * sqrt(1.0 - r * r)) / bessel_i0(KAISER_BETA);
  return 2.0 * fc * sinc * window;
}

FlInterp*
fl_interp_new(void)
{
  FlInterp* const interp = (FlInterp*)calloc(1, sizeof(FlInterp));
  if (!interp) {
    return NULL;
  }

  for (uint32_t k = 0U; k < FL_INTERP_CUTOFFS; ++k) {
    const double   c    = 1.0 - 0.125 * (double)k;
    const double   half = (double)FL_INTERP_HALF_TAPS / c;
    const uint32_t need = 2U * (uint32_t)ceil(half);
    const uint32_t taps = (need + 7U) / 8U * 8U;
    float* const   rows =
      (float*)calloc((size_t)(FL_INTERP_PHASES + 1U) * taps, sizeof(float));
    if (!rows) {
      fl_interp_free(interp);
      return NULL;
    }
    interp->tables[k]   = rows;
    const int32_t first = 1 - (int32_t)(taps / 2U);
    for (uint32_t phase = 0U; phase <= FL_INTERP_PHASES; ++phase) {
      /* Tap j reads frame floor(p) + first + j, at t = first + j - f. */
      const double fraction = (double)phase / (double)FL_INTERP_PHASES;
      float* const row      = rows + (size_t)phase * taps;
      double       sum      = 0.0;
      for (uint32_t j = 0U; j < taps; ++j) {
        const double value =
          kernel_at((double)(first + (int32_t)j) - fraction, c, half);
        row[j] = (float)value;
        sum += value;
      }
      for (uint32_t j = 0U; j < taps; ++j) {
        row[j] = (float)((double)row[j] / sum);
      }
    }
    interp->kernels[k] =
      (FlInterpKernel){ (float)c, taps, first, interp->tables[k] };
  }
  return interp;
}

void
fl_interp_free(FlInterp* interp)
{
  if (!interp) {
    return;
  }
  for (uint32_t k = 0U; k < FL_INTERP_CUTOFFS; ++k) {
    free(interp->tables[k]);
  }
  free(interp);
}

FL_REALTIME const FlInterpKernel*
fl_interp_kernel(const FlInterp* interp, double rate)
{
  /* The largest c with its stop band (23.5/48 c) at or below the output's
     Nyquist frequency mapped back to the source (24/48 / rate). */
  const double limit = 24.0 / 23.5 / rate;
  for (uint32_t k = 0U; k < FL_INTERP_CUTOFFS; ++k) {
    if (interp->kernels[k].cutoff <= limit + 1e-9) {
      return &interp->kernels[k];
    }
  }
  return &interp->kernels[FL_INTERP_CUTOFFS - 1U];
}

FL_REALTIME void
fl_interp_frame(const FlInterpKernel* kernel,
                const float*          window,
                uint32_t              channels,
                double                fraction,
                float*                out)
{
  const double   scaled       = fraction * (double)FL_INTERP_PHASES;
  const uint32_t phase        = (uint32_t)scaled;
  const float    mix          = (float)(scaled - (double)phase);
  const size_t   taps         = kernel->taps;
  const float* restrict below = kernel->rows + (size_t)phase * taps;
  const float* restrict above = below + taps;

  /* Eight partial sums: independent lanes the compiler can vectorize
     without reordering a float sum. Indices are size_t: with 32-bit ones
     that could wrap, gcc cannot prove the loads contiguous and gathers each
     vector from scalar loads (as the mixer once did), twice the cost. */
  if (channels == 1U) {
    float sum[8] = { 0.0f };
    for (size_t j = 0U; j < taps; j += 8U) {
      for (size_t k = 0U; k < 8U; ++k) {
        const float h = below[j + k] + mix * (above[j + k] - below[j + k]);
        sum[k] += h * window[j + k];
      }
    }
    out[0] = ((sum[0] + sum[1]) + (sum[2] + sum[3])) +
             ((sum[4] + sum[5]) + (sum[6] + sum[7]));
    return;
  }
  float left[8]  = { 0.0f };
  float right[8] = { 0.0f };
  for (size_t j = 0U; j < taps; j += 8U) {
    for (size_t k = 0U; k < 8U; ++k) {
      const float h = below[j + k] + mix * (above[j + k] - below[j + k]);
      left[k] += h * window[2U * (j + k)];
      right[k] += h * window[2U * (j + k) + 1U];
    }
  }
  out[0] = ((left[0] + left[1]) + (left[2] + left[3])) +
           ((left[4] + left[5]) + (left[6] + left[7]));
  out[1] = ((right[0] + right[1]) + (right[2] + right[3])) +
           ((right[4] + right[5]) + (right[6] + right[7]));
}
