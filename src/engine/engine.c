/*
  The non-RT half of the engine: construction, the producers' ends of the
  command and retire rings, the reaper's end of the event ring, teardown.
  The RT half is in process.c.
*/
#include "process.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_COMMAND_CAPACITY 4096U
#define RETIRE_CAPACITY 1024U
/* Room for every sample that can be waiting to be handed back at once: one
   per voice plus a full retire ring, with some to spare. */
#define EVENT_CAPACITY 4096U
/* Telemetry records: a meter snapshot of every slot at 60 Hz, with room
   for the telemetry thread to be late by a few snapshots. */
#define TELEMETRY_CAPACITY 16384U

static uint32_t
fade_frames(uint32_t sample_rate, double milliseconds)
{
  const uint32_t frames = (uint32_t)floor(sample_rate * milliseconds / 1000.0);
  return frames > 0U ? frames : 1U;
}

FlEngine*
fl_engine_new(const FlEngineConfig* config, FlBank* bank)
{
  if (!bank || config->sample_rate == 0U || config->output_count < 1U ||
      config->output_count > FL_MAX_OUTPUTS ||
      (config->output_count > 1U && config->output_count % 2U) ||
      config->max_voices < 1U || config->max_voices > FL_MAX_VOICES) {
    return NULL;
  }

  FlEngine* const engine = (FlEngine*)calloc(1, sizeof(FlEngine));
  if (!engine) {
    return NULL;
  }

  const uint32_t command_capacity = config->command_capacity
                                      ? config->command_capacity
                                      : DEFAULT_COMMAND_CAPACITY;

  engine->bank         = bank;
  engine->slot_count   = fl_bank_slot_count(bank);
  engine->wake         = config->wake;
  engine->wake_data    = config->wake_data;
  engine->output_count = config->output_count;
  engine->channels     = config->output_count == 1U ? 1U : 2U;
  engine->bus_count    = config->output_count / engine->channels;
  engine->max_voices   = config->max_voices;
  engine->voice_count  = 2U * config->max_voices;
  engine->commands     = fl_ring_new(command_capacity, sizeof(Command));
  engine->retirements  = fl_ring_new(RETIRE_CAPACITY, sizeof(Retirement));
  engine->events       = fl_ring_new(EVENT_CAPACITY, sizeof(FlSample*));
  engine->voices       = (Voice*)calloc(engine->voice_count, sizeof(Voice));
  engine->order     = (uint32_t*)calloc(engine->voice_count, sizeof(uint32_t));
  engine->free_list = (uint32_t*)calloc(engine->voice_count, sizeof(uint32_t));
  engine->starting  = (uint32_t*)calloc(engine->voice_count, sizeof(uint32_t));
  engine->telemetry = fl_ring_new(TELEMETRY_CAPACITY, sizeof(FlEvent));
  engine->slots     = (SlotState*)calloc(engine->slot_count, sizeof(SlotState));
  engine->active_slots =
    (uint32_t*)calloc(engine->slot_count, sizeof(uint32_t));
  engine->metered = (uint32_t*)calloc(engine->slot_count, sizeof(uint32_t));
  engine->scratch =
    (float*)calloc((size_t)FL_MAX_CHANNELS * FL_BLOCK_FRAMES, sizeof(float));
  engine->seam =
    (float*)calloc((size_t)FL_MAX_CHANNELS * FL_BLOCK_FRAMES, sizeof(float));
  engine->window =
    (float*)calloc((size_t)FL_MAX_CHANNELS * FL_INTERP_MAX_TAPS, sizeof(float));
  engine->interp    = fl_interp_new();
  engine->stretches = fl_bank_new(engine->slot_count);
  engine->speed     = 1.0;
  if (!engine->commands || !engine->retirements || !engine->events ||
      !engine->voices || !engine->order || !engine->free_list ||
      !engine->starting || !engine->telemetry || !engine->slots ||
      !engine->active_slots || !engine->metered || !engine->scratch ||
      !engine->seam || !engine->window || !engine->interp ||
      !engine->stretches) {
    fl_engine_free(engine);
    return NULL;
  }

  /* Pop order: voice 0 first. */
  for (uint32_t i = 0U; i < engine->voice_count; ++i) {
    engine->free_list[i] = engine->voice_count - 1U - i;
  }
  engine->free_count = engine->voice_count;
  for (uint32_t slot = 0U; slot < engine->slot_count; ++slot) {
    SlotState* const state = &engine->slots[slot];
    state->params          = FL_SLOT_PARAMS_DEFAULT;
    state->gain_left       = 1.0f;
    state->gain_right      = 1.0f;
    state->first_voice     = NO_VOICE;
    state->eq_gain[0] = state->eq_gain[1] = state->eq_gain[2] = 1.0f;
    state->last_voice                                         = NO_VOICE;
  }
  engine->master_gain   = 1.0f;
  engine->master_target = 1.0f;
  engine->transport     = fl_transport_make(
    FL_DEFAULT_BPM, FL_DEFAULT_BEATS_PER_BAR, config->sample_rate);
  engine->rolling = true;
  fl_engine_set_sample_rate(engine, config->sample_rate);

  atomic_init(&engine->voices_active, 0U);
  atomic_init(&engine->plays, 0U);
  atomic_init(&engine->unplayed, 0U);
  atomic_init(&engine->late_plays, 0U);
  atomic_init(&engine->stolen_voices, 0U);
  atomic_init(&engine->retired_samples, 0U);
  atomic_init(&engine->dropped_events, 0U);
  atomic_init(&engine->stretch_misses, 0U);
  atomic_init(&engine->notes, 0U);
  atomic_init(&engine->ignored_notes, 0U);
  atomic_init(&engine->transport_seq, 0U);
  atomic_init(&engine->published_bpm, 0U);
  atomic_init(&engine->published_beats, 0U);
  atomic_init(&engine->published_bar, FL_DEFAULT_BEATS_PER_BAR);
  atomic_init(&engine->published_rolling, 1U);
  atomic_init(&engine->published_source, FL_CLOCK_INTERNAL);
  {
    const double bpm  = FL_DEFAULT_BPM;
    uint64_t     bits = 0U;
    memcpy(&bits, &bpm, sizeof(bits));
    atomic_store_explicit(&engine->published_bpm, bits, memory_order_relaxed);
  }
  atomic_init(&engine->dropped_commands, 0U);
  return engine;
}

