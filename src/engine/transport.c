/*
  Code used in the realtime process thread (all but the grid parser): the
  transport's exact maths. See include/flitzi/transport.h.
*/
#include <flitzi/transport.h>

#include <math.h>
#include <string.h>

FlTransport
fl_transport_make(double bpm, uint32_t beats_per_bar, uint32_t sample_rate)
{
  const FlTransport transport = { bpm, beats_per_bar, sample_rate, 0, 0.0 };
  return transport;
}

FL_REALTIME double
fl_transport_frames_per_beat(const FlTransport* transport)
{
  return 60.0 * (double)transport->sample_rate / transport->bpm;
}

FL_REALTIME double
fl_transport_beats_at(const FlTransport* transport, int64_t frame)
{
  return transport->anchor_beats + (double)(frame - transport->anchor_frame) *
                                     transport->bpm /
                                     (60.0 * (double)transport->sample_rate);
}

FL_REALTIME int64_t
fl_transport_frame_of(const FlTransport* transport, double beats)
{
  return transport->anchor_frame +
         llround((beats - transport->anchor_beats) *
                 fl_transport_frames_per_beat(transport));
}

FL_REALTIME void
fl_transport_set_tempo(FlTransport* transport, int64_t frame, double bpm)
{
  transport->anchor_beats = fl_transport_beats_at(transport, frame);
  transport->anchor_frame = frame;
  transport->bpm          = bpm;
}

FL_REALTIME void
fl_transport_downbeat(FlTransport* transport, int64_t frame)
{
  transport->anchor_frame = frame;
  transport->anchor_beats = 0.0;
}

FL_REALTIME void
fl_transport_follow(FlTransport* transport,
                    int64_t      frame,
                    double       beats,
                    double       bpm,
                    uint32_t     beats_per_bar)
{
  transport->anchor_frame  = frame;
  transport->anchor_beats  = beats;
  transport->bpm           = bpm;
  transport->beats_per_bar = beats_per_bar;
}

FL_REALTIME int64_t
fl_transport_next_line(const FlTransport* transport,
                       int64_t            from,
                       double             grid_beats)
{
  /* Start a line early and step: rounding to frames may put the line just
     below `from` on either side. */
  double line =
    floor(fl_transport_beats_at(transport, from) / grid_beats) - 1.0;
  int64_t frame = fl_transport_frame_of(transport, line * grid_beats);
  while (frame < from) {
    line += 1.0;
    frame = fl_transport_frame_of(transport, line * grid_beats);
  }
  return frame;
}

bool
fl_transport_parse_grid(const char* text, double* grid)
{
  static const struct {
    const char* name;
    double      grid;
  } grids[] = {
    { "1/64", 4.0 / 64.0 }, { "1/32", 4.0 / 32.0 }, { "1/16", 4.0 / 16.0 },
    { "1/8", 4.0 / 8.0 },   { "1/4", 1.0 },         { "1/2", 2.0 },
    { "1", -1.0 },          { "2", -2.0 },          { "4", -4.0 },
  };
  for (size_t i = 0U; i < sizeof(grids) / sizeof(grids[0]); ++i) {
    if (!strcmp(text, grids[i].name)) {
      *grid = grids[i].grid;
      return true;
    }
  }
  return false;
}

FL_REALTIME double
fl_transport_grid_beats(double grid, uint32_t beats_per_bar)
{
  return grid < 0.0 ? -grid * (double)beats_per_bar : grid;
}
