#include <flitzi/telemetry.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  FlOscPeer peer;
  uint32_t  hz;
  uint32_t  phase;    /* adds hz per snapshot; a bundle is due at 60 */
  float*    peaks;    /* per slot, since the last bundle */
  double*   position; /* per slot, newest */
  uint8_t*  sounded;  /* per slot: sounded since the last bundle */
  float     master[2];
} MeterClient;

struct FlTelemetryImpl {
  FlEngine*       engine;
  FlOscServer*    server;
  uint32_t        slot_count;
  FlStretchWanted stretch_wanted;
  void*           stretch_data;

  pthread_mutex_t lock; /* clients; never taken by the RT thread */
  MeterClient     clients[FL_MAX_METER_CLIENTS];
  uint32_t        client_count;
};

static bool
same_peer(const FlOscPeer* a, const FlOscPeer* b)
{
  return a->connection == b->connection && a->address_size == b->address_size &&
         !memcmp(&a->address, &b->address, a->address_size);
}

static void
free_client(MeterClient* client)
{
  free(client->peaks);
  free(client->position);
  free(client->sounded);
  client->peaks    = NULL;
  client->position = NULL;
  client->sounded  = NULL;
}

FlTelemetry*
fl_telemetry_new(FlEngine* engine, uint32_t slot_count)
{
  FlTelemetry* const telemetry = (FlTelemetry*)calloc(1, sizeof(FlTelemetry));
  if (!telemetry) {
    return NULL;
  }
  telemetry->engine     = engine;
  telemetry->slot_count = slot_count;
  pthread_mutex_init(&telemetry->lock, NULL);
  return telemetry;
}

void
fl_telemetry_free(FlTelemetry* telemetry)
{
  if (!telemetry) {
    return;
  }
  for (uint32_t i = 0U; i < telemetry->client_count; ++i) {
    free_client(&telemetry->clients[i]);
  }
  pthread_mutex_destroy(&telemetry->lock);
  free(telemetry);
}

void
fl_telemetry_set_stretch_handler(FlTelemetry*    telemetry,
                                 FlStretchWanted wanted,
                                 void*           data)
{
  telemetry->stretch_wanted = wanted;
  telemetry->stretch_data   = data;
}

void
fl_telemetry_set_server(FlTelemetry* telemetry, FlOscServer* server)
{
  telemetry->server = server;
}

FlStatus
fl_telemetry_set_meters(FlTelemetry*     telemetry,
                        const FlOscPeer* peer,
                        uint32_t         hz)
{
  if (hz > FL_MAX_METER_HZ) {
    return FL_ERR_BAD_ARGUMENT;
  }

  FlStatus status = FL_SUCCESS;
  pthread_mutex_lock(&telemetry->lock);
  const uint32_t before = telemetry->client_count;
  uint32_t       index  = 0U;
  while (index < telemetry->client_count &&
         !same_peer(&telemetry->clients[index].peer, peer)) {
    ++index;
  }

  if (hz == 0U) {
    if (index < telemetry->client_count) {
      free_client(&telemetry->clients[index]);
      telemetry->clients[index] = telemetry->clients[--telemetry->client_count];
    }
  } else if (index < telemetry->client_count) {
    telemetry->clients[index].hz = hz;
  } else if (telemetry->client_count == FL_MAX_METER_CLIENTS) {
    status = FL_ERR_QUEUE_FULL;
  } else {
    MeterClient client = { .peer = *peer, .hz = hz };
    client.peaks       = (float*)calloc(telemetry->slot_count, sizeof(float));
    client.position    = (double*)calloc(telemetry->slot_count, sizeof(double));
    client.sounded     = (uint8_t*)calloc(telemetry->slot_count, 1U);
    if (!client.peaks || !client.position || !client.sounded) {
      free_client(&client);
      status = FL_ERR_NO_MEMORY;
    } else {
      telemetry->clients[telemetry->client_count++] = client;
    }
  }

  const uint32_t after = telemetry->client_count;
  pthread_mutex_unlock(&telemetry->lock);

  if ((before == 0U) != (after == 0U) &&
      fl_engine_set_meters(telemetry->engine, after ? FL_MAX_METER_HZ : 0U)) {
    status = FL_ERR_QUEUE_FULL;
  }
  return status;
}

static void
post_event(FlTelemetry* telemetry, const char* path, uint32_t slot)
{
  lo_message const message = lo_message_new();
  lo_message_add_int32(message, (int32_t)slot);
  fl_osc_post(telemetry->server, NULL, true, path, message);
}

/* Build and queue one client's bundle, then start its next interval. */
static void
send_meters(FlTelemetry* telemetry, MeterClient* client)
{
  lo_bundle const  bundle = lo_bundle_new(LO_TT_IMMEDIATE);
  lo_message const master = lo_message_new();
  lo_message_add_float(master, client->master[0]);
  lo_message_add_float(master, client->master[1]);
  lo_bundle_add_message(bundle, "/meter/master", master);
  for (uint32_t slot = 0U; slot < telemetry->slot_count; ++slot) {
    if (!client->sounded[slot]) {
      continue;
    }
    lo_message const message = lo_message_new();
    lo_message_add_int32(message, (int32_t)slot);
    lo_message_add_float(message, client->peaks[slot]);
    lo_message_add_float(message, (float)client->position[slot]);
    lo_bundle_add_message(bundle, "/meter/slot", message);
    client->sounded[slot] = 0U;
    client->peaks[slot]   = 0.0f;
  }
  client->master[0] = client->master[1] = 0.0f;
  fl_osc_post_bundle(telemetry->server, &client->peer, bundle);
}

static void
take_meter(FlTelemetry* telemetry, const FlEvent* event)
{
  for (uint32_t i = 0U; i < telemetry->client_count; ++i) {
    MeterClient* const client = &telemetry->clients[i];
    if (event->type == FL_EVENT_METER_SLOT) {
      if (event->slot >= telemetry->slot_count) {
        continue;
      }
      client->sounded[event->slot] = 1U;
      if (event->peak > client->peaks[event->slot]) {
        client->peaks[event->slot] = event->peak;
      }
      client->position[event->slot] = event->position;
      continue;
    }

    /* The snapshot is complete. */
    client->master[0] =
      event->peak > client->master[0] ? event->peak : client->master[0];
    client->master[1] = event->peak_right > client->master[1]
                          ? event->peak_right
                          : client->master[1];
    client->phase += client->hz;
    if (client->phase >= FL_MAX_METER_HZ) {
      client->phase -= FL_MAX_METER_HZ;
      if (telemetry->server) {
        send_meters(telemetry, client);
      }
    }
  }
}

uint32_t
fl_telemetry_run(FlTelemetry* telemetry)
{
  uint32_t count = 0U;
  FlEvent  event;
  pthread_mutex_lock(&telemetry->lock);
  while (fl_engine_next_event(telemetry->engine, &event)) {
    ++count;
    if (event.type == FL_EVENT_STRETCH_WANTED) {
      if (telemetry->stretch_wanted) {
        telemetry->stretch_wanted(telemetry->stretch_data,
                                  event.slot,
                                  event.position,
                                  event.region_start,
                                  event.region_end,
                                  event.peak > 0.5f);
      }
    } else if (event.type == FL_EVENT_STARTED ||
               event.type == FL_EVENT_STOPPED) {
      if (telemetry->server) {
        post_event(telemetry,
                   event.type == FL_EVENT_STARTED ? "/event/started"
                                                  : "/event/stopped",
                   event.slot);
      }
    } else {
      take_meter(telemetry, &event);
    }
  }
  pthread_mutex_unlock(&telemetry->lock);
  return count;
}