void
fl_engine_free(FlEngine* engine)
{
  if (!engine) {
    return;
  }

  /* A partly constructed engine has no voices or rings to drain. */
  if (engine->commands && engine->retirements && engine->events &&
      engine->voices && engine->order && engine->free_list) {
    /* No RT thread runs: mark what the loader retired, release every voice,
       and free what ends up unreferenced. The event ring has room for all of
       it only in the common case, so free as we go. */
    FlSample* sample = NULL;
    do {
      uint32_t handed_back = 0U;
      fl_engine_process_offline(engine);
      while ((sample = fl_engine_next_retired(engine))) {
        fl_sample_free(sample);
        ++handed_back;
      }
      if (handed_back == 0U) {
        break;
      }
    } while (engine->order_count > 0U ||
             fl_ring_read_space(engine->retirements) > 0U);
  }

  fl_bank_free(engine->stretches);
  fl_interp_free(engine->interp);
  free(engine->window);
  free(engine->seam);
  free(engine->scratch);
  free(engine->metered);
  free(engine->active_slots);
  free(engine->slots);
  fl_ring_free(engine->telemetry);
  free(engine->starting);
  free(engine->free_list);
  free(engine->order);
  free(engine->voices);
  fl_ring_free(engine->events);
  fl_ring_free(engine->retirements);
  fl_ring_free(engine->commands);
  free(engine);
}

static FlStatus
queue_command(FlEngine* engine, const Command* command)
{
  if (!fl_ring_write(engine->commands, command)) {
    atomic_fetch_add_explicit(
      &engine->dropped_commands, 1U, memory_order_relaxed);
    return FL_ERR_QUEUE_FULL;
  }
  return FL_SUCCESS;
}

FlStatus
fl_engine_launch(FlEngine* engine,
                 uint32_t  slot,
                 float     velocity,
                 int64_t   start_usecs,
                 bool      exclusive)
{
  if (slot >= engine->slot_count) {
    return FL_ERR_BAD_SLOT;
  }
  if (!(velocity >= 0.0f && velocity <= 1.0f)) { /* false for NaN too */
    return FL_ERR_BAD_VELOCITY;
  }
  if (!fl_bank_get(engine->bank, slot)) {
    return FL_ERR_EMPTY_SLOT;
  }

  Command command             = { .type = COMMAND_PLAY, .slot = slot };
  command.as.play.start_usecs = start_usecs;
  command.as.play.velocity    = velocity;
  command.as.play.exclusive   = exclusive ? 1U : 0U;

  return queue_command(engine, &command);
}

