/*
  Hostile and broken files: every bad /load gets a /fail that says why, the
  daemon keeps running, and the slot keeps the sample it had (it still
  sounds: the recorder checks it frame by frame).

  Two daemons share one dummy JACK server:
  - "plain" (rig.daemon): default options, with a recorder on its outputs.
    When the tests run as root it runs without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (setpriv), so a chmod 000 file is unreadable to it
    as it is to any other user; test_root_reads_unreadable shows what a
    daemon with root's full rights does.
  - "confined": --sample-root ROOT --max-sample-seconds 1.
*/
#include "harness.h"
#include "robust_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TONE_FRAMES 4800U
#define SMALL_FRAMES 2400U
#define BIG_SECONDS 20U
#define BIG_RATE 44100U

static FlRig    rig;      // the plain daemon, its client and recorder
static FlDaemon confined; // --sample-root, --max-sample-seconds 1
static FlOsc*   confined_osc;

static char  root_dir[256];       // the confined daemon's --sample-root
static char  tone_path[PATH_MAX]; // 0.1 s mono float tone: the good sample
static char  in_root_tone[PATH_MAX];
static float tone[TONE_FRAMES];

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)
#define CONFINED_CALL(...) \
  fl_osc_call(confined_osc, FL_TEST_REPLY_MS, __VA_ARGS__)

/* "<test dir>/<name>", in one of fl_text()'s buffers. */
static const char*
path_of(const char* name)
{
  return fl_text("%s/%s", rig.env.dir, name);
}

static bool
write_bytes(const char* path, const void* bytes, size_t size)
{
  FILE* const file = fopen(path, "wb");
  if (!file) {
    return false;
  }
  const bool written = fwrite(bytes, 1, size, file) == size;
  return fclose(file) == 0 && written;
}

/* Keep the first `size` bytes of `source` in `path`. */
static bool
write_prefix(const char* source, const char* path, size_t size)
{
  FILE* const in = fopen(source, "rb");
  if (!in) {
    return false;
  }
  unsigned char* const bytes = (unsigned char*)malloc(size);
  const bool           read  = bytes && fread(bytes, 1, size, in) == size;
  fclose(in);
  const bool written = read && write_bytes(path, bytes, size);
  free(bytes);
  return written;
}

static bool
copy_file(const char* source, const char* path)
{
  struct stat info;
  return stat(source, &info) == 0 &&
         write_prefix(source, path, (size_t)info.st_size);
}

static off_t
file_size(const char* path)
{
  struct stat info;
  return stat(path, &info) == 0 ? info.st_size : -1;
}

/* libsndfile's reason for a file it cannot open, as flitzid reports it. */
static const char*
sndfile_reason(const char* path)
{
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  SNDFILE* const file = sf_open(path, SFM_READ, &info);
  if (file) {
    sf_close(file);
    return "(libsndfile opens it)";
  }
  return fl_text("%s", sf_strerror(NULL));
}

/* Frames libsndfile can actually read from `path`, and how many it claims. */
static sf_count_t
readable_frames(const char* path, sf_count_t* claimed)
{
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  SNDFILE* const file = sf_open(path, SFM_READ, &info);
  if (!file) {
    return -1;
  }
  float* const chunk = (float*)malloc(65536U * (size_t)info.channels * 4U);
  sf_count_t   total = 0;
  sf_count_t   got   = 0;
  while (chunk && (got = sf_readf_float(file, chunk, 65536)) > 0) {
    total += got;
  }
  free(chunk);
  sf_close(file);
  *claimed = info.frames;
  return total;
}

