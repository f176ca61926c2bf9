/*
  Code and data used in the realtime process thread.

  Everything the JACK process callback touches is declared here and defined in
  process.c and mixer.c: the engine's state, the messages that cross into and
  out of the RT thread, and the voice pool. engine.c holds the non-RT half
  (construction, the producers' ends of the rings, teardown).
*/
#ifndef FLITZI_PROCESS_H
#define FLITZI_PROCESS_H

#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/interp.h>
#include <flitzi/isolator.h>
#include <flitzi/ring.h>
#include <flitzi/sample.h>

#include <stdatomic.h>
#include <stdint.h>

/* Control thread -> RT: one command of the command ring. Settings travel in
   the same ring as plays, so a /slot/set followed by a /play is applied in
   that order. */
typedef enum {
  COMMAND_PLAY = 1,
  COMMAND_STOP,
  COMMAND_SETTINGS,
  COMMAND_PAUSE,
  COMMAND_RESUME,
  COMMAND_SEEK,
  COMMAND_MASTER_GAIN,
  COMMAND_METERS,
  COMMAND_TEMPO,
  COMMAND_SIGNATURE,
  COMMAND_QUANTIZE,
  COMMAND_DOWNBEAT,
  COMMAND_SPEED,
  COMMAND_BPMLOCK,
  COMMAND_RELEASE,
} CommandType;

typedef struct {
  uint32_t type; /* CommandType */
  uint32_t slot; /* slot number, or FL_ALL_SLOTS for a stop */
  union {
    struct {
      int64_t  start_usecs; /* FL_PLAY_NOW, or the time of the first frame */
      float    velocity;    /* gain in [0, 1], validated by the producer */
      uint32_t exclusive;   /* 1: every other voice fades at its start */
      uint32_t note;        /* 1: a MIDI note (RT), quantized at its frame */

    } play;
    double   bpm;
    uint32_t beats_per_bar;
    double   grid;           /* 0: off */
    int64_t  downbeat_usecs; /* FL_PLAY_NOW: the next period's first frame */
    double   speed;
    uint32_t bpmlock;
    FlSlotParams settings;
    double       seek_seconds;
    float        master_gain; /* linear */
    uint32_t     meter_hz;    /* 0: off */
  } as;
} Command;

/* Loader -> RT: a sample that left its slot. */
typedef struct {
  FlSample* sample;
  uint32_t  slot;
  uint32_t  fade_slot; /* 1 when the slot was emptied: fade its voices */
} Retirement;

/* RT -> reaper: the event ring carries FlSample pointers to free.
   RT -> telemetry: the telemetry ring carries FlEvent records. */

typedef enum {
  VOICE_FREE = 0,
  VOICE_PENDING, /* waiting for its start time */
  VOICE_PLAYING, /* sounding, maybe ramping (fade-in, pause fade) */
  VOICE_PAUSED,  /* silent, keeps its position until resumed */
  VOICE_FADING,  /* stopped or stolen; ends when its ramp ends */
  VOICE_ENDED,   /* done, but its sample could not be handed back yet */
} VoiceState;

/* What happens when a voice's gain ramp reaches its target. */
typedef enum {
  RAMP_END_HOLD = 0, /* keep playing at the target */
  RAMP_END_FREE,     /* the voice ends (a fade-out) */
  RAMP_END_PAUSE,    /* the voice pauses */
} RampEnd;

/* How a loop's seam is crossfaded (see refresh_region() in process.c). */
typedef enum {
  SEAM_NONE = 0,
  SEAM_PRE,  /* the pass's last frames fade into the audio before start */
  SEAM_POST, /* the next pass's first frames fade out of the audio after end */
  SEAM_DIP,  /* no audio outside the region: fade out, then fade in */
} SeamKind;

#define NO_VOICE UINT32_MAX

