/*
  The baseline of scripts/bench-keylock: one bare Rubber Band real-time
  stretcher, as a real-time user (Mixxx's EngineBufferScaleRubberBand) runs
  one per deck, on the same kind of audio flitzid key-locks in that
  benchmark.

  Reads INPUT (a stereo sound file; the script writes its loops one after
  the other into it) and stretches it, looping over it as long as needed,
  into SECONDS of output in blocks of BLOCK frames (the JACK period), with
  the tempo ratio changing every EVERY seconds of output through TEMPOS
  (BPM, taken in turn) against the input's BPM: Rubber Band's time ratio is
  bpm / tempo. RubberBandOptionProcessRealTime, the R3 engine
  (RubberBandOptionEngineFiner, as flitzid's renders) or with --faster the
  R2 engine, RubberBandOptionPitchHighQuality, no threads of its own. Input
  is fed as rubberband_get_samples_required() asks; nothing is written.

  Prints one line of key=value pairs: cpu_s (user + system of this process
  while stretching), wall_s, output_s, input_s, engine, and the largest
  cpu time of one block in microseconds (block_max_us, CLOCK_THREAD_CPUTIME).

  Usage: bench_stretcher [--faster] INPUT SECONDS BLOCK EVERY BPM TEMPO...
*/
#include <rubberband/rubberband-c.h>
#include <sndfile.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_TEMPOS 64

static double
seconds_of(const struct timespec* t)
{
  return (double)t->tv_sec + (double)t->tv_nsec * 1e-9;
}

