#include <flitzi/decode.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <samplerate.h>
#include <semaphore.h>
#include <sndfile.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Frames decoded per sf_readf_float() call: large enough that the per-call
   cost vanishes, small enough to stay in L2 while it is resampled. */
#define CHUNK_FRAMES 8192U

/* Paths in reasons are shortened so that a hostile 5000-byte path does not
   turn into a 5000-byte reply. */
#define SHOWN_PATH "%.200s"

static int
converter_of(FlQuality quality)
{
  switch (quality) {
  case FL_QUALITY_BEST:
    return SRC_SINC_BEST_QUALITY;
  case FL_QUALITY_FASTEST:
    return SRC_SINC_FASTEST;
  case FL_QUALITY_MEDIUM:
    break;
  }
  return SRC_SINC_MEDIUM_QUALITY;
}

/* Read every frame into `sample`, which has room for `frame_count`. */
static FlStatus
read_direct(SNDFILE* file, FlSample* sample, sf_count_t frame_count,
            const char* path, char* reason, size_t reason_size)
{
  sf_count_t done = 0;
  while (done < frame_count) {
    const sf_count_t want = frame_count - done < (sf_count_t)CHUNK_FRAMES * 8
                              ? frame_count - done
                              : (sf_count_t)CHUNK_FRAMES * 8;
    const sf_count_t got =
      sf_readf_float(file, sample->frames + done * sample->channels, want);
    if (got <= 0) {
      break;
    }
    done += got;
  }

  if (done < frame_count) {
    snprintf(reason, reason_size,
             "'" SHOWN_PATH "' is truncated: %lld of %lld frames could be read",
             path, (long long)done, (long long)frame_count);
    return FL_ERR_READ;
  }
  return FL_SUCCESS;
}

/* One channel's resampler, on a thread of its own. */
typedef struct {
  pthread_t  thread;
  sem_t      start;
  sem_t      done;
  SRC_STATE* state;
  double     ratio;
  float*     input[2]; /* double buffer of one channel's chunk */
  uint32_t   buffer;   /* which input buffer to read next */
  long       input_frames;
  bool       end_of_input;
  bool       quit;
  float*     output;
  uint64_t   capacity;
  uint64_t   produced;
  int        error;
} ChannelWorker;

/* Resample the current chunk of one channel to the end. */
static void
resample_chunk(ChannelWorker* worker)
{
  SRC_DATA data     = {0};
  data.data_in      = worker->input[worker->buffer];
  data.input_frames = worker->input_frames;
  data.end_of_input = worker->end_of_input;
  data.src_ratio    = worker->ratio;
  while (!worker->error && worker->produced < worker->capacity) {
    data.data_out      = worker->output + worker->produced;
    data.output_frames = (long)(worker->capacity - worker->produced);
    worker->error      = src_process(worker->state, &data);
    worker->produced += (uint64_t)data.output_frames_gen;
    data.data_in += data.input_frames_used;
    data.input_frames -= data.input_frames_used;

    /* Done with this chunk: all input taken (and, at the end, drained). */
    if ((data.input_frames == 0 && !data.end_of_input) ||
        (data.input_frames_used == 0 && data.output_frames_gen == 0)) {
      break;
    }
  }
}

static void*
worker_main(void* data)
{
  ChannelWorker* const worker = (ChannelWorker*)data;
  for (;;) {
    while (sem_wait(&worker->start)) {
    }
    if (worker->quit) {
      return NULL;
    }
    resample_chunk(worker);
    sem_post(&worker->done);
  }
}

/* Split one decoded interleaved chunk into the workers' input buffers. */
static void
deinterleave(const float* chunk, long frames, ChannelWorker* workers,
             uint32_t channels, uint32_t buffer)
{
  for (uint32_t c = 0U; c < channels; ++c) {
    float* const restrict out = workers[c].input[buffer];
    for (long i = 0; i < frames; ++i) {
      out[i] = chunk[(size_t)i * channels + c];
    }
  }
}

