#include <flitzi/api.h>

#include <flitzi/log.h>

#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
#define NTP_UNIX_OFFSET 2208988800.0

/* liblo's arguments point into the packet, 4-byte aligned, while lo_arg is
   an 8-byte aligned union: read them by copying, not through the union. */
static int32_t
arg_int(const lo_arg* arg)
{
  int32_t value = 0;
  memcpy(&value, arg, sizeof(value));
  return value;
}

static float
arg_float(const lo_arg* arg)
{
  float value = 0.0f;
  memcpy(&value, arg, sizeof(value));
  return value;
}

static const char*
arg_string(const lo_arg* arg)
{
  return (const char*)arg;
}

/* A number argument: float32, float64 or int32 (the contract's "(f)"). */
static double
arg_number(char type, const lo_arg* arg)
{
  if (type == 'd') {
    double value = 0.0;
    memcpy(&value, arg, sizeof(value));
    return value;
  }
  return type == 'i' ? (double)arg_int(arg) : (double)arg_float(arg);
}

static void
fail_slot(FlOscServer*     server,
          const FlOscPeer* peer,
          const char*      path,
          int32_t          slot,
          const char*      reason)
{
  lo_message const message = lo_message_new();
  lo_message_add_string(message, path);
  lo_message_add_int32(message, slot);
  lo_message_add_string(message, reason);
  fl_osc_reply(server, peer, "/fail", message);
  lo_message_free(message);
}

static void
fail(FlOscServer*     server,
     const FlOscPeer* peer,
     const char*      path,
     const char*      reason)
{
  lo_message const message = lo_message_new();
  lo_message_add_string(message, path);
  lo_message_add_string(message, reason);
  fl_osc_reply(server, peer, "/fail", message);
  lo_message_free(message);
}

static void reset_settings(FlApi* api, uint32_t slot);

/* Check a number argument against its range (NaN is outside every one);
   on failure reply "NAME must be a number from MIN to MAX UNIT (got V)",
   the wording of the slot settings' reasons, and return false. */
static bool
in_range(FlOscServer*     server,
         const FlOscPeer* peer,
         const char*      path,
         const char*      name,
         double           value,
         double           min,
         double           max,
         const char*      unit)
{
  if (value >= min && value <= max) {
    return true;
  }
  char reason[128];
  snprintf(reason,
           sizeof(reason),
           "%s must be a number from %g to %g%s (got %g)",
           name,
           min,
           max,
           unit,
           value);
  fail(server, peer, path, reason);
  return false;
}

/* Check an id from the network; on failure, reply and return false. */
static bool
check_slot(FlApi*           api,
           FlOscServer*     server,
           const FlOscPeer* peer,
           const char*      path,
           int32_t          slot)
{
  const uint32_t count = fl_bank_slot_count(api->bank);
  if (slot >= 0 && (uint32_t)slot < count) {
    return true;
  }

  char reason[96];
  snprintf(reason,
           sizeof(reason),
           "slot %d is out of range (0..%u)",
           slot,
           count - 1U);
  fail_slot(server, peer, path, slot, reason);
  return false;
}

static void
reply_done(FlOscServer*     server,
           const FlOscPeer* peer,
           const char*      path,
           int32_t          value,
           bool             with_value)
{
  lo_message const message = lo_message_new();
  lo_message_add_string(message, path);
  if (with_value) {
    lo_message_add_int32(message, value);
  }
  fl_osc_reply(server, peer, "/done", message);
  lo_message_free(message);
}

/* Map a bundle's timetag to JACK's clock: the distance from now on the
   system clock, added to JACK's now. The RT thread then maps that time to a
   frame with the timing of the period it is in. */
static int64_t
start_time_of(const FlApi* api, lo_timetag time)
{
  if (time.sec == 0U && time.frac <= 1U) {
    return FL_PLAY_NOW;
  }

  /* Read the two clocks as one instant: JACK's before and after the
     system's, kept only if the pair was not split by preemption (a few
     microseconds apart), else the closest of a few tries. A thread
     descheduled between the reads would shift the start by as long as it
     waited. */
  struct timespec now        = { 0, 0 };
  int64_t         jack_usecs = 0;
  int64_t         best_gap   = INT64_MAX;
  for (int attempt = 0; attempt < 8 && best_gap > 20; ++attempt) {
    struct timespec system;
    const int64_t   before = api->now_usecs();
    clock_gettime(CLOCK_REALTIME, &system);
    const int64_t after = api->now_usecs();
    if (after - before < best_gap) {
      best_gap   = after - before;
      jack_usecs = before + (after - before) / 2;
      now        = system;
    }
  }

  const double target =
    (double)time.sec - NTP_UNIX_OFFSET + (double)time.frac / 4294967296.0;
  const double ahead_usecs =
    (target - ((double)now.tv_sec + (double)now.tv_nsec * 1e-9)) * 1e6;
  return jack_usecs + (int64_t)llround(ahead_usecs);
}

/* Reply /fail if a request could not be queued. */
static void
fail_request(FlOscServer*     server,
             const FlOscPeer* peer,
             const char*      path,
             int32_t          slot,
             FlStatus         status)
{
  if (status) {
    fail_slot(server,
              peer,
              path,
              slot,
              status == FL_ERR_QUEUE_FULL ? "queue full" : fl_strerror(status));
  }
}

