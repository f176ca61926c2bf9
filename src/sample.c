#include <flitzi/sample.h>

#include <stdlib.h>
#include <string.h>

FlSample*
fl_sample_new(uint32_t    frame_count,
              uint32_t    channels,
              uint32_t    sample_rate,
              uint32_t    source_rate,
              const char* path)
{
  if (channels < 1 || channels > 2) {
    return NULL;
  }

  FlSample* const sample = (FlSample*)calloc(1, sizeof(FlSample));
  if (!sample) {
    return NULL;
  }

  /* calloc, not malloc: a silent sample is a valid sample, and zeroed pages
     are touched now, on the loader, not on the first play. */
  const size_t sample_count = (size_t)frame_count * channels;
  sample->frames            = (float*)calloc(sample_count ? sample_count : 1,
                                  sizeof(float));
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

void
fl_sample_free(FlSample* sample)
{
  if (sample) {
    free(sample->frames);
    free(sample->path);
    free(sample);
  }
}
