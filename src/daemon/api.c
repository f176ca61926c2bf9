#include <flitzi/api.h>

#include <flitzi/log.h>

#include <math.h>
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
}

static void
on_play(void*            data,
        FlOscServer*     server,
        const FlOscPeer* peer,
        const char*      types,
        lo_arg* const*   argv,
        lo_timetag       time)
{
  FlApi* const  api  = (FlApi*)data;
  const int32_t slot = arg_int(argv[0]);
  if (!check_slot(api, server, peer, "/play", slot)) {
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
      fail_slot(server, peer, "/play", slot, reason);
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
      fail_slot(server, peer, "/play", slot, reason);
      return;
    }
  }

  FlBackendStats backend = { 0 };
  if (api->backend) {
    fl_backend_stats(api->backend, false, &backend);
  }
  if (api->backend && !backend.connected) {
    fail_slot(server, peer, "/play", slot, "not connected to the JACK server");
    return;
  }

  const FlStatus status = fl_engine_play(
    api->engine, (uint32_t)slot, velocity, start_time_of(api, time));
  api->plays_queued += status == FL_SUCCESS;
  if (status == FL_ERR_EMPTY_SLOT) {
    snprintf(reason, sizeof(reason), "slot %d is empty", slot);
    fail_slot(server, peer, "/play", slot, reason);
  } else if (status == FL_ERR_QUEUE_FULL) {
    fail_slot(server, peer, "/play", slot, "queue full");
  } else if (status) {
    fail_slot(server, peer, "/play", slot, fl_strerror(status));
  }
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

  const FlStatus status =
    api->loader
      ? fl_loader_unload(api->loader, (uint32_t)slot, peer, sizeof(*peer))
      : FL_ERR_QUEUE_FULL;
  fail_request(server, peer, "/unload", slot, status);
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

static const char* const forms_load[] = { "is", NULL };
static const char* const forms_play[] = { "if", "ii", NULL };
static const char* const forms_stop[] = { "", "i", NULL };
static const char* const forms_slot[] = { "i", NULL };
static const char* const forms_none[] = { "", NULL };

static const FlOscMethod methods[] = {
  { "/load", forms_load, on_load },     { "/play", forms_play, on_play },
  { "/stop", forms_stop, on_stop },     { "/unload", forms_slot, on_unload },
  { "/query", forms_slot, on_query },   { "/status", forms_none, on_status },
  { "/stats", forms_none, on_stats },   { "/ping", forms_none, on_ping },
  { "/notify", forms_slot, on_notify }, { "/quit", forms_none, on_quit },
};

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