static void
on_load(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/load", slot)) {
    return;
  }

  const FlStatus status =
    api->loader
      ? fl_loader_load(
          api->loader, (uint32_t)slot, arg_string(argv[1]), peer, sizeof(*peer))
      : FL_ERR_QUEUE_FULL;
  fail_request(server, peer, "/load", slot, status);
  if (!status) {
    fl_session_slot_requested(api->session, (uint32_t)slot);
  }
}

/* /play and /play/exclusive. */
static void
launch(FlApi*           api,
       FlOscServer*     server,
       const FlOscPeer* peer,
       const char*      path,
       const char*      types,
       lo_arg* const*   argv,
       lo_timetag       time,
       bool             exclusive)
{
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, path, slot)) {
    return;
  }

  char  reason[96];
  float velocity = 0.0f;
  if (types[1] == 'i') {
    if (arg_int(argv[1]) < 0 || arg_int(argv[1]) > 127) {
      snprintf(reason,
               sizeof(reason),
               "velocity %d is not in 0..127",
               arg_int(argv[1]));
      fail_slot(server, peer, path, slot, reason);
      return;
    }
    velocity = (float)arg_int(argv[1]) / 127.0f;
  } else {
    velocity = arg_float(argv[1]);
    if (!(velocity >= 0.0f && velocity <= 1.0f)) {
      snprintf(reason,
               sizeof(reason),
               "velocity %g is not in [0, 1]",
               (double)velocity);
      fail_slot(server, peer, path, slot, reason);
      return;
    }
  }

  FlBackendStats backend = { 0 };
  if (api->backend) {
    fl_backend_stats(api->backend, false, &backend);
  }
  if (api->backend && !backend.connected) {
    fail_slot(server, peer, path, slot, "not connected to the JACK server");
    return;
  }

  const FlStatus status = fl_engine_launch(
    api->engine, (uint32_t)slot, velocity, start_time_of(api, time), exclusive);
  api->plays_queued += status == FL_SUCCESS;
  if (status == FL_ERR_EMPTY_SLOT) {
    snprintf(reason, sizeof(reason), "slot %d is empty", slot);
    fail_slot(server, peer, path, slot, reason);
  } else if (status == FL_ERR_QUEUE_FULL) {
    fail_slot(server, peer, path, slot, "queue full");
  } else if (status) {
    fail_slot(server, peer, path, slot, fl_strerror(status));
  }
}

static void
on_play(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  launch((FlApi*)data, server, peer, "/play", types, argv, time, false);
}

static void
on_play_exclusive(void*            data,
                  FlOscServer*     server,
                  const FlOscPeer* peer,
                  const char*      types,
                  lo_arg* const*   argv,
                  lo_timetag       time)
{
  launch(
    (FlApi*)data, server, peer, "/play/exclusive", types, argv, time, true);
}

static void
on_stop(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const bool    all  = types[0] == '\0';
  const int32_t slot = all ? -1 : arg_int(argv[0]);
  if (!all && !check_slot(api, server, peer, "/stop", slot)) {
    return;
  }

  if (fl_engine_stop(api->engine, all ? FL_ALL_SLOTS : (uint32_t)slot)) {
    fail_slot(server, peer, "/stop", slot, "queue full");
  }
}

static void
on_unload(void*            data,
          FlOscServer*     server,
          const FlOscPeer* peer,
          const char*      types,
          lo_arg* const*   argv,
          lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/unload", slot)) {
    return;
  }

  /* Whether the slot holds a sample, read before the loader may empty it. */
  const bool     loaded = fl_bank_get(api->bank, (uint32_t)slot) != NULL;
  const FlStatus status =
    api->loader
      ? fl_loader_unload(api->loader, (uint32_t)slot, peer, sizeof(*peer))
      : FL_ERR_QUEUE_FULL;
  fail_request(server, peer, "/unload", slot, status);
  if (!status) {
    fl_session_slot_requested(api->session, (uint32_t)slot);
  }
  if (!status && loaded) {
    /* An emptied pad forgets its settings (a reload keeps them); an /unload
       of an empty slot fails and changes nothing. */
    reset_settings(api, (uint32_t)slot);
  }
}

static void
on_query(void*            data,
         FlOscServer*     server,
         const FlOscPeer* peer,
         const char*      types,
         lo_arg* const*   argv,
         lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/query", slot)) {
    return;
  }

  static FlSlotInfo info; /* OSC thread only; 4 KiB is too much for a frame */
  fl_bank_info(api->bank, (uint32_t)slot, &info);

  lo_message const message = lo_message_new();
  lo_message_add_int32(message, slot);
  lo_message_add_string(message, info.path);
  lo_message_add_int32(message, (int32_t)info.frame_count);
  lo_message_add_int32(message, (int32_t)info.channels);
  lo_message_add_int32(message, (int32_t)info.source_rate);
  lo_message_add_int32(message, info.loaded ? 1 : 0);
  fl_osc_reply(server, peer, "/slot", message);
  lo_message_free(message);
}

