/*
  The slot bank: numbered slots, each an atomic pointer to a sample.

  One thread, the loader, writes slots; the RT thread reads them. The loader
  publishes a sample with fl_bank_exchange(), an atomic exchange with
  acquire-release ordering: release so that the RT thread, whose load is an
  acquire, sees every byte the loader wrote into the sample before the pointer;
  acquire so that the loader sees the RT thread's bookkeeping in the sample it
  gets back. The previous sample returned by the exchange may still be read by
  the RT thread, so the loader must not free it: it hands it to the engine
  (fl_engine_publish() does both steps), which frees nothing itself but returns
  it to a non-RT thread once no voice plays it.

  Beside the pointers the bank keeps a description of each slot for non-RT
  readers (path, frames, channels, source rate), guarded by a mutex that the RT
  thread never touches, so /query never dereferences a sample that another
  thread may be retiring.
*/
#ifndef FLITZI_BANK_H
#define FLITZI_BANK_H

#include <flitzi/common.h>
#include <flitzi/sample.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct FlBankImpl FlBank;

/** What a non-RT thread may know about a slot. */
typedef struct {
  bool     loaded;      /**< The slot holds a sample */
  uint32_t frame_count; /**< Frames at the engine rate */
  uint32_t channels;    /**< 1 or 2 */
  uint32_t sample_rate; /**< Engine rate the sample was prepared for */
  uint32_t source_rate; /**< Rate of the source file */
  char     path[4096];  /**< Source path, "" when empty */
} FlSlotInfo;

/**
   Create a bank of `slot_count` empty slots (1 to FL_MAX_SLOTS).

   Returns NULL if `slot_count` is out of range or an allocation fails. Only
   non-RT threads may call this.
*/
FlBank* fl_bank_new(uint32_t slot_count);

/**
   Free a bank and every sample still in its slots. `fl_bank_free(NULL)` does
   nothing. Only call this when the RT thread no longer runs.
*/
void fl_bank_free(FlBank* bank);

/** Return the number of slots. Any thread may call this. */
uint32_t fl_bank_slot_count(const FlBank* bank);

/**
   Put `sample` (or NULL, to empty it) into `slot` and return the sample that
   was there, or NULL.

   The caller owns the returned sample but must not free it while the RT
   thread might still read it: use fl_engine_publish(), which retires it.
   Only the loader thread may call this; `slot` must be in range.
*/
FlSample* fl_bank_exchange(FlBank* bank, uint32_t slot, FlSample* sample);

/**
   Return the sample in `slot`, or NULL, with acquire ordering.

   The RT thread may read the sample it gets. The loader may too (it is the
   only thread that replaces samples). Any other thread may only compare the
   result with NULL. `slot` must be in range.
*/
FL_REALTIME FlSample* fl_bank_get(const FlBank* bank, uint32_t slot);

/**
   Copy the description of `slot` into `info`.

   Returns false if `slot` is out of range. Any non-RT thread may call this.
*/
bool fl_bank_info(FlBank* bank, uint32_t slot, FlSlotInfo* info);

/** Return the number of slots that hold a sample. Any non-RT thread. */
uint32_t fl_bank_loaded_count(FlBank* bank);

#endif /* FLITZI_BANK_H */
