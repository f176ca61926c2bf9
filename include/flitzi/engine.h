/*
  The engine: voices, the control queue into the RT thread, and the hand-back
  of retired samples out of it.

  Threads and roles (each role is one thread at a time):
  - control: the OSC thread. Calls fl_engine_play() and fl_engine_stop(),
    which validate and queue a command; the producer end of the command ring.
  - loader: the only thread that changes slots, with fl_engine_publish();
    the producer end of the retire ring.
  - RT: the JACK process thread. Calls fl_engine_process() once a period; it
    consumes both rings and produces the event ring. It never allocates,
    frees, locks, logs, does I/O or waits.
  - reaper: a non-RT thread that frees what fl_engine_next_retired() returns.
  Any thread may read fl_engine_stats().

  The life of a sample is in docs/architecture.md.
*/
#ifndef FLITZI_ENGINE_H
#define FLITZI_ENGINE_H

#include <flitzi/bank.h>
#include <flitzi/common.h>
#include <flitzi/sample.h>
#include <flitzi/status.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct FlEngineImpl FlEngine;

/** Start time of a play that starts at the next period processed. */
#define FL_PLAY_NOW INT64_MIN

/** Slot argument of fl_engine_stop() that stops every voice. */
#define FL_ALL_SLOTS UINT32_MAX

/** Called by the RT thread after it handed samples back; must be RT-safe. */
typedef void (*FlWakeFunc)(void* data);

typedef struct {
  uint32_t   sample_rate;      /**< Frames per second, for fade lengths */
  uint32_t   output_count;     /**< Output channels, 1 or 2 */
  uint32_t   max_voices;       /**< Voices that sound at once, 1..1024 */
  uint32_t   command_capacity; /**< Control queue length; 0 for 4096 */
  FlWakeFunc wake;             /**< Wakes the reaper, or NULL */
  void*      wake_data;        /**< Passed to `wake` */
} FlEngineConfig;

/** Timing of the period being processed, as JACK reports it. */
typedef struct {
  uint32_t frame_count; /**< Frames in this period */
  uint32_t first_frame; /**< Frame time of its first frame (wraps) */
  int64_t  usecs;       /**< Time of its first frame, in microseconds */
  int64_t  next_usecs;  /**< Time of the first frame of the next period */
} FlPeriod;

/** Counters; each one only grows, except the voice counts. */
typedef struct {
  uint32_t voices_active;    /**< Voices sounding, not counting fade tails */
  uint32_t voices_max;       /**< The configured polyphony */
  uint64_t plays;            /**< Play commands the RT thread took */
  uint64_t unplayed;         /**< Of those, how many found no sample/voice */
  uint64_t late_plays;       /**< Timed plays that arrived after their time */
  uint64_t dropped_commands; /**< Commands lost to a full control queue */
  uint64_t stolen_voices;    /**< Voices faded out to make room */
  uint64_t retired_samples;  /**< Samples handed back to be freed */
} FlEngineStats;

/**
   Create an engine that plays samples from `bank`.

   Returns NULL if the configuration is out of range or an allocation fails.
   Only non-RT threads may call this; the bank must outlive the engine.
*/
FlEngine* fl_engine_new(const FlEngineConfig* config, FlBank* bank);

/**
   Free an engine, with every retired sample it still holds (in its rings or
   kept alive by a voice). Samples in the bank stay there.
   `fl_engine_free(NULL)` does nothing. Only call this when fl_engine_process()
   no longer runs.
*/
void fl_engine_free(FlEngine* engine);

/**
   Queue a voice of `slot` at `velocity` (a gain in [0, 1]), starting at the
   first frame whose time is `start_usecs` (the clock of FlPeriod), or at the
   next period for FL_PLAY_NOW.

   Returns FL_ERR_BAD_SLOT, FL_ERR_BAD_VELOCITY (NaN, infinite or outside
   [0, 1]) or FL_ERR_EMPTY_SLOT without queueing anything, and
   FL_ERR_QUEUE_FULL, counting a dropped command, if the queue is full. Only
   the control thread may call this.
*/
FlStatus fl_engine_play(FlEngine* engine,
                        uint32_t  slot,
                        float     velocity,
                        int64_t   start_usecs);

/**
   Queue a fade-out (FL_STOP_FADE_MS) of every voice of `slot`, or of every
   voice for FL_ALL_SLOTS.

   Returns FL_ERR_BAD_SLOT or FL_ERR_QUEUE_FULL as fl_engine_play() does. Only
   the control thread may call this.
*/
FlStatus fl_engine_stop(FlEngine* engine, uint32_t slot);

/**
   Put `sample` into `slot` (NULL empties it) and retire the sample that was
   there: the RT thread hands it back through fl_engine_next_retired() once no
   voice plays it. When `sample` is NULL the voices of the slot fade out.

   If the retire queue is full (the RT thread is not running) this sleeps a
   millisecond at a time until there is room. Only the loader thread may call
   this; `slot` must be in range.
*/
void fl_engine_publish(FlEngine* engine, uint32_t slot, FlSample* sample);

/**
   Return the next sample that the RT thread handed back, or NULL. The caller
   frees it with fl_sample_free(). Only the reaper thread may call this.
*/
FlSample* fl_engine_next_retired(FlEngine* engine);

/** Copy the counters into `stats`. Any thread may call this. */
void fl_engine_stats(const FlEngine* engine, FlEngineStats* stats);

/**
   Render one period into `outputs` (config.output_count buffers of
   `period->frame_count` floats, overwritten), after applying the queued
   commands and retirements. Only the RT thread may call this.
*/
FL_REALTIME void fl_engine_process(FlEngine*       engine,
                                   const FlPeriod* period,
                                   float* const*   outputs);

/**
   Do the RT thread's housekeeping while no RT thread runs (the JACK server is
   gone): apply queued retirements, end every voice at once, and hand back
   what they held. Queued plays are discarded. Only call this when
   fl_engine_process() is not running, from the thread that will own the RT
   role until it runs again.
*/
void fl_engine_process_offline(FlEngine* engine);

/**
   Change the sample rate that fade lengths are computed for. Only call this
   when fl_engine_process() is not running.
*/
void fl_engine_set_sample_rate(FlEngine* engine, uint32_t sample_rate);

#endif /* FLITZI_ENGINE_H */
