/*
  Analysis of a loaded sample, for the looper's screen and its BPM lock
  (OSC API v2, §6): the tempo and first beat (aubio's beat tracker, and a
  straight-line fit through the beats it found), and a min/max overview
  of the waveform. Pure functions of an immutable sample; flitzid runs them
  on the loader thread, the one non-RT thread that may read samples.
*/
#ifndef FLITZI_ANALYSIS_H
#define FLITZI_ANALYSIS_H

#include <flitzi/sample.h>
#include <flitzi/status.h>

#include <stddef.h>
#include <stdint.h>

/** What fl_analysis_tempo() found. */
typedef struct {
  double bpm;        /**< Beats per minute */
  double first_beat; /**< Seconds of the first beat at or after the start */
  double confidence; /**< aubio's confidence in its tempo, >= 0 */
} FlTempo;

/**
   Track the beat of `sample` (its channels mixed). Returns FL_SUCCESS, or
   FL_ERR_FORMAT with a reason ("no tempo found ...") when there is no
   steady beat. Any non-RT thread.
*/
FlStatus fl_analysis_tempo(const FlSample* sample,
                           FlTempo*        tempo,
                           char*           reason,
                           size_t          reason_size);

/**
   Write `points` (min, max) pairs of the first channel over equal spans of
   frames [start, end) into `pairs` (2 * points floats). Every span holds at
   least one frame (a span of a fraction of a frame takes its nearest one).
   Any non-RT thread.
*/
void fl_analysis_waveform(const FlSample* sample,
                          uint32_t        start,
                          uint32_t        end,
                          uint32_t        points,
                          float*          pairs);

#endif /* FLITZI_ANALYSIS_H */
