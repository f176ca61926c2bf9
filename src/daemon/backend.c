#include <flitzi/backend.h>

#include <flitzi/log.h>

#include <jack/jack.h>
#include <jack/midiport.h>
#include <jack/transport.h>

#include <math.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct FlBackendImpl {
  FlBackendConfig config;
  char*           client_name;
  jack_client_t*  client; /* main thread; the callbacks read it */
  jack_port_t*    ports[FL_MAX_OUTPUTS];
  jack_port_t*    midi_port;                      /* --midi */
  FlNote          notes[FL_MAX_NOTES_PER_PERIOD]; /* RT only */

  /* Written by JACK's threads, read by the main and OSC threads. */
  atomic_bool   lost;
  atomic_bool   connected;
  atomic_uint   sample_rate;
  atomic_uint   period_frames;
  atomic_uint   xruns;
  _Atomic float load_avg_pct;  /* RT writes */
  _Atomic float load_peak_pct; /* RT raises, readers reset */
};

/* FlTransportMode's values, without the OSC API's header. */
enum { TRANSPORT_FOLLOW = 1, TRANSPORT_MASTER = 2 };

/* Ticks per beat of the BBT flitzid publishes as timebase master. */
#define TICKS_PER_BEAT 1920.0

/* --transport jack: read the timebase master's position for this period.
   The beat position is taken from the transport's frame (frame × tempo),
   not from its bar, beat and tick: jack_transport, for one, truncates its
   ticks every period, so its BBT falls behind its own frames (about 4 % at
   128 BPM), while the frame is what the audio is aligned with. Tempo and
   bar length come from the BBT. docs/timing.md says more. */
static FL_REALTIME void
follow_transport(FlBackend* backend)
{
  jack_position_t              position;
  const jack_transport_state_t state =
    jack_transport_query(backend->client, &position);
  FlOutsideClock clock = { false, false, 0.0, 0U, 0.0 };
  if ((position.valid & JackPositionBBT) && position.beats_per_minute > 0.0 &&
      position.beats_per_bar >= 1.0f && position.frame_rate > 0U) {
    clock.valid         = true;
    clock.rolling       = state == JackTransportRolling;
    clock.bpm           = position.beats_per_minute;
    clock.beats_per_bar = (uint32_t)position.beats_per_bar;
    clock.beats         = (double)position.frame * position.beats_per_minute /
                  (60.0 * (double)position.frame_rate);
  }
  fl_engine_follow(backend->config.engine, clock.valid ? &clock : NULL);
}

/* --midi: this period's notes from midi_in, parsed here in the RT thread
   (JACK's MIDI buffer is read in place, nothing is allocated): note-on of
   key k plays slot k - base at its event's frame, note-off (or note-on at
   velocity 0) releases it. Other channels than --midi-channel and keys
   outside the slots are counted as ignored; other messages are not notes
   and are skipped. */
static FL_REALTIME void
read_notes(FlBackend* backend, jack_nframes_t frame_count)
{
  void* const    buffer = jack_port_get_buffer(backend->midi_port, frame_count);
  const uint32_t events = jack_midi_get_event_count(buffer);
  uint32_t       count  = 0U;
  uint32_t       ignored = 0U;
  for (uint32_t i = 0U; i < events; ++i) {
    jack_midi_event_t event;
    if (jack_midi_event_get(&event, buffer, i) || event.size < 3U) {
      continue;
    }
    const uint8_t type    = event.buffer[0] & 0xF0U;
    const uint8_t channel = (uint8_t)((event.buffer[0] & 0x0FU) + 1U);
    if (type != 0x90U && type != 0x80U) {
      continue;
    }
    const uint32_t key      = event.buffer[1] & 0x7FU;
    const uint32_t velocity = type == 0x90U ? event.buffer[2] & 0x7FU : 0U;
    if ((backend->config.midi_channel &&
         channel != backend->config.midi_channel) ||
        key < backend->config.midi_base || count == FL_MAX_NOTES_PER_PERIOD) {
      ++ignored;
      continue;
    }
    backend->notes[count++] =
      (FlNote){ event.time < frame_count ? event.time : frame_count - 1U,
                key - backend->config.midi_base,
                (float)velocity / 127.0f };
  }
  if (count || ignored) {
    fl_engine_queue_notes(
      backend->config.engine, backend->notes, count, ignored);
  }
}

