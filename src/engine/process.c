/*
  Code used in the realtime process thread: applying commands and
  retirements, the voice pool, the slot stage, and rendering a period.

  A period is rendered in blocks of at most FL_BLOCK_FRAMES. Each block:
  1. voices whose start falls in the block start, in the order of their
     start frames, and apply what a start does to other voices (a slot's
     voice limit, choke groups, /play/exclusive) at that very frame;
  2. voices of slots whose stage is neutral (unity gain, no ramp, meters off)
     are mixed straight into the outputs in age order, exactly as v1 did;
     the others are listed per slot, and each such slot's voices are summed
     into a scratch block that the slot stage (gain ramp, balance, peak)
     adds to the outputs. The cost follows the sounding voices: a silent
     slot costs nothing;
  3. the master gain, meters and telemetry records.

  Nothing here allocates, frees, locks, logs, does I/O or waits; the
  rt-symbols test checks the object file for calls that would.
*/
#include "process.h"

#include <flitzi/mixer.h>

#include <math.h>
#include <string.h>

static FL_REALTIME void    run_isolator(FlEngine*     engine,
                                        SlotState*    state,
                                        float* const* scratch,
                                        uint32_t      block_frames);
static FL_REALTIME int64_t offset_of_time(const FlPeriod* period,
                                          int64_t         usecs);
static FL_REALTIME double  target_step(const FlEngine*  engine,
                                       const SlotState* state,
                                       bool*            locked);

/* Hand a sample back to the reaper. Returns false if the event ring is full;
   the caller keeps the reference and tries again next period. */
static FL_REALTIME bool
hand_back(FlEngine* engine, FlSample* sample, uint32_t* handed_back)
{
  if (!fl_ring_write(engine->events, &sample)) {
    return false;
  }
  atomic_fetch_add_explicit(&engine->retired_samples, 1U, memory_order_relaxed);
  ++*handed_back;
  return true;
}

/* Write a telemetry record; a full ring loses it, counted. */
static FL_REALTIME void
emit(FlEngine* engine, const FlEvent* event)
{
  engine->wrote_telemetry = true;
  if (!fl_ring_write(engine->telemetry, event)) {
    atomic_fetch_add_explicit(
      &engine->dropped_events, 1U, memory_order_relaxed);
  }
}

static FL_REALTIME void
emit_slot_event(FlEngine* engine, uint32_t type, uint32_t slot)
{
  const FlEvent event = { type, slot, 0.0f, 0.0f, 0.0, 0U, 0U };
  emit(engine, &event);
}

/* Drop a voice's reference to its sample. Returns false if the sample is
   retired, this was its last voice, and there is no room to hand it back. */
static FL_REALTIME bool
release_sample(FlEngine* engine, Voice* voice, uint32_t* handed_back)
{
  FlSample* const sample = voice->sample;
  if (sample->rt_voices == 1U && sample->rt_retired) {
    /* Once handed back the reaper may free it at once: no more writes. */
    if (!hand_back(engine, sample, handed_back)) {
      return false;
    }
  } else {
    --sample->rt_voices;
  }
  voice->sample = NULL;
  return true;
}

static FL_REALTIME bool
is_sounding(const Voice* voice)
{
  return voice->state == VOICE_PENDING || voice->state == VOICE_PLAYING ||
         voice->state == VOICE_PAUSED;
}

/* Ends a voice: releases its sample, or marks it ENDED to try next period.
   A voice that is already free (a pending voice ended earlier in this
   period, still listed in `order`) is left alone. */
static FL_REALTIME void
end_voice(FlEngine* engine, Voice* voice, uint32_t* handed_back)
{
  if (voice->state == VOICE_FREE) {
    return;
  }
  if (is_sounding(voice)) {
    --engine->sounding;
  }
  if (voice->sounded) {
    voice->sounded         = false;
    SlotState* const state = &engine->slots[voice->slot];
    if (--state->live == 0U) {
      emit_slot_event(engine, FL_EVENT_STOPPED, voice->slot);
    }
  }
  voice->state =
    release_sample(engine, voice, handed_back) ? VOICE_FREE : VOICE_ENDED;
}

/* Ramp a voice's gain to `target` over `frames`, starting at frame `at` of
   the block about to be rendered. */
static FL_REALTIME void
start_ramp(Voice*   voice,
           float    target,
           uint32_t frames,
           uint32_t end,
           uint32_t at)
{
  voice->ramp_target = target;
  voice->ramp_left   = frames;
  voice->ramp_step   = (target - voice->gain) / (float)frames;
  voice->ramp_end    = end;
  voice->ramp_at     = at;
}

/* Fade a voice out from frame `at` of this block to silence over
   `fade_frames`, then end it. A pending voice has made no sound yet, so it
   just ends; a paused one is silent, so it ends too. */
static FL_REALTIME void
fade_voice(FlEngine* engine,
           Voice*    voice,
           uint32_t  fade_frames,
           uint32_t  at,
           uint32_t* handed_back)
{
  if (voice->state == VOICE_PENDING || voice->state == VOICE_PAUSED) {
    end_voice(engine, voice, handed_back);
  } else if (voice->state == VOICE_PLAYING) {
    --engine->sounding;
    voice->state = VOICE_FADING;
    start_ramp(voice, 0.0f, fade_frames, RAMP_END_FREE, at);
  } else if (voice->state == VOICE_FADING && voice->ramp_left > fade_frames) {
    start_ramp(voice, 0.0f, fade_frames, RAMP_END_FREE, at);
  }
}

static FL_REALTIME void
fade_slot(FlEngine* engine, uint32_t slot, uint32_t* handed_back)
{
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (slot == FL_ALL_SLOTS || voice->slot == slot) {
      fade_voice(engine, voice, engine->stop_fade_frames, 0U, handed_back);
    }
  }
}

/* Take a voice entry off the free list and put it at the end of the age
   order. Returns NULL if none is free. */
static FL_REALTIME Voice*
take_free_voice(FlEngine* engine)
{
  if (engine->free_count == 0U) {
    return NULL;
  }
  const uint32_t index = engine->free_list[--engine->free_count];
  engine->order[engine->order_count++] = index;
  return &engine->voices[index];
}

/* Find room for a new voice, stealing the oldest sounding one if the
   polyphony is used up. Returns NULL only if every entry is an ended voice
   waiting to hand its sample back. */
static FL_REALTIME Voice*
allocate_voice(FlEngine* engine, uint32_t* handed_back)
{
  if (engine->sounding >= engine->max_voices) {
    /* order is oldest first, so the first sounding voice is the oldest. */
    for (uint32_t i = 0U; i < engine->order_count; ++i) {
      Voice* const voice = &engine->voices[engine->order[i]];
      if (is_sounding(voice)) {
        fade_voice(engine, voice, engine->steal_fade_frames, 0U, handed_back);
        atomic_fetch_add_explicit(
          &engine->stolen_voices, 1U, memory_order_relaxed);
        break;
      }
    }
  }

  if (engine->free_count == 0U) {
    /* Every entry is in use: max_voices sounding and as many fade tails. Cut
       the fade that is closest to silence; its remaining step is the
       smallest discontinuity available. */
    Voice* quietest = NULL;
    for (uint32_t i = 0U; i < engine->order_count; ++i) {
      Voice* const voice = &engine->voices[engine->order[i]];
      if (voice->state == VOICE_FREE) {
        /* A pending voice ended in this period: its entry is free already
           and still listed in order. Reuse it before cutting any fade. */
        quietest = voice;
        break;
      }
      if (voice->state == VOICE_FADING &&
          (!quietest || voice->gain < quietest->gain)) {
        quietest = voice;
      }
    }
    if (!quietest) {
      return NULL;
    }
    end_voice(engine, quietest, handed_back);
    if (quietest->state != VOICE_FREE) {
      return NULL;
    }
    /* Its entry is reused in place: keep it in order, move it to the end. */
    const uint32_t index = (uint32_t)(quietest - engine->voices);
    uint32_t       out   = 0U;
    for (uint32_t i = 0U; i < engine->order_count; ++i) {
      if (engine->order[i] != index) {
        engine->order[out++] = engine->order[i];
      }
    }
    engine->order[out] = index;
    return quietest;
  }

  return take_free_voice(engine);
}

/* The region of a voice's sample that its slot's settings ask for, in
   frames, and how its loop seam is crossfaded:
   - SEAM_PRE when there are seam_frames of audio before the region's start:
     the last seam_frames of every pass fade into that audio, which then
     continues into the region's first frame, so the seam has no jump.
   - SEAM_POST when there is audio after the end instead: the first
     seam_frames of every pass after the first fade out of it.
   - SEAM_DIP when the region is the whole sample: its last frames fade out
     and the next pass's first frames fade in (a short dip, no jump).
   Each way a pass stays region_end - region_start frames long. */
