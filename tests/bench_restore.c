/*
  Session restore: `flitzid --state FILE` with 216 slots, each holding a
  different 30 s stereo 44.1 kHz 16-bit FLAC file (noise and tones), against
  one thread doing the same work bare: sf_readf_float() of each whole file
  and one src_simple() call to 48 kHz at SRC_SINC_MEDIUM_QUALITY (what
  bench_load's bare 44.1 kHz case does), for all 216 files.

  flitzid's figure is the wall time from just before its fork until
  /status reports 216 slots loaded (polled every 20 ms); the time from the
  fork to its first /pong is reported beside it, not subtracted. The server
  is a dummy jackd of its own at 48 kHz, period 256, started once.

  The files (about 1 GB) are written before anything is timed, read once so
  that both sides find them in the page cache, and removed at the end. The
  machines are shared, so the runs are interleaved (bare, flitzid, bare,
  flitzid) and both are printed; the ratio flitzid / bare is what to read.
  Goal: at most 0.6 on 2 cores.
*/
#include "harness.h"

#include <samplerate.h>
#include <sndfile.h>

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILES 216
#define SECONDS 30
#define RATE 44100
#define RUNS 2
#define GOAL 0.6

static char paths[FILES][PATH_MAX];

static double
now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Noise and two tones, different for every file. */
static bool
write_file(const char* path, unsigned index)
{
  SF_INFO info    = { 0 };
  info.channels   = 2;
  info.samplerate = RATE;
  info.format     = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  SNDFILE* file   = sf_open(path, SFM_WRITE, &info);
  if (!file) {
    fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
    return false;
  }
  uint32_t         state  = 0x9E3779B9U * (index + 1U);
  const double     f1     = 110.0 + 7.0 * index;
  const double     f2     = 1000.0 + 13.0 * index;
  const sf_count_t frames = (sf_count_t)RATE * SECONDS;
  float            block[2 * 4096];
  for (sf_count_t done = 0; done < frames; done += 4096) {
    const sf_count_t n = frames - done < 4096 ? frames - done : 4096;
    for (sf_count_t i = 0; i < n; ++i) {
      const double t = (double)(done + i) / RATE;
      float        noise[2];
      for (int c = 0; c < 2; ++c) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        noise[c] = (float)((double)state / 4294967296.0 - 0.5) * 0.2F;
      }
      block[2 * i] = (float)(0.3 * sin(2 * M_PI * f1 * t)) + noise[0];
      block[2 * i + 1] =
        (float)(0.2 * sin(2 * M_PI * f2 * t) + 0.1 * sin(2 * M_PI * f1 * t)) +
        noise[1];
    }
    sf_writef_float(file, block, n);
  }
  return sf_close(file) == 0;
}

/* Generation on two threads: odd and even files. */
typedef struct {
  unsigned first;
  bool     ok;
} Writer;

static void*
write_files(void* arg)
{
  Writer* const writer = (Writer*)arg;
  writer->ok           = true;
  for (unsigned i = writer->first; i < FILES; i += 2U) {
    writer->ok = writer->ok && write_file(paths[i], i);
  }
  return NULL;
}

/* Read a file's bytes (into the page cache). */
static size_t
read_bytes(const char* path)
{
  static char buffer[1 << 20];
  const int   fd    = open(path, O_RDONLY);
  size_t      total = 0U;
  ssize_t     got   = 0;
  while (fd >= 0 && (got = read(fd, buffer, sizeof(buffer))) > 0) {
    total += (size_t)got;
  }
  if (fd >= 0) {
    close(fd);
  }
  return total;
}