static int
group_setup(void** state)
{
  (void)state;
  memset(&rig, 0, sizeof(rig));
  memset(&confined, 0, sizeof(confined));
  if (!fl_env_init(&rig.env, "robfiles")) {
    return -1;
  }
  fl_env_path(&rig.env, "root", root_dir, sizeof(root_dir));
  snprintf(tone_path, sizeof(tone_path), "%s", path_of("tone.wav"));
  snprintf(in_root_tone, sizeof(in_root_tone), "%s/in.wav", root_dir);
  for (uint32_t i = 0; i < TONE_FRAMES; ++i) {
    tone[i] = fl_signal_value(FL_SIGNAL_TONE, i, TONE_FRAMES, 0);
  }
  if (mkdir(root_dir, 0755) ||
      !fl_write_sample(
        tone_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 1, 48000, TONE_FRAMES) ||
      !fl_write_sample(in_root_tone,
                       FL_FILE_WAV_FLOAT,
                       FL_SIGNAL_TONE,
                       1,
                       48000,
                       TONE_FRAMES)) {
    return -1;
  }

  char server[64];
  char plain_name[64];
  char confined_name[64];
  fl_env_name(&rig.env, server, sizeof(server));
  fl_env_name(&rig.env, plain_name, sizeof(plain_name));
  fl_env_name(&rig.env, confined_name, sizeof(confined_name));
  const int plain_port    = fl_env_port(&rig.env);
  const int confined_port = fl_env_port(&rig.env);
  if (plain_port < 0 || confined_port < 0 ||
      !fl_jackd_start(&rig.jackd, &rig.env, server, FL_TEST_PERIOD)) {
    return -1;
  }

  const bool started =
    geteuid() == 0
      ? fl_daemon_start_wrapped(&rig.daemon,
                                &rig.env,
                                server,
                                plain_name,
                                plain_port,
                                NULL,
                                fl_no_dac_prefix,
                                10000)
      : fl_daemon_start(
          &rig.daemon, &rig.env, server, plain_name, plain_port, NULL);
  const char* const confined_args[] = {
    "--sample-root", root_dir, "--max-sample-seconds", "1", NULL
  };
  if (!started || !fl_daemon_start(&confined,
                                   &rig.env,
                                   server,
                                   confined_name,
                                   confined_port,
                                   confined_args)) {
    return -1;
  }

  rig.osc      = fl_osc_new(plain_port);
  confined_osc = fl_osc_new(confined_port);
  rig.recorder = fl_recorder_new(server, plain_name, 2, 10U * FL_TEST_RATE);
  return rig.osc && confined_osc && rig.recorder ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  fl_osc_free(confined_osc);
  confined_osc              = NULL;
  const int confined_status = fl_daemon_stop(&confined);
  return fl_rig_stop(&rig) && confined_status == 0 ? 0 : -1;
}

static int
test_setup(void** state)
{
  (void)state;
  if (!fl_daemon_running(&confined)) {
    return -1;
  }
  const bool quiet = fl_rig_quiet(&rig, 2000);
  fl_osc_collect(confined_osc, 20);
  fl_osc_clear(confined_osc);
  return quiet ? 0 : -1;
}

static const char*
query_of(int slot, const char* path, uint32_t frames, unsigned channels)
{
  return fl_text(
    "/slot ,isiiii %d \"%s\" %u %u 48000 1", slot, path, frames, channels);
}

static void
load_tone(FlOsc* osc, int slot, const char* path)
{
  fl_osc_send(osc, "/load", "is", slot, path);
  FlReply* const reply = fl_osc_wait(osc, NULL, FL_TEST_REPLY_MS);
  char           line[1024];
  assert_non_null(reply);
  const char* const got = fl_reply_format(reply, line, sizeof(line));
  assert_string_equal(
    got, fl_text("/done ,siiii \"/load\" %d %u 1 48000", slot, TONE_FRAMES));
  fl_reply_free(reply);
}

/* /play `slot` and compare both outputs with the tone, frame by frame. */
static void
assert_tone_plays(int slot)
{
  const long onset =
    fl_capture_play(rig.recorder, rig.osc, slot, 1.0, 0.05f, TONE_FRAMES);
  assert_true(onset >= 0);
  for (unsigned out = 0; out < 2; ++out) {
    assert_int_equal(
      fl_recorder_compare(
        rig.recorder, out, onset, tone, TONE_FRAMES, 1, 1.0f, 1e-5f),
      -1);
  }
}

