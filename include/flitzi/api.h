/*
  OSC API v1: the method table and its handlers.

  The handlers validate every argument (network input is untrusted) and turn
  a message into an engine command, a loader request or a reply. The table is
  the one place that lists addresses and accepted type tags; `flitzid
  --list-osc` prints it and the schema test compares it with osc-schema/.
*/
#ifndef FLITZI_API_H
#define FLITZI_API_H

#include <flitzi/backend.h>
#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/loader.h>
#include <flitzi/osc.h>
#include <flitzi/session.h>
#include <flitzi/settings.h>
#include <flitzi/telemetry.h>

#include <stdio.h>

#define FL_VERSION "0.1.0"
#define FL_API_VERSION 1 /* /pong: v1 clients check it; v2 only adds */

/** How flitzid keeps time (--transport). */
typedef enum {
  FL_TRANSPORT_INTERNAL = 0, /**< Its own clock */
  FL_TRANSPORT_JACK,         /**< Follows a JACK timebase master */
  FL_TRANSPORT_MASTER,       /**< Is JACK's timebase master */
} FlTransportMode;

typedef struct {
  FlEngine*    engine;
  FlBank*      bank;
  FlLoader*    loader;  /**< NULL: loads are refused (fuzzing) */
  FlBackend*   backend; /**< NULL: no JACK (fuzzing) */
  FlOscServer* server;  /**< Set once the server exists */
  /** The clock of FlPeriod in microseconds (fl_backend_now_usecs()). */
  int64_t (*now_usecs)(void);
  void (*quit)(void* data);
  void*    quit_data;
  uint64_t plays_queued;   /**< OSC thread only: /play that reached the queue */
  FlTelemetry* telemetry;  /**< NULL: /meters is refused */
  uint32_t     max_voices; /**< --voices, the top of the voices key */
  uint32_t     bus_count;  /**< --buses: the bus key is 0..bus_count - 1 */
  uint32_t     transport_mode; /**< FlTransportMode */
  /** OSC thread only: every slot's settings as the user gave them. */
  FlSlotSettings settings[FL_MAX_SLOTS];
  /** OSC thread only: the global settings as last set (for --state). */
  FlGlobalSettings globals;
  FlSession*       session; /**< --state; NULL: none, /save is refused */
} FlApi;

/** Set every slot's settings and the global settings to the defaults.
    Before the OSC thread runs. */
void fl_api_init(FlApi* api);

/** Return the method table and its length. */
const FlOscMethod* fl_api_methods(size_t* count);

/** Print the table: one line per address, its forms, "-" for none. */
void fl_api_print_table(FILE* stream);

/**
   The loader's completion callback (FlLoaderDoneFunc) for an FlApi: replies
   /done or /fail to the requester, and copies it to subscribers.
*/
void fl_api_load_done(void* api, const FlLoadResult* result);

/**
   Tell subscribers about new xruns (/event/xrun ,i total). Any non-RT
   thread.
*/
void fl_api_notify_xruns(FlApi* api, uint32_t total);

#endif /* FLITZI_API_H */
