/*
  Load throughput: fl_decode_file() (what the loader does for /load) against
  the bare cost of the same work in the same run: sf_readf_float() of the
  whole file, and for a file at another rate, that plus one src_simple() call
  at the same converter quality, single-threaded.

  And the whole path a user sees: /load sent over UDP to a running flitzid
  (a dummy jackd at 48 kHz of its own, see harness.h) until its /done
  arrives, which adds the OSC thread, the loader's queue, path checks,
  locking the sample's pages and the publish.

  Files: 60 s of stereo as 16-bit WAV, float WAV and FLAC, at 48 kHz (no
  resampling) and 44.1 kHz (resampled to 48 kHz). Each figure is the best of
  a few runs with the file in the page cache. Ratios are what to read: the
  machines are shared and noisy. Goals: /load to /done at most 1.3 x the
  bare decode without resampling, and at most 0.7 x the bare decode plus
  single-threaded src_simple() with it.
*/
#include "harness.h"

#include <flitzi/decode.h>

#include <samplerate.h>
#include <sndfile.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SECONDS 60
#define RUNS 3

static double
now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void
write_file(const char* path, int format, int rate)
{
  SF_INFO info    = { 0 };
  info.channels   = 2;
  info.samplerate = rate;
  info.format     = format;
  SNDFILE* file   = sf_open(path, SFM_WRITE, &info);
  if (!file) {
    fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
    exit(1);
  }
  const sf_count_t frames = (sf_count_t)rate * SECONDS;
  float            block[2 * 4096];
  for (sf_count_t done = 0; done < frames; done += 4096) {
    const sf_count_t n = frames - done < 4096 ? frames - done : 4096;
    for (sf_count_t i = 0; i < n; ++i) {
      const double t   = (double)(done + i) / rate;
      block[2 * i]     = (float)(0.4 * sin(2 * M_PI * 220.0 * t) +
                             0.1 * sin(2 * M_PI * 3520.0 * t));
      block[2 * i + 1] = (float)(0.4 * sin(2 * M_PI * 330.0 * t));
    }
    sf_writef_float(file, block, n);
  }
  sf_close(file);
}

/* The bare work: read every frame; optionally one src_simple() call. */
static double
bare(const char* path, int resample_to)
{
  const double begin = now();
  SF_INFO      info  = { 0 };
  SNDFILE*     file  = sf_open(path, SFM_READ, &info);
  float*       in    = (float*)malloc((size_t)info.frames * 2U * sizeof(float));
  sf_readf_float(file, in, info.frames);
  sf_close(file);
  if (resample_to) {
    const double ratio    = (double)resample_to / info.samplerate;
    const long   capacity = (long)ceil((double)info.frames * ratio) + 64;
    float*       out   = (float*)malloc((size_t)capacity * 2U * sizeof(float));
    SRC_DATA     data  = { 0 };
    data.data_in       = in;
    data.data_out      = out;
    data.input_frames  = (long)info.frames;
    data.output_frames = capacity;
    data.src_ratio     = ratio;
    src_simple(&data, SRC_SINC_MEDIUM_QUALITY, 2);
    free(out);
  }
  free(in);
  return now() - begin;
}

static double
flitzi(const char* path)
{
  const FlDecodeConfig config = { 48000U, FL_QUALITY_MEDIUM, 600.0 };
  FlSample*            sample = NULL;
  char                 reason[512];
  const double         begin = now();
  if (fl_decode_file(path, &config, &sample, reason, sizeof(reason))) {
    fprintf(stderr, "%s\n", reason);
    exit(1);
  }
  const double elapsed = now() - begin;
  fl_sample_free(sample);
  return elapsed;
}

static double
best(double (*run)(const char*, int), const char* path, int to)
{
  double result = 1e9;
  for (int i = 0; i < RUNS; ++i) {
    const double t = run(path, to);
    result         = t < result ? t : result;
  }
  return result;
}

static double
run_flitzi(const char* path, int to)
{
  (void)to;
  return flitzi(path);
}

static FlOsc* daemon_osc;

/* /load over UDP to flitzid until /done. */
static double
run_daemon(const char* path, int to)
{
  (void)to;
  fl_osc_clear(daemon_osc);
  const double begin = now();
  fl_osc_send(daemon_osc, "/load", "is", 0, path);
  FlReply* const reply   = fl_osc_wait(daemon_osc, "/done", 60000);
  const double   elapsed = now() - begin;
  if (!reply) {
    fprintf(stderr, "no /done for %s\n", path);
    exit(1);
  }
  fl_reply_free(reply);
  return elapsed;
}

int
main(void)
{
  FlTestEnv env;
  if (!fl_env_init(&env, "bench-load")) {
    return 1;
  }
  const char* const dir = env.dir;
  char              server[64];
  char              name[64];
  fl_env_name(&env, server, sizeof(server));
  fl_env_name(&env, name, sizeof(name));
  FlJackd  jackd  = { 0 };
  FlDaemon daemon = { 0 };
  if (!fl_jackd_start(&jackd, &env, server, FL_TEST_PERIOD) ||
      !fl_daemon_start(&daemon, &env, server, name, fl_env_port(&env), NULL)) {
    return 1;
  }
  daemon_osc = fl_osc_new(daemon.port);

  static const struct {
    const char* name;
    int         format;
  } formats[] = {
    { "pcm16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16 },
    { "float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT },
    { "pcm16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16 },
  };
  static const int rates[] = { 48000, 44100 };

  printf("load of 60 s stereo, best of %d, SRC_SINC_MEDIUM_QUALITY\n", RUNS);
  printf("%-11s %6s %10s %12s %12s %7s  %s\n",
         "format",
         "rate",
         "bare ms",
         "decode ms",
         "/load ms",
         "ratio",
         "goal (ratio of /load to bare)");
  for (size_t f = 0U; f < sizeof(formats) / sizeof(formats[0]); ++f) {
    for (size_t r = 0U; r < 2U; ++r) {
      char path[PATH_MAX];
      snprintf(path, sizeof(path), "%s/%d-%s", dir, rates[r], formats[f].name);
      write_file(path, formats[f].format, rates[r]);
      const int to = rates[r] == 48000 ? 0 : 48000;
      bare(path, 0); /* page cache */
      const double bare_time   = best(bare, path, to);
      const double flitzi_time = best(run_flitzi, path, to);
      const double load_time   = best(run_daemon, path, to);
      const double ratio       = load_time / bare_time;
      const double goal        = to ? 0.7 : 1.3;
      printf("%-11s %6d %10.1f %12.1f %12.1f %7.2f  <= %.1f %s\n",
             formats[f].name,
             rates[r],
             bare_time * 1e3,
             flitzi_time * 1e3,
             load_time * 1e3,
             ratio,
             goal,
             ratio <= goal ? "met" : "NOT met");
      unlink(path);
    }
  }
  printf("bare: sf_readf_float() of the whole file, plus one src_simple() "
         "for 44100;\ndecode: fl_decode_file() in this process; /load: "
         "/load to /done through flitzid\n");
  fl_osc_free(daemon_osc);
  fl_daemon_stop(&daemon);
  fl_jackd_stop(&jackd);
  fl_env_remove(&env);
  return 0;
}