typedef struct {
  FlSample* sample;      /* referenced: counted in sample->rt_voices */
  int64_t   start_usecs; /* VOICE_PENDING: when its first frame sounds */
  uint32_t  position;    /* next frame of the sample to play */
  double    fraction;    /* varispeed: how far past `position`, 0..1 */
  double    step;        /* source frames per output frame, 1 for v1 */
  double    launch_beat; /* the transport's beat at its first frame */
  bool      locked;      /* its position follows the beats (BPM lock) */
  uint32_t  slot;
  uint32_t  state;    /* VoiceState */
  float     velocity; /* the gain it plays at when no ramp runs */
  float     gain;     /* the gain of the last frame rendered */

  /* The gain ramp: ramp_left frames of ramp_step each, starting at frame
     ramp_at of the block being rendered (0 once it runs). */
  float    ramp_step;
  float    ramp_target;
  uint32_t ramp_left;
  uint32_t ramp_at;
  uint32_t ramp_end; /* RampEnd */

  uint32_t start_offset; /* first frame of this block it sounds in */
  uint32_t next_in_slot; /* this block's list of the slot's voices */
  bool     exclusive;    /* PENDING: chokes every other voice at its start */
  bool     on_grid;      /* PENDING: starts on the grid line start_beat */
  int64_t  line_from;    /* on_grid: its line is the first at or after this
                            engine frame (a MIDI note's), or 0 */
  bool   wants_line;     /* PENDING: on_grid, its line not chosen yet */
  double start_beat;     /* on_grid: the line, in beats */
  double grid_beats;     /* on_grid: the grid it was launched on */
  bool   sounded;        /* it has started: counted in its slot's `live` */
  bool   wrapped;        /* a loop voice past its first pass */

  /* The region in frames of `sample`, from its slot's settings, computed
     again whenever the settings' serial changes. */
  uint32_t region_serial;
  uint32_t region_start;
  uint32_t region_end;
  uint32_t seam_frames;
  uint8_t  seam; /* SeamKind */
  bool     looping;
} Voice;

/* What the RT thread keeps per slot. */
typedef struct {
  FlSlotParams params;
  uint32_t     serial; /* counts settings changes; voices compare theirs */

  /* The slot stage: the gains it applies now, ramping to params' gains. */
  float    gain_left;
  float    gain_right;
  float    step_left;
  float    step_right;
  uint32_t ramp_left;

  uint32_t live;           /* voices that started and have not ended */
  double   stretch_wanted; /* the ratio last asked a render for, 0: none */
  uint64_t stretch_source; /* ...of the sample with this serial... */
  uint32_t stretch_start;  /* ...and this region, in its frames */
  uint32_t stretch_end;

  /* The DJ isolator: band gains and the wet share now, ramping to the
     settings' over eq_ramp_left frames; engaged while wet > 0 or ramping. */
  float           eq_gain[3];
  float           eq_step[3];
  float           eq_wet;
  float           eq_wet_step;
  uint32_t        eq_ramp_left;
  FlIsolatorState eq_state[FL_MAX_CHANNELS];

  /* This block's voices (through Voice.next_in_slot), oldest first. */
  uint32_t first_voice;
  uint32_t last_voice;
  uint32_t block_voices; /* in that list */

  /* Meters: since the last snapshot. */
  float  peak;
  double position; /* seconds, of the newest voice rendered */
  bool   metered;  /* listed in engine->metered */
} SlotState;

struct FlEngineImpl {
  /* Set at construction, then read-only (but for the frame counts derived
     from the sample rate, see fl_engine_set_sample_rate()). */
  FlBank*    bank;
  FlRing*    commands;    /* control thread -> RT: Command */
  FlRing*    retirements; /* loader -> RT: Retirement */
  FlRing*    events;      /* RT -> reaper: FlSample* to free */
  FlRing*    telemetry;   /* RT -> telemetry thread: FlEvent */
  FlBank*    stretches;   /* key-lock renders beside the slots (loader) */
  FlWakeFunc wake;
  void*      wake_data;
  uint32_t   output_count; /* ports */
  uint32_t   channels;     /* of a bus: 1 or 2 */
  uint32_t   bus_count;
  uint32_t   slot_count;
  uint32_t   max_voices;  /* voices that may sound, not counting fades */
  uint32_t   voice_count; /* entries in voices: 2 * max_voices */
  uint32_t   sample_rate;
  uint32_t   steal_fade_frames;
  uint32_t   stop_fade_frames;
  uint32_t   pause_fade_frames;
  uint32_t   gain_ramp_frames;