static int32_t
clamp_int32(uint64_t value)
{
  return value > INT32_MAX ? INT32_MAX : (int32_t)value;
}

static void
on_status(void*            data,
          FlOscServer*     server,
          const FlOscPeer* peer,
          const char*      types,
          lo_arg* const*   argv,
          lo_timetag       time)
{
  (void)types;
  (void)argv;
  (void)time;
  FlApi* const   api     = (FlApi*)data;
  FlEngineStats  engine  = { 0 };
  FlBackendStats backend = { 0 };
  fl_engine_stats(api->engine, &engine);
  if (api->backend) {
    fl_backend_stats(api->backend, true, &backend);
  }

  lo_message const message = lo_message_new();
  lo_message_add_int32(message, (int32_t)engine.voices_active);
  lo_message_add_int32(message, (int32_t)engine.voices_max);
  lo_message_add_int32(message, (int32_t)fl_bank_loaded_count(api->bank));
  lo_message_add_int32(message, (int32_t)fl_bank_slot_count(api->bank));
  lo_message_add_int32(message, (int32_t)backend.sample_rate);
  lo_message_add_float(message, backend.load_avg_pct);
  lo_message_add_float(message, backend.load_peak_pct);
  lo_message_add_int32(message, clamp_int32(backend.xruns));
  FlOscCounters counters;
  fl_osc_counters(server, &counters);
  lo_message_add_int32(
    message, clamp_int32(engine.dropped_commands + counters.dropped_packets));
  lo_message_add_int32(message, clamp_int32(engine.late_plays));
  fl_osc_reply(server, peer, "/status.reply", message);
  lo_message_free(message);
}

static void
on_stats(void*            data,
         FlOscServer*     server,
         const FlOscPeer* peer,
         const char*      types,
         lo_arg* const*   argv,
         lo_timetag       time)
{
  (void)types;
  (void)argv;
  (void)time;
  FlApi* const  api    = (FlApi*)data;
  FlEngineStats engine = { 0 };
  FlOscCounters counters;
  fl_engine_stats(api->engine, &engine);
  fl_osc_counters(server, &counters);

  lo_message const message = lo_message_new();
  lo_message_add_int64(message, (int64_t)counters.messages);
  lo_message_add_int64(message, (int64_t)api->plays_queued);
  lo_message_add_int64(message, (int64_t)engine.plays);
  lo_message_add_int64(message, (int64_t)engine.dropped_commands);
  lo_message_add_int64(message, (int64_t)counters.dropped_packets);
  lo_message_add_int64(message, (int64_t)counters.failed);
  /* v2: MIDI notes taken, and ignored (other channels, keys outside the
     slots). */
  lo_message_add_int64(message, (int64_t)engine.notes);
  lo_message_add_int64(message, (int64_t)engine.ignored_notes);
  /* Blocks a key-locked voice played without its render. */
  lo_message_add_int64(message, (int64_t)engine.stretch_misses);
  fl_osc_reply(server, peer, "/stats.reply", message);
  lo_message_free(message);
}

static void
on_ping(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  (void)data;
  (void)types;
  (void)argv;
  (void)time;
  lo_message const message = lo_message_new();
  lo_message_add_string(message, FL_VERSION);
  lo_message_add_int32(message, FL_API_VERSION);
  fl_osc_reply(server, peer, "/pong", message);
  lo_message_free(message);
}

static void
on_notify(void*            data,
          FlOscServer*     server,
          const FlOscPeer* peer,
          const char*      types,
          lo_arg* const*   argv,
          lo_timetag       time)
{
  (void)data;
  (void)types;
  (void)time;
  const int32_t flag = arg_int(argv[0]) ? 1 : 0;
  fl_osc_subscribe(server, peer, flag);
  reply_done(server, peer, "/notify", flag, true);
}

static void
on_quit(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  (void)types;
  (void)argv;
  (void)time;
  FlApi* const api = (FlApi*)data;
  reply_done(server, peer, "/quit", 0, false);
  if (api->quit) {
    api->quit(api->quit_data);
  }
}

/* Slot settings */

/* The length of the slot's sample in seconds, or 0 when it is empty. */
static double
slot_length(FlApi* api, uint32_t slot)
{
  static FlSlotInfo info; /* OSC thread only; 4 KiB is too much for a frame */
  if (!fl_bank_info(api->bank, slot, &info) || !info.loaded ||
      info.sample_rate == 0U) {
    return 0.0;
  }
  return (double)info.frame_count / (double)info.sample_rate;
}

static FlStatus
publish_settings(FlApi* api, uint32_t slot, const FlSlotSettings* settings)
{
  const FlSlotParams params = fl_settings_params(settings);
  const FlStatus     status = fl_engine_set_slot(api->engine, slot, &params);
  if (!status) {
    api->settings[slot] = *settings;
    fl_session_set_slot(api->session, slot, settings);
  }
  return status;
}

/* A global setting reached the engine: keep it for --state. */
static void
globals_changed(FlApi* api)
{
  fl_session_set_globals(api->session, &api->globals);
}

static void
reset_settings(FlApi* api, uint32_t slot)
{
  FlSlotSettings settings;
  fl_settings_reset(&settings);
  publish_settings(api, slot, &settings);
}

