/*
  Decoding and path confinement, on files the test writes: no server.
*/
#include <flitzi/decode.h>

#include <samplerate.h>
#include <sndfile.h>

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[512];

static const char*
path_of(const char* name)
{
  static char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  return path;
}

/* A deterministic signal: a sine per channel with some noise-like detail. */
static float
signal_at(sf_count_t frame, int channel)
{
  return 0.5f * sinf((float)frame * (0.01f + 0.003f * (float)channel)) +
         0.1f * sinf((float)frame * 0.37f);
}

static const char*
write_file(const char* name,
           int         format,
           int         channels,
           int         rate,
           sf_count_t  frames)
{
  const char* const path = path_of(name);
  SF_INFO           info = { 0 };
  info.channels          = channels;
  info.samplerate        = rate;
  info.format            = format;
  SNDFILE* const file    = sf_open(path, SFM_WRITE, &info);
  assert_non_null(file);

  float* const data = (float*)malloc((size_t)frames * (size_t)channels * 4U);
  for (sf_count_t i = 0; i < frames; ++i) {
    for (int c = 0; c < channels; ++c) {
      data[i * channels + c] = signal_at(i, c);
    }
  }
  assert_int_equal(sf_writef_float(file, data, frames), frames);
  free(data);
  sf_close(file);
  return path;
}

static FlDecodeConfig
config_at(uint32_t rate)
{
  const FlDecodeConfig config = { rate, FL_QUALITY_MEDIUM, 600.0 };
  return config;
}

static FlStatus
decode(const char* path, uint32_t rate, FlSample** sample, char* reason)
{
  const FlDecodeConfig config = config_at(rate);
  return fl_decode_file(path, &config, sample, reason, 512);
}

