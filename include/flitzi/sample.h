/*
  Immutable sample buffers.

  A sample is decoded audio, prepared for the engine's sample rate: normalized
  interleaved float32 frames with one or two channels, and the path of the file
  it came from. A loader thread allocates and fills it, then publishes it to a
  slot (see bank.h). From that moment on its audio and its description are
  never written again, and it is freed only by a non-RT thread after the RT
  thread has handed it back (see engine.h and docs/architecture.md).
*/
#ifndef FLITZI_SAMPLE_H
#define FLITZI_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
   A sample buffer.

   The struct is public so that the RT thread reads the frames and their count
   without a function call. The first fields are set by fl_sample_new() and the
   loader that fills `frames`; they are immutable once published.

   The last two fields are the RT thread's bookkeeping: written only by the RT
   thread while the sample is published or referenced by a voice, and read by
   other threads only after the RT thread has handed the sample back through
   the event ring (whose release/acquire pair orders those writes).
*/
typedef struct FlSample {
  float*   frames;       /**< frame_count * channels interleaved floats */
  char*    path;         /**< Absolute path of the source file */
  uint32_t frame_count;  /**< Number of frames */
  uint32_t channels;     /**< 1 (mono) or 2 (stereo) */
  uint32_t sample_rate;  /**< Engine rate the frames were prepared for */
  uint32_t source_rate;  /**< Sample rate of the source file */
  size_t   mapped_bytes; /**< Size of the frames' own mapping, 0 if none */
  uint64_t serial;       /**< Unique to this sample, never reused */

  /* A key-lock render (stretched with Rubber Band) of another sample's
     region, or all 0 for an ordinary sample. */
  double   stretch_ratio;  /**< Tempo ratio it was rendered for */
  uint64_t stretch_source; /**< Serial of the sample it was rendered from */
  uint32_t stretch_start;  /**< That sample's region, in its frames */
  uint32_t stretch_end;

  uint32_t rt_voices;  /**< RT only: voices that play this sample */
  bool     rt_retired; /**< RT only: no longer in its slot */
} FlSample;

/**
   Allocate a sample of `frame_count` frames of `channels` channels, filled
   with silence, and copy `path` into it.

   Returns NULL if an allocation fails or `channels` is not 1 or 2. Only
   non-RT threads may call this.
*/
FlSample* fl_sample_new(uint32_t    frame_count,
                        uint32_t    channels,
                        uint32_t    sample_rate,
                        uint32_t    source_rate,
                        const char* path);

/**
   Allocate a sample as fl_sample_new() does, but leave its frames
   uninitialized: for a caller that writes every frame before the sample is
   published (the decoder). Saves a pass over the whole buffer.
*/
FlSample* fl_sample_new_unfilled(uint32_t    frame_count,
                                 uint32_t    channels,
                                 uint32_t    sample_rate,
                                 uint32_t    source_rate,
                                 const char* path);

/**
   Free a sample. `fl_sample_free(NULL)` does nothing.

   Only non-RT threads may call this, and only for a sample that is not
   published or that the RT thread has handed back.
*/
void fl_sample_free(FlSample* sample);

/**
   Return the mappings of freed samples that have waited in the pool for a
   new sample long enough (or all of them, with `everything`) to the kernel.
   Any non-RT thread; flitzid's main thread calls it every second.
*/
void fl_sample_pool_trim(bool everything);

/** Return the number of bytes of audio that `sample` holds. */
static inline uint64_t
fl_sample_bytes(const FlSample* sample)
{
  return (uint64_t)sample->frame_count * sample->channels * sizeof(float);
}

#endif /* FLITZI_SAMPLE_H */