static FL_REALTIME void
refresh_region(const FlEngine* engine, Voice* voice)
{
  const SlotState* const state  = &engine->slots[voice->slot];
  const FlSample* const  sample = voice->sample;
  const double           rate   = (double)sample->sample_rate;
  const uint32_t         length = sample->frame_count;

  double start = llround(state->params.start_seconds * rate);
  double end   = state->params.end_seconds > 0.0
                   ? llround(state->params.end_seconds * rate)
                   : (double)length;
  /* A region that no longer fits the sample (a shorter file was loaded)
     is clamped to it. */
  end   = end > (double)length ? (double)length : end;
  start = start >= end ? 0.0 : start;

  voice->region_serial = state->serial;
  voice->region_start  = (uint32_t)start;
  voice->region_end    = (uint32_t)end;
  voice->looping       = state->params.mode == FL_MODE_LOOP;
  voice->seam          = SEAM_NONE;
  voice->seam_frames   = 0U;

  const uint32_t span = voice->region_end - voice->region_start;
  uint32_t       want =
    (uint32_t)llround((double)state->params.xfade_ms * rate / 1000.0);
  if (!voice->looping || want == 0U) {
    return;
  }
  want                = want > span ? span : want;
  const uint32_t pre  = voice->region_start;
  const uint32_t post = length - voice->region_end;
  if (pre >= want || (pre >= post && pre > 0U)) {
    voice->seam        = SEAM_PRE;
    voice->seam_frames = pre < want ? pre : want;
  } else if (post > 0U) {
    voice->seam        = SEAM_POST;
    voice->seam_frames = post < want ? post : want;
  } else {
    voice->seam        = SEAM_DIP;
    voice->seam_frames = want > span / 2U ? span / 2U : want;
  }
}

/* Start a voice of `slot` at `position` with a fresh region. */
static FL_REALTIME void
init_voice(FlEngine* engine,
           Voice*    voice,
           FlSample* sample,
           uint32_t  slot,
           float     velocity)
{
  ++sample->rt_voices;
  voice->sample       = sample;
  voice->slot         = slot;
  voice->velocity     = velocity;
  voice->gain         = velocity;
  voice->ramp_left    = 0U;
  voice->ramp_at      = 0U;
  voice->ramp_step    = 0.0f;
  voice->ramp_target  = velocity;
  voice->ramp_end     = RAMP_END_HOLD;
  voice->start_offset = 0U;
  voice->exclusive    = false;
  voice->on_grid      = false;
  voice->line_from    = 0;
  voice->wants_line   = false;
  voice->fraction     = 0.0;
  voice->step         = 1.0;
  voice->locked       = false;
  voice->launch_beat  = 0.0;
  voice->sounded      = false;
  voice->wrapped      = false;
  refresh_region(engine, voice);
  voice->position = voice->region_start;
}

/* Returns the new voice, or NULL if it could not be played. */
static FL_REALTIME Voice*
apply_play(FlEngine*       engine,
           const Command*  command,
           const FlPeriod* period,
           uint32_t*       handed_back)
{
  atomic_fetch_add_explicit(&engine->plays, 1U, memory_order_relaxed);

  FlSample* const sample = fl_bank_get(engine->bank, command->slot);
  Voice* const    voice =
    sample && sample->frame_count ? allocate_voice(engine, handed_back) : NULL;
  if (!voice) {
    /* Emptied after the control thread checked it, or every voice entry
       waits to hand back its sample: rare, and counted. */
    atomic_fetch_add_explicit(&engine->unplayed, 1U, memory_order_relaxed);
    return NULL;
  }

  init_voice(engine, voice, sample, command->slot, command->as.play.velocity);
  voice->start_usecs = command->as.play.start_usecs;
  voice->exclusive   = command->as.play.exclusive != 0U;
  voice->state       = VOICE_PENDING;
  ++engine->sounding;

  /* Quantized: on the next line of the slot's grid (or the global one),
     chosen now if the transport rolls, else as soon as it does. */
  const FlSlotParams* const params = &engine->slots[command->slot].params;
  const double              grid   = params->quantize == FL_QUANTIZE_OFF ? 0.0
                                     : params->quantize == FL_QUANTIZE_GRID
                                       ? params->quantize_grid
                                       : engine->quantize_grid;
  /* A timetag that has passed is no future frame to start on either; a
     MIDI note's frame is quantized like an immediate play. */
  const bool future = command->as.play.start_usecs != FL_PLAY_NOW &&
                      !command->as.play.note &&
                      offset_of_time(period, command->as.play.start_usecs) >= 0;
  if (!future && grid != 0.0) {
    voice->on_grid    = true;
    voice->wants_line = true;
    voice->grid_beats =
      fl_transport_grid_beats(grid, engine->transport.beats_per_bar);
  }
  return voice;
}

/* Choose the grid line a quantized voice starts on: the first at or after
   `from`, as a beat position, so that a tempo change before it comes moves
   it with the beats. */
static FL_REALTIME void
choose_line(const FlEngine* engine, Voice* voice, int64_t from)
{
  const int64_t frame =
    fl_transport_next_line(&engine->transport, from, voice->grid_beats);
  const double line =
    fl_transport_beats_at(&engine->transport, frame) / voice->grid_beats;
  voice->start_beat = floor(line + 0.5) * voice->grid_beats;
  voice->wants_line = false;
}

/* The isolator follows the settings' band gains: engaged (wet 1) unless all
   three are 0 dB. A sounding slot ramps there over FL_EQ_RAMP_MS, the dry
   and filtered signals crossfading on the way in and out; a silent one
   jumps. Coming in from the bypass, the bands start at their targets (they
   were not heard). */
static FL_REALTIME void
set_isolator(const FlEngine* engine, SlotState* state)
{
  const float targets[3] = { state->params.eq_low,
                             state->params.eq_mid,
                             state->params.eq_high };
  const float wet =
    targets[0] != 1.0f || targets[1] != 1.0f || targets[2] != 1.0f ? 1.0f
                                                                   : 0.0f;
  const bool bypassed = state->eq_wet == 0.0f && state->eq_ramp_left == 0U;
  if (state->live == 0U || (bypassed && wet == 0.0f)) {
    for (int b = 0; b < 3; ++b) {
      state->eq_gain[b] = targets[b];
    }
    state->eq_wet       = wet;
    state->eq_ramp_left = 0U;
    return;
  }
  const float frames = (float)engine->eq_ramp_frames;
  for (int b = 0; b < 3; ++b) {
    state->eq_gain[b] = bypassed ? targets[b] : state->eq_gain[b];
    state->eq_step[b] = (targets[b] - state->eq_gain[b]) / frames;
  }
  state->eq_wet_step  = (wet - state->eq_wet) / frames;
  state->eq_ramp_left = engine->eq_ramp_frames;
}

static FL_REALTIME void
apply_settings(FlEngine* engine, uint32_t slot, const FlSlotParams* params)
{
  SlotState* const state = &engine->slots[slot];
  state->params          = *params;
  ++state->serial;

  /* A slot that sounds ramps to its new gains; a silent one jumps. */
  if (state->live > 0U) {
    const float frames = (float)engine->gain_ramp_frames;
    state->ramp_left   = engine->gain_ramp_frames;
    state->step_left   = (params->gain_left - state->gain_left) / frames;
    state->step_right  = (params->gain_right - state->gain_right) / frames;
  } else {
    state->gain_left  = params->gain_left;
    state->gain_right = params->gain_right;
    state->ramp_left  = 0U;
  }
  set_isolator(engine, state);
}

static FL_REALTIME void
apply_pause(FlEngine* engine, uint32_t slot, bool pause)
{
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (voice->slot != slot) {
      continue;
    }
    voice->locked = false; /* a resumed voice locks from where it is */
    if (pause && voice->state == VOICE_PLAYING) {
      start_ramp(voice, 0.0f, engine->pause_fade_frames, RAMP_END_PAUSE, 0U);
    } else if (!pause && voice->state == VOICE_PAUSED) {
      voice->state = VOICE_PLAYING;
      voice->gain  = 0.0f;
      start_ramp(
        voice, voice->velocity, engine->pause_fade_frames, RAMP_END_HOLD, 0U);
    } else if (!pause && voice->state == VOICE_PLAYING &&
               voice->ramp_end == RAMP_END_PAUSE) {
      start_ramp(
        voice, voice->velocity, engine->pause_fade_frames, RAMP_END_HOLD, 0U);
    }
  }
}

/* Move the slot's voices: a playing voice crossfades into a copy of itself
   at the new position (the copy takes a free entry, the old one fades out
   as a tail); a paused voice just moves. */
