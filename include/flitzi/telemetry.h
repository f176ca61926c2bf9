/*
  Telemetry: what the RT thread reports (include/flitzi/engine.h, FlEvent)
  turned into OSC. Slot events go to every /notify client as
  /event/started and /event/stopped; meter snapshots go to each client that
  asked with /meters, as `hz` bundles a second of /meter/master and one
  /meter/slot per slot that sounded since that client's last bundle.

  The RT thread writes snapshots at FL_MAX_METER_HZ while any client wants
  meters; a client at a lower rate gets the largest peaks of the snapshots
  between two of its bundles, and the newest playheads. Counting snapshots
  (audio time), not wall time, paces every client.

  Threads: fl_telemetry_set_meters() is for the OSC thread;
  fl_telemetry_run() for the one thread that consumes the engine's
  telemetry ring (flitzid's main thread). A mutex, which the RT thread
  never touches, guards the client table between the two.
*/
#ifndef FLITZI_TELEMETRY_H
#define FLITZI_TELEMETRY_H

#include <flitzi/engine.h>
#include <flitzi/osc.h>

#include <stdint.h>

typedef struct FlTelemetryImpl FlTelemetry;

/** Most clients that receive meters at once. */
#define FL_MAX_METER_CLIENTS 16U

/**
   Create the telemetry for `engine` with `slot_count` slots, sending
   through `server` (may be set later with fl_telemetry_set_server()).
   Returns NULL if an allocation fails.
*/
FlTelemetry* fl_telemetry_new(FlEngine* engine, uint32_t slot_count);

/** Free. `fl_telemetry_free(NULL)` does nothing. */
void fl_telemetry_free(FlTelemetry* telemetry);

/** Where to send; NULL drops everything. Before the threads start. */
void fl_telemetry_set_server(FlTelemetry* telemetry, FlOscServer* server);

/**
   Send `peer` `hz` meter bundles a second (1..FL_MAX_METER_HZ), or none
   (0), and turn the engine's meters on or off as the first client comes or
   the last goes. Returns FL_ERR_BAD_ARGUMENT for hz out of range,
   FL_ERR_QUEUE_FULL if FL_MAX_METER_CLIENTS already get meters or the
   engine's queue is full. OSC thread only.
*/
FlStatus fl_telemetry_set_meters(FlTelemetry*     telemetry,
                                 const FlOscPeer* peer,
                                 uint32_t         hz);

/** What to do when the RT thread asks for a key-lock render. */
typedef void (*FlStretchWanted)(void*    data,
                                uint32_t slot,
                                double   ratio,
                                uint32_t start,
                                uint32_t end,
                                bool     loop);

/** Hand key-lock render requests to `wanted`. Before the threads start. */
void fl_telemetry_set_stretch_handler(FlTelemetry*    telemetry,
                                      FlStretchWanted wanted,
                                      void*           data);

/**
   Take every record the RT thread wrote and send what is due. Returns the
   number of records taken. The consumer thread only.
*/
uint32_t fl_telemetry_run(FlTelemetry* telemetry);

#endif /* FLITZI_TELEMETRY_H */
