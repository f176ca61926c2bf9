/*
  The DJ isolator: three bands split at 250 Hz and 4 kHz by Linkwitz-Riley
  4th-order crossovers, each with its own gain (OSC API v2, §1: eq_low,
  eq_mid, eq_high).

  Topology, per channel: low = LP4(f1)(x) through an allpass at f2,
  mid = LP4(f2)(HP4(f1)(x)), high = HP4(f2)(HP4(f1)(x)). An LR4 pair sums to
  a 2nd-order allpass, so low + mid + high is an allpass of x: flat in
  magnitude. Each LR4 filter is two Butterworth biquads (Q = 1/sqrt 2); the
  allpass that keeps the low band in phase with the others is one biquad.

  A slot whose three gains are 0 dB is bypassed bit for bit; on the way in
  and out the filtered signal is crossfaded with the dry one over
  FL_EQ_RAMP_MS, as the gains are ramped per sample, so neither clicks.

  fl_isolator_design() is non-RT (coefficients for a sample rate);
  fl_isolator_reset() and fl_isolator_process() run in the RT thread.
*/
#ifndef FLITZI_ISOLATOR_H
#define FLITZI_ISOLATOR_H

#include <flitzi/common.h>

#include <stdint.h>

/** Crossover frequencies of the contract. */
#define FL_EQ_LOW_HZ 250.0
#define FL_EQ_HIGH_HZ 4000.0

/** Gain changes and the bypass crossfade are ramped over this. */
#define FL_EQ_RAMP_MS 10.0

/** One biquad, direct form: y = b0 x + b1 x1 + b2 x2 - a1 y1 - a2 y2. */
typedef struct {
  double b0, b1, b2, a1, a2;
} FlBiquad;

typedef struct {
  FlBiquad low_pass;  /**< Butterworth at f1 (twice: LR4) */
  FlBiquad high_pass; /**< Butterworth at f1 (twice) */
  FlBiquad mid_pass;  /**< Butterworth low pass at f2 (twice) */
  FlBiquad top_pass;  /**< Butterworth high pass at f2 (twice) */
  FlBiquad align;     /**< Allpass at f2 for the low band */
} FlIsolatorDesign;

/** Filter state of one channel: nine biquads, two state values each. */
typedef struct {
  double z[9][2];
} FlIsolatorState;

/** The band gains (linear) and the wet share, each ramped per sample. */
typedef struct {
  float low, mid, high, wet;
  float low_step, mid_step, high_step, wet_step;
} FlIsolatorGains;

/** Compute the crossovers at `low_hz` and `high_hz` for `sample_rate`. */
void fl_isolator_design(FlIsolatorDesign* design,
                        double            sample_rate,
                        double            low_hz,
                        double            high_hz);

/** Clear the state (the slot fell silent). */
FL_REALTIME void fl_isolator_reset(FlIsolatorState* state);

/**
   Filter `frame_count` samples of one channel in place: out = (1 - w) x +
   w (gl low + gm mid + gh high), every gain moving by its step a sample.
*/
FL_REALTIME void fl_isolator_process(const FlIsolatorDesign* design,
                                     FlIsolatorState*        state,
                                     const FlIsolatorGains*  gains,
                                     float*                  samples,
                                     uint32_t                frame_count);

#endif /* FLITZI_ISOLATOR_H */
