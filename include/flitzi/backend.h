/*
  The JACK backend: the boundary between the engine and the JACK server.

  It opens a client, registers the output ports, runs fl_engine_process() in
  the process callback, and reports what the server tells it (shutdown, sample
  rate, xruns) through atomics and a wake-up callback. The engine and the tests
  of its pure parts never see JACK; only this file and the programs do.
*/
#ifndef FLITZI_BACKEND_H
#define FLITZI_BACKEND_H

#include <flitzi/engine.h>
#include <flitzi/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FlBackendImpl FlBackend;

typedef struct {
  const char* client_name;      /**< JACK client name */
  uint32_t    output_count;     /**< Output ports: out_1 .. out_N */
  bool        connect_physical; /**< Connect to physical playback ports */
  FlEngine*   engine;
  FlWakeFunc  wake; /**< Called (RT-safe) when the server goes away, on xrun */
  void*       wake_data;
  /** Called by fl_backend_open() with the server's rate before activating,
      so the engine and loader are ready for it; may be NULL. */
  void (*prepare)(void* data, uint32_t sample_rate);
  /** FlTransportMode (api.h): 0 internal, 1 follow JACK transport, 2 be
      JACK's timebase master. */
  uint32_t transport_mode;
  bool     midi;         /**< Register midi_in and play slots from notes */
  uint32_t midi_base;    /**< The key of slot 0 */
  uint32_t midi_channel; /**< 1..16, or 0 for every channel */
} FlBackendConfig;

/** What the server reported; see fl_backend_stats(). */
typedef struct {
  bool     connected;     /**< The client is open and active */
  uint32_t sample_rate;   /**< Current rate, or the last one known */
  uint32_t period_frames; /**< Current period, or the last one known */
  uint32_t xruns;         /**< Xruns reported by the server, ever */
  float    load_avg_pct;  /**< Process callback time / period, averaged */
  float    load_peak_pct; /**< Its peak since the last call with reset */
} FlBackendStats;

/** Create a backend; no connection yet. NULL if allocation fails. */
FlBackend* fl_backend_new(const FlBackendConfig* config);

/** Close the client if open and free. `fl_backend_free(NULL)` does nothing. */
void fl_backend_free(FlBackend* backend);

/**
   Connect to the JACK server (never starting one), register the ports,
   activate, and connect them if asked. Returns FL_ERR_OPEN with a reason if
   the server is not there. Main thread only.
*/
FlStatus fl_backend_open(FlBackend* backend, char* reason, size_t reason_size);

/**
   Deactivate and close the client. After this the process callback no longer
   runs, so the caller may take the engine's RT role. Main thread only.
*/
void fl_backend_close(FlBackend* backend);

/** True if the server shut the client down since it was opened. */
bool fl_backend_lost(const FlBackend* backend);

/** Copy what the server reported; reset the load peak if `reset_peak`. */
void fl_backend_stats(FlBackend*      backend,
                      bool            reset_peak,
                      FlBackendStats* stats);

/**
   Return JACK's clock in microseconds: the clock of FlPeriod, for turning an
   OSC timetag into a start time. Any thread, connected or not.
*/
int64_t fl_backend_now_usecs(void);

#endif /* FLITZI_BACKEND_H */
