#include <flitzi/sample.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Buffers this large get a mapping of their own (see allocate()). */
#define MAPPED_MIN_BYTES (2U * 1024U * 1024U)

/*
  Freed mappings wait a little in a pool before they go back to the kernel:
  a new sample of about their size takes one (its pages are there, faulted
  in, locked), which spares the load the page faults and the kernel's
  zeroing of a fresh mapping (a reload of a 23 MB sample spent about 5 ms on
  them, twice the decode). After POOL_HOLD_SECONDS unused, or when the pool
  is full, a mapping is returned (fl_sample_pool_trim(), which flitzid's
  main thread calls every second), so an unload still gives memory back.
  Only non-RT threads free or allocate samples: a mutex is fine.
*/
#define POOL_CAPACITY 4U
#define POOL_HOLD_SECONDS 2.0

typedef struct {
  void*  frames;
  size_t bytes;
  double since; /* CLOCK_MONOTONIC seconds */
} PooledMapping;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static PooledMapping   pool[POOL_CAPACITY];
static uint32_t        pool_count;

static double
monotonic_seconds(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* A pooled mapping of at least `bytes` and not much more, or NULL. */
static void*
take_pooled(size_t bytes, size_t* mapped)
{
  void* frames = NULL;
  pthread_mutex_lock(&pool_lock);
  for (uint32_t i = 0U; i < pool_count; ++i) {
    if (pool[i].bytes >= bytes && pool[i].bytes - bytes <= bytes / 4U) {
      frames  = pool[i].frames;
      *mapped = pool[i].bytes;
      pool[i] = pool[--pool_count];
      break;
    }
  }
  pthread_mutex_unlock(&pool_lock);
  return frames;
}

static void
give_back(void* frames, size_t bytes)
{
  pthread_mutex_lock(&pool_lock);
  if (pool_count < POOL_CAPACITY) {
    pool[pool_count++] = (PooledMapping){ frames, bytes, monotonic_seconds() };
    frames             = NULL;
  }
  pthread_mutex_unlock(&pool_lock);
  if (frames) {
    munmap(frames, bytes);
  }
}

void
fl_sample_pool_trim(bool everything)
{
  const double now = monotonic_seconds();
  pthread_mutex_lock(&pool_lock);
  for (uint32_t i = 0U; i < pool_count;) {
    if (everything || now - pool[i].since >= POOL_HOLD_SECONDS) {
      munmap(pool[i].frames, pool[i].bytes);
      pool[i] = pool[--pool_count];
    } else {
      ++i;
    }
  }
  pthread_mutex_unlock(&pool_lock);
}

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
    size_t      mapped = bytes;
    void* const reused = take_pooled(bytes, &mapped);
    if (reused) {
      if (silent) {
        memset(reused, 0, bytes);
      }
      sample->frames       = (float*)reused;
      sample->mapped_bytes = mapped;
    } else {
      void* const frames = mmap(NULL,
                                bytes,
                                PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS,
                                -1,
                                0);
      if (frames != MAP_FAILED) {
        madvise(frames, bytes, MADV_HUGEPAGE);
        sample->frames       = (float*)frames;
        sample->mapped_bytes = bytes;
      }
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
      give_back(sample->frames, sample->mapped_bytes);
    } else {
      free(sample->frames);
    }
    free(sample->path);
    free(sample);
  }
}