static FL_REALTIME void
apply_seek(FlEngine* engine,
           uint32_t  slot,
           double    seconds,
           uint32_t* handed_back)
{
  const uint32_t count = engine->order_count;
  for (uint32_t i = 0U; i < count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (voice->slot != slot ||
        (voice->state != VOICE_PLAYING && voice->state != VOICE_PAUSED)) {
      continue;
    }
    const double   frames = llround(seconds * voice->sample->sample_rate);
    const uint32_t last   = voice->sample->frame_count - 1U;
    const uint32_t target = frames > (double)last ? last : (uint32_t)frames;

    /* A voice still fading out into a pause is audible: it crossfades too,
       into a copy that is paused at the new place. */
    const bool pausing =
      voice->state == VOICE_PLAYING && voice->ramp_end == RAMP_END_PAUSE;
    Voice* const copy =
      voice->state == VOICE_PLAYING ? take_free_voice(engine) : NULL;
    if (!copy) {
      voice->position = target;
      voice->fraction = 0.0;
      voice->wrapped  = false;
      voice->locked   = false; /* locks again from the new place */
      continue;
    }
    init_voice(engine, copy, voice->sample, slot, voice->velocity);
    copy->position = target;
    copy->step     = voice->step;
    copy->state    = VOICE_PLAYING;
    copy->sounded  = true;
    copy->gain     = 0.0f;
    if (pausing) {
      copy->state = VOICE_PAUSED;
    } else {
      start_ramp(
        copy, voice->velocity, engine->pause_fade_frames, RAMP_END_HOLD, 0U);
    }
    ++engine->slots[slot].live;
    ++engine->sounding;
    fade_voice(engine, voice, engine->pause_fade_frames, 0U, handed_back);
  }
}

static FL_REALTIME void
apply_master_gain(FlEngine* engine, float gain)
{
  engine->master_target    = gain;
  engine->master_ramp_left = engine->gain_ramp_frames;
  engine->master_step =
    (gain - engine->master_gain) / (float)engine->gain_ramp_frames;
}

static FL_REALTIME void
apply_meters(FlEngine* engine, uint32_t hz)
{
  engine->meter_interval = hz ? engine->sample_rate / hz : 0U;
  engine->meter_due      = (int64_t)engine->meter_interval;
  /* A fresh snapshot: no peak from before (or from while meters were off,
     when nothing clears them) is reported in it. */
  for (uint32_t i = 0U; i < engine->metered_count; ++i) {
    engine->slots[engine->metered[i]].peak    = 0.0f;
    engine->slots[engine->metered[i]].metered = false;
  }
  engine->metered_count  = 0U;
  engine->master_peak[0] = engine->master_peak[1] = 0.0f;
}

/* Return the offset in this period of the frame whose time is `usecs`:
   negative if it has passed, period->frame_count or more if it is in a later
   period. The mapping uses this period's own timing from JACK, so it follows
   any drift between the audio clock and the system clock. */
static FL_REALTIME int64_t
offset_of_time(const FlPeriod* period, int64_t usecs)
{
  const int64_t span = period->next_usecs - period->usecs;
  if (span <= 0) {
    return 0;
  }
  const double frames = (double)(usecs - period->usecs) *
                        (double)period->frame_count / (double)span;
  return (int64_t)floor(frames + 0.5);
}

static FL_REALTIME void
apply_retirements(FlEngine* engine, uint32_t* handed_back)
{
  Retirement retirement;

  /* Consume a retirement only when its hand-back is sure to fit, so no
     sample is ever held in a place the reaper cannot reach. */
  while (fl_ring_write_space(engine->events) > 0U &&
         fl_ring_read(engine->retirements, &retirement)) {
    FlSample* const sample = retirement.sample;
    sample->rt_retired     = true;
    /* Hand back an unused sample before fading the slot: the fade may end
       pending voices, which hand back their own samples (this one too, if
       they were all it had) and use the event space reserved above. After
       the hand-back the sample belongs to the reaper and is not touched. */
    if (sample->rt_voices == 0U) {
      hand_back(engine, sample, handed_back);
    }
    if (retirement.fade_slot) {
      fade_slot(engine, retirement.slot, handed_back);
    }
  }
}

static FL_REALTIME void
apply_commands(FlEngine* engine, const FlPeriod* period, uint32_t* handed_back)
{
  /* Take only what is queued now, so a fast producer cannot keep us here. */
  uint32_t count = fl_ring_read_space(engine->commands);
  Command  command;
  while (count-- > 0U && fl_ring_read(engine->commands, &command)) {
    switch (command.type) {
      case COMMAND_PLAY:
        apply_play(engine, &command, period, handed_back);
        if (command.as.play.start_usecs != FL_PLAY_NOW &&
            offset_of_time(period, command.as.play.start_usecs) < 0) {
          atomic_fetch_add_explicit(
            &engine->late_plays, 1U, memory_order_relaxed);
        }
        break;
      case COMMAND_STOP:
        fade_slot(engine, command.slot, handed_back);
        break;
      case COMMAND_SETTINGS:
        apply_settings(engine, command.slot, &command.as.settings);
        break;
      case COMMAND_PAUSE:
      case COMMAND_RESUME:
        apply_pause(engine, command.slot, command.type == COMMAND_PAUSE);
        break;
      case COMMAND_SEEK:
        apply_seek(engine, command.slot, command.as.seek_seconds, handed_back);
        break;
      case COMMAND_MASTER_GAIN:
        apply_master_gain(engine, command.as.master_gain);
        break;
      case COMMAND_METERS:
        apply_meters(engine, command.as.meter_hz);
        break;
      case COMMAND_TEMPO:
        fl_transport_set_tempo(
          &engine->transport, engine->frame_now, command.as.bpm);
        break;
      case COMMAND_SIGNATURE:
        engine->transport.beats_per_bar = command.as.beats_per_bar;
        break;
      case COMMAND_QUANTIZE:
        engine->quantize_grid = command.as.grid;
        break;
      case COMMAND_SPEED:
        engine->speed = command.as.speed;
        break;
      case COMMAND_RELEASE:
        if (engine->slots[command.slot].params.hold) {
          fade_slot(engine, command.slot, handed_back);
        }
        break;
      case COMMAND_BPMLOCK:
        engine->bpmlock = command.as.bpmlock != 0U;
        break;
      case COMMAND_DOWNBEAT:
        engine->pending_downbeat = command.as.downbeat_usecs;
        engine->downbeat_queued  = true;
        break;
      default:
        break;
    }
  }
}

/* What a voice starting at frame `at` of the block does to the others: the
   oldest voices of its slot beyond the slot's limit, the voices of other
   slots in its choke group, or with /play/exclusive every other voice, fade
   out from that frame. */
static FL_REALTIME void
choke_for(FlEngine*    engine,
          const Voice* started,
          uint32_t     at,
          uint32_t*    handed_back)
{
  const SlotState* const state   = &engine->slots[started->slot];
  const uint32_t         limit   = state->params.voice_limit;
  const uint32_t         group   = state->params.group;
  uint32_t               of_slot = 0U;

  if (limit > 0U) {
    for (uint32_t i = 0U; i < engine->order_count; ++i) {
      const Voice* const voice = &engine->voices[engine->order[i]];
      of_slot +=
        voice != started && voice->slot == started->slot &&
        (voice->state == VOICE_PLAYING || voice->state == VOICE_PAUSED);
    }
  }

  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (voice == started ||
        (voice->state != VOICE_PLAYING && voice->state != VOICE_PAUSED &&
         voice->state != VOICE_FADING)) {
      continue;
    }
    bool choke = started->exclusive;
    if (voice->slot == started->slot) {
      /* Oldest first: the first ones found are the ones over the limit. */
      if (limit > 0U && of_slot >= limit && voice->state != VOICE_FADING) {
        choke = true;
        --of_slot;
      }
    } else if (group > 0U && engine->slots[voice->slot].params.group == group) {
      choke = true;
    }
    if (choke) {
      fade_voice(engine, voice, engine->steal_fade_frames, at, handed_back);
    }
  }
}

/* True when the clock jumped since a quantized voice chose its line (a JACK
   master that relocated or changed its tempo): the line is behind this
   block, or more than one grid step ahead of it. A tempo change of our own
   keeps the beats continuous and never does this. */
static FL_REALTIME bool
line_jumped(const FlEngine* engine, const Voice* voice)
{
  const double ahead =
    voice->start_beat -
    fl_transport_beats_at(&engine->transport, engine->block_frame);
  return fl_transport_frame_of(&engine->transport, voice->start_beat) <
           engine->block_frame ||
         ahead > voice->grid_beats * (1.0 + 1e-9);
}

/* Step 1 of a block: start the voices whose first frame falls in it, in the
   order of those frames. A quantized voice whose clock jumped takes the next
   line of the grid as it is now. */
