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
#include <flitzi/transport.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct FlEngineImpl FlEngine;

/** Start time of a play that starts at the next period processed. */
#define FL_PLAY_NOW INT64_MIN

/** Slot argument of fl_engine_stop() that stops every voice. */
#define FL_ALL_SLOTS UINT32_MAX

/** Launch modes of a slot (a pad). */
typedef enum {
  FL_MODE_ONESHOT = 0, /**< The region plays once */
  FL_MODE_LOOP    = 1, /**< The region repeats until stopped */
} FlMode;

/**
   A slot's settings as the engine uses them: what /slot/set validated,
   already converted to linear gains. Times are seconds of the sample; the
   RT thread turns them into frames of whichever sample a voice plays.
*/
/** Launch quantization of a slot. */
typedef enum {
  FL_QUANTIZE_GLOBAL = 0, /**< Follow /quantize */
  FL_QUANTIZE_OFF,        /**< Never quantized */
  FL_QUANTIZE_GRID,       /**< Its own grid (FlSlotParams.quantize_grid) */
} FlQuantizeMode;

typedef struct {
  uint32_t mode;          /**< FlMode */
  uint32_t voice_limit;   /**< 0: voices from the shared pool; N: at most N */
  uint32_t group;         /**< Choke group, 0 for none */
  float    xfade_ms;      /**< Seam crossfade of a loop, 0..50 */
  double   start_seconds; /**< Region start */
  double   end_seconds;   /**< Region end (exclusive); 0 = end of sample */
  float    gain_left;     /**< Linear gain to out_1: gain and balance */
  float    gain_right;    /**< Linear gain to out_2 */
  uint32_t quantize;      /**< FlQuantizeMode */
  uint32_t reserved;      /**< Keeps quantize_grid aligned, no padding */
  double   quantize_grid; /**< FL_QUANTIZE_GRID: fl_transport_parse_grid() */
  float    rate;          /**< Playback speed of the slot, 0.25..4 */
  float    bpm;           /**< The slot's own tempo for BPM lock, 0: none */
  uint32_t keylock;       /**< 1: a tempo ratio changes duration, not pitch */
  float    eq_low;        /**< DJ isolator band gains, linear (1: 0 dB) */
  float    eq_mid;
  float    eq_high;
  uint32_t bus;  /**< Output bus */
  uint32_t hold; /**< 1: a note-off or /release ends its voices */
} FlSlotParams;

/** The settings of a slot nobody has touched: v1 playback. */
#define FL_SLOT_PARAMS_DEFAULT                       \
  ((FlSlotParams){ .mode       = FL_MODE_ONESHOT,    \
                   .gain_left  = 1.0f,               \
                   .gain_right = 1.0f,               \
                   .quantize   = FL_QUANTIZE_GLOBAL, \
                   .rate       = 1.0f,               \
                   .eq_low     = 1.0f,               \
                   .eq_mid     = 1.0f,               \
                   .eq_high    = 1.0f })

/** What the RT thread tells the telemetry thread. */
typedef enum {
  FL_EVENT_STARTED = 1,   /**< A slot started to sound */
  FL_EVENT_STOPPED,       /**< The last voice of a slot ended */
  FL_EVENT_METER_SLOT,    /**< Peak and playhead of a slot that sounded */
  FL_EVENT_METER_MASTER,  /**< Master peaks; closes one meter snapshot */
  FL_EVENT_STRETCH_WANTED /**< A key-locked slot needs a render at `position`
                               (the ratio) of its region */
} FlEventType;

/** One record of the telemetry ring: fixed size, written by the RT thread. */
typedef struct {
  uint32_t type;         /**< FlEventType */
  uint32_t slot;         /**< Slot, for all but FL_EVENT_METER_MASTER */
  float    peak;         /**< METER_SLOT: largest |sample| of the slot after its
                              gain and pan; METER_MASTER: left peak;
                              STRETCH_WANTED: 1 for a loop, 0 for a one-shot */
  float  peak_right;     /**< METER_MASTER: right peak */
  double position;       /**< METER_SLOT: seconds into the sample of the
                              slot's newest voice; STRETCH_WANTED: the ratio */
  uint32_t region_start; /**< STRETCH_WANTED: the region, in frames */
  uint32_t region_end;
} FlEvent;

