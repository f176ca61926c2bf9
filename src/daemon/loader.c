#include <flitzi/loader.h>

#include <flitzi/stretch.h>

#include <flitzi/log.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_QUEUE_LENGTH 256U

typedef struct {
  FlRequestType type;
  uint32_t      slot;
  char*         path;         /* loads: as sent; reloads: resolved */
  double        ratio;        /* stretches: the render's ratio, region, loop */
  double        from_seconds; /* waveforms: the span, and its points */
  double        to_seconds;
  uint32_t      points;
  uint32_t      start;
  uint32_t      end;
  bool          loop;
  size_t        context_size;
  unsigned char context[FL_LOADER_CONTEXT_SIZE];
} Request;

/* Key-lock renders run side by side, one per core: a tempo change asks
   for one per key-locked pad at once. */
#define MAX_PARALLEL_STRETCHES 8U

typedef struct {
  const FlSample* sample;
  Request         request;
  FlSample*       render;
  char            reason[128];
  pthread_t       thread;
  bool            started;
} StretchJob;

struct FlLoaderImpl {
  FlLoaderConfig config;
  char*          sample_root;
  pthread_t      thread;

  /* Guarded by lock: the queue, the rate, and the stop flag. Only non-RT
     threads meet here, so a mutex and a condition variable are the simple,
     sleeping choice. */
  pthread_mutex_t lock;
  pthread_cond_t  wake;
  Request*        queue;
  uint32_t        queue_length;
  uint32_t        queue_head;
  uint32_t        queue_count;
  uint32_t        sample_rate;
  bool            stopping;

  bool warned_lock; /* loader thread only */

  /* Key-lock renders: loader thread only. */
  StretchJob jobs[MAX_PARALLEL_STRETCHES];
  uint32_t   parallel; /* at most this many at once: the cores */
};

static FlStatus
enqueue(FlLoader* loader, const Request* request)
{
  FlStatus status = FL_SUCCESS;
  pthread_mutex_lock(&loader->lock);
  if (loader->queue_count == loader->queue_length) {
    status = FL_ERR_QUEUE_FULL;
  } else {
    const uint32_t tail =
      (loader->queue_head + loader->queue_count) % loader->queue_length;
    loader->queue[tail] = *request;
    ++loader->queue_count;
    pthread_cond_signal(&loader->wake);
  }
  pthread_mutex_unlock(&loader->lock);
  return status;
}

static FlStatus
make_request(FlLoader*     loader,
             FlRequestType type,
             uint32_t      slot,
             const char*   path,
             const void*   context,
             size_t        context_size)
{
  if (slot >= fl_bank_slot_count(loader->config.bank)) {
    return FL_ERR_BAD_SLOT;
  }

  Request request = { .type = type, .slot = slot };
  if (context_size > sizeof(request.context)) {
    return FL_ERR_BAD_ARGUMENT;
  }
  if (context_size) {
    memcpy(request.context, context, context_size);
  }
  request.context_size = context_size;
  if (path && !(request.path = strdup(path))) {
    return FL_ERR_NO_MEMORY;
  }

  const FlStatus status = enqueue(loader, &request);
  if (status) {
    free(request.path);
  }
  return status;
}

static void
run_load(FlLoader*      loader,
         const Request* request,
         uint32_t       sample_rate,
         FlLoadResult*  result)
{
  char           path[PATH_MAX];
  FlDecodeConfig decode = loader->config.decode;
  decode.sample_rate    = sample_rate;

  FlSample* sample = NULL;
  result->status   = fl_path_resolve(loader->sample_root,
                                   request->path,
                                   path,
                                   sizeof(path),
                                   result->reason,
                                   sizeof(result->reason));
  if (!result->status) {
    result->status = fl_decode_file(
      path, &decode, &sample, result->reason, sizeof(result->reason));
  }
  if (result->status) {
    return; /* the slot keeps what it had */
  }

  /* The RT thread reads these pages; a page fault there (after the pages
     were swapped out) would be an xrun. Locked pages are unlocked when the
     sample is freed. */
  if (loader->config.lock_memory &&
      mlock(sample->frames, (size_t)fl_sample_bytes(sample)) &&
      !loader->warned_lock) {
    fl_log(FL_LOG_WARNING,
           "cannot lock sample memory (%s); raise 'ulimit -l' to keep "
           "samples from being swapped out",
           strerror(errno));
    loader->warned_lock = true;
  }

  result->frame_count = sample->frame_count;
  result->channels    = sample->channels;
  result->source_rate = sample->source_rate;
  fl_engine_publish(loader->config.engine, request->slot, sample);
  /* A key-lock render of the sample that was there is of no use now. */
  fl_engine_publish_stretch(loader->config.engine, request->slot, NULL);
}