typedef struct {
  const char* what;
  char        path[6000];
  char        reason[8192];
} BadFile;

/*
  Every bad file in turn into a slot that holds the tone: each answer is
  the exact /fail, /query still shows the tone, and at the end it sounds.
*/
static void
test_bad_files_keep_slot(void** state)
{
  (void)state;
  static BadFile cases[32];
  size_t         count = 0;
  BadFile*       c     = NULL;

#define ADD(label, path_text, ...)                       \
  c       = &cases[count++];                             \
  c->what = (label);                                     \
  snprintf(c->path, sizeof(c->path), "%s", (path_text)); \
  snprintf(c->reason, sizeof(c->reason), __VA_ARGS__)

  ADD("missing file",
      path_of("missing.wav"),
      "cannot open '%s': No such file or directory",
      path_of("missing.wav"));

  mkdir(path_of("folder.wav"), 0755);
  ADD("a directory",
      path_of("folder.wav"),
      "cannot open '%s': Is a directory",
      path_of("folder.wav"));

  // Unreadable to the plain daemon even as root (it runs without the
  // capabilities that bypass permission checks).
  assert_true(copy_file(tone_path, path_of("noread.wav")));
  assert_int_equal(chmod(path_of("noread.wav"), 0), 0);
  ADD("no read permission",
      path_of("noread.wav"),
      "cannot open '%s': Permission denied",
      path_of("noread.wav"));

  assert_true(write_bytes(path_of("zero.wav"), "", 0));
  ADD("zero bytes",
      path_of("zero.wav"),
      "'%s' holds no audio frames",
      path_of("zero.wav"));

  assert_true(fl_write_sample(
    path_of("noframes.wav"), FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 0));
  ADD("a WAV header with no frames",
      path_of("noframes.wav"),
      "'%s' holds no audio frames",
      path_of("noframes.wav"));

  assert_true(fl_write_sample(
    path_of("whole.wav"), FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 48000));
  assert_true(write_prefix(path_of("whole.wav"), path_of("header20.wav"), 20));
  ADD("WAV header cut at 20 bytes",
      path_of("header20.wav"),
      "cannot open '%s': %s",
      path_of("header20.wav"),
      sndfile_reason(path_of("header20.wav")));
  assert_true(write_prefix(path_of("whole.wav"), path_of("header40.wav"), 40));
  ADD("WAV header cut at 40 bytes",
      path_of("header40.wav"),
      "cannot open '%s': %s",
      path_of("header40.wav"),
      sndfile_reason(path_of("header40.wav")));

  // FLAC knows its length from STREAMINFO, so a cut stream reads short.
  assert_true(fl_write_sample(path_of("whole.flac"),
                              FL_FILE_FLAC_PCM16,
                              FL_SIGNAL_TONE,
                              1,
                              48000,
                              48000));
  const off_t flac_size = file_size(path_of("whole.flac"));
  assert_true(write_prefix(
    path_of("whole.flac"), path_of("cut.flac"), (size_t)flac_size * 6U / 10U));
  sf_count_t       claimed = 0;
  const sf_count_t decoded = readable_frames(path_of("cut.flac"), &claimed);
  assert_int_equal(claimed, 48000);
  assert_true(decoded >= 0 && decoded < 48000);
  ADD("FLAC with its data cut",
      path_of("cut.flac"),
      "'%s' is truncated: %lld of 48000 frames could be read",
      path_of("cut.flac"),
      (long long)decoded);

  static const char text_bytes[] =
    "This is a shopping list, not a sound.\nmilk\nbread\n";
  assert_true(
    write_bytes(path_of("text.wav"), text_bytes, sizeof(text_bytes) - 1));
  ADD("text renamed .wav",
      path_of("text.wav"),
      "cannot open '%s': %s",
      path_of("text.wav"),
      sndfile_reason(path_of("text.wav")));

  // A standard MIDI file: a real format, not one libsndfile reads.
  static const unsigned char midi[] = { 'M', 'T', 'h',  'd',  0, 0, 0,
                                        6,   0,   0,    0,    1, 0, 96,
                                        'M', 'T', 'r',  'k',  0, 0, 0,
                                        4,   0,   0xff, 0x2f, 0 };
  assert_true(write_bytes(path_of("song.mid"), midi, sizeof(midi)));
  ADD("a MIDI file",
      path_of("song.mid"),
      "cannot open '%s': %s",
      path_of("song.mid"),
      sndfile_reason(path_of("song.mid")));

  assert_true(fl_write_sample(
    path_of("six.wav"), FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 6, 48000, 4800));
  ADD("6 channels",
      path_of("six.wav"),
      "unsupported channel layout: 6 channels (mono and stereo are supported)");

  // A FIFO would block a reader forever; /dev/null is a character device.
  assert_int_equal(mkfifo(path_of("fifo.wav"), 0644), 0);
  ADD("a FIFO",
      path_of("fifo.wav"),
      "cannot open '%s': not a regular file",
      path_of("fifo.wav"));
  ADD("a character device",
      "/dev/null",
      "cannot open '/dev/null': not a regular file");

  assert_int_equal(symlink(path_of("nowhere.wav"), path_of("dangling.wav")), 0);
  ADD("a dangling symlink",
      path_of("dangling.wav"),
      "cannot open '%s': No such file or directory",
      path_of("dangling.wav"));
  assert_int_equal(symlink(path_of("loop.wav"), path_of("loop.wav")), 0);
  ADD("a symlink to itself",
      path_of("loop.wav"),
      "cannot open '%s': Too many levels of symbolic links",
      path_of("loop.wav"));
  ADD("a file used as a directory",
      fl_text("%s/", tone_path),
      "cannot open '%s/': Not a directory",
      tone_path);
  ADD("the empty path", "", "cannot open '': the path is empty");

  // 5000 characters: longer than PATH_MAX. The reason shows 200 of them.
  char long_path[5001];
  long_path[0] = '/';
  memset(long_path + 1, 'a', 4999);
  long_path[5000] = '\0';
  ADD("a path of 5000 characters",
      long_path,
      "cannot open '%.200s...': File name too long",
      long_path);

  // One component over NAME_MAX (255), the whole path under PATH_MAX.
  char component[301];
  memset(component, 'b', 300);
  component[300]              = '\0';
  const char* const long_name = path_of(component);
  ADD("a file name of 300 characters",
      long_name,
      "cannot open '%.200s': File name too long",
      long_name);

  // Bytes that are not UTF-8; file names are bytes on Linux.
  const char* const latin1 = path_of("\xff\xfe\x80-missing.wav");
  ADD("non-UTF-8 bytes in a missing path",
      latin1,
      "cannot open '%s': No such file or directory",
      latin1);
#undef ADD

  load_tone(rig.osc, 0, tone_path);
  char before[2048];
  snprintf(
    before, sizeof(before), "%s", query_of(0, tone_path, TONE_FRAMES, 1));
  assert_string_equal(CALL("/query", "i", 0), before);

  unsigned wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    const char* const got = CALL("/load", "is", 0, cases[i].path);
    const char* const want =
      fl_text("/fail ,sis \"/load\" 0 \"%s\"", cases[i].reason);
    if (strcmp(got, want)) {
      fprintf(stderr,
              "%s:\n  got      %s\n  expected %s\n",
              cases[i].what,
              got,
              want);
      ++wrong;
    }
    const char* const after = CALL("/query", "i", 0);
    if (strcmp(after, before)) {
      fprintf(stderr, "%s: the slot changed: %s\n", cases[i].what, after);
      ++wrong;
    }
    assert_true(fl_daemon_running(&rig.daemon));
  }
  fprintf(stderr, "%zu bad files tried, %u wrong answers\n", count, wrong);
  assert_int_equal(wrong, 0);
  assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
  assert_tone_plays(0);
}

