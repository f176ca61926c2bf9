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
#include <flitzi/ring.h>
#include <flitzi/sample.h>

#include <stdatomic.h>
#include <stdint.h>

/* Control thread -> RT: one command of the command ring. */
typedef enum { COMMAND_PLAY = 1, COMMAND_STOP = 2 } CommandType;

typedef struct {
  uint32_t type;        /* CommandType */
  uint32_t slot;        /* slot number, or FL_ALL_SLOTS for a stop */
  float    velocity;    /* gain in [0, 1], validated by the producer */
  uint32_t reserved;    /* keeps start_usecs aligned without padding bytes */
  int64_t  start_usecs; /* FL_PLAY_NOW, or the time of the first frame */
} Command;

/* Loader -> RT: a sample that left its slot. */
typedef struct {
  FlSample* sample;
  uint32_t  slot;
  uint32_t  fade_slot; /* 1 when the slot was emptied: fade its voices */
} Retirement;

/* RT -> reaper: the event ring carries FlSample pointers to free. */

typedef enum {
  VOICE_FREE = 0,
  VOICE_PENDING, /* waiting for its start time */
  VOICE_PLAYING,
  VOICE_FADING, /* stopped or stolen; silent and ended when the fade ends */
  VOICE_ENDED,  /* done, but its sample could not be handed back yet */
} VoiceState;

typedef struct {
  FlSample* sample;      /* referenced: counted in sample->rt_voices */
  int64_t   start_usecs; /* VOICE_PENDING: when its first frame sounds */
  uint32_t  position;    /* next frame of the sample to play */
  uint32_t  slot;
  float     gain;      /* current gain: velocity, lowered by a fade */
  float     fade_step; /* gain lost per frame while fading */
  uint32_t  fade_left; /* frames of fade still to play */
  uint32_t  state;     /* VoiceState */
} Voice;

struct FlEngineImpl {
  /* Set at construction, then read-only (but for sample_rate, see
     fl_engine_set_sample_rate()). */
  FlBank*    bank;
  FlRing*    commands;    /* control thread -> RT: Command */
  FlRing*    retirements; /* loader -> RT: Retirement */
  FlRing*    events;      /* RT -> reaper: FlSample* to free */
  FlWakeFunc wake;
  void*      wake_data;
  uint32_t   output_count;
  uint32_t   max_voices;  /* voices that may sound, not counting fades */
  uint32_t   voice_count; /* entries in voices: 2 * max_voices */
  uint32_t   steal_fade_frames;
  uint32_t   stop_fade_frames;

  /* RT thread only. */
  Voice*    voices;
  uint32_t* order;       /* indices of used voices, oldest first */
  uint32_t  order_count; /* used voices */
  uint32_t* free_list;   /* indices of free voices, a stack */
  uint32_t  free_count;
  uint32_t  sounding; /* pending or playing voices (not fading or ended) */

  /* Counters: written by one thread each, read by any (relaxed: they are
     statistics, and no other data is published through them). */
  atomic_uint   voices_active;    /* RT */
  atomic_ullong plays;            /* RT */
  atomic_ullong unplayed;         /* RT */
  atomic_ullong late_plays;       /* RT */
  atomic_ullong stolen_voices;    /* RT */
  atomic_ullong retired_samples;  /* RT */
  atomic_ullong dropped_commands; /* control thread */
};

#endif /* FLITZI_PROCESS_H */