static void*
stretch_main(void* data)
{
  StretchJob* const job = (StretchJob*)data;
  job->render           = fl_stretch_render(job->sample,
                                  job->request.start,
                                  job->request.end,
                                  job->request.ratio,
                                  job->request.loop,
                                  job->reason,
                                  sizeof(job->reason));
  return NULL;
}

/* Key lock: render the slots' regions at the ratios asked, in parallel, and
   publish them from this thread (the one producer of the retire ring).
   This thread is also the one that replaces samples, so the samples the
   renders read stay alive until they are joined. */
static void
run_stretches(FlLoader* loader, StretchJob* jobs, uint32_t count)
{
  for (uint32_t i = 0U; i < count; ++i) {
    StretchJob* const job = &jobs[i];
    job->sample           = fl_bank_get(loader->config.bank, job->request.slot);
    job->render           = NULL;
    snprintf(job->reason, sizeof(job->reason), "the slot is empty");
    if (!job->sample || job->request.end > job->sample->frame_count) {
      job->sample = NULL;
      continue;
    }
    job->started =
      i > 0U && !pthread_create(&job->thread, NULL, stretch_main, job);
  }
  if (jobs[0].sample) {
    stretch_main(&jobs[0]);
  }
  for (uint32_t i = 0U; i < count; ++i) {
    StretchJob* const job = &jobs[i];
    if (job->started) {
      pthread_join(job->thread, NULL);
      job->started = false;
    } else if (i > 0U && job->sample) {
      stretch_main(job); /* no thread: render it here */
    }
    if (!job->render) {
      if (job->sample) {
        fl_log(FL_LOG_WARNING,
               "key lock: cannot render slot %u at ratio %g: %s",
               job->request.slot,
               job->request.ratio,
               job->reason);
      }
      continue;
    }
    if (loader->config.lock_memory) {
      mlock(job->render->frames, (size_t)fl_sample_bytes(job->render));
    }
    fl_log(FL_LOG_DEBUG,
           "key lock: slot %u rendered at ratio %g, %u frames",
           job->request.slot,
           job->request.ratio,
           job->render->frame_count);
    fl_engine_publish_stretch(
      loader->config.engine, job->request.slot, job->render);
  }
}

/* Whether a later stretch request for the same slot is queued (lock held). */
static bool
superseded(const FlLoader* loader, const Request* request)
{
  for (uint32_t i = 0U; i < loader->queue_count; ++i) {
    const Request* const later =
      &loader->queue[(loader->queue_head + i) % loader->queue_length];
    if (later->type == FL_REQUEST_STRETCH && later->slot == request->slot) {
      return true;
    }
  }
  return false;
}

/* /analyze and /waveform: this thread may read the slot's sample (it is
   the one that would replace it). */
static void
run_analysis(FlLoader* loader, const Request* request, FlLoadResult* result)
{
  const FlSample* const sample =
    fl_bank_get(loader->config.bank, request->slot);
  if (!sample) {
    result->status = FL_ERR_EMPTY_SLOT;
    snprintf(result->reason,
             sizeof(result->reason),
             "slot %u is empty",
             request->slot);
    return;
  }
  if (request->type == FL_REQUEST_ANALYZE) {
    result->status = fl_analysis_tempo(
      sample, &result->tempo, result->reason, sizeof(result->reason));
    return;
  }

  const double   rate  = (double)sample->sample_rate;
  const uint32_t first = (uint32_t)llround(request->from_seconds * rate);
  uint32_t       last  = request->to_seconds > 0.0
                           ? (uint32_t)llround(request->to_seconds * rate)
                           : sample->frame_count;
  last = last < sample->frame_count ? last : sample->frame_count;
  float* const pairs =
    (float*)calloc(2U * (size_t)request->points, sizeof(float));
  if (first >= last || !pairs) {
    free(pairs);
    result->status = FL_ERR_BAD_ARGUMENT;
    snprintf(result->reason,
             sizeof(result->reason),
             "the span %g..%g s is not in slot %u (%g s)",
             request->from_seconds,
             request->to_seconds,
             request->slot,
             (double)sample->frame_count / rate);
    return;
  }
  fl_analysis_waveform(sample, first, last, request->points, pairs);
  result->points = request->points;
  result->pairs  = pairs;
}

