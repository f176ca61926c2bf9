/*
  Decoding a file into a sample for the engine's rate, and confining paths to
  a sample root. Pure functions of their arguments and the file system; the
  loader thread calls them, and so do the tests and benchmarks.
*/
#ifndef FLITZI_DECODE_H
#define FLITZI_DECODE_H

#include <flitzi/sample.h>
#include <flitzi/status.h>

#include <stddef.h>
#include <stdint.h>

/** libsamplerate converter used when a file's rate differs from JACK's. */
typedef enum {
  FL_QUALITY_BEST,    /**< SRC_SINC_BEST_QUALITY */
  FL_QUALITY_MEDIUM,  /**< SRC_SINC_MEDIUM_QUALITY (default) */
  FL_QUALITY_FASTEST, /**< SRC_SINC_FASTEST */
} FlQuality;

typedef struct {
  uint32_t  sample_rate; /**< Rate to prepare the sample for */
  FlQuality quality;     /**< Converter when resampling */
  double    max_seconds; /**< Longest file accepted, in seconds */
} FlDecodeConfig;

/**
   Decode the file at `path` into a new sample: normalized float32, mono or
   stereo, resampled to `config->sample_rate` if the file's rate differs.

   Decoding and resampling stream chunk by chunk; files of 4 s and more
   are resampled in parallel parts, one per core (at most 4), with a result
   equal bit for bit to one src_simple() call over the whole file. On
   success stores the sample in `*sample` and returns FL_SUCCESS. On failure
   returns the reason's status (FL_ERR_OPEN, FL_ERR_FORMAT, FL_ERR_CHANNELS,
   FL_ERR_TOO_LONG, FL_ERR_EMPTY_FILE, FL_ERR_READ, FL_ERR_RESAMPLE,
   FL_ERR_NO_MEMORY), writes one sentence for a user that names the file and
   the cause into `reason`, and leaves `*sample` NULL. Non-RT threads only.
*/
FlStatus fl_decode_file(const char*           path,
                        const FlDecodeConfig* config,
                        FlSample**            sample,
                        char*                 reason,
                        size_t                reason_size);

/**
   Turn the path a client sent into the absolute path to open.

   A relative path is taken relative to `root`, or to the working directory
   when `root` is NULL. With a root, the path must stay inside it both as
   written (".." cannot climb out) and after symbolic links are resolved;
   otherwise this returns FL_ERR_NOT_ALLOWED with a reason that does not say
   whether the file exists. A missing file inside the root (or anywhere, with
   no root) returns FL_ERR_OPEN. `resolved` receives the path to open.
*/
FlStatus fl_path_resolve(const char* root,
                         const char* path,
                         char*       resolved,
                         size_t      resolved_size,
                         char*       reason,
                         size_t      reason_size);

#endif /* FLITZI_DECODE_H */