/**
   Called by the RT thread at the end of a period in which it handed samples
   back or wrote telemetry records; must be RT-safe.
*/
typedef void (*FlWakeFunc)(void* data);

typedef struct {
  uint32_t sample_rate;        /**< Frames per second, for fade lengths */
  uint32_t output_count;       /**< Output ports: 1 (mono), or 2 per bus:
                                     bus b is ports 2b and 2b + 1 */
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

/** A JACK timebase master's position for this period (--transport jack). */
typedef struct {
  bool     valid;         /**< A master provides BBT */
  bool     rolling;       /**< JACK transport is rolling */
  double   bpm;           /**< Its tempo */
  uint32_t beats_per_bar; /**< Its bar */
  double   beats;         /**< Beat position at the period's first frame */
} FlOutsideClock;

/** Where the musical clock comes from. */
typedef enum {
  FL_CLOCK_INTERNAL = 0, /**< flitzid's own */
  FL_CLOCK_JACK,         /**< A JACK timebase master's */
} FlClockSource;

/** The transport as the RT thread last published it (/transport). */
typedef struct {
  uint32_t source;        /**< FlClockSource */
  uint32_t beats_per_bar; /**< Beats per bar */
  uint32_t rolling;       /**< 1 while it rolls (always, internally) */
  double   bpm;           /**< Tempo */
  double   beats;         /**< Position at the first frame of the period */
} FlTransportState;

/** A MIDI note for the engine, parsed by the RT thread from JACK's port. */
typedef struct {
  uint32_t offset;   /**< Frame of the period it came at */
  uint32_t slot;     /**< Slot it plays or releases, in range */
  float    velocity; /**< 0..1; 0 is a note-off (release) */
} FlNote;

/** Most notes taken in one period; more are ignored and counted. */
#define FL_MAX_NOTES_PER_PERIOD 256U

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
  uint64_t dropped_events;   /**< Telemetry records lost to a full ring */
  uint64_t stretch_misses;   /**< Blocks a key-locked voice played without
                                  its render (plain varispeed instead) */
  uint64_t notes;            /**< MIDI notes taken (on and off) */
  uint64_t ignored_notes;    /**< MIDI notes outside the slots, on other
                                  channels, or over the period's limit */
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
   As fl_engine_play(); with `exclusive`, at the frame the new voice starts
   every other voice fades out (FL_STEAL_FADE_MS). Only the control thread.
*/
FlStatus fl_engine_launch(FlEngine* engine,
                          uint32_t  slot,
                          float     velocity,
                          int64_t   start_usecs,
                          bool      exclusive);

/**
   Queue new settings for `slot` (validated by the caller). They apply to
   voices already sounding within the period that takes them: gains ramp
   over FL_GAIN_RAMP_MS, a region change takes effect at the voice's next
   pass. Returns FL_ERR_BAD_SLOT or FL_ERR_QUEUE_FULL. Only the control
   thread.
*/
FlStatus fl_engine_set_slot(FlEngine*           engine,
                            uint32_t            slot,
                            const FlSlotParams* params);

/**
   Queue a pause (`pause` true) or resume of every voice of `slot`: they
   fade out (FL_PAUSE_FADE_MS) and keep their positions, or fade back in
   from there. Returns as fl_engine_set_slot(). Only the control thread.
*/
FlStatus fl_engine_pause(FlEngine* engine, uint32_t slot, bool pause);

/**
   Queue a move of every voice of `slot` to `seconds` into its sample, with
   a crossfade of FL_PAUSE_FADE_MS. Returns as fl_engine_set_slot(). Only
   the control thread.
*/
FlStatus fl_engine_seek(FlEngine* engine, uint32_t slot, double seconds);

/**
   Queue a new master gain (linear, ramped over FL_GAIN_RAMP_MS). Returns
   FL_ERR_QUEUE_FULL. Only the control thread.
*/
FlStatus fl_engine_set_master_gain(FlEngine* engine, float gain);

/**
   Queue the meter rate: `hz` snapshots a second (0 turns meters off). While
   on, the RT thread computes per-slot and master peaks and writes a snapshot
   of FL_EVENT_METER_SLOT records closed by FL_EVENT_METER_MASTER into the
   telemetry ring every 1/hz s. Returns FL_ERR_QUEUE_FULL. Only the control
   thread.
*/
FlStatus fl_engine_set_meters(FlEngine* engine, uint32_t hz);

/**
   Queue a tempo (FL_MIN_BPM..FL_MAX_BPM) from the next period on, with the
   beat position continuous. Returns FL_ERR_BAD_ARGUMENT or
   FL_ERR_QUEUE_FULL. Only the control thread.
*/
FlStatus fl_engine_set_tempo(FlEngine* engine, double bpm);

/** Queue beats per bar (1..FL_MAX_BEATS_PER_BAR). As fl_engine_set_tempo(). */
FlStatus fl_engine_set_signature(FlEngine* engine, uint32_t beats_per_bar);

/**
   Queue the global launch quantization: a grid of fl_transport_parse_grid(),
   or 0 for off. Returns FL_ERR_QUEUE_FULL. Only the control thread.
*/
FlStatus fl_engine_set_quantize(FlEngine* engine, double grid);

/**
   Queue a downbeat: the frame whose time is `usecs` (or the first frame of
   the next period, for FL_PLAY_NOW) becomes beat 0 of bar 0. Returns
   FL_ERR_QUEUE_FULL. Only the control thread.
*/
FlStatus fl_engine_downbeat(FlEngine* engine, int64_t usecs);

/**
   Queue the global varispeed factor (0.5..2) of every voice not under BPM
   lock. Returns FL_ERR_BAD_ARGUMENT or FL_ERR_QUEUE_FULL. Control thread.
*/
FlStatus fl_engine_set_speed(FlEngine* engine, double speed);

/**
   Queue BPM lock on or off: on, a voice of a slot with a bpm plays at
   tempo / bpm x rate and its position follows the transport's beats since
   its launch (phase lock). Returns FL_ERR_QUEUE_FULL. Control thread.
*/
FlStatus fl_engine_set_bpmlock(FlEngine* engine, bool on);

/** Read the published transport. Any thread. */
void fl_engine_transport(const FlEngine* engine, FlTransportState* state);

/**
   Take the next telemetry record into `event`. Returns false if there is
   none. Only the telemetry thread (one consumer) may call this.
*/
bool fl_engine_next_event(FlEngine* engine, FlEvent* event);

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
   Put `sample`, a key-lock render (its stretch_* fields set) of the region
   of the sample in `slot`, beside that slot, retiring the render that was
   there. The RT thread uses it while it matches the slot's sample, region
   and ratio. Only the loader thread may call this.
*/
void fl_engine_publish_stretch(FlEngine* engine,
                               uint32_t  slot,
                               FlSample* sample);

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
   Hand the engine this period's MIDI notes, before fl_engine_process(): a
   note-on launches its slot at its own frame (or on the next grid line when
   quantized), a note-off releases a held slot. `ignored` counts the notes
   the caller dropped (outside the slots, other channels). Only the RT
   thread.
*/
FL_REALTIME void fl_engine_queue_notes(FlEngine*     engine,
                                       const FlNote* notes,
                                       uint32_t      count,
                                       uint32_t      ignored);

/**
   Queue a release of `slot`: if its settings hold, its voices fade out
   (FL_STOP_FADE_MS); otherwise nothing. Returns FL_ERR_BAD_SLOT or
   FL_ERR_QUEUE_FULL. Only the control thread.
*/
FlStatus fl_engine_release(FlEngine* engine, uint32_t slot);

/**
   Make the next periods follow `clock` (NULL: the internal clock). Only the
   RT thread, before fl_engine_process() of the period it describes.
*/
FL_REALTIME void fl_engine_follow(FlEngine*             engine,
                                  const FlOutsideClock* clock);

/**
   The transport the RT thread keeps, for a JACK timebase callback that runs
   in the RT thread after fl_engine_process(): the beat position at the
   first frame of the last period processed. Only the RT thread.
*/
FL_REALTIME const FlTransport* fl_engine_rt_transport(const FlEngine* engine,
                                                      double*         beats);

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