/* Decode and resample as a pipeline: this thread decodes chunk k+1 while one
   worker thread per channel resamples chunk k, each with its own converter
   state, so filter state at chunk seams is exactly what one long call would
   have. Each channel's converter does the arithmetic a multichannel one does
   for that channel, so the result equals single-threaded src_simple(). */
static FlStatus
read_resampled(SNDFILE* file, FlSample* sample, sf_count_t frame_count,
               uint64_t capacity, double ratio, int converter,
               const char* path, char* reason, size_t reason_size)
{
  const uint32_t channels = sample->channels;
  ChannelWorker  workers[2];
  memset(workers, 0, sizeof(workers));

  float* const chunk =
    (float*)malloc((size_t)CHUNK_FRAMES * channels * sizeof(float));
  float* const planar =
    channels > 1U ? (float*)malloc(capacity * channels * sizeof(float)) : NULL;
  bool     ready   = chunk && (channels == 1U || planar);
  uint32_t started = 0U;
  for (uint32_t c = 0U; ready && c < channels; ++c) {
    ChannelWorker* const worker = &workers[c];
    int                  error  = 0;
    worker->state               = src_new(converter, 1, &error);
    worker->ratio               = ratio;
    worker->input[0] = (float*)malloc(CHUNK_FRAMES * sizeof(float));
    worker->input[1] = (float*)malloc(CHUNK_FRAMES * sizeof(float));
    worker->output   = channels == 1U ? sample->frames : planar + c * capacity;
    worker->capacity = capacity;
    sem_init(&worker->start, 0, 0);
    sem_init(&worker->done, 0, 0);
    ready = worker->state && worker->input[0] && worker->input[1] &&
            !pthread_create(&worker->thread, NULL, worker_main, worker);
    if (ready) {
      pthread_setname_np(worker->thread, "flitzi-src");
    }
    started += ready;
  }

  FlStatus   status = ready ? FL_SUCCESS : FL_ERR_NO_MEMORY;
  sf_count_t read   = 0;
  uint32_t   buffer = 0U;
  sf_count_t got    = 0;
  bool       done   = false;
  if (ready) {
    got  = sf_readf_float(file, chunk, CHUNK_FRAMES);
    got  = got > 0 ? got : 0;
    read = got;
    done = got < (sf_count_t)CHUNK_FRAMES || read >= frame_count;
    deinterleave(chunk, (long)got, workers, channels, buffer);
  }
  while (status == FL_SUCCESS) {
    for (uint32_t c = 0U; c < channels; ++c) {
      workers[c].buffer       = buffer;
      workers[c].input_frames = (long)got;
      workers[c].end_of_input = done;
      sem_post(&workers[c].start);
    }

    /* Decode the next chunk while the workers resample this one. */
    sf_count_t next      = 0;
    bool       next_done = true;
    if (!done) {
      next      = sf_readf_float(file, chunk, CHUNK_FRAMES);
      next      = next > 0 ? next : 0;
      read     += next;
      next_done = next < (sf_count_t)CHUNK_FRAMES || read >= frame_count;
      deinterleave(chunk, (long)next, workers, channels, 1U - buffer);
    }

    for (uint32_t c = 0U; c < channels; ++c) {
      while (sem_wait(&workers[c].done)) {
      }
      if (workers[c].error) {
        snprintf(reason, reason_size, "cannot resample '" SHOWN_PATH "': %s",
                 path, src_strerror(workers[c].error));
        status = FL_ERR_RESAMPLE;
      }
    }
    if (done) {
      break;
    }
    buffer = 1U - buffer;
    got    = next;
    done   = next_done;
  }

  uint64_t produced = workers[0].produced;
  for (uint32_t c = 0U; c < started; ++c) {
    workers[c].quit = true;
    sem_post(&workers[c].start);
    pthread_join(workers[c].thread, NULL);
    if (workers[c].produced < produced) {
      produced = workers[c].produced;
    }
  }
  for (uint32_t c = 0U; c < channels; ++c) {
    src_delete(workers[c].state);
    free(workers[c].input[0]);
    free(workers[c].input[1]);
    sem_destroy(&workers[c].start);
    sem_destroy(&workers[c].done);
  }

  if (status == FL_SUCCESS && planar) {
    for (uint64_t i = 0U; i < produced; ++i) {
      for (uint32_t c = 0U; c < channels; ++c) {
        sample->frames[i * channels + c] = planar[c * capacity + i];
      }
    }
  }
  free(planar);
  free(chunk);

  if (status == FL_ERR_NO_MEMORY) {
    snprintf(reason, reason_size, "out of memory for '" SHOWN_PATH "'", path);
  } else if (status == FL_SUCCESS && read < frame_count) {
    snprintf(reason, reason_size,
             "'" SHOWN_PATH "' is truncated: %lld of %lld frames could be read",
             path, (long long)read, (long long)frame_count);
    status = FL_ERR_READ;
  }

  /* Converters produce within a few frames of the ideal count; keep what
     they made. The sample is not published yet, so this is no write to an
     immutable sample. */
  sample->frame_count = (uint32_t)produced;
  return status;
}

