#include <flitzi/sample.h>

#include <stdatomic.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Buffers this large get a mapping of their own (see allocate()). */
#define MAPPED_MIN_BYTES (2U * 1024U * 1024U)

static FlSample*
allocate(uint32_t    frame_count,
         uint32_t    channels,
         uint32_t    sample_rate,
         uint32_t    source_rate,
         const char* path,
         bool        silent)
{
  if (channels < 1 || channels > 2) {
    return NULL;
  }

  FlSample* const sample = (FlSample*)calloc(1, sizeof(FlSample));
  if (!sample) {
    return NULL;
  }

  const size_t sample_count = (size_t)frame_count * channels;
  const size_t count        = sample_count ? sample_count : 1U;
  const size_t bytes        = count * sizeof(float);
  if (bytes >= MAPPED_MIN_BYTES) {
    /* A mapping of its own: zeroed by the kernel, given back to it by
       free, and (being 2 MiB aligned, which Linux does for mappings this
       large) backed by transparent huge pages where the system allows it,
       so filling it takes a few hundred page faults instead of thousands. */
    void* const frames = mmap(
      NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (frames != MAP_FAILED) {
      madvise(frames, bytes, MADV_HUGEPAGE);
      sample->frames       = (float*)frames;
      sample->mapped_bytes = bytes;
    }
  } else {
    sample->frames =
      silent ? (float*)calloc(count, sizeof(float)) : (float*)malloc(bytes);
  }
  sample->path = strdup(path ? path : "");
  if (!sample->frames || !sample->path) {
    fl_sample_free(sample);
    return NULL;
  }

  static atomic_ullong serials;
  sample->serial =
    atomic_fetch_add_explicit(&serials, 1U, memory_order_relaxed) + 1U;
  sample->frame_count = frame_count;
  sample->channels    = channels;
  sample->sample_rate = sample_rate;
  sample->source_rate = source_rate;
  return sample;
}

FlSample*
fl_sample_new(uint32_t    frame_count,
              uint32_t    channels,
              uint32_t    sample_rate,
              uint32_t    source_rate,
              const char* path)
{
  return allocate(frame_count, channels, sample_rate, source_rate, path, true);
}

FlSample*
fl_sample_new_unfilled(uint32_t    frame_count,
                       uint32_t    channels,
                       uint32_t    sample_rate,
                       uint32_t    source_rate,
                       const char* path)
{
  /* Below MAPPED_MIN_BYTES a freed sample's pages stay in malloc's heap, so
     calloc would have to clear them: a pass over the whole buffer that the
     decoder's own writes make useless. */
  return allocate(frame_count, channels, sample_rate, source_rate, path, false);
}

void
fl_sample_free(FlSample* sample)
{
  if (sample) {
    if (sample->mapped_bytes) {
      munmap(sample->frames, sample->mapped_bytes);
    } else {
      free(sample->frames);
    }
    free(sample->path);
    free(sample);
  }
}