/*
  A WAV whose data chunk claims 48000 frames but the file ends after 500:
  libsndfile quietly reports 500 frames. A cut file is a broken file, as
  the cut FLAC is: the load must fail and the slot keep its sample.
*/
static void
test_truncated_wav_data(void** state)
{
  (void)state;
  assert_true(fl_write_sample(path_of("whole16.wav"),
                              FL_FILE_WAV_PCM16,
                              FL_SIGNAL_TONE,
                              1,
                              48000,
                              48000));
  assert_true(
    write_prefix(path_of("whole16.wav"), path_of("cut.wav"), 44U + 1000U));
  sf_count_t claimed = 0;
  assert_int_equal(readable_frames(path_of("cut.wav"), &claimed), 500);

  load_tone(rig.osc, 1, tone_path);
  assert_string_equal(CALL("/load", "is", 1, path_of("cut.wav")),
                      fl_text("/fail ,sis \"/load\" 1 \"'%s' is truncated: 500 "
                              "of 48000 frames could be read\"",
                              path_of("cut.wav")));
  assert_string_equal(CALL("/query", "i", 1),
                      query_of(1, tone_path, TONE_FRAMES, 1));
}

/* A file whose name is not UTF-8 loads, and /query gives its bytes back. */
static void
test_non_utf8_name_loads(void** state)
{
  (void)state;
  const char* const name = fl_text("%s", path_of("\xff\xfe\x80-tone.wav"));
  char              path[PATH_MAX];
  snprintf(path, sizeof(path), "%s", name);
  assert_true(copy_file(tone_path, path));
  load_tone(rig.osc, 3, path);
  assert_string_equal(CALL("/query", "i", 3),
                      query_of(3, path, TONE_FRAMES, 1));
  assert_tone_plays(3);
}

