/*
  Band-limited interpolation for varispeed: windowed-sinc kernels in
  polyphase tables, one table per cutoff.

  A voice at rate r reads its sample at fractional positions p, p + r, ...
  Each output frame is the dot product of T source frames around p with the
  kernel at p's fraction: a Kaiser-windowed (beta 9.5) sinc whose pass band
  reaches 14.5 kHz and whose stop band starts at 23.5 kHz (at 48 kHz;
  the design is in fractions of the rate). Above rate 1 the kernel is
  stretched by the cutoff factor c <= 1/r, so what the rate would move above
  the output's Nyquist frequency is in the stop band (about 95 dB down);
  c is chosen from FL_INTERP_CUTOFFS steps, the largest that is safe.

  The tables hold FL_INTERP_PHASES + 1 rows of T taps per cutoff; a row is
  interpolated linearly between the two phases around p's fraction, and
  every row sums to 1 (DC passes unchanged). Built off the RT thread once,
  then read-only.
*/
#ifndef FLITZI_INTERP_H
#define FLITZI_INTERP_H

#include <flitzi/common.h>

#include <stdint.h>

/** Phases per source frame in a table. */
#define FL_INTERP_PHASES 512U

/** Half the kernel's width at rate <= 1, in source frames. */
#define FL_INTERP_HALF_TAPS 16U

/** Number of cutoff steps: c = 1, 7/8, ... 1/4 (rates up to 4). */
#define FL_INTERP_CUTOFFS 7U

/** The widest kernel (c = 1/4), in taps. */
#define FL_INTERP_MAX_TAPS 128U

typedef struct FlInterpImpl FlInterp;

/** One cutoff's kernel. */
typedef struct {
  float        cutoff;    /**< c: the kernel is stretched by 1/c */
  uint32_t     taps;      /**< T, a multiple of 8 */
  int32_t      first_tap; /**< Offset of tap 0 from floor(p): 1 - T / 2 */
  const float* rows;      /**< (FL_INTERP_PHASES + 1) rows of T taps */
} FlInterpKernel;

/** Build the tables. Returns NULL if an allocation fails. Non-RT. */
FlInterp* fl_interp_new(void);

/** Free. `fl_interp_free(NULL)` does nothing. */
void fl_interp_free(FlInterp* interp);

/** The kernel for playing at `rate` (> 0). Any thread. */
FL_REALTIME const FlInterpKernel* fl_interp_kernel(const FlInterp* interp,
                                                   double          rate);

/**
   One output frame: the kernel at fraction `fraction` (0 <= f < 1) applied
   to `kernel->taps` frames of `window` (interleaved, `channels` 1 or 2; the
   frame at floor(p) + first_tap first), written to `out[0..channels-1]`.
*/
FL_REALTIME void fl_interp_frame(const FlInterpKernel* kernel,
                                 const float*          window,
                                 uint32_t              channels,
                                 double                fraction,
                                 float*                out);

#endif /* FLITZI_INTERP_H */