  /* RT thread only. */
  Voice*           voices;
  uint32_t*        order;       /* indices of used voices, oldest first */
  uint32_t         order_count; /* used voices */
  uint32_t*        free_list;   /* indices of free voices, a stack */
  uint32_t         free_count;
  uint32_t         sounding; /* pending, playing or paused voices */
  uint32_t*        starting; /* this block's starting voices, by start offset */
  SlotState*       slots;
  uint32_t*        active_slots; /* this block's slots with voices in a list */
  uint32_t         active_count;
  uint32_t*        metered; /* slots that sounded since the last snapshot */
  uint32_t         metered_count;
  float*           scratch; /* a slot's voices: FL_MAX_CHANNELS blocks */
  float*           seam;   /* a crossfaded or interpolated stretch of a voice */
  float*           window; /* source frames gathered for one kernel */
  FlInterp*        interp; /* varispeed kernels, read-only */
  FlIsolatorDesign isolator; /* crossovers for the sample rate */
  uint32_t         eq_ramp_frames;
  double           speed;   /* /speed */
  bool             bpmlock; /* /bpmlock */
  float            master_gain;
  float            master_step;
  float            master_target;
  uint32_t         master_ramp_left;
  uint32_t         meter_interval; /* frames between snapshots, 0: off */
  int64_t          meter_due;      /* frames until the next snapshot */
  float            master_peak[FL_MAX_CHANNELS]; /* of bus 0 */
  bool             wrote_telemetry; /* this period: wake the telemetry thread */

  /* The musical clock. frame_now is the engine's frame count at the first
     frame of the period (JACK's frame time, unwrapped). */
  FlTransport transport;
  int64_t     frame_now;
  int64_t     block_frame; /* the engine frame of the block's first frame */
  bool        rolling;
  uint32_t    clock_source;     /* FlClockSource */
  double      quantize_grid;    /* global: 0 off */
  double      period_beats;     /* beat position at frame_now */
  int64_t     pending_downbeat; /* FL_PLAY_NOW, or its time: none if 0 */
  bool        downbeat_queued;

  /* The transport published for /transport: a sequence lock (odd while the
     RT thread writes). */
  atomic_uint   transport_seq;
  atomic_ullong published_bpm;   /* bits of a double */
  atomic_ullong published_beats; /* bits of a double */
  atomic_uint   published_bar;
  atomic_uint   published_rolling;
  atomic_uint   published_source;

  /* Counters: written by one thread each, read by any (relaxed: they are
     statistics, and no other data is published through them). */
  atomic_uint   voices_active;                          /* RT */
  atomic_ullong plays;                                  /* RT */
  atomic_ullong unplayed;                               /* RT */
  atomic_ullong late_plays;                             /* RT */
  atomic_ullong stolen_voices;                          /* RT */
  atomic_ullong retired_samples;                        /* RT */
  atomic_ullong dropped_events;                         /* RT */
  atomic_ullong stretch_misses;                         /* RT */
  atomic_ullong notes;                                  /* RT */
  atomic_ullong ignored_notes;                          /* RT */
  FlNote        pending_notes[FL_MAX_NOTES_PER_PERIOD]; /* RT */
  uint32_t      pending_note_count;                     /* RT */
  atomic_ullong dropped_commands;                       /* control thread */
};

#endif /* FLITZI_PROCESS_H */
