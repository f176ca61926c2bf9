/*
  Fuzz target: raw bytes through the OSC server's parse-validate-dispatch
  path (fl_osc_dispatch()), with the real API handlers and engine behind it,
  and the RT side run after every input so queued commands are applied.
  The loader and JACK are absent: /load and /unload answer "queue full".

  Built with libFuzzer (meson -Dfuzz=enabled, clang); fuzz_main.c runs the
  same function over the kept inputs in tests/fuzz/corpus/ as a unit test.
*/
#include <flitzi/api.h>
#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/osc.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static FlBank*      bank;
static FlEngine*    engine;
static FlOscServer* server;
static FlApi        api;
static FlTelemetry* telemetry;
static float        left[256];
static float        right[256];
static int64_t      usecs;

/* The fuzzer's clock: the period clock below, so timetags map somewhere. */
static int64_t
fuzz_now_usecs(void)
{
  return usecs;
}

static void
set_up(void)
{
  bank                        = fl_bank_new(8U);
  const FlEngineConfig config = { 48000U, 2U, 4U, 64U, NULL, NULL };
  engine                      = fl_engine_new(&config, bank);
  telemetry                   = fl_telemetry_new(engine, 8U);
  api.engine                  = engine;
  api.bank                    = bank;
  api.now_usecs               = fuzz_now_usecs;
  api.telemetry               = telemetry;
  api.max_voices              = 4U;
  fl_api_init(&api);

  /* Slots 0 and 1 hold short samples, so /play reaches the engine. */
  for (uint32_t slot = 0U; slot < 2U; ++slot) {
    FlSample* const sample =
      fl_sample_new(300U, slot + 1U, 48000U, 48000U, "/fuzz.wav");
    for (uint32_t i = 0U; i < 300U * (slot + 1U); ++i) {
      sample->frames[i] = 0.25f;
    }
    fl_engine_publish(engine, slot, sample);
  }

  size_t                   count = 0U;
  const FlOscMethod* const table = fl_api_methods(&count);
  const FlOscConfig        osc   = { NULL, NULL, false, table, count, &api };
  char                     reason[128];
  server     = fl_osc_new(&osc, reason, sizeof(reason));
  api.server = server;
  fl_telemetry_set_server(telemetry, server);
}

int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  if (!server) {
    set_up();
  }

  /* The server parses in place, as it does its receive buffer. */
  uint8_t* const copy = (uint8_t*)malloc(size ? size : 1U);
  memcpy(copy, data, size);
  const FlOscPeer peer = { .address_size = 0U, .connection = -1 };
  fl_osc_dispatch(server, &peer, copy, size);
  free(copy);

  /* The RT thread's turn: apply what was queued, render a period. */
  float* const   outputs[2] = { left, right };
  const FlPeriod period     = {
        256U, (uint32_t)(usecs / 1000), usecs, usecs + 5333
  };
  fl_engine_process(engine, &period, outputs);
  fl_telemetry_run(telemetry);
  usecs += 5333;
  for (FlSample* s = NULL; (s = fl_engine_next_retired(engine));) {
    fl_sample_free(s);
  }
  return 0;
}