/* Read one key/value pair of /slot/set into `settings`; on failure write
   the reason. */
static bool
read_setting(FlApi*          api,
             FlSlotSettings* settings,
             const char*     name,
             char            type,
             const lo_arg*   value,
             char*           reason,
             size_t          reason_size)
{
  const FlSettingKey key = fl_settings_find(name);
  if (key == FL_KEY_COUNT) {
    snprintf(reason, reason_size, "unknown key '%s'", name);
    return false;
  }

  const FlSettingInfo* const info   = &fl_settings_table()[key];
  double                     number = 0.0;
  if (info->type == FL_VALUE_ENUM) {
    char choices[160];
    fl_settings_choices(key, choices, sizeof(choices));
    if (type != 's') {
      snprintf(
        reason, reason_size, "%s takes a string: %s", info->name, choices);
      return false;
    }
    const char* const text  = arg_string(value);
    size_t            index = 0U;
    while (info->choices[index] && strcmp(info->choices[index], text)) {
      ++index;
    }
    if (!info->choices[index]) {
      snprintf(reason,
               reason_size,
               "%s must be %s (got '%.64s')",
               info->name,
               choices,
               text);
      return false;
    }
    number = (double)index;
  } else if (info->type == FL_VALUE_INTEGER) {
    if (type != 'i') {
      snprintf(
        reason, reason_size, "%s takes a whole number (int32)", info->name);
      return false;
    }
    number = (double)arg_int(value);
  } else {
    if (type == 's') {
      snprintf(reason,
               reason_size,
               "%s takes a number (float, double or int)",
               info->name);
      return false;
    }
    number = arg_number(type, value);
  }

  if (!fl_settings_check(
        key, number, api->max_voices, api->bus_count, reason, reason_size)) {
    return false;
  }
  settings->value[key] = number;
  return true;
}

/* Keys and values of one /slot/set at most: every key a few times over. */
#define MAX_SETTING_PAIRS 32U

static void
on_slot_set(void*            data,
            FlOscServer*     server,
            const FlOscPeer* peer,
            const char*      types,
            lo_arg* const*   argv,
            lo_timetag       time)
{
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/slot/set", slot)) {
    return;
  }

  char         reason[320];
  const size_t values = strlen(types) - 1U;
  if (values / 2U > MAX_SETTING_PAIRS) {
    snprintf(reason,
             sizeof(reason),
             "too many settings: %zu pairs (at most %u)",
             values / 2U,
             MAX_SETTING_PAIRS);
    fail_slot(server, peer, "/slot/set", slot, reason);
    return;
  }

  FlSlotSettings settings = api->settings[slot];
  for (size_t i = 1U; i <= values; i += 2U) {
    if (types[i] != 's') {
      snprintf(reason,
               sizeof(reason),
               "argument %zu must be a key (a string)",
               i + 1U);
      fail_slot(server, peer, "/slot/set", slot, reason);
      return;
    }
    if (i + 1U > values) {
      snprintf(reason,
               sizeof(reason),
               "key '%.64s' has no value",
               arg_string(argv[i]));
      fail_slot(server, peer, "/slot/set", slot, reason);
      return;
    }
    if (!read_setting(api,
                      &settings,
                      arg_string(argv[i]),
                      types[i + 1U],
                      argv[i + 1U],
                      reason,
                      sizeof(reason))) {
      fail_slot(server, peer, "/slot/set", slot, reason);
      return;
    }
  }
  if (!fl_settings_check_region(
        &settings, slot_length(api, (uint32_t)slot), reason, sizeof(reason))) {
    fail_slot(server, peer, "/slot/set", slot, reason);
    return;
  }
  if (publish_settings(api, (uint32_t)slot, &settings)) {
    fail_slot(server, peer, "/slot/set", slot, "queue full");
  }
}

static void
on_slot_get(void*            data,
            FlOscServer*     server,
            const FlOscPeer* peer,
            const char*      types,
            lo_arg* const*   argv,
            lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/slot/get", slot)) {
    return;
  }

  /* A region that no longer fits the loaded sample is clamped to it, as
     the engine plays it. */
  FlSlotSettings settings = api->settings[slot];
  const double   length   = slot_length(api, (uint32_t)slot);
  double* const  value    = settings.value;
  if (length > 0.0) {
    value[FL_KEY_END] = value[FL_KEY_END] > length ? 0.0 : value[FL_KEY_END];
    value[FL_KEY_START] =
      value[FL_KEY_START] >= length ? 0.0 : value[FL_KEY_START];
    if (value[FL_KEY_END] > 0.0 && value[FL_KEY_START] >= value[FL_KEY_END]) {
      value[FL_KEY_START] = 0.0;
    }
  }

  const FlSettingInfo* const table   = fl_settings_table();
  lo_message const           message = lo_message_new();
  lo_message_add_int32(message, slot);
  for (int key = 0; key < FL_KEY_COUNT; ++key) {
    lo_message_add_string(message, table[key].name);
    if (table[key].type == FL_VALUE_ENUM) {
      lo_message_add_string(message, table[key].choices[(int)value[key]]);
    } else if (table[key].type == FL_VALUE_INTEGER) {
      lo_message_add_int32(message, (int32_t)value[key]);
    } else {
      lo_message_add_float(message, (float)value[key]);
    }
  }
  fl_osc_reply(server, peer, "/slot/settings", message);
  lo_message_free(message);
}