static FL_REALTIME void
start_voices(FlEngine* engine, const FlPeriod* block, uint32_t* handed_back)
{
  uint32_t starting = 0U;
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (voice->state != VOICE_PENDING) {
      continue;
    }
    uint32_t offset = 0U;
    if (voice->on_grid) {
      if (!voice->wants_line && line_jumped(engine, voice)) {
        voice->wants_line = true;
      }
      if (voice->wants_line && !engine->rolling) {
        continue; /* waits for the transport to roll */
      }
      if (voice->wants_line) {
        choose_line(engine,
                    voice,
                    voice->line_from > engine->block_frame
                      ? voice->line_from
                      : engine->block_frame);
      }
      const int64_t start =
        fl_transport_frame_of(&engine->transport, voice->start_beat) -
        engine->block_frame;
      if (start >= (int64_t)block->frame_count) {
        continue;
      }
      offset = start > 0 ? (uint32_t)start : 0U;
    } else if (voice->start_usecs != FL_PLAY_NOW) {
      const int64_t start = offset_of_time(block, voice->start_usecs);
      if (start >= (int64_t)block->frame_count) {
        continue; /* starts in a later block */
      }
      offset = start > 0 ? (uint32_t)start : 0U;
    }
    voice->start_offset = offset;
    /* Insertion by start frame; stable, so equal frames keep age order. */
    uint32_t at = starting++;
    while (at > 0U &&
           engine->voices[engine->starting[at - 1U]].start_offset > offset) {
      engine->starting[at] = engine->starting[at - 1U];
      --at;
    }
    engine->starting[at] = engine->order[i];
  }

  for (uint32_t i = 0U; i < starting; ++i) {
    Voice* const voice = &engine->voices[engine->starting[i]];
    if (voice->state != VOICE_PENDING) {
      continue; /* choked by one that started before it */
    }
    voice->state   = VOICE_PLAYING;
    voice->sounded = true;
    /* It starts at its rate; only later changes glide. */
    bool locked = false;
    voice->step = target_step(engine, &engine->slots[voice->slot], &locked);
    /* Phase lock counts beats from here: the grid line it was launched on,
       or the beat position of its first frame. */
    voice->launch_beat =
      voice->on_grid
        ? voice->start_beat
        : fl_transport_beats_at(&engine->transport,
                                engine->block_frame + voice->start_offset);
    if (engine->slots[voice->slot].live++ == 0U) {
      /* The slot was silent: its isolator starts from rest. */
      for (uint32_t c = 0U; c < FL_MAX_CHANNELS; ++c) {
        fl_isolator_reset(&engine->slots[voice->slot].eq_state[c]);
      }
      emit_slot_event(engine, FL_EVENT_STARTED, voice->slot);
    }
    choke_for(engine, voice, voice->start_offset, handed_back);
    voice->exclusive = false;
  }
}

/* The seam stretch of a loop voice that covers `position`: its first frame
   and length (0: none), the audio it fades to, and the fade's direction. */
typedef struct {
  uint32_t first;
  uint32_t frames;
} SeamZone;

static FL_REALTIME SeamZone
seam_zone(const Voice* voice)
{
  const SeamZone none = { 0U, 0U };
  if (voice->seam == SEAM_NONE || voice->position >= voice->region_end) {
    return none;
  }
  const uint32_t x = voice->seam_frames;
  if (voice->seam == SEAM_PRE ||
      (voice->seam == SEAM_DIP && voice->position >= voice->region_start + x)) {
    const SeamZone zone = { voice->region_end - x, x };
    return zone;
  }
  if (voice->wrapped && voice->position >= voice->region_start &&
      voice->position < voice->region_start + x) {
    const SeamZone zone = { voice->region_start, x };
    return zone;
  }
  return none;
}

/* Write `frames` frames of the seam crossfade into engine->seam, the
   voice's own channel layout, starting `k` frames into the zone. Frame k of
   a zone of x frames weighs the audio it fades to by (k + 1) / (x + 1). */
static FL_REALTIME const float*
render_seam(FlEngine* engine, const Voice* voice, uint32_t k, uint32_t frames)
{
  const FlSample* const sample   = voice->sample;
  const uint32_t        channels = sample->channels;
  const uint32_t        span     = voice->region_end - voice->region_start;
  const float           step     = 1.0f / (float)(voice->seam_frames + 1U);
  const float           weight   = (float)(k + 1U) * step;
  const float* const here = sample->frames + (size_t)voice->position * channels;
  const float*       from = NULL; /* what fades out */
  const float*       to   = NULL; /* what fades in */

  switch (voice->seam) {
    case SEAM_PRE:
      from = here;
      to   = here - (size_t)span * channels;
      break;
    case SEAM_POST:
      from = here + (size_t)span * channels;
      to   = here;
      break;
    default: /* SEAM_DIP */
      if (voice->position >= voice->region_end - voice->seam_frames &&
          voice->position >= voice->region_start + voice->seam_frames) {
        from = here;
      } else {
        to = here;
      }
      break;
  }
  fl_mix_crossfade(engine->seam, from, to, channels, frames, weight, step);
  return engine->seam;
}

/* Varispeed (OSC API v2 §3) */

/* Rates a voice may play at. */
#define MIN_RATE 0.25
#define MAX_RATE 4.0

/* The speed a voice of `state` should play at now, in source frames per
   output frame, and whether BPM lock holds it to the beats. */
static FL_REALTIME double
target_step(const FlEngine* engine, const SlotState* state, bool* locked)
{
  double rate = (double)state->params.rate;
  *locked     = false;
  if (engine->bpmlock && state->params.bpm > 0.0f) {
    rate *= engine->transport.bpm / (double)state->params.bpm;
    *locked = rate >= MIN_RATE && rate <= MAX_RATE;
  } else {
    rate *= engine->speed;
  }
  return rate < MIN_RATE ? MIN_RATE : rate > MAX_RATE ? MAX_RATE : rate;
}

/* Phase lock: the voice's place is a function of the beats since its
   launch, never a sum of steps, so it cannot drift from the grid. */
static FL_REALTIME void
place_locked(const FlEngine* engine, Voice* voice, int64_t frame)
{
  const SlotState* const state = &engine->slots[voice->slot];
  const double frames_per_beat = 60.0 * (double)voice->sample->sample_rate *
                                 (double)state->params.rate /
                                 (double)state->params.bpm;
  double played =
    (fl_transport_beats_at(&engine->transport, frame) - voice->launch_beat) *
    frames_per_beat;
  played            = played > 0.0 ? played : 0.0;
  const double span = (double)(voice->region_end - voice->region_start);
  if (voice->looping && played >= span) {
    voice->wrapped = true;
    played         = played - floor(played / span) * span;
  }
  const double place = (double)voice->region_start + played;
  voice->position    = (uint32_t)place;
  voice->fraction    = place - (double)voice->position;
}

/* Start BPM lock on a voice that plays already: its launch beat is where
   its place puts it. */
static FL_REALTIME void
lock_from_here(const FlEngine* engine, Voice* voice, int64_t frame)
{
  const SlotState* const state = &engine->slots[voice->slot];
  const double frames_per_beat = 60.0 * (double)voice->sample->sample_rate *
                                 (double)state->params.rate /
                                 (double)state->params.bpm;
  const double played =
    (double)voice->position + voice->fraction - (double)voice->region_start;
  voice->launch_beat =
    fl_transport_beats_at(&engine->transport, frame) - played / frames_per_beat;
  voice->locked = true;
}

/* The frame `index` of a voice's source as the kernel reads it: a loop
   repeats its region (a read past the end continues at the start, one
   before the start of a later pass comes from the end), with its SEAM_PRE
   crossfade; outside the sample it is silence. */
static FL_REALTIME void
source_frame(const Voice* voice, int64_t index, float* frame)
{
  const FlSample* const sample   = voice->sample;
  const uint32_t        channels = sample->channels;
  const int64_t         start    = voice->region_start;
  const int64_t         end      = voice->region_end;
  const int64_t         span     = end - start;
  if (voice->looping && span > 0) {
    while (index >= end) {
      index -= span;
    }
    while (voice->wrapped && index < start) {
      index += span;
    }
  }
  if (index < 0 || index >= (int64_t)sample->frame_count) {
    frame[0] = frame[channels - 1U] = 0.0f;
    return;
  }
  const float* const here = sample->frames + (size_t)index * channels;
  const int64_t      x    = voice->seam_frames;
  if (voice->looping && voice->seam == SEAM_PRE && index >= end - x &&
      index < end) {
    const float  w      = (float)(index - (end - x) + 1) / (float)(x + 1);
    const float* before = here - (size_t)span * channels;
    for (uint32_t c = 0U; c < channels; ++c) {
      frame[c] = here[c] + w * (before[c] - here[c]);
    }
    return;
  }
  for (uint32_t c = 0U; c < channels; ++c) {
    frame[c] = here[c];
  }
}

/* The source frames the kernel needs for the read position `first`: the
   sample itself where the window is plain audio, else gathered. */