/* --transport master: publish flitzid's clock as JACK's BBT. JACK calls
   this in the RT thread, once per period. */
static FL_REALTIME void
on_timebase(jack_transport_state_t state,
            jack_nframes_t         frame_count,
            jack_position_t*       position,
            int                    new_position,
            void*                  data)
{
  (void)state;
  (void)new_position;
  FlBackend* const         backend = (FlBackend*)data;
  double                   beats   = 0.0;
  const FlTransport* const clock =
    fl_engine_rt_transport(backend->config.engine, &beats);
  /* JACK asks for the position of the next cycle (position->frame is its
     first frame): the beats one period on from the first frame of the
     period just processed. */
  beats +=
    (double)frame_count * clock->bpm / (60.0 * (double)clock->sample_rate);
  beats                      = beats > 0.0 ? beats : 0.0;
  const double bar_beats     = (double)clock->beats_per_bar;
  const double bar           = floor(beats / bar_beats);
  const double in_bar        = beats - bar * bar_beats;
  const double beat          = floor(in_bar);
  position->valid            = JackPositionBBT;
  position->bar              = (int32_t)bar + 1;
  position->beat             = (int32_t)beat + 1;
  position->tick             = (int32_t)((in_bar - beat) * TICKS_PER_BEAT);
  position->bar_start_tick   = bar * bar_beats * TICKS_PER_BEAT;
  position->beats_per_bar    = (float)clock->beats_per_bar;
  position->beat_type        = 4.0f;
  position->ticks_per_beat   = TICKS_PER_BEAT;
  position->beats_per_minute = clock->bpm;
}

static FL_REALTIME double
seconds_of(const struct timespec* t)
{
  return (double)t->tv_sec + (double)t->tv_nsec * 1e-9;
}

/* The process callback: one period of the engine, and its cost. Nothing here
   allocates, locks, logs or waits; clock_gettime(CLOCK_MONOTONIC) is a vDSO
   read of the clock, not a system call. */
static FL_REALTIME int
on_process(jack_nframes_t frame_count, void* data)
{
  FlBackend* const backend = (FlBackend*)data;
  struct timespec  begin;
  clock_gettime(CLOCK_MONOTONIC, &begin);

  jack_nframes_t first_frame  = 0U;
  jack_time_t    usecs        = 0U;
  jack_time_t    next_usecs   = 0U;
  float          period_usecs = 0.0f;
  if (jack_get_cycle_times(
        backend->client, &first_frame, &usecs, &next_usecs, &period_usecs)) {
    first_frame = jack_last_frame_time(backend->client);
    usecs       = jack_frames_to_time(backend->client, first_frame);
    next_usecs =
      jack_frames_to_time(backend->client, first_frame + frame_count);
  }

  float* outputs[FL_MAX_OUTPUTS] = { NULL, NULL };
  for (uint32_t c = 0U; c < backend->config.output_count; ++c) {
    outputs[c] = (float*)jack_port_get_buffer(backend->ports[c], frame_count);
  }

  const FlPeriod period = {
    frame_count, first_frame, (int64_t)usecs, (int64_t)next_usecs
  };
  if (backend->config.transport_mode == TRANSPORT_FOLLOW) {
    follow_transport(backend);
  }
  if (backend->midi_port) {
    read_notes(backend, frame_count);
  }
  fl_engine_process(backend->config.engine, &period, outputs);

  /* DSP load: our share of the period, as JACK's own load figure is for the
     whole graph. Averaged over about 20 periods. */
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  const double span = next_usecs > usecs ? (double)(next_usecs - usecs) : 0.0;
  if (span > 0.0) {
    const float load =
      (float)((seconds_of(&end) - seconds_of(&begin)) * 1e6 / span * 100.0);
    const float avg =
      atomic_load_explicit(&backend->load_avg_pct, memory_order_relaxed);
    atomic_store_explicit(
      &backend->load_avg_pct, avg + (load - avg) * 0.05f, memory_order_relaxed);
    if (load >
        atomic_load_explicit(&backend->load_peak_pct, memory_order_relaxed)) {
      atomic_store_explicit(
        &backend->load_peak_pct, load, memory_order_relaxed);
    }
  }
  return 0;
}