static void
run_unload(FlLoader* loader, const Request* request, FlLoadResult* result)
{
  if (!fl_bank_get(loader->config.bank, request->slot)) {
    result->status = FL_ERR_EMPTY_SLOT;
    snprintf(result->reason,
             sizeof(result->reason),
             "slot %u is empty",
             request->slot);
    return;
  }
  fl_engine_publish(loader->config.engine, request->slot, NULL);
  fl_engine_publish_stretch(loader->config.engine, request->slot, NULL);
}

static void*
loader_main(void* data)
{
  FlLoader* const loader = (FlLoader*)data;

  for (;;) {
    pthread_mutex_lock(&loader->lock);
    while (!loader->stopping && loader->queue_count == 0U) {
      pthread_cond_wait(&loader->wake, &loader->lock);
    }
    if (loader->stopping) {
      pthread_mutex_unlock(&loader->lock);
      break;
    }
    if (loader->queue[loader->queue_head].type == FL_REQUEST_STRETCH) {
      /* Take the stretch requests at the head of the queue, one per core,
         skipping those a later request for the same slot replaces. */
      uint32_t count = 0U;
      while (loader->queue_count > 0U && count < loader->parallel &&
             loader->queue[loader->queue_head].type == FL_REQUEST_STRETCH) {
        const Request request = loader->queue[loader->queue_head];
        loader->queue_head = (loader->queue_head + 1U) % loader->queue_length;
        --loader->queue_count;
        if (!superseded(loader, &request)) {
          loader->jobs[count++].request = request;
        }
      }
      pthread_mutex_unlock(&loader->lock);
      if (count > 0U) {
        run_stretches(loader, loader->jobs, count);
      }
      continue;
    }

    const Request  request = loader->queue[loader->queue_head];
    const uint32_t rate    = loader->sample_rate;
    loader->queue_head     = (loader->queue_head + 1U) % loader->queue_length;
    --loader->queue_count;
    pthread_mutex_unlock(&loader->lock);

    FlLoadResult* const result = (FlLoadResult*)calloc(1, sizeof(FlLoadResult));
    if (!result) {
      fl_log(FL_LOG_ERROR, "out of memory while loading slot %u", request.slot);
      free(request.path);
      continue;
    }
    result->type = request.type;
    result->slot = request.slot;
    memcpy(result->context, request.context, request.context_size);

    if (request.type == FL_REQUEST_UNLOAD) {
      run_unload(loader, &request, result);
    } else if (request.type == FL_REQUEST_ANALYZE ||
               request.type == FL_REQUEST_WAVEFORM) {
      run_analysis(loader, &request, result);
    } else {
      run_load(loader, &request, rate, result);
    }

    if (loader->config.done) {
      loader->config.done(loader->config.done_data, result);
    }
    free((void*)result->pairs);
    free(result);
    free(request.path);
  }
  return NULL;
}

FlLoader*
fl_loader_new(const FlLoaderConfig* config)
{
  FlLoader* const loader = (FlLoader*)calloc(1, sizeof(FlLoader));
  if (!loader) {
    return NULL;
  }

  loader->config = *config;
  loader->queue_length =
    config->queue_length ? config->queue_length : DEFAULT_QUEUE_LENGTH;
  loader->sample_rate = config->decode.sample_rate;
  loader->queue       = (Request*)calloc(loader->queue_length, sizeof(Request));
  const long cores    = sysconf(_SC_NPROCESSORS_ONLN);
  loader->parallel    = cores < 1                        ? 1U
                        : cores > MAX_PARALLEL_STRETCHES ? MAX_PARALLEL_STRETCHES
                                                         : (uint32_t)cores;
  loader->sample_root =
    config->sample_root ? strdup(config->sample_root) : NULL;
  if (!loader->queue || (config->sample_root && !loader->sample_root)) {
    free(loader->queue);
    free(loader->sample_root);
    free(loader);
    return NULL;
  }
  loader->config.sample_root = loader->sample_root;

  pthread_mutex_init(&loader->lock, NULL);
  pthread_cond_init(&loader->wake, NULL);
  if (pthread_create(&loader->thread, NULL, loader_main, loader)) {
    pthread_cond_destroy(&loader->wake);
    pthread_mutex_destroy(&loader->lock);
    free(loader->queue);
    free(loader->sample_root);
    free(loader);
    return NULL;
  }
  pthread_setname_np(loader->thread, "flitzi-loader");
  return loader;
}

