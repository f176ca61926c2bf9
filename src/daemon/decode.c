#include <flitzi/decode.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <samplerate.h>
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
read_direct(SNDFILE*    file,
            FlSample*   sample,
            sf_count_t  frame_count,
            const char* path,
            char*       reason,
            size_t      reason_size)
{
  /* One call for the rest of the file: libsndfile reads large blocks
     itself, and a float file at the engine's rate becomes one read(). */
  sf_count_t done = 0;
  while (done < frame_count) {
    const sf_count_t got = sf_readf_float(
      file, sample->frames + done * sample->channels, frame_count - done);
    if (got <= 0) {
      break;
    }
    done += got;
  }

  if (done < frame_count) {
    snprintf(reason,
             reason_size,
             "'" SHOWN_PATH "' is truncated: %lld of %lld frames could be read",
             path,
             (long long)done,
             (long long)frame_count);
    return FL_ERR_READ;
  }
  return FL_SUCCESS;
}

/* Resampling in parallel, split in time.

   The file is cut into parts at input frames S_1 < S_2 < ..., each a
   multiple of in_step = source_rate / gcd, so that output frame
   O_i = S_i * out_step / in_step is exact. Each part has its own converter
   (interleaved, so stereo keeps libsamplerate's faster stereo path) and its
   own handle on the file; it starts decoding PRE_ROLL frames before S_i, so
   that its filter holds the real preceding audio by the time it reaches S_i,
   and throws away what it makes before O_i. It reads on past S_{i+1} for the
   same reason and stops once it has made frame O_{i+1}. The last part
   drains the converter at the end of the file, as one pass would. Decoding
   is parallel too, which matters for FLAC. */

/* Input frames decoded before a part's start: far more than the longest
   sinc filter reaches (SRC_SINC_BEST_QUALITY: about 150 input frames at
   these ratios), so the seam is exact to float rounding. */
#define PRE_ROLL_FRAMES 4096

/* Files shorter than this are done in one part: threads cost more. */
#define PARALLEL_MIN_SECONDS 4.0

#define MAX_PARTS 4U

typedef struct {
  pthread_t  thread;
  SNDFILE*   file; /* its own handle (part 0: the caller's) */
  int        converter;
  double     ratio;
  uint32_t   channels;
  sf_count_t read_from; /* first input frame decoded */
  sf_count_t read_to;   /* input frames to decode up to (exclusive) */
  bool       last;      /* drains the converter at the end */
  uint64_t   out_first; /* global output frame of read_from */
  uint64_t   keep_from; /* O_i: first output frame this part keeps */
  uint64_t   keep_to;   /* O_{i+1}, or capacity for the last part */
  float*     frames;    /* the sample's frames */
  uint64_t   kept_to;   /* output: end of what it kept */
  sf_count_t read;      /* output: input frames it decoded */
  int        error;     /* libsamplerate error, or -1 for memory */
} Part;

static void*
run_part(void* argument)
{
  Part* const    part         = (Part*)argument;
  const uint32_t channels     = part->channels;
  const long     out_capacity = (long)ceil(CHUNK_FRAMES * part->ratio) + 16;
  float* const   chunk  = (float*)malloc((size_t)CHUNK_FRAMES * channels * 4U);
  float* const   output = (float*)malloc((size_t)out_capacity * channels * 4U);
  SRC_STATE* const state =
    src_new(part->converter, (int)channels, &part->error);
  if (!chunk || !output || !state) {
    part->error = part->error ? part->error : -1;
    goto done;
  }
  if (part->read_from > 0 &&
      sf_seek(part->file, part->read_from, SEEK_SET) != part->read_from) {
    part->error = -2;
    goto done;
  }

  uint64_t   made = part->out_first; /* global index of the next output */
  sf_count_t at   = part->read_from;
  bool       eof  = false;
  while (!eof && made < part->keep_to) {
    const sf_count_t want = part->read_to - at < (sf_count_t)CHUNK_FRAMES
                              ? part->read_to - at
                              : (sf_count_t)CHUNK_FRAMES;
    const sf_count_t got =
      want > 0 ? sf_readf_float(part->file, chunk, want) : 0;
    at += got > 0 ? got : 0;
    eof = got < want || at >= part->read_to;

    SRC_DATA data     = { 0 };
    data.data_in      = chunk;
    data.input_frames = got > 0 ? (long)got : 0;
    data.end_of_input = eof && part->last;
    data.src_ratio    = part->ratio;
    for (;;) {
      data.data_out      = output;
      data.output_frames = out_capacity;
      if ((part->error = src_process(state, &data))) {
        goto done;
      }

      /* Keep the frames of [keep_from, keep_to) that this call made. */
      const uint64_t first = made;
      const uint64_t end   = made + (uint64_t)data.output_frames_gen;
      const uint64_t from  = first > part->keep_from ? first : part->keep_from;
      const uint64_t to    = end < part->keep_to ? end : part->keep_to;
      if (to > from) {
        memcpy(part->frames + from * channels,
               output + (from - first) * channels,
               (size_t)(to - from) * channels * sizeof(float));
        part->kept_to = to;
      }
      made = end;

      data.data_in += data.input_frames_used * channels;
      data.input_frames -= data.input_frames_used;
      const bool stuck =
        data.input_frames_used == 0 && data.output_frames_gen == 0;
      if (stuck || made >= part->keep_to ||
          (data.input_frames == 0 && !data.end_of_input)) {
        break;
      }
    }
  }
  part->read = at - part->read_from;

done:
  src_delete(state);
  free(chunk);
  free(output);
  return NULL;
}