static FL_REALTIME const float*
kernel_window(FlEngine*             engine,
              const Voice*          voice,
              const FlInterpKernel* kernel,
              int64_t               first)
{
  const FlSample* const sample = voice->sample;
  int64_t               low    = 0;
  int64_t               high   = sample->frame_count;
  if (voice->looping) {
    low  = voice->wrapped ? voice->region_start : 0;
    high = voice->region_end -
           (voice->seam == SEAM_PRE ? (int64_t)voice->seam_frames : 0);
  }
  if (first >= low && first + kernel->taps <= high) {
    return sample->frames + (size_t)first * sample->channels;
  }
  for (uint32_t j = 0U; j < kernel->taps; ++j) {
    source_frame(
      voice, first + (int64_t)j, engine->window + (size_t)j * sample->channels);
  }
  return engine->window;
}

/* The gain of a voice's next stretch, from frame `offset` of the block:
   constant until its ramp starts (ramp_at), then the ramp, whose first
   frame is one step along and whose last is at the target, so a fade-out
   ends in silence, never with a jump. Shortens `*count` to the segment and
   returns whether it ramps (not step != 0: a ramp from 0 to 0 ends too). */
static FL_REALTIME bool
gain_segment(const Voice* voice,
             uint32_t     offset,
             uint32_t*    count,
             float*       gain,
             float*       step)
{
  if (voice->ramp_left == 0U) {
    return false;
  }
  if (offset < voice->ramp_at) {
    *count =
      *count < voice->ramp_at - offset ? *count : voice->ramp_at - offset;
    return false;
  }
  *count = *count < voice->ramp_left ? *count : voice->ramp_left;
  *step  = voice->ramp_step;
  *gain  = voice->gain + *step;
  return true;
}

/* Account `count` frames of a voice's ramp. At its end the voice ends
   (returns RAMP_END_FREE, the voice is gone), pauses (RAMP_END_PAUSE) or
   plays on at the target (RAMP_END_HOLD). */
static FL_REALTIME uint32_t
advance_ramp(FlEngine* engine,
             Voice*    voice,
             float     step,
             uint32_t  count,
             uint32_t* handed_back)
{
  voice->gain += step * (float)count;
  voice->ramp_left -= count;
  if (voice->ramp_left > 0U) {
    return RAMP_END_HOLD;
  }
  voice->gain = voice->ramp_target;
  if (voice->ramp_end == RAMP_END_FREE) {
    end_voice(engine, voice, handed_back);
  } else if (voice->ramp_end == RAMP_END_PAUSE) {
    voice->state = VOICE_PAUSED;
  }
  return voice->ramp_end;
}

/* Mix a stretch of a voice's frames into `targets`: at unity exactly as
   v1, with a slot's constant gains in the same pass, and with `peak` (a
   metered slot's only voice) tracking the largest magnitude added. */
static FL_REALTIME void
mix_voice(const FlEngine* engine,
          const float*    source,
          uint32_t        channels,
          uint32_t        count,
          float           gain,
          float           step,
          float           left,
          float           right,
          float* const*   targets,
          uint32_t        offset,
          float*          peak)
{
  if (peak) {
    *peak = fl_mix_add_peak(source,
                            channels,
                            count,
                            gain,
                            step,
                            left,
                            right,
                            targets,
                            engine->channels,
                            offset,
                            *peak);
  } else if (left == 1.0f && right == 1.0f) {
    fl_mix_add(
      source, channels, count, gain, step, targets, engine->channels, offset);
  } else {
    fl_mix_add_balanced(source,
                        channels,
                        count,
                        gain,
                        step,
                        left,
                        right,
                        targets,
                        engine->channels,
                        offset);
  }
}

/* Interpolate up to `count` frames of `voice` into engine->seam, wrapping a
   loop and stopping at the end of a one-shot (`*ended`). The step glides by
   `glide` a frame. Returns the frames written. */
static FL_REALTIME uint32_t
interpolate(FlEngine*             engine,
            Voice*                voice,
            const FlInterpKernel* kernel,
            uint32_t              count,
            double                glide,
            bool*                 ended)
{
  const uint32_t channels = voice->sample->channels;
  uint32_t       rendered = 0U;
  *ended                  = false;
  while (rendered < count) {
    const uint32_t boundary = voice->position < voice->region_end
                                ? voice->region_end
                                : voice->sample->frame_count;
    if (voice->position >= boundary) {
      if (!voice->looping) {
        *ended = true;
        break;
      }
      voice->position = voice->region_start + (voice->position - boundary);
      voice->wrapped  = true;
      continue;
    }
    const float* const window = kernel_window(
      engine, voice, kernel, (int64_t)voice->position + kernel->first_tap);
    fl_interp_frame(kernel,
                    window,
                    channels,
                    voice->fraction,
                    engine->seam + (size_t)rendered * channels);
    const double next    = voice->fraction + voice->step;
    const double advance = floor(next);
    voice->position += (uint32_t)advance;
    voice->fraction = next - advance;
    voice->step += glide;
    ++rendered;
  }
  return rendered;
}

/* Key lock: the render of the voice's region that the loader made with
   Rubber Band, if there is one of this sample and region. `*exact` says
   whether it is at the ratio wanted now; one at an older ratio still keeps
   the pitch but for that small difference, and is counted as a miss. */
static FL_REALTIME const FlSample*
find_stretch(const FlEngine* engine,
             const Voice*    voice,
             double          ratio,
             bool*           exact)
{
  const FlSample* const stretch = fl_bank_get(engine->stretches, voice->slot);
  *exact                        = false;
  if (!stretch || stretch->stretch_source != voice->sample->serial ||
      stretch->stretch_start != voice->region_start ||
      stretch->stretch_end != voice->region_end || stretch->frame_count == 0U) {
    return NULL;
  }
  *exact = fabs(stretch->stretch_ratio / ratio - 1.0) < 1e-6;
  return stretch;
}

/* A key-locked voice reads its render: the same place in the loop, scaled
   to the render's length, at the same tempo. `view` is the voice as seen in
   the render's frames. */
static FL_REALTIME void
enter_stretch(const Voice* voice, const FlSample* stretch, Voice* view)
{
  const double span  = (double)(voice->region_end - voice->region_start);
  const double scale = (double)stretch->frame_count / span;
  double       place =
    ((double)voice->position + voice->fraction - (double)voice->region_start) *
    scale;
  place              = place > 0.0 ? place : 0.0;
  *view              = *voice;
  view->sample       = (FlSample*)stretch;
  view->region_start = 0U;
  view->region_end   = stretch->frame_count;
  view->seam         = SEAM_NONE;
  view->seam_frames  = 0U;
  view->position     = (uint32_t)place;
  view->fraction     = place - floor(place);
  view->step         = voice->step * scale;
}

static FL_REALTIME void
leave_stretch(Voice* voice, const Voice* view)
{
  const double span  = (double)(voice->region_end - voice->region_start);
  const double scale = span / (double)view->region_end;
  const double place = (double)voice->region_start +
                       ((double)view->position + view->fraction) * scale;
  voice->position = (uint32_t)place;
  voice->fraction = place - floor(place);
  voice->wrapped  = view->wrapped;
}

/* Render a voice at a rate other than 1 (or between frames) into
   `targets`: band-limited interpolation into engine->seam, then the gain
   and mix as any voice. The rate glides to its target over the block, so
   a change has no step; a BPM-locked voice is placed from the beats at the
   block's start; a key-locked one reads its Rubber Band render. */