static void
on_slot_reset(void*            data,
              FlOscServer*     server,
              const FlOscPeer* peer,
              const char*      types,
              lo_arg* const*   argv,
              lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/slot/reset", slot)) {
    return;
  }
  FlSlotSettings settings;
  fl_settings_reset(&settings);
  if (publish_settings(api, (uint32_t)slot, &settings)) {
    fail_slot(server, peer, "/slot/reset", slot, "queue full");
  }
}

/* Transport of a pad: pause, resume, seek */

static void
pause_or_resume(FlApi*           api,
                FlOscServer*     server,
                const FlOscPeer* peer,
                const char*      path,
                lo_arg* const*   argv,
                bool             pause)
{
  const int32_t slot = arg_int(argv[0]);
  if (check_slot(api, server, peer, path, slot) &&
      fl_engine_pause(api->engine, (uint32_t)slot, pause)) {
    fail_slot(server, peer, path, slot, "queue full");
  }
}

static void
on_release(void*            data,
           FlOscServer*     server,
           const FlOscPeer* peer,
           const char*      types,
           lo_arg* const*   argv,
           lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (check_slot(api, server, peer, "/release", slot) &&
      fl_engine_release(api->engine, (uint32_t)slot)) {
    fail_slot(server, peer, "/release", slot, "queue full");
  }
}

static void
on_pause(void*            data,
         FlOscServer*     server,
         const FlOscPeer* peer,
         const char*      types,
         lo_arg* const*   argv,
         lo_timetag       time)
{
  (void)types;
  (void)time;
  pause_or_resume((FlApi*)data, server, peer, "/pause", argv, true);
}

static void
on_resume(void*            data,
          FlOscServer*     server,
          const FlOscPeer* peer,
          const char*      types,
          lo_arg* const*   argv,
          lo_timetag       time)
{
  (void)types;
  (void)time;
  pause_or_resume((FlApi*)data, server, peer, "/resume", argv, false);
}

static void
on_seek(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/seek", slot)) {
    return;
  }

  char         reason[128];
  const double seconds = arg_number(types[1], argv[1]);
  const double length  = slot_length(api, (uint32_t)slot);
  if (length <= 0.0) {
    snprintf(reason, sizeof(reason), "slot %d is empty", slot);
  } else if (!(seconds >= 0.0 && seconds < length)) {
    snprintf(reason,
             sizeof(reason),
             "position %g s is not in the sample (0 to %g s)",
             seconds,
             length);
  } else if (fl_engine_seek(api->engine, (uint32_t)slot, seconds)) {
    snprintf(reason, sizeof(reason), "queue full");
  } else {
    return;
  }
  fail_slot(server, peer, "/seek", slot, reason);
}

static void
on_master_gain(void*            data,
               FlOscServer*     server,
               const FlOscPeer* peer,
               const char*      types,
               lo_arg* const*   argv,
               lo_timetag       time)
{
  (void)time;
  FlApi* const api     = (FlApi*)data;
  const double gain_db = arg_number(types[0], argv[0]);
  if (!in_range(
        server, peer, "/master/gain", "gain", gain_db, -60.0, 12.0, " dB")) {
    return; /* answered */
  } else if (fl_engine_set_master_gain(api->engine,
                                       fl_settings_db_to_gain(gain_db))) {
    fail(server, peer, "/master/gain", "queue full");
  } else {
    api->globals.master_gain_db = gain_db;
    globals_changed(api);
  }
}

static void
on_meters(void*            data,
          FlOscServer*     server,
          const FlOscPeer* peer,
          const char*      types,
          lo_arg* const*   argv,
          lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api = (FlApi*)data;
  const int32_t hz  = arg_int(argv[0]);
  char          reason[96];
  if (hz < 0 || hz > (int32_t)FL_MAX_METER_HZ) {
    snprintf(reason,
             sizeof(reason),
             "rate %d is not in 0..%u (0 turns meters off)",
             hz,
             FL_MAX_METER_HZ);
    fail(server, peer, "/meters", reason);
    return;
  }
  const FlStatus status =
    api->telemetry ? fl_telemetry_set_meters(api->telemetry, peer, (uint32_t)hz)
                   : FL_ERR_QUEUE_FULL;
  if (status == FL_ERR_QUEUE_FULL) {
    fail(server, peer, "/meters", "too many meter clients, or queue full");
  } else if (status) {
    fail(server, peer, "/meters", fl_strerror(status));
  } else {
    reply_done(server, peer, "/meters", hz, true);
  }
}

static void
on_speed(void*            data,
         FlOscServer*     server,
         const FlOscPeer* peer,
         const char*      types,
         lo_arg* const*   argv,
         lo_timetag       time)
{
  (void)time;
  FlApi* const api   = (FlApi*)data;
  const double speed = arg_number(types[0], argv[0]);
  if (!in_range(server, peer, "/speed", "speed", speed, 0.5, 2.0, "")) {
    return; /* answered */
  } else if (fl_engine_set_speed(api->engine, speed)) {
    fail(server, peer, "/speed", "queue full");
  } else {
    api->globals.speed = speed;
    globals_changed(api);
  }
}

