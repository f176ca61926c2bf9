/*
  The mixer: pure functions that add one voice's frames into JACK-style
  non-interleaved output buffers.

  They read an interleaved source and write nothing but the outputs, so they
  are tested without a server. Channel mapping: a mono source goes to every
  output; a stereo source goes left to output 0 and right to output 1; a stereo
  source into one output is the average of left and right.
*/
#ifndef FLITZI_MIXER_H
#define FLITZI_MIXER_H

#include <flitzi/common.h>

#include <stdint.h>

/**
   Add `frame_count` frames of `source` (interleaved, `source_channels` 1 or 2,
   starting at its first frame) into `outputs[0..output_count-1]` starting at
   `output_offset`, scaled by a gain that starts at `gain` and changes by
   `gain_step` each frame (0 for a constant gain).

   The output buffers must not overlap the source or each other. Only the RT
   thread calls this in flitzid, but it touches nothing but its arguments.
*/
FL_REALTIME void fl_mix_add(const float*  source,
                            uint32_t      source_channels,
                            uint32_t      frame_count,
                            float         gain,
                            float         gain_step,
                            float* const* outputs,
                            uint32_t      output_count,
                            uint32_t      output_offset);

#endif /* FLITZI_MIXER_H */
