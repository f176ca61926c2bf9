#include <flitzi/sample.h>

#include <stdlib.h>
#include <string.h>

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
  sample->frames            = silent ? (float*)calloc(count, sizeof(float))
                                     : (float*)malloc(count * sizeof(float));
  sample->path              = strdup(path ? path : "");
  if (!sample->frames || !sample->path) {
    fl_sample_free(sample);
    return NULL;
  }

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
  /* A freed sample's pages stay in malloc's heap, so calloc would have to
     clear them: a pass over the whole buffer that the decoder's own writes
     make useless. */
  return allocate(frame_count, channels, sample_rate, source_rate, path,
                  false);
}

void
fl_sample_free(FlSample* sample)
{
  if (sample) {
    free(sample->frames);
    free(sample->path);
    free(sample);
  }
}