static FL_REALTIME void
render_varispeed(FlEngine*     engine,
                 Voice*        voice,
                 uint32_t      block_frames,
                 float* const* targets,
                 float         left,
                 float         right,
                 float*        peak,
                 uint32_t*     handed_back)
{
  SlotState* const state    = &engine->slots[voice->slot];
  const uint32_t   channels = voice->sample->channels;
  uint32_t         offset   = voice->start_offset;
  voice->start_offset       = 0U;

  bool         lock   = false;
  const double target = target_step(engine, state, &lock);
  if (lock && voice->state == VOICE_PLAYING) {
    if (!voice->locked) {
      lock_from_here(engine, voice, engine->block_frame + offset);
    }
    place_locked(engine, voice, engine->block_frame + offset);
    voice->step = target;
  }
  voice->locked = lock && voice->locked;
  double glide  = voice->locked
                    ? 0.0
                    : (target - voice->step) / (double)(block_frames - offset);

  /* Key lock: read the render (asking for one at this ratio if it is not
     there yet), or play on as plain varispeed, counted. */
  const FlSample* stretch = NULL;
  if (state->params.keylock && target != 1.0) {
    bool exact = false;
    stretch    = find_stretch(engine, voice, target, &exact);
    if (!exact) {
      atomic_fetch_add_explicit(
        &engine->stretch_misses, 1U, memory_order_relaxed);
      /* Ask once for each ratio, sample and region: a new file on the pad
         or a new region needs a render as much as a new tempo does. Only
         a voice of the slot's current sample asks (the loader renders
         that one); a voice of a replaced sample plays on unrendered. */
      if ((state->stretch_wanted != target ||
           state->stretch_source != voice->sample->serial ||
           state->stretch_start != voice->region_start ||
           state->stretch_end != voice->region_end) &&
          fl_bank_get(engine->bank, voice->slot) == voice->sample) {
        state->stretch_wanted = target;
        state->stretch_source = voice->sample->serial;
        state->stretch_start  = voice->region_start;
        state->stretch_end    = voice->region_end;
        const FlEvent event   = { FL_EVENT_STRETCH_WANTED,
                                  voice->slot,
                                voice->looping ? 1.0f : 0.0f,
                                  0.0f,
                                  target,
                                  voice->region_start,
                                  voice->region_end };
        emit(engine, &event);
      }
    }
  }
  Voice        view   = *voice;
  Voice* const reader = stretch ? &view : voice;
  if (stretch) {
    enter_stretch(voice, stretch, &view);
    glide *= (double)stretch->frame_count /
             (double)(voice->region_end - voice->region_start);
  }
  const FlInterpKernel* const kernel = fl_interp_kernel(
    engine->interp,
    reader->step > reader->step + glide * (double)(block_frames - offset)
      ? reader->step
      : reader->step + glide * (double)(block_frames - offset));

  while (offset < block_frames) {
    uint32_t   count   = block_frames - offset;
    float      gain    = voice->gain;
    float      step    = 0.0f;
    const bool ramping = gain_segment(voice, offset, &count, &gain, &step);

    bool           ended = false;
    const uint32_t rendered =
      interpolate(engine, reader, kernel, count, glide, &ended);
    mix_voice(engine,
              engine->seam,
              channels,
              rendered,
              gain,
              step,
              left,
              right,
              targets,
              offset,
              peak);
    offset += rendered;
    if (ended) {
      end_voice(engine, voice, handed_back);
      return;
    }
    const uint32_t ramp_end =
      ramping ? advance_ramp(engine, voice, step, rendered, handed_back)
              : RAMP_END_HOLD;
    if (ramp_end == RAMP_END_FREE) {
      return;
    }
    if (ramp_end == RAMP_END_PAUSE) {
      break;
    }
  }
  if (stretch) {
    leave_stretch(voice, &view);
  }
  voice->step = target;
  /* A fade that starts in a later block of the period (a note-off's) is
     that much nearer. */
  voice->ramp_at =
    voice->ramp_at > block_frames ? voice->ramp_at - block_frames : 0U;
}

/* Render one voice into `targets` (the outputs, or a slot's scratch) for the
   block of `block_frames`, ending it when it is done. */
static FL_REALTIME void
render_voice(FlEngine*     engine,
             Voice*        voice,
             uint32_t      block_frames,
             float* const* targets,
             float         left,
             float         right,
             float*        peak,
             uint32_t*     handed_back)
{
  if (voice->state == VOICE_ENDED) {
    end_voice(engine, voice, handed_back);
    return;
  }
  if (voice->state != VOICE_PLAYING && voice->state != VOICE_FADING) {
    return; /* free, pending in a later block, or paused */
  }
  if (voice->region_serial != engine->slots[voice->slot].serial) {
    refresh_region(engine, voice);
  }

  /* Anything but rate 1 from a whole frame on goes through the
     interpolator; a voice at rate 1 plays bit for bit as in v1. */
  bool         lock   = false;
  const double target = target_step(engine, &engine->slots[voice->slot], &lock);
  if (target != 1.0 || voice->step != 1.0 || voice->fraction != 0.0 || lock) {
    render_varispeed(
      engine, voice, block_frames, targets, left, right, peak, handed_back);
    return;
  }

  const FlSample* const sample = voice->sample;
  uint32_t              offset = voice->start_offset;
  voice->start_offset          = 0U;

  while (offset < block_frames) {
    /* The next stretch: up to the end of the block, of the region (or of
       the sample, for a voice placed past its region), of a constant-gain
       or ramp segment, and in or out of a seam zone. */
    const uint32_t boundary = voice->position < voice->region_end
                                ? voice->region_end
                                : sample->frame_count;
    uint32_t       count    = block_frames - offset;
    if (count > boundary - voice->position) {
      count = boundary - voice->position;
    }

    float      gain    = voice->gain;
    float      step    = 0.0f;
    const bool ramping = gain_segment(voice, offset, &count, &gain, &step);

    const SeamZone zone   = seam_zone(voice);
    const float*   source = NULL;
    if (zone.frames > 0U && voice->position < zone.first) {
      count = count < zone.first - voice->position
                ? count
                : zone.first - voice->position;
    } else if (zone.frames > 0U) {
      const uint32_t k = voice->position - zone.first;
      count            = count < zone.frames - k ? count : zone.frames - k;
      source           = render_seam(engine, voice, k, count);
    }
    if (!source) {
      source = sample->frames + (size_t)voice->position * sample->channels;
    }

    mix_voice(engine,
              source,
              sample->channels,
              count,
              gain,
              step,
              left,
              right,
              targets,
              offset,
              peak);

    offset += count;
    voice->position += count;
    if (voice->position == boundary) {
      if (!voice->looping) {
        end_voice(engine, voice, handed_back);
        return;
      }
      voice->position = voice->region_start;
      voice->wrapped  = true;
    }

    const uint32_t ramp_end =
      ramping ? advance_ramp(engine, voice, step, count, handed_back)
              : RAMP_END_HOLD;
    if (ramp_end == RAMP_END_FREE) {
      return;
    }
    if (ramp_end == RAMP_END_PAUSE) {
      break;
    }
  }
  /* A fade that starts in a later block of the period (a note-off's) is
     that much nearer. */
  voice->ramp_at =
    voice->ramp_at > block_frames ? voice->ramp_at - block_frames : 0U;
}

/* Step 2b: the voices of one non-neutral slot, summed in the scratch block,
   through the slot stage into the outputs. */
static FL_REALTIME void
render_slot(FlEngine*     engine,
            uint32_t      slot,
            uint32_t      block_frames,
            float* const* outputs,
            uint32_t*     handed_back)
{
  SlotState* const state                    = &engine->slots[slot];
  float* const     scratch[FL_MAX_CHANNELS] = { engine->scratch,
                                                engine->scratch + FL_BLOCK_FRAMES };
  for (uint32_t c = 0U; c < engine->channels; ++c) {
    memset(scratch[c], 0, block_frames * sizeof(float));
  }

  for (uint32_t index = state->first_voice; index != NO_VOICE;) {
    Voice* const voice = &engine->voices[index];
    render_voice(
      engine, voice, block_frames, scratch, 1.0f, 1.0f, NULL, handed_back);
    if (voice->sample && engine->meter_interval) {
      state->position =
        (double)voice->position / (double)voice->sample->sample_rate;
    }
    index = voice->next_in_slot;
  }
  state->first_voice  = NO_VOICE;
  state->last_voice   = NO_VOICE;
  state->block_voices = 0U;
  run_isolator(engine, state, scratch, block_frames);

  /* The stage's gains: a ramp to the settings' gains, then constant. */
  uint32_t done = 0U;
  while (done < block_frames) {
    uint32_t count      = block_frames - done;
    float    left       = state->gain_left;
    float    right      = state->gain_right;
    float    step_left  = 0.0f;
    float    step_right = 0.0f;
    if (state->ramp_left > 0U) {
      count      = count < state->ramp_left ? count : state->ramp_left;
      step_left  = state->step_left;
      step_right = state->step_right;
      left += step_left;
      right += step_right;
    }
    float* const from[FL_MAX_CHANNELS] = { scratch[0] + done,
                                           scratch[1] + done };
    float* const to[FL_MAX_CHANNELS]   = {
        outputs[0] + done, engine->channels > 1U ? outputs[1] + done : NULL
    };
    fl_mix_stage((const float* const*)from,
                 to,
                 engine->channels,
                 count,
                 left,
                 step_left,
                 right,
                 step_right,
                 engine->meter_interval ? &state->peak : NULL);
    if (state->ramp_left > 0U) {
      state->gain_left += step_left * (float)count;
      state->gain_right += step_right * (float)count;
      state->ramp_left -= count;
      if (state->ramp_left == 0U) {
        state->gain_left  = state->params.gain_left;
        state->gain_right = state->params.gain_right;
      }
    }
    done += count;
  }

  if (engine->meter_interval && !state->metered) {
    state->metered                           = true;
    engine->metered[engine->metered_count++] = slot;
  }
}