static void
on_shutdown(jack_status_t code, const char* reason, void* data)
{
  (void)code;
  (void)reason;
  FlBackend* const backend = (FlBackend*)data;
  atomic_store_explicit(&backend->connected, false, memory_order_relaxed);
  atomic_store_explicit(&backend->lost, true, memory_order_release);
  if (backend->config.wake) {
    backend->config.wake(backend->config.wake_data);
  }
}

static int
on_xrun(void* data)
{
  FlBackend* const backend = (FlBackend*)data;
  atomic_fetch_add_explicit(&backend->xruns, 1U, memory_order_relaxed);
  if (backend->config.wake) {
    backend->config.wake(backend->config.wake_data);
  }
  return 0;
}

static int
on_sample_rate(jack_nframes_t sample_rate, void* data)
{
  FlBackend* const backend = (FlBackend*)data;
  atomic_store_explicit(
    &backend->sample_rate, sample_rate, memory_order_relaxed);
  if (backend->config.wake) {
    backend->config.wake(backend->config.wake_data);
  }
  return 0;
}

static int
on_buffer_size(jack_nframes_t frame_count, void* data)
{
  /* The engine renders any period length without buffers of its own, so
     there is nothing to resize; the length is kept for /status. */
  FlBackend* const backend = (FlBackend*)data;
  atomic_store_explicit(
    &backend->period_frames, frame_count, memory_order_relaxed);
  return 0;
}

/* JACK reports errors through this hook; route them to our log. */
static void
on_jack_error(const char* message)
{
  fl_log(FL_LOG_DEBUG, "jack: %s", message);
}

static void
on_jack_info(const char* message)
{
  fl_log(FL_LOG_DEBUG, "jack: %s", message);
}

FlBackend*
fl_backend_new(const FlBackendConfig* config)
{
  if (config->output_count < 1U || config->output_count > FL_MAX_OUTPUTS) {
    return NULL;
  }

  FlBackend* const backend = (FlBackend*)calloc(1, sizeof(FlBackend));
  if (!backend || !(backend->client_name = strdup(config->client_name))) {
    free(backend);
    return NULL;
  }

  backend->config             = *config;
  backend->config.client_name = backend->client_name;
  atomic_init(&backend->lost, false);
  atomic_init(&backend->connected, false);
  atomic_init(&backend->sample_rate, 0U);
  atomic_init(&backend->period_frames, 0U);
  atomic_init(&backend->xruns, 0U);
  atomic_init(&backend->load_avg_pct, 0.0f);
  atomic_init(&backend->load_peak_pct, 0.0f);
  jack_set_error_function(on_jack_error);
  jack_set_info_function(on_jack_info);
  return backend;
}

void
fl_backend_free(FlBackend* backend)
{
  if (backend) {
    fl_backend_close(backend);
    free(backend->client_name);
    free(backend);
  }
}

static void
connect_physical(FlBackend* backend)
{
  const char** const playback =
    jack_get_ports(backend->client,
                   NULL,
                   JACK_DEFAULT_AUDIO_TYPE,
                   JackPortIsPhysical | JackPortIsInput);
  if (!playback || !playback[0]) {
    fl_log(FL_LOG_WARNING, "--connect: no physical playback ports");
    jack_free(playback);
    return;
  }

  /* Mono goes to the first two speakers, stereo to left and right. */
  for (uint32_t i = 0U; i < 2U && playback[i]; ++i) {
    jack_port_t* const port =
      backend->ports[i < backend->config.output_count ? i : 0U];
    const int error =
      jack_connect(backend->client, jack_port_name(port), playback[i]);
    if (error) {
      fl_log(FL_LOG_WARNING,
             "cannot connect %s to %s",
             jack_port_name(port),
             playback[i]);
    }
  }
  jack_free(playback);
}

