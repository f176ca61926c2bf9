/*
  A lock-free single-producer single-consumer ring of fixed-size messages.

  One thread writes, one thread reads, and neither ever waits: a write to a
  full ring fails and the producer counts the message as dropped; a read from
  an empty ring fails. Both sides are wait-free, so the RT thread may be either
  end. The memory is allocated once, by fl_ring_new().
*/
#ifndef FLITZI_RING_H
#define FLITZI_RING_H

#include <flitzi/common.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct FlRingImpl FlRing;

/**
   Create a ring that holds at least `capacity` messages of `message_size`
   bytes each. The capacity is rounded up to a power of two.

   Returns NULL if `capacity` or `message_size` is 0, if the capacity would
   exceed 2^30, or if the allocation fails. Only non-RT threads may call this.
*/
FlRing* fl_ring_new(uint32_t capacity, uint32_t message_size);

/**
   Free a ring and the messages still in it. `fl_ring_free(NULL)` does
   nothing. Only non-RT threads may call this, when neither end is in use.
*/
void fl_ring_free(FlRing* ring);

/** Return the number of messages the ring holds when full. */
uint32_t fl_ring_capacity(const FlRing* ring);

/**
   Copy one message into the ring.

   Returns false, and copies nothing, if the ring is full. Only the producer
   thread may call this.
*/
FL_REALTIME bool fl_ring_write(FlRing* ring, const void* message);

/**
   Copy the oldest message out of the ring into `message`.

   Returns false, and leaves `message` alone, if the ring is empty. Only the
   consumer thread may call this.
*/
FL_REALTIME bool fl_ring_read(FlRing* ring, void* message);

/**
   Return how many messages the ring holds.

   Exact for the consumer (there may be more by the time it reads); any other
   thread gets a snapshot.
*/
FL_REALTIME uint32_t fl_ring_read_space(const FlRing* ring);

/**
   Return how many messages can be written before the ring is full.

   Exact for the producer (there may be more room by the time it writes); any
   other thread gets a snapshot.
*/
FL_REALTIME uint32_t fl_ring_write_space(const FlRing* ring);

#endif /* FLITZI_RING_H */