FlStatus
fl_decode_file(const char*           path,
               const FlDecodeConfig* config,
               FlSample**            sample,
               char*                 reason,
               size_t                reason_size)
{
  *sample = NULL;

  /* Open it ourselves to report the system's reason, and to refuse
     directories and FIFOs (which would block) before libsndfile sees them. */
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': %s", path,
             strerror(errno));
    return FL_ERR_OPEN;
  }

  struct stat st;
  if (fstat(fd, &st)) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': %s", path,
             strerror(errno));
    close(fd);
    return FL_ERR_OPEN;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': %s", path,
             S_ISDIR(st.st_mode) ? "Is a directory" : "not a regular file");
    close(fd);
    return FL_ERR_OPEN;
  }
  if (st.st_size == 0) {
    snprintf(reason, reason_size, "'" SHOWN_PATH "' holds no audio frames",
             path);
    close(fd);
    return FL_ERR_EMPTY_FILE;
  }

  SF_INFO        info = {0};
  SNDFILE* const file = sf_open_fd(fd, SFM_READ, &info, SF_TRUE);
  if (!file) {
    /* libsndfile closed fd on this error (close_desc is true). */
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': %s", path,
             sf_strerror(NULL));
    return FL_ERR_FORMAT;
  }

  FlStatus status = FL_SUCCESS;
  if (info.channels < 1 || info.channels > 2) {
    snprintf(reason, reason_size,
             "unsupported channel layout: %d channels (mono and stereo are "
             "supported)",
             info.channels);
    status = FL_ERR_CHANNELS;
  } else if (info.frames <= 0) {
    snprintf(reason, reason_size, "'" SHOWN_PATH "' holds no audio frames",
             path);
    status = FL_ERR_EMPTY_FILE;
  } else if (info.samplerate <= 0) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': bad sample rate %d",
             path, info.samplerate);
    status = FL_ERR_FORMAT;
  } else if ((double)info.frames / info.samplerate > config->max_seconds ||
             (double)info.frames * config->sample_rate / info.samplerate >
               (double)UINT32_MAX - 1024.0) {
    snprintf(reason, reason_size,
             "'" SHOWN_PATH "' is %.1f s long; the limit is %g s "
             "(--max-sample-seconds)",
             path, (double)info.frames / info.samplerate, config->max_seconds);
    status = FL_ERR_TOO_LONG;
  }
  if (status) {
    sf_close(file);
    return status;
  }

  const uint32_t channels    = (uint32_t)info.channels;
  const uint32_t source_rate = (uint32_t)info.samplerate;
  const bool     resample    = source_rate != config->sample_rate;
  const double   ratio       = (double)config->sample_rate / source_rate;
  const uint64_t capacity =
    resample ? (uint64_t)ceil((double)info.frames * ratio) + 64U
             : (uint64_t)info.frames;

  FlSample* const result = fl_sample_new((uint32_t)capacity, channels,
                                         config->sample_rate, source_rate, path);
  if (!result) {
    snprintf(reason, reason_size,
             "out of memory for '" SHOWN_PATH "' (%llu frames)", path,
             (unsigned long long)capacity);
    sf_close(file);
    return FL_ERR_NO_MEMORY;
  }

  status = resample
             ? read_resampled(file, result, info.frames, capacity, ratio,
                              converter_of(config->quality), path, reason,
                              reason_size)
             : read_direct(file, result, info.frames, path, reason,
                           reason_size);
  sf_close(file);
  if (status == FL_SUCCESS && result->frame_count == 0U) {
    snprintf(reason, reason_size, "'" SHOWN_PATH "' holds no audio frames",
             path);
    status = FL_ERR_EMPTY_FILE;
  }
  if (status) {
    fl_sample_free(result);
    return status;
  }

  *sample = result;
  return FL_SUCCESS;
}