/* One thread: every file decoded whole, then one src_simple() call. */
static double
bare(void)
{
  const double begin = now();
  for (unsigned f = 0U; f < FILES; ++f) {
    SF_INFO  info = { 0 };
    SNDFILE* file = sf_open(paths[f], SFM_READ, &info);
    if (!file) {
      fprintf(stderr, "cannot read %s: %s\n", paths[f], sf_strerror(NULL));
      exit(1);
    }
    float* in = (float*)malloc((size_t)info.frames * 2U * sizeof(float));
    sf_readf_float(file, in, info.frames);
    sf_close(file);
    const double ratio    = 48000.0 / info.samplerate;
    const long   capacity = (long)ceil((double)info.frames * ratio) + 64;
    float*       out   = (float*)malloc((size_t)capacity * 2U * sizeof(float));
    SRC_DATA     data  = { 0 };
    data.data_in       = in;
    data.data_out      = out;
    data.input_frames  = (long)info.frames;
    data.output_frames = capacity;
    data.src_ratio     = ratio;
    const int error    = src_simple(&data, SRC_SINC_MEDIUM_QUALITY, 2);
    if (error) {
      fprintf(stderr, "src_simple: %s\n", src_strerror(error));
      exit(1);
    }
    free(out);
    free(in);
  }
  return now() - begin;
}

/* The state file: version 1, every slot with its path and some settings. */
static bool
write_state(const char* state_path)
{
  FILE* const out = fopen(state_path, "w");
  if (!out) {
    perror(state_path);
    return false;
  }
  fprintf(out,
          "{\n  \"version\": 1,\n  \"tempo\": 120.0, \"signature\": 4, "
          "\"quantize\": \"off\", \"speed\": 1.0,\n  \"bpmlock\": false, "
          "\"master_gain\": 0.0,\n  \"slots\": [\n");
  for (unsigned f = 0U; f < FILES; ++f) {
    fprintf(out,
            "    {\"slot\": %u, \"path\": \"%s\",\n     \"settings\": "
            "{\"mode\": \"%s\", \"gain\": %.1f, \"pan\": %.2f}}%s\n",
            f,
            paths[f],
            f % 2U ? "loop" : "oneshot",
            -(double)(f % 12U),
            (double)((int)(f % 5U) - 2) * 0.25,
            f + 1U < FILES ? "," : "");
  }
  fprintf(out, "  ]\n}\n");
  return fclose(out) == 0;
}

typedef struct {
  double restore; /* fork to 216 slots loaded */
  double pong;    /* fork to the first /pong */
} Restore;

static bool
restore(FlTestEnv*  env,
        const char* server,
        const char* state_path,
        Restore*    result)
{
  if (!write_state(state_path)) {
    return false;
  }
  char name[64];
  fl_env_name(env, name, sizeof(name));
  const int port = fl_env_port(env);
  char      slots_text[16];
  snprintf(slots_text, sizeof(slots_text), "%d", FILES);
  const char* const args[] = { "--slots", slots_text, "--voices", "256",
                               "--state", state_path, NULL };
  FlOsc* const      osc    = fl_osc_new(port);
  FlDaemon          daemon = { 0 };
  if (!osc) {
    return false;
  }

  const double begin = now();
  if (!fl_daemon_spawn(&daemon, env, server, name, port, args)) {
    fl_osc_free(osc);
    return false;
  }
  result->pong    = -1.0;
  result->restore = -1.0;
  int32_t loaded  = -1;
  bool    ok      = true;
  while (ok && result->restore < 0.0) {
    if (result->pong < 0.0) {
      fl_osc_send(osc, "/ping", "");
    }
    fl_osc_send(osc, "/status", "");
    const int64_t deadline = fl_now_ms() + 20;
    int64_t       left     = 20;
    FlReply*      reply    = NULL;
    while (left > 0 && (reply = fl_osc_wait(osc, NULL, (int)left))) {
      const double at = now() - begin;
      if (!strcmp(reply->path, "/pong") && result->pong < 0.0) {
        result->pong = at;
      } else if (!strcmp(reply->path, "/status.reply") &&
                 !strcmp(reply->types, "iiiiiffiii")) {
        loaded = reply->argv[2].value.i;
        if (loaded >= FILES && result->restore < 0.0) {
          result->restore = at;
        }
      }
      fl_reply_free(reply);
      left = deadline - fl_now_ms();
    }
    if (left > 0) {
      fl_sleep_ms((int)left);
    }
    if (now() - begin > 600.0 || !fl_daemon_running(&daemon)) {
      fprintf(stderr,
              "flitzid %s after %.1f s with %d slots loaded\n",
              fl_daemon_running(&daemon) ? "still loading" : "exited",
              now() - begin,
              (int)loaded);
      fl_daemon_print_log(&daemon);
      ok = false;
    }
  }
  fl_osc_free(osc);
  const int status = fl_daemon_stop(&daemon);
  if (status != 0) {
    fprintf(stderr, "flitzid exited with %d on SIGTERM\n", status);
    fl_daemon_print_log(&daemon);
  }
  return ok;
}

