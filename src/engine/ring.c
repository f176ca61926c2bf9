#include <flitzi/ring.h>

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Each index lives on its own cache line so that the producer's writes to
   `head` and the consumer's writes to `tail` do not bounce one line between
   cores. Both indices count messages forever and wrap at 2^32; the slot of a
   message is its index masked by capacity - 1, and head - tail is the number
   of messages held even across the wrap, because capacity divides 2^32. */
struct FlRingImpl {
  alignas(64) atomic_uint_fast32_t head; /* next write; producer owns */
  alignas(64) atomic_uint_fast32_t tail; /* next read; consumer owns */
  alignas(64) uint32_t mask;
  uint32_t       message_size;
  unsigned char* messages;
};

static uint32_t
next_power_of_two(uint32_t n)
{
  uint32_t p = 1U;
  while (p < n) {
    p <<= 1U;
  }
  return p;
}

FlRing*
fl_ring_new(uint32_t capacity, uint32_t message_size)
{
  if (capacity == 0U || message_size == 0U || capacity > (1U << 30U)) {
    return NULL;
  }

  const uint32_t size = next_power_of_two(capacity);
  FlRing* const  ring = (FlRing*)aligned_alloc(64, sizeof(FlRing));
  if (!ring) {
    return NULL;
  }

  memset(ring, 0, sizeof(FlRing));
  ring->messages = (unsigned char*)calloc(size, message_size);
  if (!ring->messages) {
    free(ring);
    return NULL;
  }

  atomic_init(&ring->head, 0U);
  atomic_init(&ring->tail, 0U);
  ring->mask         = size - 1U;
  ring->message_size = message_size;
  return ring;
}

void
fl_ring_free(FlRing* ring)
{
  if (ring) {
    free(ring->messages);
    free(ring);
  }
}

uint32_t
fl_ring_capacity(const FlRing* ring)
{
  return ring->mask + 1U;
}

FL_REALTIME bool
fl_ring_write(FlRing* ring, const void* message)
{
  /* Our own index needs no ordering; the other side's needs acquire, so that
     the consumer's read of a slot happens before we overwrite it. */
  const uint32_t head =
    (uint32_t)atomic_load_explicit(&ring->head, memory_order_relaxed);
  const uint32_t tail =
    (uint32_t)atomic_load_explicit(&ring->tail, memory_order_acquire);
  if (head - tail > ring->mask) {
    return false;
  }

  memcpy(ring->messages + (size_t)(head & ring->mask) * ring->message_size,
         message,
         ring->message_size);

  /* Release: the message bytes are visible before the new head. */
  atomic_store_explicit(&ring->head, head + 1U, memory_order_release);
  return true;
}

FL_REALTIME bool
fl_ring_read(FlRing* ring, void* message)
{
  const uint32_t tail =
    (uint32_t)atomic_load_explicit(&ring->tail, memory_order_relaxed);
  /* Acquire pairs with the producer's release of head. */
  const uint32_t head =
    (uint32_t)atomic_load_explicit(&ring->head, memory_order_acquire);
  if (head == tail) {
    return false;
  }

  memcpy(message,
         ring->messages + (size_t)(tail & ring->mask) * ring->message_size,
         ring->message_size);

  /* Release: we are done reading the slot before the producer may reuse it. */
  atomic_store_explicit(&ring->tail, tail + 1U, memory_order_release);
  return true;
}

FL_REALTIME uint32_t
fl_ring_read_space(const FlRing* ring)
{
  const uint32_t tail =
    (uint32_t)atomic_load_explicit(&ring->tail, memory_order_acquire);
  const uint32_t head =
    (uint32_t)atomic_load_explicit(&ring->head, memory_order_acquire);
  return head - tail;
}

FL_REALTIME uint32_t
fl_ring_write_space(const FlRing* ring)
{
  const uint32_t head =
    (uint32_t)atomic_load_explicit(&ring->head, memory_order_acquire);
  const uint32_t tail =
    (uint32_t)atomic_load_explicit(&ring->tail, memory_order_acquire);
  return ring->mask + 1U - (head - tail);
}
