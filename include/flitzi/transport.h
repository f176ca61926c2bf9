/*
  The musical clock: tempo, beats per bar and the beat position, as exact
  functions of the engine's frame count (OSC API v2, §3).

  The position is never summed period by period. It is kept as an anchor,
  a frame and the beat position at that frame, and the tempo since then:
  beats(f) = anchor_beats + (f - anchor_frame) * bpm / (60 * rate). A tempo
  change moves the anchor to the frame where it takes effect, with the beat
  position it had there, so the position is continuous and a grid line is
  always computed from one anchor: at 87.5 BPM (32914.29 frames a beat at
  48 kHz) line n lands within half a frame of its exact place, for every n.

  Pure functions on a value: the RT thread owns the engine's transport; the
  unit tests need nothing else.
*/
#ifndef FLITZI_TRANSPORT_H
#define FLITZI_TRANSPORT_H

#include <flitzi/common.h>

#include <stdbool.h>
#include <stdint.h>

/** Tempo range and defaults of the contract. */
#define FL_MIN_BPM 20.0
#define FL_MAX_BPM 300.0
#define FL_DEFAULT_BPM 120.0
#define FL_DEFAULT_BEATS_PER_BAR 4U
#define FL_MAX_BEATS_PER_BAR 16U

typedef struct {
  double   bpm;
  uint32_t beats_per_bar;
  uint32_t sample_rate;
  int64_t  anchor_frame; /**< Engine frame where the position was... */
  double   anchor_beats; /**< ...this many beats */
} FlTransport;

/** A transport at `bpm` and `beats_per_bar` with beat 0 at frame 0. */
FlTransport fl_transport_make(double   bpm,
                              uint32_t beats_per_bar,
                              uint32_t sample_rate);

/** Frames of one beat at the transport's tempo (not rounded). */
FL_REALTIME double fl_transport_frames_per_beat(const FlTransport* transport);

/** The beat position at `frame` (exact, not rounded). */
FL_REALTIME double fl_transport_beats_at(const FlTransport* transport,
                                         int64_t            frame);

/** The frame where the position is `beats`, rounded to the nearest frame. */
FL_REALTIME int64_t fl_transport_frame_of(const FlTransport* transport,
                                          double             beats);

/** From `frame` on, `bpm`; the beat position stays continuous. */
FL_REALTIME void fl_transport_set_tempo(FlTransport* transport,
                                        int64_t      frame,
                                        double       bpm);

/** `frame` becomes beat 0 of bar 0. */
FL_REALTIME void fl_transport_downbeat(FlTransport* transport, int64_t frame);

/**
   Follow an outside clock: at `frame` the position is `beats`, the tempo
   `bpm` and the bar `beats_per_bar` long (JACK transport).
*/
FL_REALTIME void fl_transport_follow(FlTransport* transport,
                                     int64_t      frame,
                                     double       beats,
                                     double       bpm,
                                     uint32_t     beats_per_bar);

/**
   The first frame at or after `from` that lies on a line of a grid of
   `grid_beats` beats (lines at beat 0, ±grid_beats, ...). A line exactly on
   `from` counts.
*/
FL_REALTIME int64_t fl_transport_next_line(const FlTransport* transport,
                                           int64_t            from,
                                           double             grid_beats);

/**
   Parse a grid value of the contract ("1/64" .. "1/2" of a whole note,
   "1", "2", "4" bars) into beats for `beats_per_bar`; a bar value is stored
   negative (-1, -2, -4 bars) so that it follows signature changes. Returns
   false for anything else ("off" included).
*/
bool fl_transport_parse_grid(const char* text, double* grid);

/** A parsed grid in beats: `grid` > 0 is beats, < 0 is bars. */
FL_REALTIME double fl_transport_grid_beats(double grid, uint32_t beats_per_bar);

#endif /* FLITZI_TRANSPORT_H */