/* Step 3: master gain and meters. */
static FL_REALTIME void
finish_block(FlEngine* engine, uint32_t block_frames, float* const* outputs)
{
  if (engine->master_ramp_left > 0U || engine->master_gain != 1.0f) {
    uint32_t count = block_frames;
    float    gain  = engine->master_gain;
    float    step  = 0.0f;
    if (engine->master_ramp_left > 0U) {
      count =
        count < engine->master_ramp_left ? count : engine->master_ramp_left;
      step = engine->master_step;
      gain += step;
    }
    fl_mix_scale(outputs, engine->channels, count, gain, step);
    if (count < block_frames) {
      /* The ramp ended inside the block: the rest at the target. */
      engine->master_gain                = engine->master_target;
      engine->master_ramp_left           = 0U;
      float* const rest[FL_MAX_CHANNELS] = {
        outputs[0] + count, engine->channels > 1U ? outputs[1] + count : NULL
      };
      fl_mix_scale(rest,
                   engine->channels,
                   block_frames - count,
                   engine->master_gain,
                   0.0f);
    } else if (engine->master_ramp_left > 0U) {
      engine->master_gain += step * (float)count;
      engine->master_ramp_left -= count;
      if (engine->master_ramp_left == 0U) {
        engine->master_gain = engine->master_target;
      }
    }
  }

  if (engine->meter_interval == 0U) {
    return;
  }
  for (uint32_t c = 0U; c < engine->channels; ++c) {
    engine->master_peak[c] =
      fl_mix_peak(outputs[c], block_frames, engine->master_peak[c]);
  }
  engine->meter_due -= (int64_t)block_frames;
  if (engine->meter_due > 0) {
    return;
  }
  engine->meter_due += (int64_t)engine->meter_interval;
  if (engine->meter_due <= 0) {
    engine->meter_due = (int64_t)engine->meter_interval;
  }

  for (uint32_t i = 0U; i < engine->metered_count; ++i) {
    SlotState* const state = &engine->slots[engine->metered[i]];
    const FlEvent    event = { FL_EVENT_METER_SLOT,
                               engine->metered[i],
                               state->peak,
                               0.0f,
                               state->position,
                               0U,
                               0U };
    emit(engine, &event);
    state->peak    = 0.0f;
    state->metered = false;
  }
  engine->metered_count = 0U;
  const FlEvent master  = { FL_EVENT_METER_MASTER,
                            0U,
                            engine->master_peak[0],
                            engine->master_peak[engine->channels - 1U],
                            0.0,
                            0U,
                            0U };
  emit(engine, &master);
  engine->master_peak[0] = engine->master_peak[1] = 0.0f;
}

/* One step of the sweep that ends every pass over the voices: a freed
   voice's entry goes back to the free list, any other stays in age order
   at `*kept`. */
static FL_REALTIME void
keep_or_free(FlEngine* engine, uint32_t index, uint32_t* kept)
{
  if (engine->voices[index].state == VOICE_FREE) {
    engine->free_list[engine->free_count++] = index;
  } else {
    engine->order[(*kept)++] = index;
  }
}

/* A slot whose stage is constant gains, with meters off: its voices go
   straight to the outputs with those gains in the same pass, and at unity
   exactly as in v1. Only a ramping stage or meters need the scratch. */
static FL_REALTIME bool
is_direct(const FlEngine* engine, const SlotState* state)
{
  return state->ramp_left == 0U && engine->meter_interval == 0U &&
         state->eq_wet == 0.0f && state->eq_ramp_left == 0U;
}

/* The isolator on a slot's summed block, while engaged. */
static FL_REALTIME void
run_isolator(FlEngine*     engine,
             SlotState*    state,
             float* const* scratch,
             uint32_t      block_frames)
{
  uint32_t done = 0U;
  while (done < block_frames &&
         (state->eq_wet > 0.0f || state->eq_ramp_left > 0U)) {
    uint32_t        count = block_frames - done;
    FlIsolatorGains gains = { state->eq_gain[0],
                              state->eq_gain[1],
                              state->eq_gain[2],
                              state->eq_wet,
                              0.0f,
                              0.0f,
                              0.0f,
                              0.0f };
    if (state->eq_ramp_left > 0U) {
      count = count < state->eq_ramp_left ? count : state->eq_ramp_left;
      gains.low_step  = state->eq_step[0];
      gains.mid_step  = state->eq_step[1];
      gains.high_step = state->eq_step[2];
      gains.wet_step  = state->eq_wet_step;
      gains.low += gains.low_step;
      gains.mid += gains.mid_step;
      gains.high += gains.high_step;
      gains.wet += gains.wet_step;
    }
    for (uint32_t c = 0U; c < engine->channels; ++c) {
      fl_isolator_process(&engine->isolator,
                          &state->eq_state[c],
                          &gains,
                          scratch[c] + done,
                          count);
    }
    if (state->eq_ramp_left > 0U) {
      state->eq_ramp_left -= count;
      for (int b = 0; b < 3; ++b) {
        state->eq_gain[b] += state->eq_step[b] * (float)count;
      }
      state->eq_wet += state->eq_wet_step * (float)count;
      if (state->eq_ramp_left == 0U) {
        state->eq_gain[0] = state->params.eq_low;
        state->eq_gain[1] = state->params.eq_mid;
        state->eq_gain[2] = state->params.eq_high;
        state->eq_wet     = state->eq_wet_step > 0.0f   ? 1.0f
                            : state->eq_wet_step < 0.0f ? 0.0f
                                                        : state->eq_wet;
      }
    }
    done += count;
  }
}

/* The ports of a slot's output bus (bus 0 if the slot names one that is
   not there). */
static FL_REALTIME float* const*
bus_outputs(const FlEngine*  engine,
            const SlotState* state,
            float* const*    outputs)
{
  const uint32_t bus =
    state->params.bus < engine->bus_count ? state->params.bus : 0U;
  return outputs + (size_t)bus * engine->channels;
}

/* With meters on, a slot with one voice and constant gains needs no
   scratch: the voice is mixed straight to its bus, its peak taken in the
   same pass (a compare per sample). */
static FL_REALTIME void
meter_single_voice(FlEngine*     engine,
                   uint32_t      slot,
                   uint32_t      frames,
                   float* const* outputs,
                   uint32_t*     handed_back)
{
  SlotState* const state = &engine->slots[slot];
  Voice* const     voice = &engine->voices[state->first_voice];
  state->first_voice     = NO_VOICE;
  state->last_voice      = NO_VOICE;
  state->block_voices    = 0U;
  render_voice(engine,
               voice,
               frames,
               bus_outputs(engine, state, outputs),
               state->gain_left,
               state->gain_right,
               &state->peak,
               handed_back);
  if (voice->sample) {
    state->position =
      (double)voice->position / (double)voice->sample->sample_rate;
  }
  if (!state->metered) {
    state->metered                           = true;
    engine->metered[engine->metered_count++] = slot;
  }
}

static FL_REALTIME void
render_block(FlEngine*       engine,
             const FlPeriod* block,
             float* const*   outputs,
             uint32_t*       handed_back)
{
  const uint32_t frames = block->frame_count;
  start_voices(engine, block, handed_back);

  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    const uint32_t   index = engine->order[i];
    Voice* const     voice = &engine->voices[index];
    SlotState* const state = &engine->slots[voice->slot];
    if (voice->state == VOICE_FREE || voice->state == VOICE_PENDING ||
        voice->state == VOICE_PAUSED) {
      continue;
    }
    if (is_direct(engine, state)) {
      render_voice(engine,
                   voice,
                   frames,
                   bus_outputs(engine, state, outputs),
                   state->gain_left,
                   state->gain_right,
                   NULL,
                   handed_back);
      continue;
    }
    voice->next_in_slot = NO_VOICE;
    if (state->first_voice == NO_VOICE) {
      state->first_voice                           = index;
      engine->active_slots[engine->active_count++] = voice->slot;
    } else {
      engine->voices[state->last_voice].next_in_slot = index;
    }
    state->last_voice = index;
    ++state->block_voices;
  }

  for (uint32_t i = 0U; i < engine->active_count; ++i) {
    const uint32_t   slot  = engine->active_slots[i];
    SlotState* const state = &engine->slots[slot];
    if (state->block_voices == 1U && state->ramp_left == 0U &&
        state->eq_wet == 0.0f && state->eq_ramp_left == 0U) {
      meter_single_voice(engine, slot, frames, outputs, handed_back);
      continue;
    }
    render_slot(
      engine, slot, frames, bus_outputs(engine, state, outputs), handed_back);
  }
  engine->active_count = 0U;
  finish_block(engine, frames, outputs);
}

FL_REALTIME void
fl_engine_queue_notes(FlEngine*     engine,
                      const FlNote* notes,
                      uint32_t      count,
                      uint32_t      ignored)
{
  uint32_t taken = 0U;
  for (uint32_t i = 0U; i < count; ++i) {
    if (engine->pending_note_count < FL_MAX_NOTES_PER_PERIOD &&
        notes[i].slot < engine->slot_count) {
      engine->pending_notes[engine->pending_note_count++] = notes[i];
      ++taken;
    }
  }
  if (taken > 0U) {
    atomic_fetch_add_explicit(&engine->notes, taken, memory_order_relaxed);
  }
  if (ignored + count - taken > 0U) {
    atomic_fetch_add_explicit(
      &engine->ignored_notes, ignored + count - taken, memory_order_relaxed);
  }
}