static void
on_bpmlock(void*            data,
           FlOscServer*     server,
           const FlOscPeer* peer,
           const char*      types,
           lo_arg* const*   argv,
           lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api = (FlApi*)data;
  const int32_t on  = arg_int(argv[0]);
  if (on != 0 && on != 1) {
    fail(server, peer, "/bpmlock", "bpmlock must be 0 or 1");
  } else if (fl_engine_set_bpmlock(api->engine, on == 1)) {
    fail(server, peer, "/bpmlock", "queue full");
  } else {
    api->globals.bpmlock = on == 1;
    globals_changed(api);
  }
}

/* Analysis (§6) */

static void
on_analyze(void*            data,
           FlOscServer*     server,
           const FlOscPeer* peer,
           const char*      types,
           lo_arg* const*   argv,
           lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/analyze", slot)) {
    return;
  }
  char reason[64];
  if (slot_length(api, (uint32_t)slot) <= 0.0) {
    snprintf(reason, sizeof(reason), "slot %d is empty", slot);
    fail_slot(server, peer, "/analyze", slot, reason);
    return;
  }
  const FlStatus status =
    api->loader
      ? fl_loader_analyze(api->loader, (uint32_t)slot, peer, sizeof(*peer))
      : FL_ERR_QUEUE_FULL;
  fail_request(server, peer, "/analyze", slot, status);
}

static void
on_waveform(void*            data,
            FlOscServer*     server,
            const FlOscPeer* peer,
            const char*      types,
            lo_arg* const*   argv,
            lo_timetag       time)
{
  (void)time;
  FlApi* const  api    = (FlApi*)data;
  const int32_t slot   = arg_int(argv[0]);
  const int32_t points = arg_int(argv[1]);
  const double  start  = arg_number(types[2], argv[2]);
  const double  end    = arg_number(types[3], argv[3]);
  if (!check_slot(api, server, peer, "/waveform", slot)) {
    return;
  }
  char         reason[128];
  const double length = slot_length(api, (uint32_t)slot);
  if (length <= 0.0) {
    snprintf(reason, sizeof(reason), "slot %d is empty", slot);
  } else if (points < 1 || points > 2048) {
    snprintf(reason, sizeof(reason), "points %d is not in 1..2048", points);
  } else if (!(start >= 0.0 && start < length)) {
    snprintf(reason,
             sizeof(reason),
             "start %g s is not in the sample (0 to %g s)",
             start,
             length);
  } else if (!(end == 0.0 || (end > start && end <= length * (1.0 + 1e-7)))) {
    snprintf(reason,
             sizeof(reason),
             "end %g s must be 0 (the end) or after start and at most %g s",
             end,
             length);
  } else {
    const FlStatus status = api->loader ? fl_loader_waveform(api->loader,
                                                             (uint32_t)slot,
                                                             (uint32_t)points,
                                                             start,
                                                             end,
                                                             peer,
                                                             sizeof(*peer))
                                        : FL_ERR_QUEUE_FULL;
    fail_request(server, peer, "/waveform", slot, status);
    return;
  }
  fail_slot(server, peer, "/waveform", slot, reason);
}

/* Transport and tempo (§3) */

/* Under --transport jack the tempo and bar are the timebase master's. */
static bool
check_clock_ours(FlApi*           api,
                 FlOscServer*     server,
                 const FlOscPeer* peer,
                 const char*      path)
{
  FlTransportState state;
  fl_engine_transport(api->engine, &state);
  if (api->transport_mode == FL_TRANSPORT_JACK &&
      state.source == FL_CLOCK_JACK) {
    fail(server,
         peer,
         path,
         "the tempo follows the JACK timebase master (--transport jack)");
    return false;
  }
  return true;
}

static void
on_tempo(void*            data,
         FlOscServer*     server,
         const FlOscPeer* peer,
         const char*      types,
         lo_arg* const*   argv,
         lo_timetag       time)
{
  (void)time;
  FlApi* const api = (FlApi*)data;
  const double bpm = arg_number(types[0], argv[0]);
  if (!in_range(
        server, peer, "/tempo", "tempo", bpm, FL_MIN_BPM, FL_MAX_BPM, " BPM")) {
    return; /* answered */
  } else if (!check_clock_ours(api, server, peer, "/tempo")) {
    return; /* answered */
  } else if (fl_engine_set_tempo(api->engine, bpm)) {
    fail(server, peer, "/tempo", "queue full");
  } else {
    api->globals.tempo_bpm = bpm;
    globals_changed(api);
  }
}