/*
  As root the "no read permission" case above needs a daemon without the
  capabilities root reads everything with. A daemon with root's full rights
  (the confined one) does read a chmod 000 file: that is what running
  flitzid as root means, and this test pins it down.
*/
static void
test_root_reads_unreadable(void** state)
{
  (void)state;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/noread.wav", root_dir);
  assert_true(copy_file(in_root_tone, path));
  assert_int_equal(chmod(path, 0), 0);

  const char* const got = CONFINED_CALL("/load", "is", 2, path);
  if (geteuid() == 0) {
    fprintf(stderr, "as root, with all capabilities: %s\n", got);
    assert_string_equal(
      got, fl_text("/done ,siiii \"/load\" 2 %u 1 48000", TONE_FRAMES));
  } else {
    assert_string_equal(
      got,
      fl_text("/fail ,sis \"/load\" 2 \"cannot open '%s': Permission denied\"",
              path));
  }
}

static void
test_too_long(void** state)
{
  (void)state;
  char long_path[PATH_MAX];
  char exact_path[PATH_MAX];
  snprintf(long_path, sizeof(long_path), "%s/long.wav", root_dir);
  snprintf(exact_path, sizeof(exact_path), "%s/exact.wav", root_dir);
  assert_true(fl_write_sample(
    long_path, FL_FILE_WAV_PCM16, FL_SIGNAL_DC, 1, 48000, 72000));
  assert_true(fl_write_sample(
    exact_path, FL_FILE_WAV_PCM16, FL_SIGNAL_DC, 2, 48000, 48000));

  load_tone(confined_osc, 0, in_root_tone);
  assert_string_equal(CONFINED_CALL("/load", "is", 0, long_path),
                      fl_text("/fail ,sis \"/load\" 0 \"'%s' is 1.5 s long; "
                              "the limit is 1 s (--max-sample-seconds)\"",
                              long_path));
  assert_string_equal(CONFINED_CALL("/query", "i", 0),
                      query_of(0, in_root_tone, TONE_FRAMES, 1));

  // Exactly at the limit is allowed.
  assert_string_equal(CONFINED_CALL("/load", "is", 1, exact_path),
                      "/done ,siiii \"/load\" 1 48000 2 48000");
}