FlStatus
fl_backend_open(FlBackend* backend, char* reason, size_t reason_size)
{
  jack_status_t status = (jack_status_t)0;
  backend->client =
    jack_client_open(backend->client_name, JackNoStartServer, &status);
  if (!backend->client) {
    snprintf(reason,
             reason_size,
             "cannot connect to the JACK server%s",
             (status & JackServerFailed) ? " (is it running?)" : "");
    return FL_ERR_OPEN;
  }

  atomic_store_explicit(&backend->lost, false, memory_order_relaxed);
  atomic_store_explicit(&backend->sample_rate,
                        jack_get_sample_rate(backend->client),
                        memory_order_relaxed);
  atomic_store_explicit(&backend->period_frames,
                        jack_get_buffer_size(backend->client),
                        memory_order_relaxed);

  jack_set_process_callback(backend->client, on_process, backend);
  jack_on_info_shutdown(backend->client, on_shutdown, backend);
  jack_set_xrun_callback(backend->client, on_xrun, backend);
  jack_set_sample_rate_callback(backend->client, on_sample_rate, backend);
  jack_set_buffer_size_callback(backend->client, on_buffer_size, backend);

  if (backend->config.prepare) {
    backend->config.prepare(backend->config.wake_data,
                            jack_get_sample_rate(backend->client));
  }

  for (uint32_t c = 0U; c < backend->config.output_count; ++c) {
    char name[16];
    snprintf(name, sizeof(name), "out_%u", c + 1U);
    backend->ports[c] = jack_port_register(
      backend->client, name, JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
    if (!backend->ports[c]) {
      snprintf(reason, reason_size, "cannot register JACK port %s", name);
      jack_client_close(backend->client);
      backend->client = NULL;
      return FL_ERR_OPEN;
    }
  }

  if (backend->config.transport_mode == TRANSPORT_MASTER &&
      jack_set_timebase_callback(backend->client, 0, on_timebase, backend)) {
    fl_log(FL_LOG_WARNING, "cannot become the JACK timebase master");
  }

  backend->midi_port = NULL;
  if (backend->config.midi) {
    backend->midi_port = jack_port_register(
      backend->client, "midi_in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
    if (!backend->midi_port) {
      snprintf(reason, reason_size, "cannot register JACK port midi_in");
      jack_client_close(backend->client);
      backend->client = NULL;
      return FL_ERR_OPEN;
    }
  }

  if (jack_activate(backend->client)) {
    snprintf(reason, reason_size, "cannot activate the JACK client");
    jack_client_close(backend->client);
    backend->client = NULL;
    return FL_ERR_OPEN;
  }

  atomic_store_explicit(&backend->connected, true, memory_order_relaxed);
  if (backend->config.connect_physical) {
    connect_physical(backend);
  }
  fl_log(FL_LOG_INFO,
         "JACK client '%s' active at %u Hz, period %u",
         jack_get_client_name(backend->client),
         jack_get_sample_rate(backend->client),
         jack_get_buffer_size(backend->client));
  return FL_SUCCESS;
}

void
fl_backend_close(FlBackend* backend)
{
  if (!backend->client) {
    return;
  }

  if (!atomic_load_explicit(&backend->lost, memory_order_acquire)) {
    if (backend->config.transport_mode == TRANSPORT_MASTER) {
      jack_release_timebase(backend->client);
    }
    jack_deactivate(backend->client);
  }
  jack_client_close(backend->client);
  backend->client = NULL;
  atomic_store_explicit(&backend->connected, false, memory_order_relaxed);
}

bool
fl_backend_lost(const FlBackend* backend)
{
  return atomic_load_explicit(&backend->lost, memory_order_acquire);
}

void
fl_backend_stats(FlBackend* backend, bool reset_peak, FlBackendStats* stats)
{
  stats->connected =
    atomic_load_explicit(&backend->connected, memory_order_relaxed);
  stats->sample_rate =
    atomic_load_explicit(&backend->sample_rate, memory_order_relaxed);
  stats->period_frames =
    atomic_load_explicit(&backend->period_frames, memory_order_relaxed);
  stats->xruns = atomic_load_explicit(&backend->xruns, memory_order_relaxed);
  stats->load_avg_pct =
    atomic_load_explicit(&backend->load_avg_pct, memory_order_relaxed);
  stats->load_peak_pct =
    reset_peak
      ? atomic_exchange_explicit(
          &backend->load_peak_pct, 0.0f, memory_order_relaxed)
      : atomic_load_explicit(&backend->load_peak_pct, memory_order_relaxed);
}

int64_t
fl_backend_now_usecs(void)
{
  return (int64_t)jack_get_time();
}
