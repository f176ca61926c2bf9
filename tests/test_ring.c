/*
  The SPSC ring: single-thread semantics, then a producer and a consumer
  thread passing a numbered sequence through a small ring.
*/
#include <flitzi/ring.h>

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* Messages that the stress test passes; small enough for TSan (~10 s). */
#define STRESS_MESSAGES 5000000U

/* A message of an odd size (7 bytes), so that the slot arithmetic is
   exercised with something other than a power of two: a sequence number and
   a check byte derived from it. */
typedef struct {
  unsigned char bytes[7];
} OddMessage;

static OddMessage
odd_message(uint32_t sequence)
{
  OddMessage message;
  memcpy(message.bytes, &sequence, sizeof(sequence));
  message.bytes[4] = (unsigned char)(sequence * 3U);
  message.bytes[5] = (unsigned char)(sequence >> 3U);
  message.bytes[6] = 0x5A;
  return message;
}

/* Check every byte of `message` against the one numbered `sequence`. */
static bool
odd_message_is(const OddMessage* message, uint32_t sequence)
{
  const OddMessage expected = odd_message(sequence);
  return !memcmp(message->bytes, expected.bytes, sizeof(expected.bytes));
}

static void
test_new_bad_arguments(void** state)
{
  (void)state;

  assert_null(fl_ring_new(0U, 4U));
  assert_null(fl_ring_new(4U, 0U));
  assert_null(fl_ring_new(0U, 0U));
  assert_null(fl_ring_new((1U << 30U) + 1U, 4U));
  assert_null(fl_ring_new(UINT32_MAX, 4U));
}

static void
test_capacity_rounds_up(void** state)
{
  (void)state;

  static const uint32_t requested[] = { 1U, 2U,    3U,    4U,   5U,
                                        7U, 1000U, 1024U, 1025U };
  static const uint32_t expected[]  = { 1U, 2U,    4U,    4U,   8U,
                                        8U, 1024U, 1024U, 2048U };

  for (size_t i = 0U; i < sizeof(requested) / sizeof(requested[0]); ++i) {
    FlRing* const ring = fl_ring_new(requested[i], sizeof(uint32_t));
    assert_non_null(ring);
    assert_int_equal(fl_ring_capacity(ring), expected[i]);
    assert_int_equal(fl_ring_write_space(ring), expected[i]);
    assert_int_equal(fl_ring_read_space(ring), 0U);

    /* Exactly `capacity` messages fit. */
    for (uint32_t m = 0U; m < expected[i]; ++m) {
      assert_true(fl_ring_write(ring, &m));
    }
    const uint32_t extra = 12345U;
    assert_false(fl_ring_write(ring, &extra));
    fl_ring_free(ring);
  }
}

static void
test_fifo_and_spaces(void** state)
{
  (void)state;

  FlRing* const ring = fl_ring_new(8U, sizeof(OddMessage));
  assert_non_null(ring);

  for (uint32_t i = 0U; i < 5U; ++i) {
    const OddMessage message = odd_message(100U + i);
    assert_true(fl_ring_write(ring, &message));
    assert_int_equal(fl_ring_read_space(ring), i + 1U);
    assert_int_equal(fl_ring_write_space(ring), 8U - (i + 1U));
  }

  for (uint32_t i = 0U; i < 5U; ++i) {
    OddMessage message;
    assert_true(fl_ring_read(ring, &message));
    assert_true(odd_message_is(&message, 100U + i));
    assert_int_equal(fl_ring_read_space(ring), 4U - i);
    assert_int_equal(fl_ring_write_space(ring), 4U + i);
  }

  fl_ring_free(ring);
}

static void
test_full_write_copies_nothing(void** state)
{
  (void)state;

  FlRing* const ring = fl_ring_new(4U, sizeof(uint64_t));
  assert_non_null(ring);

  for (uint64_t i = 0U; i < 4U; ++i) {
    assert_true(fl_ring_write(ring, &i));
  }
  assert_int_equal(fl_ring_write_space(ring), 0U);
  assert_int_equal(fl_ring_read_space(ring), 4U);

  const uint64_t rejected = UINT64_C(0xdeadbeefdeadbeef);
  assert_false(fl_ring_write(ring, &rejected));
  assert_false(fl_ring_write(ring, &rejected));
  assert_int_equal(fl_ring_read_space(ring), 4U);

  /* The messages are intact and the rejected one never appears. */
  for (uint64_t i = 0U; i < 4U; ++i) {
    uint64_t message = 0U;
    assert_true(fl_ring_read(ring, &message));
    assert_int_equal(message, i);
  }
  uint64_t message = 42U;
  assert_false(fl_ring_read(ring, &message));
  assert_int_equal(message, 42U);

  fl_ring_free(ring);
}