/* A note-off of a held slot: its voices fade out from the note's own frame
   (`at`, counted from the first frame of the period), as a choke fades
   voices from a new voice's frame. */
static FL_REALTIME void
release_slot(FlEngine* engine,
             uint32_t  slot,
             uint32_t  at,
             uint32_t* handed_back)
{
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (voice->slot == slot) {
      fade_voice(engine, voice, engine->stop_fade_frames, at, handed_back);
    }
  }
}

/* MIDI notes of this period: a note-on is a play that starts at its own
   frame (its time within this period's timing), or with quantization on
   the first grid line at or after that frame; a note-off releases a held
   slot from its own frame. */
static FL_REALTIME void
apply_notes(FlEngine* engine, const FlPeriod* period, uint32_t* handed_back)
{
  const int64_t span = period->next_usecs - period->usecs;
  for (uint32_t i = 0U; i < engine->pending_note_count; ++i) {
    const FlNote* const note = &engine->pending_notes[i];
    if (note->velocity <= 0.0f) {
      if (engine->slots[note->slot].params.hold) {
        release_slot(engine, note->slot, note->offset, handed_back);
      }
      continue;
    }
    Command command             = { .type = COMMAND_PLAY, .slot = note->slot };
    command.as.play.velocity    = note->velocity;
    command.as.play.note        = 1U;
    command.as.play.start_usecs = period->usecs;
    if (period->frame_count > 0U) {
      command.as.play.start_usecs +=
        (span * (int64_t)note->offset + (int64_t)period->frame_count / 2) /
        (int64_t)period->frame_count;
    }
    Voice* const voice = apply_play(engine, &command, period, handed_back);
    /* A quantized note's line is the first at or after its own frame. */
    if (voice) {
      voice->line_from = engine->frame_now + note->offset;
    }
  }
  engine->pending_note_count = 0U;
}

/* A queued downbeat whose frame falls in this period moves beat 0 there. */
static FL_REALTIME void
apply_downbeat(FlEngine* engine, const FlPeriod* period)
{
  if (!engine->downbeat_queued) {
    return;
  }
  int64_t offset = 0;
  if (engine->pending_downbeat != FL_PLAY_NOW) {
    offset = offset_of_time(period, engine->pending_downbeat);
    if (offset >= (int64_t)period->frame_count) {
      return;
    }
    offset = offset > 0 ? offset : 0;
  }
  fl_transport_downbeat(&engine->transport, engine->frame_now + offset);
  engine->downbeat_queued = false;
  /* Launches waiting for a line take the next line of the new grid. */
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (voice->state == VOICE_PENDING && voice->on_grid) {
      voice->wants_line = true;
    }
  }
}

static uint64_t
bits_of_double(double value)
{
  uint64_t bits = 0U;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

/* The writer's half of the sequence lock fl_engine_transport() reads: the
   count goes odd, the values are stored with release (so none is seen
   before the odd count), the count goes even with release. No fences: they
   are not supported by ThreadSanitizer, and the release stores order what
   the fences would. */
static FL_REALTIME void
publish_transport(FlEngine* engine)
{
  engine->period_beats =
    fl_transport_beats_at(&engine->transport, engine->frame_now);
  const unsigned seq =
    atomic_load_explicit(&engine->transport_seq, memory_order_relaxed);
  atomic_store_explicit(&engine->transport_seq, seq + 1U, memory_order_relaxed);
  atomic_store_explicit(&engine->published_bpm,
                        bits_of_double(engine->transport.bpm),
                        memory_order_release);
  atomic_store_explicit(&engine->published_beats,
                        bits_of_double(engine->period_beats),
                        memory_order_release);
  atomic_store_explicit(&engine->published_bar,
                        engine->transport.beats_per_bar,
                        memory_order_release);
  atomic_store_explicit(&engine->published_rolling,
                        engine->rolling ? 1U : 0U,
                        memory_order_release);
  atomic_store_explicit(
    &engine->published_source, engine->clock_source, memory_order_release);
  atomic_store_explicit(&engine->transport_seq, seq + 2U, memory_order_release);
}

FL_REALTIME void
fl_engine_follow(FlEngine* engine, const FlOutsideClock* clock)
{
  if (clock && clock->valid) {
    fl_transport_follow(&engine->transport,
                        engine->frame_now,
                        clock->beats,
                        clock->bpm,
                        clock->beats_per_bar);
    engine->clock_source = FL_CLOCK_JACK;
    engine->rolling      = clock->rolling;
  } else {
    /* No master: the internal clock keeps time from where it was. */
    engine->clock_source = FL_CLOCK_INTERNAL;
    engine->rolling      = true;
  }
}

FL_REALTIME const FlTransport*
fl_engine_rt_transport(const FlEngine* engine, double* beats)
{
  *beats = engine->period_beats;
  return &engine->transport;
}

FL_REALTIME void
fl_engine_process(FlEngine*       engine,
                  const FlPeriod* period,
                  float* const*   outputs)
{
  uint32_t handed_back = 0U;

  apply_retirements(engine, &handed_back);
  apply_commands(engine, period, &handed_back);
  apply_notes(engine, period, &handed_back);
  apply_downbeat(engine, period);
  publish_transport(engine);

  for (uint32_t c = 0U; c < engine->output_count; ++c) {
    memset(outputs[c], 0, period->frame_count * sizeof(float));
  }

  /* Blocks of at most FL_BLOCK_FRAMES, each with its share of the period's
     timing, so a start time maps to the same frame however it is split. */
  const int64_t span = period->next_usecs - period->usecs;
  for (uint32_t done = 0U; done < period->frame_count;) {
    uint32_t frames   = period->frame_count - done;
    frames            = frames > FL_BLOCK_FRAMES ? FL_BLOCK_FRAMES : frames;
    FlPeriod block    = *period;
    block.frame_count = frames;
    block.first_frame = period->first_frame + done;
    block.usecs =
      period->usecs + span * (int64_t)done / (int64_t)period->frame_count;
    block.next_usecs = period->usecs + span * (int64_t)(done + frames) /
                                         (int64_t)period->frame_count;
    float* at[FL_MAX_OUTPUTS];
    for (uint32_t p = 0U; p < engine->output_count; ++p) {
      at[p] = outputs[p] + done;
    }
    engine->block_frame = engine->frame_now + done;
    render_block(engine, &block, at, &handed_back);
    done += frames;
  }
  engine->frame_now += period->frame_count;

  /* Drop finished voices from the order list. */
  uint32_t kept = 0U;
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    keep_or_free(engine, engine->order[i], &kept);
  }
  engine->order_count = kept;
  atomic_store_explicit(
    &engine->voices_active, engine->sounding, memory_order_relaxed);

  if ((handed_back > 0U || engine->wrote_telemetry) && engine->wake) {
    engine->wake(engine->wake_data);
  }
  engine->wrote_telemetry = false;
}

FL_REALTIME void
fl_engine_process_offline(FlEngine* engine)
{
  uint32_t handed_back = 0U;
  Command  command;

  apply_retirements(engine, &handed_back);
  while (fl_ring_read(engine->commands, &command)) {
    /* Settings, the master gain and the clock are state, not events: keep
       them (a restored session before the JACK server is there). */
    if (command.type == COMMAND_SETTINGS) {
      apply_settings(engine, command.slot, &command.as.settings);
    } else if (command.type == COMMAND_MASTER_GAIN) {
      engine->master_gain = engine->master_target = command.as.master_gain;
      engine->master_ramp_left                    = 0U;
    } else if (command.type == COMMAND_METERS) {
      apply_meters(engine, command.as.meter_hz);
    } else if (command.type == COMMAND_TEMPO) {
      fl_transport_set_tempo(
        &engine->transport, engine->frame_now, command.as.bpm);
    } else if (command.type == COMMAND_SIGNATURE) {
      engine->transport.beats_per_bar = command.as.beats_per_bar;
    } else if (command.type == COMMAND_QUANTIZE) {
      engine->quantize_grid = command.as.grid;
    } else if (command.type == COMMAND_SPEED) {
      engine->speed = command.as.speed;
    } else if (command.type == COMMAND_BPMLOCK) {
      engine->bpmlock = command.as.bpmlock != 0U;
    }
  }

  uint32_t kept = 0U;
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    const uint32_t index = engine->order[i];
    end_voice(engine, &engine->voices[index], &handed_back);
    keep_or_free(engine, index, &kept);
  }
  engine->order_count = kept;
  atomic_store_explicit(
    &engine->voices_active, engine->sounding, memory_order_relaxed);
}