void
fl_loader_free(FlLoader* loader)
{
  if (!loader) {
    return;
  }

  pthread_mutex_lock(&loader->lock);
  loader->stopping = true;
  pthread_cond_signal(&loader->wake);
  pthread_mutex_unlock(&loader->lock);
  pthread_join(loader->thread, NULL);

  for (uint32_t i = 0U; i < loader->queue_count; ++i) {
    free(loader->queue[(loader->queue_head + i) % loader->queue_length].path);
  }
  pthread_cond_destroy(&loader->wake);
  pthread_mutex_destroy(&loader->lock);
  free(loader->queue);
  free(loader->sample_root);
  free(loader);
}

FlStatus
fl_loader_load(FlLoader*   loader,
               uint32_t    slot,
               const char* path,
               const void* context,
               size_t      context_size)
{
  return make_request(
    loader, FL_REQUEST_LOAD, slot, path, context, context_size);
}

FlStatus
fl_loader_unload(FlLoader*   loader,
                 uint32_t    slot,
                 const void* context,
                 size_t      context_size)
{
  return make_request(
    loader, FL_REQUEST_UNLOAD, slot, NULL, context, context_size);
}

void
fl_loader_set_sample_rate(FlLoader* loader, uint32_t sample_rate)
{
  pthread_mutex_lock(&loader->lock);
  const bool changed  = loader->sample_rate != sample_rate;
  loader->sample_rate = sample_rate;
  pthread_mutex_unlock(&loader->lock);
  if (!changed) {
    return;
  }

  const uint32_t slot_count = fl_bank_slot_count(loader->config.bank);
  FlSlotInfo*    info       = (FlSlotInfo*)malloc(sizeof(FlSlotInfo));
  for (uint32_t slot = 0U; info && slot < slot_count; ++slot) {
    if (fl_bank_info(loader->config.bank, slot, info) && info->loaded &&
        make_request(loader, FL_REQUEST_RELOAD, slot, info->path, NULL, 0U)) {
      fl_log(FL_LOG_WARNING, "cannot queue the reload of slot %u", slot);
    }
  }
  free(info);
}

FlStatus
fl_loader_stretch(FlLoader* loader,
                  uint32_t  slot,
                  double    ratio,
                  uint32_t  start,
                  uint32_t  end,
                  bool      loop)
{
  Request request = { .type  = FL_REQUEST_STRETCH,
                      .slot  = slot,
                      .ratio = ratio,
                      .start = start,
                      .end   = end,
                      .loop  = loop };
  return enqueue(loader, &request);
}

FlStatus
fl_loader_analyze(FlLoader*   loader,
                  uint32_t    slot,
                  const void* context,
                  size_t      context_size)
{
  return make_request(
    loader, FL_REQUEST_ANALYZE, slot, NULL, context, context_size);
}

FlStatus
fl_loader_waveform(FlLoader*   loader,
                   uint32_t    slot,
                   uint32_t    points,
                   double      start,
                   double      end,
                   const void* context,
                   size_t      context_size)
{
  if (slot >= fl_bank_slot_count(loader->config.bank)) {
    return FL_ERR_BAD_SLOT;
  }
  if (points < 1U || points > 2048U || context_size > FL_LOADER_CONTEXT_SIZE) {
    return FL_ERR_BAD_ARGUMENT;
  }
  Request request = { .type         = FL_REQUEST_WAVEFORM,
                      .slot         = slot,
                      .from_seconds = start,
                      .to_seconds   = end,
                      .points       = points };
  memcpy(request.context, context, context_size);
  request.context_size = context_size;
  return enqueue(loader, &request);
}