static sf_count_t
gcd_of(sf_count_t a, sf_count_t b)
{
  while (b) {
    const sf_count_t r = a % b;
    a                  = b;
    b                  = r;
  }
  return a;
}

static FlStatus
read_resampled(int         fd,
               SNDFILE*    file,
               FlSample*   sample,
               sf_count_t  frame_count,
               uint64_t    capacity,
               int         converter,
               const char* path,
               char*       reason,
               size_t      reason_size)
{
  const sf_count_t in_rate  = sample->source_rate;
  const sf_count_t out_rate = sample->sample_rate;
  const sf_count_t divisor  = gcd_of(in_rate, out_rate);
  const sf_count_t in_step  = in_rate / divisor;
  const sf_count_t out_step = out_rate / divisor;
  const sf_count_t pre_roll =
    (PRE_ROLL_FRAMES + in_step - 1) / in_step * in_step;

  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  cores = cores < 1 ? 1 : cores > (long)MAX_PARTS ? (long)MAX_PARTS : cores;
  uint32_t part_count =
    (double)frame_count / (double)in_rate < PARALLEL_MIN_SECONDS
      ? 1U
      : (uint32_t)cores;

  /* Cut points S_i on the in_step grid; drop parts that come out empty. */
  sf_count_t cuts[MAX_PARTS + 1U] = { 0 };
  for (uint32_t i = 1U; i < part_count; ++i) {
    cuts[i] = frame_count * i / part_count / in_step * in_step;
    if (cuts[i] <= cuts[i - 1U] + pre_roll) {
      part_count = i;
      break;
    }
  }
  cuts[part_count] = frame_count;

  Part parts[MAX_PARTS];
  memset(parts, 0, sizeof(parts));
  FlStatus status = FL_SUCCESS;
  for (uint32_t i = 0U; i < part_count; ++i) {
    Part* const part = &parts[i];
    part->converter  = converter;
    part->ratio      = (double)out_rate / (double)in_rate;
    part->channels   = sample->channels;
    part->last       = i + 1U == part_count;
    part->read_from  = i ? cuts[i] - pre_roll : 0;
    part->read_to    = part->last ? frame_count : cuts[i + 1U] + pre_roll;
    part->out_first  = (uint64_t)(part->read_from / in_step * out_step);
    part->keep_from  = (uint64_t)(cuts[i] / in_step * out_step);
    part->keep_to =
      part->last ? capacity : (uint64_t)(cuts[i + 1U] / in_step * out_step);
    part->kept_to = part->keep_from;
    part->frames  = sample->frames;
    part->file    = file;

    if (i > 0U) {
      /* A handle of its own on the same open file (not the path, which
         may name another file by now). */
      char proc_path[64];
      snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
      SF_INFO info = { 0 };
      part->file   = sf_open(proc_path, SFM_READ, &info);
      if (!part->file || pthread_create(&part->thread, NULL, run_part, part)) {
        status = FL_ERR_READ;
        snprintf(reason,
                 reason_size,
                 "cannot read '" SHOWN_PATH "' again: %s",
                 path,
                 part->file ? "no thread" : sf_strerror(NULL));
        if (part->file) {
          sf_close(part->file);
          part->file = NULL;
        }
        part_count = i;
        break;
      }
      pthread_setname_np(part->thread, "flitzi-src");
    }
  }

  if (part_count > 0U) {
    run_part(&parts[0]); /* on this thread */
  }

  sf_count_t read     = 0;
  uint64_t   produced = 0U;
  for (uint32_t i = 0U; i < part_count; ++i) {
    Part* const part = &parts[i];
    if (i > 0U) {
      pthread_join(part->thread, NULL);
      sf_close(part->file);
    }
    if (status == FL_SUCCESS && part->error) {
      status = part->error == -1 ? FL_ERR_NO_MEMORY : FL_ERR_RESAMPLE;
      snprintf(reason,
               reason_size,
               "cannot resample '" SHOWN_PATH "': %s",
               path,
               part->error == -1   ? "out of memory"
               : part->error == -2 ? "cannot seek in the file"
                                   : src_strerror(part->error));
    }
    /* Each part must have made all it keeps; the last one must also have
       read the file to its end (the others stop as soon as they can). */
    if (status == FL_SUCCESS &&
        (part->last ? part->read < frame_count - part->read_from
                    : part->kept_to < part->keep_to)) {
      status = FL_ERR_READ;
      read   = part->read_from + part->read;
      snprintf(reason,
               reason_size,
               "'" SHOWN_PATH "' is truncated: %lld of %lld frames could be "
               "read",
               path,
               (long long)read,
               (long long)frame_count);
    }
    produced = part->kept_to;
  }

  /* Converters produce within a few frames of the ideal count; keep what
     they made. The sample is not published yet, so this is no write to an
     immutable sample. */
  sample->frame_count = (uint32_t)produced;
  return status;
}