/*
  Outside the sample root: "..", absolute paths and symlinks that lead out
  all get "'PATH' is outside the sample root", whether or not the file
  exists: the same path gets the same reply before and after it is created.
*/
static void
test_outside_root(void** state)
{
  (void)state;
  char outdir[PATH_MAX];
  char escape[PATH_MAX];
  snprintf(outdir, sizeof(outdir), "%s/outdir", root_dir);
  snprintf(escape, sizeof(escape), "%s/escape.wav", root_dir);
  assert_true(copy_file(tone_path, path_of("outside.wav")));
  assert_int_equal(symlink(rig.env.dir, outdir), 0);
  assert_int_equal(symlink(path_of("outside.wav"), escape), 0);

  // A link inside the root to a file inside the root is fine.
  char inner_link[PATH_MAX];
  snprintf(inner_link, sizeof(inner_link), "%s/inner-link.wav", root_dir);
  assert_int_equal(symlink(in_root_tone, inner_link), 0);

  load_tone(confined_osc, 0, in_root_tone);
  static char sent[11][PATH_MAX];
  snprintf(sent[0], PATH_MAX, "../outside.wav");
  snprintf(sent[1], PATH_MAX, "../missing.wav");
  snprintf(sent[2], PATH_MAX, "%s", path_of("outside.wav"));
  snprintf(sent[3], PATH_MAX, "%s", path_of("missing.wav"));
  snprintf(sent[4], PATH_MAX, "%s/../outside.wav", root_dir);
  snprintf(sent[5], PATH_MAX, "%s/../missing.wav", root_dir);
  snprintf(sent[6], PATH_MAX, "escape.wav");
  snprintf(sent[7], PATH_MAX, "%s", escape);
  snprintf(sent[8], PATH_MAX, "outdir/outside.wav");
  snprintf(sent[9], PATH_MAX, "/");
  snprintf(sent[10], PATH_MAX, "..");
  unsigned wrong = 0;
  for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); ++i) {
    const char* const path = sent[i];
    const char* const got  = CONFINED_CALL("/load", "is", 0, path);
    const char* const want = fl_text(
      "/fail ,sis \"/load\" 0 \"'%s' is outside the sample root\"", path);
    if (strcmp(got, want)) {
      fprintf(
        stderr, "/load 0 %s:\n  got      %s\n  expected %s\n", path, got, want);
      ++wrong;
    }
  }
  assert_int_equal(wrong, 0);

  // The same path, before and after the file exists: the same bytes back.
  const char* const later[] = { "../later.wav", path_of("later2.wav") };
  for (size_t i = 0; i < 2; ++i) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", later[i]);
    char before[2048];
    snprintf(
      before, sizeof(before), "%s", CONFINED_CALL("/load", "is", 0, path));
    assert_true(copy_file(tone_path, path_of(i ? "later2.wav" : "later.wav")));
    assert_string_equal(CONFINED_CALL("/load", "is", 0, path), before);
  }

  assert_string_equal(CONFINED_CALL("/query", "i", 0),
                      query_of(0, in_root_tone, TONE_FRAMES, 1));
  assert_string_equal(
    CONFINED_CALL("/load", "is", 3, "inner-link.wav"),
    fl_text("/done ,siiii \"/load\" 3 %u 1 48000", TONE_FRAMES));
}