static void
on_signature(void*            data,
             FlOscServer*     server,
             const FlOscPeer* peer,
             const char*      types,
             lo_arg* const*   argv,
             lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const  api   = (FlApi*)data;
  const int32_t beats = arg_int(argv[0]);
  char          reason[96];
  if (beats < 1 || beats > (int32_t)FL_MAX_BEATS_PER_BAR) {
    snprintf(reason,
             sizeof(reason),
             "beats per bar must be a whole number from 1 to %u (got %d)",
             FL_MAX_BEATS_PER_BAR,
             beats);
    fail(server, peer, "/signature", reason);
  } else if (!check_clock_ours(api, server, peer, "/signature")) {
    return; /* answered */
  } else if (fl_engine_set_signature(api->engine, (uint32_t)beats)) {
    fail(server, peer, "/signature", "queue full");
  } else {
    api->globals.beats_per_bar = (uint32_t)beats;
    globals_changed(api);
  }
}

static void
on_quantize(void*            data,
            FlOscServer*     server,
            const FlOscPeer* peer,
            const char*      types,
            lo_arg* const*   argv,
            lo_timetag       time)
{
  (void)types;
  (void)time;
  FlApi* const      api  = (FlApi*)data;
  const char* const text = arg_string(argv[0]);
  double            grid = 0.0;
  char              reason[160];
  if (strcmp(text, "off") && !fl_transport_parse_grid(text, &grid)) {
    snprintf(reason,
             sizeof(reason),
             "unknown grid '%.32s' (off, 1/64, 1/32, 1/16, 1/8, 1/4, 1/2, "
             "1, 2 or 4)",
             text);
    fail(server, peer, "/quantize", reason);
  } else if (fl_engine_set_quantize(api->engine, grid)) {
    fail(server, peer, "/quantize", "queue full");
  } else {
    snprintf(api->globals.quantize, sizeof(api->globals.quantize), "%s", text);
    globals_changed(api);
  }
}

static void
on_downbeat(void*            data,
            FlOscServer*     server,
            const FlOscPeer* peer,
            const char*      types,
            lo_arg* const*   argv,
            lo_timetag       time)
{
  (void)types;
  (void)argv;
  FlApi* const api = (FlApi*)data;
  if (check_clock_ours(api, server, peer, "/transport/downbeat") &&
      fl_engine_downbeat(api->engine, start_time_of(api, time))) {
    fail(server, peer, "/transport/downbeat", "queue full");
  }
}

static void
on_transport(void*            data,
             FlOscServer*     server,
             const FlOscPeer* peer,
             const char*      types,
             lo_arg* const*   argv,
             lo_timetag       time)
{
  (void)types;
  (void)argv;
  (void)time;
  FlApi* const     api = (FlApi*)data;
  FlTransportState state;
  fl_engine_transport(api->engine, &state);
  lo_message const message = lo_message_new();
  lo_message_add_string(message,
                        state.source == FL_CLOCK_JACK ? "jack" : "internal");
  lo_message_add_float(message, (float)state.bpm);
  lo_message_add_int32(message, (int32_t)state.beats_per_bar);
  lo_message_add_double(message, state.beats);
  lo_message_add_int32(message, (int32_t)state.rolling);
  fl_osc_reply(server, peer, "/transport.reply", message);
  lo_message_free(message);
}

/* Sessions (§6) */

static void
on_save(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  (void)types;
  (void)argv;
  (void)time;
  FlApi* const api = (FlApi*)data;
  if (!api->session) {
    fail(
      server, peer, "/save", "no state file (start flitzid with --state FILE)");
  } else if (fl_session_save(api->session, peer)) {
    fail(server, peer, "/save", "queue full");
  }
  /* The session's writer answers once FILE is written, or why not. */
}

static const char* const forms_load[]     = { "is", NULL };
static const char* const forms_play[]     = { "if", "ii", NULL };
static const char* const forms_stop[]     = { "", "i", NULL };
static const char* const forms_slot[]     = { "i", NULL };
static const char* const forms_none[]     = { "", NULL };
static const char* const forms_slot_set[] = { "i(*)+", NULL };
static const char* const forms_seek[]     = { "iX", NULL };
static const char* const forms_number[]   = { "X", NULL };
static const char* const forms_string[]   = { "s", NULL };
static const char* const forms_waveform[] = { "iiXX", NULL };

static const FlOscMethod methods[] = {
  { "/load", forms_load, on_load },
  { "/play", forms_play, on_play },
  { "/stop", forms_stop, on_stop },
  { "/unload", forms_slot, on_unload },
  { "/query", forms_slot, on_query },
  { "/status", forms_none, on_status },
  { "/stats", forms_none, on_stats },
  { "/ping", forms_none, on_ping },
  { "/notify", forms_slot, on_notify },
  { "/quit", forms_none, on_quit },
  { "/slot/set", forms_slot_set, on_slot_set },
  { "/slot/get", forms_slot, on_slot_get },
  { "/slot/reset", forms_slot, on_slot_reset },
  { "/play/exclusive", forms_play, on_play_exclusive },
  { "/release", forms_slot, on_release },
  { "/pause", forms_slot, on_pause },
  { "/resume", forms_slot, on_resume },
  { "/seek", forms_seek, on_seek },
  { "/master/gain", forms_number, on_master_gain },
  { "/meters", forms_slot, on_meters },
  { "/tempo", forms_number, on_tempo },
  { "/signature", forms_slot, on_signature },
  { "/quantize", forms_string, on_quantize },
  { "/transport/downbeat", forms_none, on_downbeat },
  { "/transport", forms_none, on_transport },
  { "/speed", forms_number, on_speed },
  { "/bpmlock", forms_slot, on_bpmlock },
  { "/analyze", forms_slot, on_analyze },
  { "/waveform", forms_waveform, on_waveform },
  { "/save", forms_none, on_save },
};