static double
cpu_seconds(void)
{
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec * 1e-6 +
         (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec * 1e-6;
}

/* The whole file as two planar channels (a mono file twice). */
static bool
read_input(const char* path, float** left, float** right, uint32_t* frames)
{
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  SNDFILE* const file = sf_open(path, SFM_READ, &info);
  if (!file) {
    fprintf(stderr, "bench_stretcher: %s: %s\n", path, sf_strerror(NULL));
    return false;
  }
  const size_t count = (size_t)info.frames;
  const size_t width = (size_t)info.channels;
  float* const frame_data =
    count && width ? (float*)malloc(count * width * sizeof(float)) : NULL;
  *left  = (float*)malloc((count ? count : 1U) * sizeof(float));
  *right = (float*)malloc((count ? count : 1U) * sizeof(float));
  const bool read =
    frame_data && *left && *right &&
    sf_readf_float(file, frame_data, info.frames) == info.frames;
  sf_close(file);
  if (!read) {
    fprintf(stderr, "bench_stretcher: cannot read %s\n", path);
    free(frame_data);
    return false;
  }
  for (size_t i = 0U; i < count; ++i) {
    (*left)[i]  = frame_data[i * width];
    (*right)[i] = frame_data[i * width + width - 1U];
  }
  free(frame_data);
  *frames = (uint32_t)count;
  return true;
}

int
main(int argc, char** argv)
{
  int  first  = 1;
  bool faster = false;
  if (argc > 1 && !strcmp(argv[1], "--faster")) {
    faster = true;
    first  = 2;
  }
  if (argc - first < 6) {
    fprintf(stderr,
            "usage: bench_stretcher [--faster] INPUT SECONDS BLOCK EVERY BPM "
            "TEMPO...\n");
    return 2;
  }
  const char* const path               = argv[first];
  const double      seconds            = atof(argv[first + 1]);
  const unsigned    block              = (unsigned)atoi(argv[first + 2]);
  const double      every              = atof(argv[first + 3]);
  const double      bpm                = atof(argv[first + 4]);
  double            tempos[MAX_TEMPOS] = { 0.0 };
  int               tempo_count        = 0;
  for (int i = first + 5; i < argc && tempo_count < MAX_TEMPOS; ++i) {
    tempos[tempo_count++] = atof(argv[i]);
  }
  if (!(seconds > 0.0) || block < 16U || block > 8192U || !(every > 0.0) ||
      !(bpm > 0.0) || !(tempos[0] > 0.0)) {
    fprintf(stderr, "bench_stretcher: bad arguments\n");
    return 2;
  }

  float*   input[2] = { NULL, NULL };
  uint32_t frames   = 0U;
  if (!read_input(path, &input[0], &input[1], &frames) || frames < block) {
    return 1;
  }

  SF_INFO info;
  memset(&info, 0, sizeof(info));
  SNDFILE* const probe = sf_open(path, SFM_READ, &info);
  const unsigned rate  = probe ? (unsigned)info.samplerate : 48000U;
  if (probe) {
    sf_close(probe);
  }

  const RubberBandOptions options =
    RubberBandOptionProcessRealTime | RubberBandOptionPitchHighQuality |
    RubberBandOptionThreadingNever |
    (faster ? RubberBandOptionEngineFaster : RubberBandOptionEngineFiner);
  RubberBandState stretcher =
    rubberband_new(rate, 2U, options, bpm / tempos[0], 1.0);
  /* Room for what one call may ask for or give. */
  enum { CHUNK = 16384 };
  float* const in[2]  = { (float*)malloc(CHUNK * sizeof(float)),
                          (float*)malloc(CHUNK * sizeof(float)) };
  float* const out[2] = { (float*)malloc(CHUNK * sizeof(float)),
                          (float*)malloc(CHUNK * sizeof(float)) };
  if (!stretcher || !in[0] || !in[1] || !out[0] || !out[1]) {
    fprintf(stderr, "bench_stretcher: out of memory\n");
    return 1;
  }
  rubberband_set_max_process_size(stretcher, CHUNK);

  const uint64_t total_out   = (uint64_t)(seconds * rate);
  const uint64_t every_out   = (uint64_t)(every * rate);
  uint64_t       produced    = 0U;
  uint64_t       consumed    = 0U;
  int            tempo_index = 0;
  double         block_max   = 0.0;

  struct timespec wall_begin;
  clock_gettime(CLOCK_MONOTONIC, &wall_begin);
  const double cpu_begin = cpu_seconds();
  while (produced < total_out) {
    struct timespec block_begin;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &block_begin);
    const int wanted_tempo = (int)(produced / every_out) % tempo_count;
    if (wanted_tempo != tempo_index) {
      tempo_index = wanted_tempo;
      rubberband_set_time_ratio(stretcher, bpm / tempos[tempo_index]);
    }
    /* One period of output: feed what it asks for until a block is there. */
    unsigned got = 0U;
    while (got < block) {
      const int available = rubberband_available(stretcher);
      if (available > 0) {
        const unsigned want = block - got;
        got += rubberband_retrieve(
          stretcher,
          out,
          (unsigned)available < want ? (unsigned)available : want);
        continue;
      }
      unsigned required = rubberband_get_samples_required(stretcher);
      required          = required ? required : block;
      required          = required > CHUNK ? CHUNK : required;
      for (unsigned i = 0U; i < required; ++i) {
        const uint32_t at = (uint32_t)((consumed + i) % frames);
        in[0][i]          = input[0][at];
        in[1][i]          = input[1][at];
      }
      rubberband_process(stretcher, (const float* const*)in, required, 0);
      consumed += required;
    }
    produced += block;
    struct timespec block_end;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &block_end);
    const double spent = seconds_of(&block_end) - seconds_of(&block_begin);
    block_max          = spent > block_max ? spent : block_max;
  }
  const double    cpu_end = cpu_seconds();
  struct timespec wall_end;
  clock_gettime(CLOCK_MONOTONIC, &wall_end);

  printf("cpu_s=%.4f wall_s=%.4f output_s=%.3f input_s=%.3f engine=%s "
         "block_max_us=%.1f block=%u rate=%u\n",
         cpu_end - cpu_begin,
         seconds_of(&wall_end) - seconds_of(&wall_begin),
         (double)produced / rate,
         (double)consumed / rate,
         faster ? "R2" : "R3",
         block_max * 1e6,
         block,
         rate);
  rubberband_delete(stretcher);
  free(in[0]);
  free(in[1]);
  free(out[0]);
  free(out[1]);
  free(input[0]);
  free(input[1]);
  return 0;
}