/* Collapse ".", ".." and repeated slashes of an absolute path, without
   touching the file system. */
static void
normalize_lexically(const char* path, char* out, size_t out_size)
{
  size_t length = 0U;
  out[0]        = '\0';
  for (const char* p = path; *p;) {
    while (*p == '/') {
      ++p;
    }
    const char* const end  = p + strcspn(p, "/");
    const size_t      size = (size_t)(end - p);
    if (size == 0U || (size == 1U && p[0] == '.')) {
      /* nothing */
    } else if (size == 2U && p[0] == '.' && p[1] == '.') {
      while (length > 0U && out[--length] != '/') {
      }
      out[length] = '\0';
    } else if (length + 1U + size < out_size) {
      out[length++] = '/';
      memcpy(out + length, p, size);
      length += size;
      out[length] = '\0';
    }
    p = end;
  }
  if (length == 0U && out_size > 1U) {
    out[0] = '/';
    out[1] = '\0';
  }
}

static bool
is_inside(const char* root, const char* path)
{
  const size_t root_length = strlen(root);
  if (root_length == 1U && root[0] == '/') {
    return path[0] == '/';
  }
  return !strncmp(root, path, root_length) &&
         (path[root_length] == '/' || path[root_length] == '\0');
}

FlStatus
fl_path_resolve(const char* root,
                const char* path,
                char*       resolved,
                size_t      resolved_size,
                char*       reason,
                size_t      reason_size)
{
  char joined[2 * PATH_MAX];
  if (!path[0]) {
    snprintf(reason, reason_size, "cannot open '': the path is empty");
    return FL_ERR_OPEN;
  }

  if (path[0] == '/') {
    snprintf(joined, sizeof(joined), "%s", path);
  } else if (root) {
    snprintf(joined, sizeof(joined), "%s/%s", root, path);
  } else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd))) {
      snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': %s", path,
               strerror(errno));
      return FL_ERR_OPEN;
    }
    snprintf(joined, sizeof(joined), "%s/%s", cwd, path);
  }

  if (strlen(path) >= PATH_MAX || strlen(joined) >= PATH_MAX) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "...': %s", path,
             strerror(ENAMETOOLONG));
    return FL_ERR_OPEN;
  }

  if (root) {
    char normal[PATH_MAX];
    normalize_lexically(joined, normal, sizeof(normal));
    if (!is_inside(root, normal)) {
      snprintf(reason, reason_size, "'" SHOWN_PATH "' is outside the sample root",
               path);
      return FL_ERR_NOT_ALLOWED;
    }
  }

  char real[PATH_MAX];
  if (!realpath(joined, real)) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "': %s", path,
             strerror(errno));
    return FL_ERR_OPEN;
  }

  if (root && !is_inside(root, real)) {
    snprintf(reason, reason_size, "'" SHOWN_PATH "' is outside the sample root",
             path);
    return FL_ERR_NOT_ALLOWED;
  }

  if (strlen(real) >= resolved_size) {
    snprintf(reason, reason_size, "cannot open '" SHOWN_PATH "...': %s", path,
             strerror(ENAMETOOLONG));
    return FL_ERR_OPEN;
  }
  memcpy(resolved, real, strlen(real) + 1U);
  return FL_SUCCESS;
}