int
main(void)
{
  FlTestEnv env;
  if (!fl_env_init(&env, "bench-restore")) {
    return 1;
  }
  for (unsigned f = 0U; f < FILES; ++f) {
    snprintf(paths[f], sizeof(paths[f]), "%s/pad-%03u.flac", env.dir, f);
  }

  printf("session restore: %d pads, %d s stereo %d Hz 16-bit FLAC, "
         "to 48000 Hz, SRC_SINC_MEDIUM_QUALITY\n",
         FILES,
         SECONDS,
         RATE);
  const double generate_begin = now();
  pthread_t    threads[2];
  Writer       writers[2] = { { 0U, false }, { 1U, false } };
  for (int t = 0; t < 2; ++t) {
    pthread_create(&threads[t], NULL, write_files, &writers[t]);
  }
  for (int t = 0; t < 2; ++t) {
    pthread_join(threads[t], NULL);
  }
  if (!writers[0].ok || !writers[1].ok) {
    fl_env_remove(&env);
    return 1;
  }
  size_t bytes = 0U;
  for (unsigned f = 0U; f < FILES; ++f) {
    bytes += read_bytes(paths[f]); /* page cache */
  }
  printf("generated %.1f MB in %.1f s (not timed below)\n",
         (double)bytes / 1e6,
         now() - generate_begin);

  char server[64];
  fl_env_name(&env, server, sizeof(server));
  FlJackd jackd = { 0 };
  if (!fl_jackd_start(&jackd, &env, server, FL_TEST_PERIOD)) {
    fl_env_remove(&env);
    return 1;
  }
  char state_path[PATH_MAX];
  fl_env_path(&env, "session.json", state_path, sizeof(state_path));

  double  bare_times[RUNS];
  Restore restores[RUNS];
  bool    ok = true;
  for (int run = 0; ok && run < RUNS; ++run) {
    for (unsigned f = 0U; f < FILES; ++f) {
      read_bytes(paths[f]); /* still in the page cache */
    }
    bare_times[run] = bare();
    printf("run %d: bare %.2f s\n", run + 1, bare_times[run]);
    fflush(stdout);
    for (unsigned f = 0U; f < FILES; ++f) {
      read_bytes(paths[f]);
    }
    ok = restore(&env, server, state_path, &restores[run]);
    if (ok) {
      printf("run %d: flitzid restore %.2f s (first /pong %.3f s)\n",
             run + 1,
             restores[run].restore,
             restores[run].pong);
      fflush(stdout);
    }
  }

  if (ok) {
    printf("\n%-5s %10s %14s %14s %7s  %s\n",
           "run",
           "bare s",
           "restore s",
           "first /pong s",
           "ratio",
           "goal (restore / bare)");
    for (int run = 0; run < RUNS; ++run) {
      const double ratio = restores[run].restore / bare_times[run];
      printf("%-5d %10.2f %14.2f %14.3f %7.2f  <= %.1f %s\n",
             run + 1,
             bare_times[run],
             restores[run].restore,
             restores[run].pong,
             ratio,
             GOAL,
             ratio <= GOAL ? "met" : "NOT met");
    }
    printf("bare: one thread, sf_readf_float() + one src_simple() per file; "
           "restore: flitzid's\nfork until /status says %d slots loaded "
           "(polled every 20 ms), start-up included\n",
           FILES);
  }

  fl_jackd_stop(&jackd);
  for (unsigned f = 0U; f < FILES; ++f) {
    unlink(paths[f]);
  }
  fl_env_remove(&env);
  return ok ? 0 : 1;
}
