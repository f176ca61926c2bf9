#include <flitzi/bank.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The description of a slot that non-RT threads read; a copy of the
   published sample's fields, so reading it never touches a sample. */
typedef struct {
  uint32_t frame_count;
  uint32_t channels;
  uint32_t sample_rate;
  uint32_t source_rate;
  char*    path; /* NULL when the slot is empty */
} SlotInfo;

/* One slot: written by the loader, read by the RT thread. */
typedef _Atomic(FlSample*) Slot;

struct FlBankImpl {
  uint32_t        slot_count;
  Slot*           slots;
  pthread_mutex_t info_lock;
  SlotInfo*       info; /* guarded by info_lock */
};

FlBank*
fl_bank_new(uint32_t slot_count)
{
  if (slot_count < 1U || slot_count > FL_MAX_SLOTS) {
    return NULL;
  }

  FlBank* const bank = (FlBank*)calloc(1, sizeof(FlBank));
  if (!bank) {
    return NULL;
  }

  bank->slot_count = slot_count;
  bank->slots      = (Slot*)calloc(slot_count, sizeof(Slot));
  bank->info       = (SlotInfo*)calloc(slot_count, sizeof(SlotInfo));
  if (!bank->slots || !bank->info ||
      pthread_mutex_init(&bank->info_lock, NULL)) {
    free(bank->info);
    free(bank->slots);
    free(bank);
    return NULL;
  }

  for (uint32_t i = 0U; i < slot_count; ++i) {
    atomic_init(&bank->slots[i], NULL);
  }
  return bank;
}

void
fl_bank_free(FlBank* bank)
{
  if (!bank) {
    return;
  }

  for (uint32_t i = 0U; i < bank->slot_count; ++i) {
    fl_sample_free(atomic_load_explicit(&bank->slots[i], memory_order_acquire));
    free(bank->info[i].path);
  }
  pthread_mutex_destroy(&bank->info_lock);
  free(bank->info);
  free(bank->slots);
  free(bank);
}

uint32_t
fl_bank_slot_count(const FlBank* bank)
{
  return bank->slot_count;
}

FlSample*
fl_bank_exchange(FlBank* bank, uint32_t slot, FlSample* sample)
{
  /* Copy the description first (allocation happens here, on the loader),
     then publish: a reader of the info may briefly see the new description
     while the RT thread still plays the old sample, never a freed one. */
  char* const path = sample ? strdup(sample->path) : NULL;

  pthread_mutex_lock(&bank->info_lock);
  SlotInfo* const info = &bank->info[slot];
  free(info->path);
  if (sample && path) {
    info->frame_count = sample->frame_count;
    info->channels    = sample->channels;
    info->sample_rate = sample->sample_rate;
    info->source_rate = sample->source_rate;
    info->path        = path;
  } else {
    memset(info, 0, sizeof(*info));
  }
  pthread_mutex_unlock(&bank->info_lock);

  /* Release publishes the sample's contents with the pointer; acquire makes
     the RT thread's earlier bookkeeping in the old sample visible to us. */
  return atomic_exchange_explicit(
    &bank->slots[slot], sample, memory_order_acq_rel);
}

FL_REALTIME FlSample*
fl_bank_get(const FlBank* bank, uint32_t slot)
{
  /* Acquire pairs with the release in fl_bank_exchange(). The cast drops a
     const that C11 atomics do not allow on a load's argument in every
     compiler. */
  return atomic_load_explicit((Slot*)&bank->slots[slot], memory_order_acquire);
}

bool
fl_bank_info(FlBank* bank, uint32_t slot, FlSlotInfo* info)
{
  if (slot >= bank->slot_count) {
    return false;
  }

  pthread_mutex_lock(&bank->info_lock);
  const SlotInfo* const src = &bank->info[slot];
  info->loaded              = src->path != NULL;
  info->frame_count         = src->frame_count;
  info->channels            = src->channels;
  info->sample_rate         = src->sample_rate;
  info->source_rate         = src->source_rate;
  snprintf(info->path, sizeof(info->path), "%s", src->path ? src->path : "");
  pthread_mutex_unlock(&bank->info_lock);
  return true;
}

uint32_t
fl_bank_loaded_count(FlBank* bank)
{
  uint32_t count = 0U;
  pthread_mutex_lock(&bank->info_lock);
  for (uint32_t i = 0U; i < bank->slot_count; ++i) {
    count += bank->info[i].path != NULL;
  }
  pthread_mutex_unlock(&bank->info_lock);
  return count;
}
