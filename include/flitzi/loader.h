/*
  The loader thread: the one thread that changes slots.

  Other threads queue requests (load a file into a slot, empty a slot, load
  everything again for a new sample rate); the loader decodes and resamples
  (decode.h), publishes with fl_engine_publish(), and reports each outcome
  through a callback, on its own thread. Requests never block their sender:
  a full queue is refused at once.
*/
#ifndef FLITZI_LOADER_H
#define FLITZI_LOADER_H

#include <flitzi/analysis.h>
#include <flitzi/bank.h>
#include <flitzi/decode.h>
#include <flitzi/engine.h>
#include <flitzi/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FlLoaderImpl FlLoader;

/** Largest opaque reply context a request carries (see fl_loader_load()). */
#define FL_LOADER_CONTEXT_SIZE 160U

typedef enum {
  FL_REQUEST_LOAD,     /**< Load a file into a slot */
  FL_REQUEST_UNLOAD,   /**< Empty a slot */
  FL_REQUEST_RELOAD,   /**< Load a slot's file again at the current rate */
  FL_REQUEST_STRETCH,  /**< Render a slot's region for key lock */
  FL_REQUEST_ANALYZE,  /**< Find a slot's tempo (analysis.h) */
  FL_REQUEST_WAVEFORM, /**< A min/max overview of a slot's first channel */
} FlRequestType;

/** The outcome of one request, as passed to the callback. */
typedef struct {
  FlRequestType type;
  uint32_t      slot;
  FlStatus      status;
  uint32_t      frame_count; /**< Frames in the slot now (loads) */
  uint32_t      channels;
  uint32_t      source_rate;
  char          reason[512]; /**< A sentence for the user when status != 0 */
  FlTempo       tempo;       /**< FL_REQUEST_ANALYZE */
  uint32_t      points;      /**< FL_REQUEST_WAVEFORM: pairs in `pairs`, */
  const float*  pairs;       /**< (min, max) each; valid in the callback */
  unsigned char context[FL_LOADER_CONTEXT_SIZE]; /**< As given */
} FlLoadResult;

/** Called on the loader thread when a request is done. */
typedef void (*FlLoaderDoneFunc)(void* data, const FlLoadResult* result);

typedef struct {
  FlEngine*        engine;
  FlBank*          bank;
  FlDecodeConfig   decode;       /**< Rate, quality, length limit */
  const char*      sample_root;  /**< Resolved directory, or NULL */
  uint32_t         queue_length; /**< Pending requests; 0 for 256 */
  bool             lock_memory;  /**< mlock() each sample's frames */
  FlLoaderDoneFunc done;
  void*            done_data;
} FlLoaderConfig;

/**
   Start a loader thread. Returns NULL if the thread or an allocation fails.
*/
FlLoader* fl_loader_new(const FlLoaderConfig* config);

/**
   Stop the loader (after the request in progress) and free it; queued
   requests are dropped. `fl_loader_free(NULL)` does nothing.
*/
void fl_loader_free(FlLoader* loader);

/**
   Queue a load of `path` into `slot`. `context` (`context_size` bytes, at
   most FL_LOADER_CONTEXT_SIZE) comes back in the result, e.g. who to reply
   to. Returns FL_ERR_BAD_SLOT or FL_ERR_QUEUE_FULL without queueing. Any
   non-RT thread.
*/
FlStatus fl_loader_load(FlLoader*   loader,
                        uint32_t    slot,
                        const char* path,
                        const void* context,
                        size_t      context_size);

/** Queue emptying `slot`; as fl_loader_load(). */
FlStatus fl_loader_unload(FlLoader*   loader,
                          uint32_t    slot,
                          const void* context,
                          size_t      context_size);

/**
   Queue a key-lock render of frames [start, end) of the sample in `slot`
   at tempo ratio `ratio`, as a loop if `loop` (stretch.h). A later request
   for the same slot replaces one still queued; nothing is reported but a
   failure (in the log). Returns FL_ERR_QUEUE_FULL. Any non-RT thread.
*/
FlStatus fl_loader_stretch(FlLoader* loader,
                           uint32_t  slot,
                           double    ratio,
                           uint32_t  start,
                           uint32_t  end,
                           bool      loop);

/**
   Queue a tempo analysis of the sample in `slot`; the result comes to the
   callback (FL_REQUEST_ANALYZE) with `context`. Returns as
   fl_loader_load(). Any non-RT thread.
*/
FlStatus fl_loader_analyze(FlLoader*   loader,
                           uint32_t    slot,
                           const void* context,
                           size_t      context_size);

/**
   Queue a waveform overview of `points` (1..2048) pairs over [start, end)
   seconds of the sample in `slot` (end 0: its end); as fl_loader_analyze().
*/
FlStatus fl_loader_waveform(FlLoader*   loader,
                            uint32_t    slot,
                            uint32_t    points,
                            double      start,
                            double      end,
                            const void* context,
                            size_t      context_size);

/**
   Prepare samples for `sample_rate` from now on, and if it differs from the
   rate so far, queue a reload of every loaded slot from its file. Any non-RT
   thread.
*/
void fl_loader_set_sample_rate(FlLoader* loader, uint32_t sample_rate);

#endif /* FLITZI_LOADER_H */