FlStatus
fl_engine_play(FlEngine* engine,
               uint32_t  slot,
               float     velocity,
               int64_t   start_usecs)
{
  return fl_engine_launch(engine, slot, velocity, start_usecs, false);
}

FlStatus
fl_engine_stop(FlEngine* engine, uint32_t slot)
{
  if (slot != FL_ALL_SLOTS && slot >= engine->slot_count) {
    return FL_ERR_BAD_SLOT;
  }

  const Command command = { .type = COMMAND_STOP, .slot = slot };
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_slot(FlEngine* engine, uint32_t slot, const FlSlotParams* params)
{
  if (slot >= engine->slot_count) {
    return FL_ERR_BAD_SLOT;
  }
  Command command     = { .type = COMMAND_SETTINGS, .slot = slot };
  command.as.settings = *params;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_pause(FlEngine* engine, uint32_t slot, bool pause)
{
  if (slot >= engine->slot_count) {
    return FL_ERR_BAD_SLOT;
  }
  const Command command = { .type = pause ? COMMAND_PAUSE : COMMAND_RESUME,
                            .slot = slot };
  return queue_command(engine, &command);
}

FlStatus
fl_engine_seek(FlEngine* engine, uint32_t slot, double seconds)
{
  if (slot >= engine->slot_count) {
    return FL_ERR_BAD_SLOT;
  }
  if (!(seconds >= 0.0)) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Command command         = { .type = COMMAND_SEEK, .slot = slot };
  command.as.seek_seconds = seconds;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_master_gain(FlEngine* engine, float gain)
{
  if (!(gain >= 0.0f && gain <= 16.0f)) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Command command        = { .type = COMMAND_MASTER_GAIN, .slot = 0U };
  command.as.master_gain = gain;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_meters(FlEngine* engine, uint32_t hz)
{
  if (hz > FL_MAX_METER_HZ) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Command command     = { .type = COMMAND_METERS, .slot = 0U };
  command.as.meter_hz = hz;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_tempo(FlEngine* engine, double bpm)
{
  if (!(bpm >= FL_MIN_BPM && bpm <= FL_MAX_BPM)) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Command command = { .type = COMMAND_TEMPO, .slot = 0U };
  command.as.bpm  = bpm;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_signature(FlEngine* engine, uint32_t beats_per_bar)
{
  if (beats_per_bar < 1U || beats_per_bar > FL_MAX_BEATS_PER_BAR) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Command command          = { .type = COMMAND_SIGNATURE, .slot = 0U };
  command.as.beats_per_bar = beats_per_bar;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_quantize(FlEngine* engine, double grid)
{
  Command command = { .type = COMMAND_QUANTIZE, .slot = 0U };
  command.as.grid = grid;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_release(FlEngine* engine, uint32_t slot)
{
  if (slot >= engine->slot_count) {
    return FL_ERR_BAD_SLOT;
  }
  const Command command = { .type = COMMAND_RELEASE, .slot = slot };
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_speed(FlEngine* engine, double speed)
{
  if (!(speed >= 0.5 && speed <= 2.0)) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Command command  = { .type = COMMAND_SPEED, .slot = 0U };
  command.as.speed = speed;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_set_bpmlock(FlEngine* engine, bool on)
{
  Command command    = { .type = COMMAND_BPMLOCK, .slot = 0U };
  command.as.bpmlock = on ? 1U : 0U;
  return queue_command(engine, &command);
}

FlStatus
fl_engine_downbeat(FlEngine* engine, int64_t usecs)
{
  Command command           = { .type = COMMAND_DOWNBEAT, .slot = 0U };
  command.as.downbeat_usecs = usecs;
  return queue_command(engine, &command);
}

static double
double_of_bits(uint64_t bits)
{
  double value = 0.0;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

void
fl_engine_transport(const FlEngine* engine, FlTransportState* state)
{
  /* The reader's half of the sequence lock: retry while the RT thread is
     writing or wrote meanwhile. The values are loaded with acquire, so the
     second load of the count cannot move before them. */
  FlEngine* const writable = (FlEngine*)engine;
  for (;;) {
    const unsigned before =
      atomic_load_explicit(&writable->transport_seq, memory_order_acquire);
    state->bpm = double_of_bits(
      atomic_load_explicit(&writable->published_bpm, memory_order_acquire));
    state->beats = double_of_bits(
      atomic_load_explicit(&writable->published_beats, memory_order_acquire));
    state->beats_per_bar =
      atomic_load_explicit(&writable->published_bar, memory_order_acquire);
    state->rolling =
      atomic_load_explicit(&writable->published_rolling, memory_order_acquire);
    state->source =
      atomic_load_explicit(&writable->published_source, memory_order_acquire);
    const unsigned after =
      atomic_load_explicit(&writable->transport_seq, memory_order_relaxed);
    if (before == after && !(before & 1U)) {
      return;
    }
  }
}

bool
fl_engine_next_event(FlEngine* engine, FlEvent* event)
{
  return fl_ring_read(engine->telemetry, event);
}

void
fl_engine_publish(FlEngine* engine, uint32_t slot, FlSample* sample)
{
  FlSample* const old = fl_bank_exchange(engine->bank, slot, sample);
  if (!old) {
    return;
  }

  /* The old sample may be in use by the RT thread until it has read this
     retirement, so it must reach the RT thread; wait for room. */
  const Retirement retirement = { old, slot, sample == NULL };
  while (!fl_ring_write(engine->retirements, &retirement)) {
    const struct timespec millisecond = { 0, 1000000L };
    nanosleep(&millisecond, NULL);
  }
}

void
fl_engine_publish_stretch(FlEngine* engine, uint32_t slot, FlSample* sample)
{
  /* The RT thread takes a render from the bank for one block at a time and
     keeps no reference, so once it has read this retirement (at the start
     of a period) nothing uses the old render: it is handed back at once,
     through the same ring as samples (this thread is its one producer). */
  FlSample* const old = fl_bank_exchange(engine->stretches, slot, sample);
  if (!old) {
    return;
  }
  const Retirement retirement = { old, slot, 0U };
  while (!fl_ring_write(engine->retirements, &retirement)) {
    const struct timespec millisecond = { 0, 1000000L };
    nanosleep(&millisecond, NULL);
  }
}

FlSample*
fl_engine_next_retired(FlEngine* engine)
{
  FlSample* sample = NULL;
  return fl_ring_read(engine->events, &sample) ? sample : NULL;
}

void
fl_engine_stats(const FlEngine* engine, FlEngineStats* stats)
{
  stats->voices_active =
    atomic_load_explicit(&engine->voices_active, memory_order_relaxed);
  stats->voices_max = engine->max_voices;
  stats->plays = atomic_load_explicit(&engine->plays, memory_order_relaxed);
  stats->unplayed =
    atomic_load_explicit(&engine->unplayed, memory_order_relaxed);
  stats->late_plays =
    atomic_load_explicit(&engine->late_plays, memory_order_relaxed);
  stats->dropped_commands =
    atomic_load_explicit(&engine->dropped_commands, memory_order_relaxed);
  stats->stolen_voices =
    atomic_load_explicit(&engine->stolen_voices, memory_order_relaxed);
  stats->retired_samples =
    atomic_load_explicit(&engine->retired_samples, memory_order_relaxed);
  stats->dropped_events =
    atomic_load_explicit(&engine->dropped_events, memory_order_relaxed);
  stats->stretch_misses =
    atomic_load_explicit(&engine->stretch_misses, memory_order_relaxed);
  stats->notes = atomic_load_explicit(&engine->notes, memory_order_relaxed);
  stats->ignored_notes =
    atomic_load_explicit(&engine->ignored_notes, memory_order_relaxed);
}

void
fl_engine_set_sample_rate(FlEngine* engine, uint32_t sample_rate)
{
  engine->steal_fade_frames = fade_frames(sample_rate, FL_STEAL_FADE_MS);
  engine->stop_fade_frames  = fade_frames(sample_rate, FL_STOP_FADE_MS);
  engine->pause_fade_frames = fade_frames(sample_rate, FL_PAUSE_FADE_MS);
  engine->gain_ramp_frames  = fade_frames(sample_rate, FL_GAIN_RAMP_MS);
  engine->sample_rate       = sample_rate;
  engine->eq_ramp_frames    = fade_frames(sample_rate, FL_EQ_RAMP_MS);
  fl_isolator_design(
    &engine->isolator, sample_rate, FL_EQ_LOW_HZ, FL_EQ_HIGH_HZ);
  /* The clock keeps its place in beats at the new rate. */
  const double beats =
    fl_transport_beats_at(&engine->transport, engine->frame_now);
  engine->transport.sample_rate = sample_rate;
  fl_transport_follow(&engine->transport,
                      engine->frame_now,
                      beats,
                      engine->transport.bpm,
                      engine->transport.beats_per_bar);
}