/* Frames the header of an uncompressed WAV/AIFF file declares, when
   libsndfile found fewer in the file (it then logs "data : N (should be
   M)" and reads what is there); otherwise info->frames. */
static sf_count_t
declared_frames(SNDFILE* file, const SF_INFO* info)
{
  int bytes = 0;
  switch (info->format & SF_FORMAT_SUBMASK) {
    case SF_FORMAT_PCM_S8:
    case SF_FORMAT_PCM_U8:
      bytes = 1;
      break;
    case SF_FORMAT_PCM_16:
      bytes = 2;
      break;
    case SF_FORMAT_PCM_24:
      bytes = 3;
      break;
    case SF_FORMAT_PCM_32:
    case SF_FORMAT_FLOAT:
      bytes = 4;
      break;
    case SF_FORMAT_DOUBLE:
      bytes = 8;
      break;
    default:
      return info->frames;
  }

  char log[4096];
  sf_command(file, SFC_GET_LOG_INFO, log, sizeof(log));
  static const char* const chunks[] = { "\ndata : ", "\nSSND : " };
  for (size_t i = 0U; i < 2U; ++i) {
    const char* const line = strstr(log, chunks[i]);
    const char* const end  = line ? strchr(line + 1, '\n') : NULL;
    const char* const note = line ? strstr(line, "(should be ") : NULL;
    if (note && (!end || note < end) && info->channels > 0) {
      const long long size = strtoll(line + strlen(chunks[i]), NULL, 10);
      return (sf_count_t)(size / (bytes * info->channels));
    }
  }
  return info->frames;
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
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "': %s",
             path,
             strerror(errno));
    return FL_ERR_OPEN;
  }

  struct stat st;
  if (fstat(fd, &st)) {
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "': %s",
             path,
             strerror(errno));
    close(fd);
    return FL_ERR_OPEN;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "': %s",
             path,
             S_ISDIR(st.st_mode) ? "Is a directory" : "not a regular file");
    close(fd);
    return FL_ERR_OPEN;
  }
  if (st.st_size == 0) {
    snprintf(
      reason, reason_size, "'" SHOWN_PATH "' holds no audio frames", path);
    close(fd);
    return FL_ERR_EMPTY_FILE;
  }

  SF_INFO        info = { 0 };
  SNDFILE* const file = sf_open_fd(fd, SFM_READ, &info, SF_TRUE);
  if (!file) {
    /* libsndfile closed fd on this error (close_desc is true). */
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "': %s",
             path,
             sf_strerror(NULL));
    return FL_ERR_FORMAT;
  }

  FlStatus         status   = FL_SUCCESS;
  const sf_count_t declared = declared_frames(file, &info);
  if (declared > info.frames && info.channels >= 1 && info.channels <= 2) {
    snprintf(reason,
             reason_size,
             "'" SHOWN_PATH "' is truncated: %lld of %lld frames could be read",
             path,
             (long long)info.frames,
             (long long)declared);
    status = FL_ERR_READ;
  } else if (info.channels < 1 || info.channels > 2) {
    snprintf(reason,
             reason_size,
             "unsupported channel layout: %d channels (mono and stereo are "
             "supported)",
             info.channels);
    status = FL_ERR_CHANNELS;
  } else if (info.frames <= 0) {
    snprintf(
      reason, reason_size, "'" SHOWN_PATH "' holds no audio frames", path);
    status = FL_ERR_EMPTY_FILE;
  } else if (info.samplerate <= 0) {
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "': bad sample rate %d",
             path,
             info.samplerate);
    status = FL_ERR_FORMAT;
  } else if ((double)info.frames / info.samplerate > config->max_seconds ||
             (double)info.frames * config->sample_rate / info.samplerate >
               (double)UINT32_MAX - 1024.0) {
    snprintf(reason,
             reason_size,
             "'" SHOWN_PATH "' is %.1f s long; the limit is %g s "
             "(--max-sample-seconds)",
             path,
             (double)info.frames / info.samplerate,
             config->max_seconds);
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

  FlSample* const result = fl_sample_new_unfilled(
    (uint32_t)capacity, channels, config->sample_rate, source_rate, path);
  if (!result) {
    snprintf(reason,
             reason_size,
             "out of memory for '" SHOWN_PATH "' (%llu frames)",
             path,
             (unsigned long long)capacity);
    sf_close(file);
    return FL_ERR_NO_MEMORY;
  }

  status =
    resample
      ? read_resampled(fd,
                       file,
                       result,
                       info.frames,
                       capacity,
                       converter_of(config->quality),
                       path,
                       reason,
                       reason_size)
      : read_direct(file, result, info.frames, path, reason, reason_size);
  sf_close(file);
  if (status == FL_SUCCESS && result->frame_count == 0U) {
    snprintf(
      reason, reason_size, "'" SHOWN_PATH "' holds no audio frames", path);
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

/* For a path realpath() cannot resolve: does the part of it that exists
   lead outside `root`? Follows a dangling symlink to its target, then
   resolves the deepest ancestor that exists, so a missing file behind a
   link that points out of the root gets the same answer as an existing
   one. */
static bool
leads_outside(const char* root, const char* joined)
{
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s", joined);
  for (int hop = 0; hop < 40; ++hop) {
    char        real[PATH_MAX];
    struct stat info;
    if (realpath(path, real)) {
      return !is_inside(root, real);
    }
    if (!lstat(path, &info) && S_ISLNK(info.st_mode)) {
      char          target[PATH_MAX];
      const ssize_t length = readlink(path, target, sizeof(target) - 1U);
      if (length <= 0) {
        return false;
      }
      target[length] = '\0';
      if (target[0] == '/') {
        snprintf(path, sizeof(path), "%s", target);
      } else {
        /* Relative to the link's directory. */
        char* const  slash      = strrchr(path, '/');
        const size_t dir_length = slash ? (size_t)(slash - path) : 0U;
        if (dir_length + 1U + (size_t)length >= sizeof(path)) {
          return false;
        }
        memcpy(path + dir_length + 1U, target, (size_t)length + 1U);
        path[dir_length] = '/';
      }
      continue;
    }
    char* const slash = strrchr(path, '/');
    if (!slash || slash == path) {
      return false;
    }
    *slash = '\0';
  }
  return false;
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
      snprintf(reason,
               reason_size,
               "cannot open '" SHOWN_PATH "': %s",
               path,
               strerror(errno));
      return FL_ERR_OPEN;
    }
    snprintf(joined, sizeof(joined), "%s/%s", cwd, path);
  }

  if (strlen(path) >= PATH_MAX || strlen(joined) >= PATH_MAX) {
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "...': %s",
             path,
             strerror(ENAMETOOLONG));
    return FL_ERR_OPEN;
  }

  if (root) {
    char normal[PATH_MAX];
    normalize_lexically(joined, normal, sizeof(normal));
    if (!is_inside(root, normal)) {
      snprintf(reason,
               reason_size,
               "'" SHOWN_PATH "' is outside the sample root",
               path);
      return FL_ERR_NOT_ALLOWED;
    }
  }

  char real[PATH_MAX];
  if (!realpath(joined, real)) {
    const int error = errno;
    if (root && leads_outside(root, joined)) {
      snprintf(reason,
               reason_size,
               "'" SHOWN_PATH "' is outside the sample root",
               path);
      return FL_ERR_NOT_ALLOWED;
    }
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "': %s",
             path,
             strerror(error));
    return FL_ERR_OPEN;
  }

  if (root && !is_inside(root, real)) {
    snprintf(
      reason, reason_size, "'" SHOWN_PATH "' is outside the sample root", path);
    return FL_ERR_NOT_ALLOWED;
  }

  if (strlen(real) >= resolved_size) {
    snprintf(reason,
             reason_size,
             "cannot open '" SHOWN_PATH "...': %s",
             path,
             strerror(ENAMETOOLONG));
    return FL_ERR_OPEN;
  }
  memcpy(resolved, real, strlen(real) + 1U);
  return FL_SUCCESS;
}