static void
test_empty_read_fails(void** state)
{
  (void)state;

  FlRing* const ring = fl_ring_new(2U, 16U);
  assert_non_null(ring);

  unsigned char message[16];
  memset(message, 0xA5, sizeof(message));
  assert_false(fl_ring_read(ring, message));
  for (size_t i = 0U; i < sizeof(message); ++i) {
    assert_int_equal(message[i], 0xA5);
  }

  /* Empty again after one message in and out. */
  const unsigned char one[16] = { 1 };
  assert_true(fl_ring_write(ring, one));
  assert_true(fl_ring_read(ring, message));
  assert_int_equal(message[0], 1);
  memset(message, 0xA5, sizeof(message));
  assert_false(fl_ring_read(ring, message));
  assert_int_equal(message[0], 0xA5);

  fl_ring_free(ring);
}

static void
test_wraparound(void** state)
{
  (void)state;

  /* Many laps of a small ring at every fill level, so the slot index wraps
     over the buffer end at each possible position. */
  FlRing* const ring = fl_ring_new(8U, sizeof(OddMessage));
  assert_non_null(ring);

  uint32_t written = 0U;
  uint32_t read    = 0U;
  for (uint32_t cycle = 0U; cycle < 40000U; ++cycle) {
    const uint32_t burst = 1U + cycle % 8U;
    for (uint32_t i = 0U; i < burst; ++i) {
      const OddMessage message = odd_message(written);
      const bool       fits    = fl_ring_write_space(ring) > 0U;
      assert_int_equal(fl_ring_write(ring, &message), fits);
      written += fits;
    }
    assert_int_equal(fl_ring_read_space(ring), written - read);
    assert_int_equal(fl_ring_write_space(ring), 8U - (written - read));

    const uint32_t drain = 1U + (cycle * 7U) % 8U;
    for (uint32_t i = 0U; i < drain && read < written; ++i) {
      OddMessage message;
      assert_true(fl_ring_read(ring, &message));
      assert_true(odd_message_is(&message, read));
      ++read;
    }
  }
  assert_true(written > 120000U); /* over 15,000 laps of the ring */

  fl_ring_free(ring);
}

typedef struct {
  FlRing*  ring;
  uint32_t count;
} StressContext;

static void*
produce(void* data)
{
  StressContext* const context = (StressContext*)data;
  for (uint32_t sequence = 0U; sequence < context->count; ++sequence) {
    while (!fl_ring_write(context->ring, &sequence)) {
      sched_yield();
    }
  }
  return NULL;
}

static void
test_two_threads(void** state)
{
  (void)state;

  StressContext context = { fl_ring_new(1024U, sizeof(uint32_t)),
                            STRESS_MESSAGES };
  assert_non_null(context.ring);

  pthread_t producer;
  assert_int_equal(pthread_create(&producer, NULL, produce, &context), 0);

  /* Check each message as it arrives; counting errors rather than asserting
     keeps the producer from being left blocked on a failure. */
  uint32_t expected = 0U;
  uint32_t errors   = 0U;
  uint32_t sequence = 0U;
  while (expected < context.count) {
    if (fl_ring_read(context.ring, &sequence)) {
      errors += sequence != expected;
      ++expected;
    } else {
      sched_yield();
    }
  }

  assert_int_equal(pthread_join(producer, NULL), 0);
  assert_int_equal(errors, 0U);
  assert_int_equal(expected, context.count);
  assert_false(fl_ring_read(context.ring, &sequence));
  assert_int_equal(fl_ring_read_space(context.ring), 0U);

  fl_ring_free(context.ring);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_new_bad_arguments),
    cmocka_unit_test(test_capacity_rounds_up),
    cmocka_unit_test(test_fifo_and_spaces),
    cmocka_unit_test(test_full_write_copies_nothing),
    cmocka_unit_test(test_empty_read_fails),
    cmocka_unit_test(test_wraparound),
    cmocka_unit_test(test_two_threads),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
