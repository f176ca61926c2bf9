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

/**
   As fl_mix_add(), with output 0 further scaled by `left` and output 1 by
   `right` (a slot's constant gain and balance, applied in the same pass as
   the voice's own gain). Into one output the scale is the mean of the two.
*/
FL_REALTIME void fl_mix_add_balanced(const float*  source,
                                     uint32_t      source_channels,
                                     uint32_t      frame_count,
                                     float         gain,
                                     float         gain_step,
                                     float         left,
                                     float         right,
                                     float* const* outputs,
                                     uint32_t      output_count,
                                     uint32_t      output_offset);

/**
   As fl_mix_add_balanced(), and return the larger of `peak` and the largest
   magnitude it added to any output (a compare per sample): a slot's meter
   when the slot has one voice.
*/
FL_REALTIME float fl_mix_add_peak(const float*  source,
                                  uint32_t      source_channels,
                                  uint32_t      frame_count,
                                  float         gain,
                                  float         gain_step,
                                  float         left,
                                  float         right,
                                  float* const* outputs,
                                  uint32_t      output_count,
                                  uint32_t      output_offset,
                                  float         peak);

/**
   The slot stage: add `frame_count` frames of `sources` (a slot's summed
   voices, one buffer per output) into `outputs`, output 0 scaled by a gain
   that starts at `left` and changes by `left_step` a frame, output 1 by
   `right` and `right_step`. Into one output the gain is the mean of the two.
   If `peak` is not NULL it is raised to the largest magnitude added (one
   compare per sample).
*/
FL_REALTIME void fl_mix_stage(const float* const* sources,
                              float* const*       outputs,
                              uint32_t            output_count,
                              uint32_t            frame_count,
                              float               left,
                              float               left_step,
                              float               right,
                              float               right_step,
                              float*              peak);

/**
   Write `frame_count` frames (interleaved, `channels` 1 or 2) of a
   crossfade into `target`: frame i is (1 - w) * `from` + w * `to` with
   w = weight + weight_step * i. A NULL `from` or `to` stands for silence.
*/
FL_REALTIME void fl_mix_crossfade(float*       target,
                                  const float* from,
                                  const float* to,
                                  uint32_t     channels,
                                  uint32_t     frame_count,
                                  float        weight,
                                  float        weight_step);

/**
   Scale `frame_count` frames of each output in place by a gain that starts
   at `gain` and changes by `gain_step` a frame (the master gain).
*/
FL_REALTIME void fl_mix_scale(float* const* outputs,
                              uint32_t      output_count,
                              uint32_t      frame_count,
                              float         gain,
                              float         gain_step);

/** Return the larger of `peak` and the largest |sample| of `samples`. */
FL_REALTIME float fl_mix_peak(const float* samples,
                              uint32_t     frame_count,
                              float        peak);

#endif /* FLITZI_MIXER_H */