/*
  Through a symlink in the root that leads out, a missing target must not
  be told apart from an existing one either: otherwise anyone who can send
  a packet learns which files exist wherever such a link points.
*/
static void
test_outside_root_through_symlink_hides_existence(void** state)
{
  (void)state;
  char dangling[PATH_MAX];
  char outdir[PATH_MAX];
  snprintf(dangling, sizeof(dangling), "%s/escape-missing.wav", root_dir);
  snprintf(outdir, sizeof(outdir), "%s/outdir2", root_dir);
  assert_int_equal(symlink(path_of("secret-missing.wav"), dangling), 0);
  assert_int_equal(symlink(rig.env.dir, outdir), 0);

  assert_string_equal(CONFINED_CALL("/load", "is", 0, "escape-missing.wav"),
                      "/fail ,sis \"/load\" 0 \"'escape-missing.wav' is "
                      "outside the sample root\"");

  char before[2048];
  snprintf(before,
           sizeof(before),
           "%s",
           CONFINED_CALL("/load", "is", 0, "outdir2/secret.wav"));
  assert_true(copy_file(tone_path, path_of("secret.wav")));
  const char* const after =
    CONFINED_CALL("/load", "is", 0, "outdir2/secret.wav");
  fprintf(stderr,
          "outdir2/secret.wav missing: %s\n                    existing: %s\n",
          before,
          after);
  assert_string_equal(after, before);
  assert_string_equal(after,
                      "/fail ,sis \"/load\" 0 \"'outdir2/secret.wav' is "
                      "outside the sample root\"");
}

/* Check one race's answer; update `state` (the slot's /query) if it loaded. */
static void
check_race(const char* action,
           int         delay_ms,
           uint32_t    big_frames,
           char*       slot_state,
           size_t      slot_state_size)
{
  char race_path[512]; // the test directory is shorter than 256
  snprintf(race_path, sizeof(race_path), "%s", path_of("race.wav"));
  char     line[2048];
  FlReply* reply = NULL;
  for (;;) {
    reply = fl_osc_wait(rig.osc, NULL, 30000);
    assert_non_null(reply);
    fl_reply_format(reply, line, sizeof(line));
    if (reply->argc < 2 || reply->argv[1].value.i != 4) {
      break;
    }
    // The load that kept the loader busy.
    assert_string_equal(reply->path, "/done");
    fl_reply_free(reply);
  }
  if (delay_ms < 0) {
    fprintf(stderr, "%s while queued: %s\n", action, line);
  } else {
    fprintf(stderr, "%s after %d ms: %s\n", action, delay_ms, line);
  }

  if (!strcmp(reply->path, "/done")) {
    assert_string_equal(reply->types, "siiii");
    const int32_t frames   = reply->argv[2].value.i;
    const int32_t channels = reply->argv[3].value.i;
    const int32_t rate     = reply->argv[4].value.i;
    // The big file as it was (or cut short), or the file renamed over it.
    const bool big = channels == 2 && rate == (int32_t)BIG_RATE && frames > 0 &&
                     frames <= (int32_t)big_frames;
    const bool small =
      channels == 1 && rate == 48000 && frames == (int32_t)SMALL_FRAMES;
    assert_true(big || small);
    snprintf(slot_state,
             slot_state_size,
             "/slot ,isiiii 2 \"%s\" %d %d %d 1",
             race_path,
             frames,
             channels,
             rate);
  } else {
    assert_string_equal(reply->path, "/fail");
    assert_string_equal(reply->types, "sis");
    // Whatever went wrong, the reason names the file.
    assert_non_null(strstr(reply->argv[2].s, fl_text("'%s'", race_path)));
  }
  fl_reply_free(reply);
  assert_true(fl_daemon_running(&rig.daemon));
  assert_string_equal(CALL("/query", "i", 2), slot_state);
}

