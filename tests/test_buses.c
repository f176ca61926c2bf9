/*
  Output buses, through the engine (no server): a slot on bus b sounds only
  on ports 2b and 2b + 1; the master gain is bus 0's (the main mix), not a
  headphone bus's; a slot naming a bus that is not there plays on bus 0.
*/
#include <flitzi/bank.h>
#include <flitzi/engine.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>

#define PERIOD 256U
#define PORTS 6U

static void
render(FlEngine* engine, float (*out)[PERIOD])
{
  float* outputs[PORTS];
  for (uint32_t p = 0U; p < PORTS; ++p) {
    outputs[p] = out[p];
  }
  static int64_t usecs  = 0;
  const FlPeriod period = { PERIOD, 0U, usecs, usecs + 5333 };
  usecs += 5333;
  fl_engine_process(engine, &period, outputs);
}

static void
test_slot_on_its_bus(void** state)
{
  (void)state;
  FlBank* const        bank   = fl_bank_new(3U);
  const FlEngineConfig config = { 48000U, PORTS, 8U, 0U, NULL, NULL };
  FlEngine* const      engine = fl_engine_new(&config, bank);
  assert_non_null(engine);
  for (uint32_t slot = 0U; slot < 3U; ++slot) {
    FlSample* const sample = fl_sample_new(48000U, 2U, 48000U, 48000U, "/");
    for (uint32_t i = 0U; i < 48000U; ++i) {
      sample->frames[2U * i]      = 0.25f * (float)(slot + 1U);
      sample->frames[2U * i + 1U] = -0.25f * (float)(slot + 1U);
    }
    fl_engine_publish(engine, slot, sample);
  }
  FlSlotParams params = FL_SLOT_PARAMS_DEFAULT;
  params.bus          = 1U;
  assert_int_equal(fl_engine_set_slot(engine, 1U, &params), FL_SUCCESS);
  params.bus = 7U; /* no such bus with three: bus 0 */
  assert_int_equal(fl_engine_set_slot(engine, 2U, &params), FL_SUCCESS);
  assert_int_equal(fl_engine_set_master_gain(engine, 0.5f), FL_SUCCESS);
  float out[PORTS][PERIOD];
  render(engine, out); /* the master ramp (480 frames) */
  render(engine, out);
  assert_int_equal(fl_engine_play(engine, 1U, 1.0f, FL_PLAY_NOW), FL_SUCCESS);
  render(engine, out);
  for (uint32_t i = 0U; i < PERIOD; ++i) {
    assert_true(out[0][i] == 0.0f && out[1][i] == 0.0f);
    assert_true(out[2][i] == 0.5f && out[3][i] == -0.5f); /* no master gain */
    assert_true(out[4][i] == 0.0f && out[5][i] == 0.0f);
  }
  assert_int_equal(fl_engine_play(engine, 2U, 1.0f, FL_PLAY_NOW), FL_SUCCESS);
  assert_int_equal(fl_engine_play(engine, 0U, 1.0f, FL_PLAY_NOW), FL_SUCCESS);
  render(engine, out);
  for (uint32_t i = 0U; i < PERIOD; ++i) {
    /* Slots 0 and 2 on bus 0 at master gain 0.5: (0.25 + 0.75) * 0.5. */
    assert_true(out[0][i] == 0.5f && out[1][i] == -0.5f);
    assert_true(out[2][i] == 0.5f && out[3][i] == -0.5f);
    assert_true(out[4][i] == 0.0f && out[5][i] == 0.0f);
  }
  fl_engine_free(engine);
  fl_bank_free(bank);
}

static void
test_port_counts(void** state)
{
  (void)state;
  FlBank* const  bank   = fl_bank_new(1U);
  FlEngineConfig config = { 48000U, 3U, 8U, 0U, NULL, NULL };
  assert_null(fl_engine_new(&config, bank)); /* odd, and not mono */
  config.output_count = FL_MAX_OUTPUTS + 2U;
  assert_null(fl_engine_new(&config, bank));
  config.output_count    = FL_MAX_OUTPUTS;
  FlEngine* const engine = fl_engine_new(&config, bank);
  assert_non_null(engine);
  fl_engine_free(engine);
  fl_bank_free(bank);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_slot_on_its_bus),
    cmocka_unit_test(test_port_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
