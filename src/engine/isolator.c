/*
  The DJ isolator (include/flitzi/isolator.h). fl_isolator_design() is
  non-RT; the rest runs in the realtime process thread.
*/
#include <flitzi/isolator.h>

#include <math.h>
#include <string.h>

/* RBJ cookbook biquads (bilinear transform, prewarped at f). */
static FlBiquad
design_biquad(int kind, double rate, double hz)
{
  const double w     = 2.0 * M_PI * hz / rate;
  const double cosw  = cos(w);
  const double alpha = sin(w) / (2.0 * M_SQRT1_2); /* Q = 1/sqrt 2 */
  const double a0    = 1.0 + alpha;
  FlBiquad     b     = { 0.0, 0.0, 0.0, 0.0, 0.0 };
  if (kind == 0) { /* low pass */
    b.b0 = (1.0 - cosw) / 2.0;
    b.b1 = 1.0 - cosw;
    b.b2 = (1.0 - cosw) / 2.0;
  } else if (kind == 1) { /* high pass */
    b.b0 = (1.0 + cosw) / 2.0;
    b.b1 = -(1.0 + cosw);
    b.b2 = (1.0 + cosw) / 2.0;
  } else { /* all pass */
    b.b0 = 1.0 - alpha;
    b.b1 = -2.0 * cosw;
    b.b2 = 1.0 + alpha;
  }
  b.b0 /= a0;
  b.b1 /= a0;
  b.b2 /= a0;
  b.a1 = -2.0 * cosw / a0;
  b.a2 = (1.0 - alpha) / a0;
  return b;
}

void
fl_isolator_design(FlIsolatorDesign* design,
                   double            sample_rate,
                   double            low_hz,
                   double            high_hz)
{
  design->low_pass  = design_biquad(0, sample_rate, low_hz);
  design->high_pass = design_biquad(1, sample_rate, low_hz);
  design->mid_pass  = design_biquad(0, sample_rate, high_hz);
  design->top_pass  = design_biquad(1, sample_rate, high_hz);
  design->align     = design_biquad(2, sample_rate, high_hz);
}

FL_REALTIME void
fl_isolator_reset(FlIsolatorState* state)
{
  memset(state, 0, sizeof(*state));
}

/* Transposed direct form II: two state values per biquad. */
static inline double
run(const FlBiquad* b, double* z, double x)
{
  const double y = b->b0 * x + z[0];
  z[0]           = b->b1 * x - b->a1 * y + z[1];
  z[1]           = b->b2 * x - b->a2 * y;
  return y;
}

FL_REALTIME void
fl_isolator_process(const FlIsolatorDesign* design,
                    FlIsolatorState*        state,
                    const FlIsolatorGains*  gains,
                    float*                  samples,
                    uint32_t                frame_count)
{
  for (uint32_t i = 0U; i < frame_count; ++i) {
    const double x     = samples[i];
    const double split = run(
      &design->high_pass, state->z[3], run(&design->high_pass, state->z[2], x));
    const double low  = run(&design->align,
                           state->z[8],
                           run(&design->low_pass,
                               state->z[1],
                               run(&design->low_pass, state->z[0], x)));
    const double mid  = run(&design->mid_pass,
                           state->z[5],
                           run(&design->mid_pass, state->z[4], split));
    const double high = run(&design->top_pass,
                            state->z[7],
                            run(&design->top_pass, state->z[6], split));

    const double k      = (double)i;
    const double wet    = gains->wet + gains->wet_step * k;
    const double shaped = (gains->low + gains->low_step * k) * low +
                          (gains->mid + gains->mid_step * k) * mid +
                          (gains->high + gains->high_step * k) * high;
    samples[i] = (float)((1.0 - wet) * x + wet * shaped);
  }
}