/*
  A big file (20 s stereo at 44.1 kHz, so it is resampled) is unlinked,
  replaced by a rename, cut in place or overwritten with text right after
  its /load is sent, at a few delays. Each load ends in a /done that
  /query agrees with, or a /fail that leaves the slot as it was.
*/
static void
test_file_changes_while_loading(void** state)
{
  (void)state;
  const char* const template_path = fl_text("%s", path_of("big-template.wav"));
  char              big_path[PATH_MAX];
  char              small_path[PATH_MAX];
  char              race_path[PATH_MAX];
  snprintf(big_path, sizeof(big_path), "%s", template_path);
  snprintf(small_path, sizeof(small_path), "%s", path_of("small.wav"));
  snprintf(race_path, sizeof(race_path), "%s", path_of("race.wav"));
  assert_true(fl_write_sample(big_path,
                              FL_FILE_WAV_PCM16,
                              FL_SIGNAL_TONE,
                              2,
                              BIG_RATE,
                              BIG_SECONDS * BIG_RATE));

  // The big file's length after resampling, from an undisturbed load.
  assert_true(copy_file(big_path, race_path));
  const int64_t started = fl_now_ms();
  fl_osc_send(rig.osc, "/load", "is", 2, race_path);
  FlReply* const clean = fl_osc_wait(rig.osc, NULL, 30000);
  assert_non_null(clean);
  assert_string_equal(clean->path, "/done");
  const uint32_t big_frames = (uint32_t)clean->argv[2].value.i;
  fl_reply_free(clean);
  fprintf(stderr,
          "an undisturbed load of the big file: %u frames in %lld ms\n",
          big_frames,
          (long long)(fl_now_ms() - started));

  char slot_state[2048];
  snprintf(slot_state, sizeof(slot_state), "%s", CALL("/query", "i", 2));

  static const char* const actions[] = {
    "unlink", "rename over", "cut in place", "overwrite with text"
  };
  // -1: the load waits in the loader's queue behind another big load, so
  // the change comes before the file is opened.
  static const int delays[] = { -1, 0, 2, 20 };
  for (size_t a = 0; a < 4; ++a) {
    for (size_t d = 0; d < 4; ++d) {
      assert_true(copy_file(big_path, race_path));
      assert_true(fl_write_sample(
        small_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_RAMP, 1, 48000, SMALL_FRAMES));
      if (delays[d] < 0) {
        fl_osc_send(rig.osc, "/load", "is", 4, big_path);
      }
      fl_osc_send(rig.osc, "/load", "is", 2, race_path);
      if (delays[d] > 0) {
        fl_sleep_ms(delays[d]);
      }
      switch (a) {
        case 0:
          assert_int_equal(unlink(race_path), 0);
          break;
        case 1:
          assert_int_equal(rename(small_path, race_path), 0);
          break;
        case 2:
          assert_int_equal(truncate(race_path, file_size(race_path) / 3), 0);
          break;
        default: {
          static const char text_bytes[] = "not audio any more\n";
          assert_true(
            write_bytes(race_path, text_bytes, sizeof(text_bytes) - 1));
          break;
        }
      }
      check_race(
        actions[a], delays[d], big_frames, slot_state, sizeof(slot_state));
    }
  }

  // Whatever the slot holds now sounds, and is finite.
  const long onset =
    fl_capture_play(rig.recorder, rig.osc, 2, 1.0, 1e-4f, 4800);
  assert_true(onset >= 0);
  for (unsigned out = 0; out < 2; ++out) {
    const float* const frames = fl_recorder_channel(rig.recorder, out);
    for (uint32_t i = 0; i < fl_recorder_frames(rig.recorder); ++i) {
      assert_true(isfinite(frames[i]) && fabsf(frames[i]) <= 1.0f);
    }
  }
  assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_bad_files_keep_slot, test_setup),
    cmocka_unit_test_setup(test_truncated_wav_data, test_setup),
    cmocka_unit_test_setup(test_non_utf8_name_loads, test_setup),
    cmocka_unit_test_setup(test_root_reads_unreadable, test_setup),
    cmocka_unit_test_setup(test_too_long, test_setup),
    cmocka_unit_test_setup(test_outside_root, test_setup),
    cmocka_unit_test_setup(test_outside_root_through_symlink_hides_existence,
                           test_setup),
    cmocka_unit_test_setup(test_file_changes_while_loading, test_setup),
  };

  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  if (failures) {
    fl_daemon_print_log(&confined);
  }
  return fl_rig_finish(&rig, failures);
}
