/*
  Key lock: a loop's region stretched in time by Rubber Band, pitch kept.

  A region played at tempo ratio r lasts L / r frames. Rather than run a
  real-time stretcher per voice inside the callback (one costs 6 to 19 % of
  a core on the machines we measure), the loader renders the region once,
  offline, at the ratio the RT thread asks for, and publishes the render
  like a sample (fl_engine_publish_stretch()); within 0.15 of ratio 1 with
  Rubber Band's faster engine (R2), further out with its finer one (R3).
  Offline, Rubber Band sees the
  whole input: the output is aligned with it from its first frame, so no
  delay needs compensating, and studying the input first gives the best
  quality it has.

  A loop is rendered with a pad of its own audio on each side (its end
  before its start, its start after its end) and the middle kept. A
  stretched loop is not periodic in the render's length (a tone of c
  cycles a loop has c / r cycles a render), so the render's last 10 ms fade
  into the stretched audio that leads into its first frame (the pad before
  it): the render joins itself at the seam without a step. The render is
  round(L / r) frames; the RT thread scales positions to that length, so
  the loop's place stays exact.
*/
#ifndef FLITZI_STRETCH_H
#define FLITZI_STRETCH_H

#include <flitzi/sample.h>
#include <flitzi/status.h>

#include <stdbool.h>
#include <stdint.h>

/**
   Render frames [start, end) of `source` at tempo ratio `ratio` (0.25..4;
   > 1 is faster and shorter), as a loop when `loop`, into a new sample whose
   stretch_* fields say what it is. Returns NULL (and a reason) if Rubber Band
   or an allocation fails. Any non-RT thread; `source` must stay alive.
*/
FlSample* fl_stretch_render(const FlSample* source,
                            uint32_t        start,
                            uint32_t        end,
                            double          ratio,
                            bool            loop,
                            char*           reason,
                            size_t          reason_size);

#endif /* FLITZI_STRETCH_H */