void
fl_api_init(FlApi* api)
{
  for (uint32_t slot = 0U; slot < FL_MAX_SLOTS; ++slot) {
    fl_settings_reset(&api->settings[slot]);
  }
  fl_global_settings_reset(&api->globals);
}

const FlOscMethod*
fl_api_methods(size_t* count)
{
  *count = sizeof(methods) / sizeof(methods[0]);
  return methods;
}

void
fl_api_print_table(FILE* stream)
{
  for (size_t i = 0U; i < sizeof(methods) / sizeof(methods[0]); ++i) {
    fprintf(stream, "%s", methods[i].path);
    for (size_t f = 0U; methods[i].forms[f]; ++f) {
      fprintf(
        stream, " %s", methods[i].forms[f][0] ? methods[i].forms[f] : "-");
    }
    fprintf(stream, "\n");
  }
}

/* /analyze and /waveform replies: to the requester only. */
static void
analysis_done(FlApi* api, const FlLoadResult* result, const FlOscPeer* peer)
{
  const bool        analyze = result->type == FL_REQUEST_ANALYZE;
  const char* const path    = analyze ? "/analyze" : "/waveform";
  lo_message const  message = lo_message_new();
  const char*       reply   = "/fail";
  if (result->status) {
    lo_message_add_string(message, path);
    lo_message_add_int32(message, (int32_t)result->slot);
    lo_message_add_string(message, result->reason);
  } else if (analyze) {
    reply = "/done";
    lo_message_add_string(message, path);
    lo_message_add_int32(message, (int32_t)result->slot);
    lo_message_add_float(message, (float)result->tempo.bpm);
    lo_message_add_float(message, (float)result->tempo.first_beat);
    lo_message_add_float(message, (float)result->tempo.confidence);
  } else {
    /* The pairs as big-endian float32, as OSC numbers are. */
    const uint32_t  count = 2U * result->points;
    uint32_t* const words = (uint32_t*)malloc(count * sizeof(uint32_t));
    lo_blob         blob  = NULL;
    if (words) {
      for (uint32_t i = 0U; i < count; ++i) {
        uint32_t bits = 0U;
        memcpy(&bits, &result->pairs[i], sizeof(bits));
        words[i] = htonl(bits);
      }
      blob = lo_blob_new((int32_t)(count * sizeof(uint32_t)), words);
      free(words);
    }
    if (blob) {
      reply = "/waveform.reply";
      lo_message_add_int32(message, (int32_t)result->slot);
      lo_message_add_int32(message, (int32_t)result->points);
      lo_message_add_blob(message, blob);
      lo_blob_free(blob);
    } else {
      lo_message_add_string(message, path);
      lo_message_add_int32(message, (int32_t)result->slot);
      lo_message_add_string(message, "out of memory");
    }
  }
  if (api->server) {
    fl_osc_post(api->server, peer, false, reply, message);
  } else {
    lo_message_free(message);
  }
}

void
fl_api_load_done(void* data, const FlLoadResult* result)
{
  FlApi* const     api  = (FlApi*)data;
  const FlOscPeer* peer = NULL;
  FlOscPeer        requester;
  memcpy(&requester, result->context, sizeof(requester));
  if (result->type != FL_REQUEST_RELOAD) {
    peer = &requester;
  }
  if (result->type == FL_REQUEST_ANALYZE ||
      result->type == FL_REQUEST_WAVEFORM) {
    analysis_done(api, result, peer);
    return;
  }

  /* Before the reply: a client that has its /done knows FILE will hold it. */
  fl_session_slot_done(api->session, result);

  const char* const path =
    result->type == FL_REQUEST_UNLOAD ? "/unload" : "/load";
  lo_message const message = lo_message_new();
  lo_message_add_string(message, path);
  lo_message_add_int32(message, (int32_t)result->slot);
  if (result->status) {
    lo_message_add_string(message, result->reason);
    fl_log(FL_LOG_INFO, "%s %u failed: %s", path, result->slot, result->reason);
  } else if (result->type != FL_REQUEST_UNLOAD) {
    lo_message_add_int32(message, (int32_t)result->frame_count);
    lo_message_add_int32(message, (int32_t)result->channels);
    lo_message_add_int32(message, (int32_t)result->source_rate);
    fl_log(FL_LOG_DEBUG,
           "slot %u: %u frames, %u channels, %u Hz source",
           result->slot,
           result->frame_count,
           result->channels,
           result->source_rate);
  }
  if (api->server) {
    fl_osc_post(
      api->server, peer, true, result->status ? "/fail" : "/done", message);
  } else {
    lo_message_free(message);
  }
}

void
fl_api_notify_xruns(FlApi* api, uint32_t total)
{
  if (api->server) {
    lo_message const message = lo_message_new();
    lo_message_add_int32(message, clamp_int32(total));
    fl_osc_post(api->server, NULL, true, "/event/xrun", message);
  }
}
