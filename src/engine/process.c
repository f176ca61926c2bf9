/*
  Code used in the realtime process thread: applying commands and
  retirements, the voice pool, and rendering a period.

  Nothing here allocates, frees, locks, logs, does I/O or waits; the
  rt-symbols test checks the object file for calls that would.
*/
#include "process.h"

#include <flitzi/mixer.h>

#include <math.h>
#include <string.h>

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

/* Ends a voice: releases its sample, or marks it ENDED to try next period.
   A voice that is already free (a pending voice ended earlier in this
   period, still listed in `order`) is left alone. */
static FL_REALTIME void
end_voice(FlEngine* engine, Voice* voice, uint32_t* handed_back)
{
  if (voice->state == VOICE_FREE) {
    return;
  }
  if (voice->state == VOICE_PENDING || voice->state == VOICE_PLAYING) {
    --engine->sounding;
  }
  voice->state =
    release_sample(engine, voice, handed_back) ? VOICE_FREE : VOICE_ENDED;
}

/* Start a linear fade from the voice's current gain to silence. A pending
   voice has made no sound yet, so it just ends. */
static FL_REALTIME void
fade_voice(FlEngine* engine,
           Voice*    voice,
           uint32_t  fade_frames,
           uint32_t* handed_back)
{
  if (voice->state == VOICE_PENDING) {
    end_voice(engine, voice, handed_back);
  } else if (voice->state == VOICE_PLAYING) {
    --engine->sounding;
    voice->state     = VOICE_FADING;
    voice->fade_left = fade_frames;
    voice->fade_step = voice->gain / (float)fade_frames;
  } else if (voice->state == VOICE_FADING && voice->fade_left > fade_frames) {
    voice->fade_left = fade_frames;
    voice->fade_step = voice->gain / (float)fade_frames;
  }
}

static FL_REALTIME void
fade_slot(FlEngine* engine, uint32_t slot, uint32_t* handed_back)
{
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    Voice* const voice = &engine->voices[engine->order[i]];
    if (slot == FL_ALL_SLOTS || voice->slot == slot) {
      fade_voice(engine, voice, engine->stop_fade_frames, handed_back);
    }
  }
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
      if (voice->state == VOICE_PLAYING || voice->state == VOICE_PENDING) {
        fade_voice(engine, voice, engine->steal_fade_frames, handed_back);
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

  const uint32_t index = engine->free_list[--engine->free_count];
  engine->order[engine->order_count++] = index;
  return &engine->voices[index];
}

static FL_REALTIME void
apply_play(FlEngine* engine, const Command* command, uint32_t* handed_back)
{
  atomic_fetch_add_explicit(&engine->plays, 1U, memory_order_relaxed);

  FlSample* const sample = fl_bank_get(engine->bank, command->slot);
  Voice* const    voice =
    sample && sample->frame_count ? allocate_voice(engine, handed_back) : NULL;
  if (!voice) {
    /* Emptied after the control thread checked it, or every voice entry
       waits to hand back its sample: rare, and counted. */
    atomic_fetch_add_explicit(&engine->unplayed, 1U, memory_order_relaxed);
    return;
  }

  ++sample->rt_voices;
  voice->sample      = sample;
  voice->start_usecs = command->start_usecs;
  voice->position    = 0U;
  voice->slot        = command->slot;
  voice->gain        = command->velocity;
  voice->fade_step   = 0.0f;
  voice->fade_left   = 0U;
  voice->state       = VOICE_PENDING;
  ++engine->sounding;
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
    if (command.type == COMMAND_PLAY) {
      apply_play(engine, &command, handed_back);
      if (command.start_usecs != FL_PLAY_NOW &&
          offset_of_time(period, command.start_usecs) < 0) {
        atomic_fetch_add_explicit(
          &engine->late_plays, 1U, memory_order_relaxed);
      }
    } else if (command.type == COMMAND_STOP) {
      fade_slot(engine, command.slot, handed_back);
    }
  }
}

/* Render one voice into the period, ending it when it is done. */
static FL_REALTIME void
render_voice(FlEngine*       engine,
             Voice*          voice,
             const FlPeriod* period,
             float* const*   outputs,
             uint32_t*       handed_back)
{
  uint32_t offset = 0U;
  if (voice->state == VOICE_FREE) {
    return; /* a pending voice stopped or stolen in this period */
  }
  if (voice->state == VOICE_ENDED) {
    end_voice(engine, voice, handed_back);
    return;
  }

  if (voice->state == VOICE_PENDING) {
    if (voice->start_usecs != FL_PLAY_NOW) {
      const int64_t start = offset_of_time(period, voice->start_usecs);
      if (start >= (int64_t)period->frame_count) {
        return; /* starts in a later period */
      }
      offset = start > 0 ? (uint32_t)start : 0U;
    }
    voice->state = VOICE_PLAYING;
  }

  const FlSample* const sample = voice->sample;
  uint32_t              count  = period->frame_count - offset;
  const uint32_t        left   = sample->frame_count - voice->position;
  if (count > left) {
    count = left;
  }

  const float* const source =
    sample->frames + (size_t)voice->position * sample->channels;
  if (voice->state == VOICE_FADING) {
    if (count > voice->fade_left) {
      count = voice->fade_left;
    }
    /* The first faded frame is already one step down and the last one is
       at 0 (to float rounding, a few 1e-8), so the fade ends in silence,
       never with a jump. */
    fl_mix_add(source,
               sample->channels,
               count,
               voice->gain - voice->fade_step,
               -voice->fade_step,
               outputs,
               engine->output_count,
               offset);
    voice->gain -= voice->fade_step * (float)count;
    voice->fade_left -= count;
  } else {
    fl_mix_add(source,
               sample->channels,
               count,
               voice->gain,
               0.0f,
               outputs,
               engine->output_count,
               offset);
  }

  voice->position += count;
  if (voice->position >= sample->frame_count ||
      (voice->state == VOICE_FADING && voice->fade_left == 0U)) {
    end_voice(engine, voice, handed_back);
  }
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

FL_REALTIME void
fl_engine_process(FlEngine*       engine,
                  const FlPeriod* period,
                  float* const*   outputs)
{
  uint32_t handed_back = 0U;

  apply_retirements(engine, &handed_back);
  apply_commands(engine, period, &handed_back);

  for (uint32_t c = 0U; c < engine->output_count; ++c) {
    memset(outputs[c], 0, period->frame_count * sizeof(float));
  }

  /* Render in age order and drop finished voices from the order list. */
  uint32_t kept = 0U;
  for (uint32_t i = 0U; i < engine->order_count; ++i) {
    const uint32_t index = engine->order[i];
    render_voice(engine, &engine->voices[index], period, outputs, &handed_back);
    keep_or_free(engine, index, &kept);
  }
  engine->order_count = kept;
  atomic_store_explicit(
    &engine->voices_active, engine->sounding, memory_order_relaxed);

  if (handed_back > 0U && engine->wake) {
    engine->wake(engine->wake_data);
  }
}

FL_REALTIME void
fl_engine_process_offline(FlEngine* engine)
{
  uint32_t handed_back = 0U;
  Command  command;

  apply_retirements(engine, &handed_back);
  while (fl_ring_read(engine->commands, &command)) {
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