static void
test_formats(void** state)
{
  (void)state;
  static const struct {
    const char* name;
    int         format;
    float       tolerance;
  } cases[] = {
    { "pcm16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1.0f / 16384.0f },
    { "float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 0.0f },
    { "pcm16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1.0f / 16384.0f },
  };

  for (size_t i = 0U; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    const char* const path =
      write_file(cases[i].name, cases[i].format, 2, 48000, 12345);
    FlSample* sample = NULL;
    char      reason[512];
    assert_int_equal(decode(path, 48000U, &sample, reason), FL_SUCCESS);
    assert_int_equal(sample->frame_count, 12345);
    assert_int_equal(sample->channels, 2);
    assert_int_equal(sample->source_rate, 48000);
    assert_string_equal(sample->path, path);
    for (uint32_t f = 0U; f < sample->frame_count; f += 97U) {
      for (int c = 0; c < 2; ++c) {
        assert_true(fabsf(sample->frames[f * 2U + (uint32_t)c] -
                          signal_at(f, c)) <= cases[i].tolerance + 1e-7f);
      }
    }
    fl_sample_free(sample);
  }
}

/* Resample `frames` frames of the test signal with one src_simple() call on
   this thread, `channels` interleaved channels at once, or one channel only
   (`only` >= 0). Returns the frames made; `out` is allocated. */
static long
reference(int channels, int only, int rate, sf_count_t frames, float** out)
{
  const int    width    = only >= 0 ? 1 : channels;
  const size_t capacity = (size_t)((double)frames * 48000.0 / rate) + 64U;
  float* const in       = (float*)malloc((size_t)frames * (size_t)width * 4U);
  *out                  = (float*)calloc(capacity * (size_t)width, 4U);
  for (sf_count_t i = 0; i < frames; ++i) {
    for (int c = 0; c < width; ++c) {
      in[i * width + c] = signal_at(i, only >= 0 ? only : c);
    }
  }
  SRC_DATA data      = { 0 };
  data.data_in       = in;
  data.data_out      = *out;
  data.input_frames  = (long)frames;
  data.output_frames = (long)capacity;
  data.src_ratio     = 48000.0 / rate;
  assert_int_equal(src_simple(&data, SRC_SINC_MEDIUM_QUALITY, width), 0);
  free(in);
  return data.output_frames_gen;
}

/* The resampler must give what one single-threaded src_simple() call over
   the whole file gives, frame for frame and bit for bit. A file shorter
   than 4 s is one part; a longer one is cut into parts resampled in
   parallel, each started well before its seam on the grid where input and
   output frames meet exactly, so the seams are invisible. */
static void
check_resampled_equals_src_simple(int channels, int rate, sf_count_t frames)
{
  char name[64];
  snprintf(
    name, sizeof(name), "%dch-%d-%lld.wav", channels, rate, (long long)frames);
  const char* const path =
    write_file(name, SF_FORMAT_WAV | SF_FORMAT_FLOAT, channels, rate, frames);
  FlSample* sample = NULL;
  char      reason[512];
  assert_int_equal(decode(path, 48000U, &sample, reason), FL_SUCCESS);
  assert_int_equal(sample->source_rate, rate);

  float*     out   = NULL;
  const long count = reference(channels, -1, rate, frames, &out);
  assert_int_equal(sample->frame_count, count);
  float worst = 0.0f;
  for (size_t i = 0U; i < (size_t)count * (size_t)channels; ++i) {
    const float error = fabsf(sample->frames[i] - out[i]);
    worst             = error > worst ? error : worst;
  }
  print_message("%d channel(s), %lld frames at %d Hz: %u frames out, largest "
                "difference from src_simple %g\n",
                channels,
                (long long)frames,
                rate,
                sample->frame_count,
                (double)worst);
  assert_true(worst == 0.0f);
  free(out);
  fl_sample_free(sample);
}

static void
test_resampled_mono(void** state)
{
  (void)state;
  check_resampled_equals_src_simple(1, 44100, 44100 * 2 + 17);
  check_resampled_equals_src_simple(1, 44100, 44100 * 11 + 5);
  check_resampled_equals_src_simple(1, 96000, 96000 * 9 + 3);
}

static void
test_resampled_stereo(void** state)
{
  (void)state;
  check_resampled_equals_src_simple(2, 44100, 44100 * 2 + 17);
  check_resampled_equals_src_simple(2, 44100, 44100 * 11 + 5);
  check_resampled_equals_src_simple(2, 22050, 22050 * 13 + 1);
}

static void
expect_failure(const char* path, FlStatus status, const char* needle)
{
  FlSample* sample = NULL;
  char      reason[512];
  assert_int_equal(decode(path, 48000U, &sample, reason), status);
  assert_null(sample);
  if (!strstr(reason, needle)) {
    fail_msg("reason '%s' lacks '%s'", reason, needle);
  }
}

static void
test_bad_files(void** state)
{
  (void)state;
  expect_failure(
    path_of("missing.wav"), FL_ERR_OPEN, "No such file or directory");
  expect_failure(dir, FL_ERR_OPEN, "Is a directory");

  FILE* file = fopen(path_of("empty.wav"), "w");
  fclose(file);
  expect_failure(path_of("empty.wav"), FL_ERR_EMPTY_FILE, "holds no audio");

  file = fopen(path_of("text.wav"), "w");
  fputs("this is not a sound file, just text renamed .wav\n", file);
  fclose(file);
  expect_failure(path_of("text.wav"), FL_ERR_FORMAT, "cannot open");

  write_file("six.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 6, 48000, 100);
  expect_failure(path_of("six.wav"),
                 FL_ERR_CHANNELS,
                 "unsupported channel layout: 6 channels");

  /* A header that promises more data than the file holds. */
  const char* const whole =
    write_file("whole.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 48000, 4800);
  assert_int_equal(truncate(whole, 44 + 2 * 1000), 0);
  FlSample*      sample = NULL;
  char           reason[512];
  const FlStatus status = decode(whole, 48000U, &sample, reason);
  /* libsndfile may shorten the frame count to the data it finds; either way
     nothing longer than the file is ever returned. */
  if (status == FL_SUCCESS) {
    assert_true(sample->frame_count <= 1000U);
    fl_sample_free(sample);
  } else {
    assert_int_equal(status, FL_ERR_READ);
  }

  const FlDecodeConfig short_limit = { 48000U, FL_QUALITY_MEDIUM, 0.05 };
  write_file("long.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 48000, 4800);
  assert_int_equal(
    fl_decode_file(
      path_of("long.wav"), &short_limit, &sample, reason, sizeof(reason)),
    FL_ERR_TOO_LONG);
  assert_non_null(strstr(reason, "is 0.1 s long; the limit is 0.05 s"));
}

static void
test_sample_root(void** state)
{
  (void)state;
  char root[1024];
  char resolved[PATH_MAX];
  char reason[512];
  snprintf(root, sizeof(root), "%s/root", dir);
  mkdir(root, 0700);
  write_file("root/in.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 48000, 10);
  write_file("secret.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 48000, 10);
  char link[PATH_MAX];
  snprintf(link, sizeof(link), "%s/escape.wav", root);
  assert_int_equal(symlink(path_of("secret.wav"), link), 0);

  assert_int_equal(
    fl_path_resolve(
      root, "in.wav", resolved, sizeof(resolved), reason, sizeof(reason)),
    FL_SUCCESS);
  assert_string_equal(resolved, path_of("root/in.wav"));

  assert_int_equal(fl_path_resolve(root,
                                   "../secret.wav",
                                   resolved,
                                   sizeof(resolved),
                                   reason,
                                   sizeof(reason)),
                   FL_ERR_NOT_ALLOWED);
  assert_string_equal(reason, "'../secret.wav' is outside the sample root");

  /* Whether the file exists or not, the answer is the same. */
  assert_int_equal(fl_path_resolve(root,
                                   "../nothing-here.wav",
                                   resolved,
                                   sizeof(resolved),
                                   reason,
                                   sizeof(reason)),
                   FL_ERR_NOT_ALLOWED);
  assert_int_equal(
    fl_path_resolve(
      root, "/etc/passwd", resolved, sizeof(resolved), reason, sizeof(reason)),
    FL_ERR_NOT_ALLOWED);
  assert_int_equal(
    fl_path_resolve(
      root, "escape.wav", resolved, sizeof(resolved), reason, sizeof(reason)),
    FL_ERR_NOT_ALLOWED);

  /* A path of 5000 characters is refused with a short reason. */
  char* const long_path = (char*)malloc(5001);
  memset(long_path, 'a', 5000);
  long_path[5000] = '\0';
  assert_int_equal(
    fl_path_resolve(
      NULL, long_path, resolved, sizeof(resolved), reason, sizeof(reason)),
    FL_ERR_OPEN);
  assert_true(strlen(reason) < 300U);
  free(long_path);

  assert_int_equal(
    fl_path_resolve(
      NULL, "", resolved, sizeof(resolved), reason, sizeof(reason)),
    FL_ERR_OPEN);
}

static int
setup(void** state)
{
  (void)state;
  snprintf(dir,
           sizeof(dir),
           "%s/flitzi-decode-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void** state)
{
  (void)state;
  char command[PATH_MAX + 16];
  snprintf(command, sizeof(command), "rm -rf '%s'", dir);
  return system(command);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_formats),
    cmocka_unit_test(test_resampled_mono),
    cmocka_unit_test(test_resampled_stereo),
    cmocka_unit_test(test_bad_files),
    cmocka_unit_test(test_sample_root),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
