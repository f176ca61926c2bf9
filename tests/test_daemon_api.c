/*
  flitzid's command line and OSC API, row by row of the contract: every
  address with its success reply and each error with its exact reason.

  One dummy JACK server and one flitzid (with --sample-root and
  --max-sample-seconds 5, so those reasons can be tested) serve the whole
  program; /quit and the port clash get daemons of their own. Every test
  starts with no voice sounding and no reply queued.
*/
#include "harness.h"

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

#define TONE_FRAMES (2U * FL_TEST_RATE)

static FlRig rig;

static char root_dir[PATH_MAX];     // --sample-root
static char tone_path[PATH_MAX];    // 2 s mono float tone, inside the root
static char stereo_path[PATH_MAX];  // 0.5 s stereo 16-bit, inside the root
static char six_path[PATH_MAX];     // 6 channels
static char empty_path[PATH_MAX];   // a WAV with no frames
static char garbage_path[PATH_MAX]; // text named .wav
static char long_path[PATH_MAX];    // 6 s, over the 5 s limit
static char outside_path[PATH_MAX]; // a good file outside the root

/* Send a message and return the next reply, formatted. */
#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

/* printf into a static buffer, for the expected side of a comparison. */
static const char*
text(const char* format, ...)
{
  static char buffer[2048];
  va_list     args;
  va_start(args, format);
  vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return buffer;
}

/*
  Drop the /event/xrun notices a /notify listener may get at any time: the
  dummy backend on a loaded machine has xruns of its own.
*/
static void
drop_xrun_events(FlOsc* osc)
{
  /* Also the slot events of API v2 (/event/started, /event/stopped): a
     fade tail of the previous test may end while a listener registers. */
  static const char* const notices[] = { "/event/xrun",
                                         "/event/started",
                                         "/event/stopped" };
  for (size_t i = 0U; i < sizeof(notices) / sizeof(notices[0]); ++i) {
    FlReply* event = NULL;
    while ((event = fl_osc_wait(osc, notices[i], 0))) {
      fl_reply_free(event);
    }
  }
}

/* The next message on a /notify listener that is not an xrun notice. */
static FlReply*
next_copy(FlOsc* listener)
{
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  for (;;) {
    FlReply* const reply = fl_osc_wait(listener, NULL, 50);
    if (reply && strncmp(reply->path, "/event/", 7)) {
      return reply;
    }
    fl_reply_free(reply);
    if (fl_now_ms() >= deadline) {
      return NULL;
    }
  }
}

/* The same, formatted. */
static const char*
listener_reply(FlOsc* listener)
{
  static char    line[1024];
  FlReply* const reply = next_copy(listener);
  if (!reply) {
    return "(no reply)";
  }
  fl_reply_format(reply, line, sizeof(line));
  fl_reply_free(reply);
  return line;
}

/* Send from the listener and return its next reply that is no xrun notice. */
#define LISTENER_CALL(...) \
  (fl_osc_send(listener, __VA_ARGS__), listener_reply(listener))

/* Assert that nothing but xrun notices arrives on `osc` for a while. */
static void
assert_no_reply_on(FlOsc* osc)
{
  fl_osc_collect(osc, FL_TEST_SILENCE_MS);
  drop_xrun_events(osc);
  if (fl_osc_pending(osc)) {
    char           line[1024];
    FlReply* const reply = fl_osc_wait(osc, NULL, 0);
    fprintf(stderr,
            "unexpected reply: %s\n",
            fl_reply_format(reply, line, sizeof(line)));
    fl_reply_free(reply);
    fail_msg("a reply came where none was expected");
  }
}

static void
assert_no_reply(void)
{
  assert_no_reply_on(rig.osc);
}

static const char*
range_fail(const char* address, int slot)
{
  return text("/fail ,sis \"%s\" %d \"slot %d is out of range (0..31)\"",
              address,
              slot,
              slot);
}

static void
load(int slot, const char* path, uint32_t frames, unsigned channels)
{
  assert_string_equal(
    CALL("/load", "is", slot, path),
    text("/done ,siiii \"/load\" %d %u %u 48000", slot, frames, channels));
}

static int
group_setup(void** state)
{
  (void)state;
  // Not fl_rig_start(): the files must exist before the daemon starts, so
  // --sample-root points at a directory made here.
  memset(&rig, 0, sizeof(rig));
  if (!fl_env_init(&rig.env, "api")) {
    return -1;
  }
  fl_env_path(&rig.env, "root", root_dir, sizeof(root_dir));
  if (mkdir(root_dir, 0755)) {
    return -1;
  }

  fl_env_path(&rig.env, "root/tone.wav", tone_path, sizeof(tone_path));
  fl_env_path(&rig.env, "root/stereo.wav", stereo_path, sizeof(stereo_path));
  fl_env_path(&rig.env, "root/six.wav", six_path, sizeof(six_path));
  fl_env_path(&rig.env, "root/empty.wav", empty_path, sizeof(empty_path));
  fl_env_path(&rig.env, "root/garbage.wav", garbage_path, sizeof(garbage_path));
  fl_env_path(&rig.env, "root/long.wav", long_path, sizeof(long_path));
  fl_env_path(&rig.env, "outside.wav", outside_path, sizeof(outside_path));

  FILE* const garbage = fopen(garbage_path, "w");
  if (!garbage) {
    return -1;
  }
  fputs("this is not a sound file, just text that ends in .wav\n", garbage);
  fclose(garbage);

  if (!fl_write_sample(
        tone_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 1, 48000, TONE_FRAMES) ||
      !fl_write_sample(
        stereo_path, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 2, 48000, 24000) ||
      !fl_write_sample(
        six_path, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 6, 48000, 4800) ||
      !fl_write_sample(
        empty_path, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 0) ||
      !fl_write_sample(
        long_path, FL_FILE_WAV_PCM16, FL_SIGNAL_DC, 1, 48000, 6U * 48000U) ||
      !fl_write_sample(
        outside_path, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 4800)) {
    return -1;
  }

  char server[64];
  char client[64];
  fl_env_name(&rig.env, server, sizeof(server));
  fl_env_name(&rig.env, client, sizeof(client));
  const int         port   = fl_env_port(&rig.env);
  const char* const args[] = {
    "--sample-root", root_dir, "--max-sample-seconds", "5", NULL
  };
  if (port < 0 ||
      !fl_jackd_start(&rig.jackd, &rig.env, server, FL_TEST_PERIOD) ||
      !fl_daemon_start(&rig.daemon, &rig.env, server, client, port, args)) {
    return -1;
  }
  rig.osc = fl_osc_new(port);
  return rig.osc ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  return fl_rig_stop(&rig) ? 0 : -1;
}

/* Before each test: no voice sounding, no reply queued. */
static int
test_setup(void** state)
{
  (void)state;
  return fl_rig_quiet(&rig, 2000) ? 0 : -1;
}

/* Command line */

static void
test_cli_help(void** state)
{
  (void)state;
  const char* const argv[] = { getenv("FLITZID"), "--help", NULL };
  char*             out    = NULL;
  char*             err    = NULL;
  const int         status =
    fl_run_capture(&rig.env, argv, "fltest-none", &out, &err, 5000);
  assert_int_equal(status, 0);
  assert_non_null(out);
  assert_non_null(strstr(out, "Usage: flitzid"));
  assert_non_null(strstr(out, "--port"));
  free(out);
  free(err);

  const char* const short_argv[] = { getenv("FLITZID"), "-h", NULL };
  assert_int_equal(
    fl_run_capture(&rig.env, short_argv, "fltest-none", &out, &err, 5000), 0);
  assert_non_null(strstr(out, "--port"));
  free(out);
  free(err);
}

static void
test_cli_version(void** state)
{
  (void)state;
  const char* const options[] = { "--version", "-V" };
  for (size_t i = 0; i < 2; ++i) {
    const char* const argv[] = { getenv("FLITZID"), options[i], NULL };
    char*             out    = NULL;
    char*             err    = NULL;
    assert_int_equal(
      fl_run_capture(&rig.env, argv, "fltest-none", &out, &err, 5000), 0);
    assert_string_equal(out, "flitzid 0.1.0\n");
    free(out);
    free(err);
  }
}

static void
test_cli_invalid(void** state)
{
  (void)state;
  // Each must be refused before any JACK or OSC work: exit != 0 with a
  // message on stderr.
  const char* const cases[][3] = {
    { "--bogus", NULL, NULL },    { "-x", NULL, NULL },
    { "--slots", "0", NULL },     { "--slots", "1025", NULL },
    { "--voices", "0", NULL },    { "--channels", "3", NULL },
    { "--port", "70000", NULL },  { "--src-quality", "superb", NULL },
    { "--slots", "12abc", NULL },
  };

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    const char* const argv[] = {
      getenv("FLITZID"), cases[i][0], cases[i][1], NULL
    };
    char*     out = NULL;
    char*     err = NULL;
    const int status =
      fl_run_capture(&rig.env, argv, "fltest-none", &out, &err, 5000);
    if (status == 0 || status == -2 || !err || !*err) {
      fprintf(stderr,
              "flitzid %s %s: exit %d, stderr \"%s\"\n",
              cases[i][0],
              cases[i][1] ? cases[i][1] : "",
              status,
              err ? err : "");
    }
    assert_true(status > 0);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    free(out);
    free(err);
  }
}

static void
test_cli_list_osc(void** state)
{
  (void)state;
  const char* const argv[] = { getenv("FLITZID"), "--list-osc", NULL };
  char*             out    = NULL;
  char*             err    = NULL;
  assert_int_equal(
    fl_run_capture(&rig.env, argv, "fltest-none", &out, &err, 5000), 0);
  /* The v1 table, unchanged, comes first; v2's addresses follow it. */
  const char* const v1 = "/load is\n"
                         "/play if ii\n"
                         "/stop - i\n"
                         "/unload i\n"
                         "/query i\n"
                         "/status -\n"
                         "/stats -\n"
                         "/ping -\n"
                         "/notify i\n"
                         "/quit -\n";
  assert_true(out && !strncmp(out, v1, strlen(v1)));
  free(out);
  free(err);
}

static void
test_cli_port_in_use(void** state)
{
  (void)state;
  char name[64];
  char port[16];
  fl_env_name(&rig.env, name, sizeof(name));
  snprintf(port, sizeof(port), "%d", rig.daemon.port);
  const char* const argv[] = {
    getenv("FLITZID"), "-n", name, "-p", port, NULL
  };

  char*     out = NULL;
  char*     err = NULL;
  const int status =
    fl_run_capture(&rig.env, argv, rig.jackd.name, &out, &err, 10000);
  if (status != 1 || !err) {
    fprintf(
      stderr, "second flitzid: exit %d, stderr:\n%s\n", status, err ? err : "");
  }
  assert_int_equal(status, 1);
  assert_non_null(err);
  assert_non_null(
    strstr(err,
           text("flitzid: cannot listen on 127.0.0.1:%d: port in use",
                rig.daemon.port)));
  free(out);
  free(err);

  // The first one is unharmed.
  assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
}

/* /ping, /status */

static void
test_ping(void** state)
{
  (void)state;
  assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
}

static void
test_status_shape(void** state)
{
  (void)state;
  fl_osc_send(rig.osc, "/status", "");
  FlReply* const reply = fl_osc_wait(rig.osc, NULL, FL_TEST_REPLY_MS);
  assert_non_null(reply);
  assert_string_equal(reply->path, "/status.reply");
  assert_string_equal(reply->types, "iiiiiffiii");
  fl_reply_free(reply);

  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  assert_int_equal(status.voices_active, 0);
  assert_int_equal(status.voices_max, 32);
  assert_in_range(status.slots_loaded, 0, 32);
  assert_int_equal(status.slots_max, 32);
  assert_int_equal(status.sample_rate, 48000);
  assert_true(status.dsp_load_avg_pct >= 0.0f);
  assert_true(status.dsp_load_avg_pct <= 100.0f);
  assert_true(status.dsp_load_peak_pct <= 100.0f);
  assert_true(status.xruns >= 0);
  assert_int_equal(status.dropped_messages, 0);
  assert_int_equal(status.late_bundles, 0);
}

/* /load */

static void
test_load_ok(void** state)
{
  (void)state;
  FlDaemonStatus before;
  assert_true(fl_osc_status(rig.osc, &before));
  (void)CALL("/unload", "i", 0); // loaded or not
  assert_true(fl_osc_status(rig.osc, &before));

  load(0, tone_path, TONE_FRAMES, 1);
  load(31, stereo_path, 24000, 2);

  FlDaemonStatus after;
  assert_true(fl_osc_status(rig.osc, &after));
  assert_true(after.slots_loaded >= before.slots_loaded + 1);

  // A relative path is taken relative to the sample root.
  load(30, "tone.wav", TONE_FRAMES, 1);

  // Loading over a loaded slot replaces it.
  load(31, tone_path, TONE_FRAMES, 1);
  assert_string_equal(
    CALL("/query", "i", 31),
    text("/slot ,isiiii 31 \"%s\" %u 1 48000 1", tone_path, TONE_FRAMES));
}

static void
test_load_errors(void** state)
{
  (void)state;
  load(3, tone_path, TONE_FRAMES, 1);
  const char* const missing = text("%s/missing.wav", root_dir);
  char              missing_path[PATH_MAX];
  snprintf(missing_path, sizeof(missing_path), "%s", missing);

  assert_string_equal(
    CALL("/load", "is", 3, missing_path),
    text("/fail ,sis \"/load\" 3 \"cannot open '%s': No such file or "
         "directory\"",
         missing_path));

  assert_string_equal(
    CALL("/load", "is", 3, six_path),
    "/fail ,sis \"/load\" 3 \"unsupported channel layout: 6 channels (mono "
    "and stereo are supported)\"");

  assert_string_equal(
    CALL("/load", "is", 3, empty_path),
    text("/fail ,sis \"/load\" 3 \"'%s' holds no audio frames\"", empty_path));

  // libsndfile's own reason for a file it cannot read.
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  SNDFILE* const file = sf_open(garbage_path, SFM_READ, &info);
  assert_null(file);
  char sf_reason[256];
  snprintf(sf_reason, sizeof(sf_reason), "%s", sf_strerror(NULL));
  assert_string_equal(CALL("/load", "is", 3, garbage_path),
                      text("/fail ,sis \"/load\" 3 \"cannot open '%s': %s\"",
                           garbage_path,
                           sf_reason));

  assert_string_equal(
    CALL("/load", "is", 3, long_path),
    text("/fail ,sis \"/load\" 3 \"'%s' is 6.0 s long; the limit is 5 s "
         "(--max-sample-seconds)\"",
         long_path));

  // Outside the root: the same reason whether or not the file exists.
  assert_string_equal(
    CALL("/load", "is", 3, outside_path),
    text("/fail ,sis \"/load\" 3 \"'%s' is outside the sample root\"",
         outside_path));
  assert_string_equal(
    CALL("/load", "is", 3, "/nonexistent/flitzi/none.wav"),
    "/fail ,sis \"/load\" 3 \"'/nonexistent/flitzi/none.wav' is outside the "
    "sample root\"");
  assert_string_equal(
    CALL("/load", "is", 3, "../outside.wav"),
    "/fail ,sis \"/load\" 3 \"'../outside.wav' is outside the sample root\"");

  // After all that, the slot still holds its sample.
  assert_string_equal(
    CALL("/query", "i", 3),
    text("/slot ,isiiii 3 \"%s\" %u 1 48000 1", tone_path, TONE_FRAMES));
}

static void
test_load_bad_id(void** state)
{
  (void)state;
  const int ids[] = { -1, 32, INT32_MAX, INT32_MIN };
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); ++i) {
    assert_string_equal(CALL("/load", "is", ids[i], tone_path),
                        range_fail("/load", ids[i]));
  }
}

static void
test_load_bad_types(void** state)
{
  (void)state;
  const char* const expected =
    "/fail ,ss \"/load\" \"bad arguments: expected ,is\"";
  assert_string_equal(CALL("/load", "si", tone_path, 1), expected);
  assert_string_equal(CALL("/load", "i", 1), expected);
  assert_string_equal(CALL("/load", ""), expected);
  assert_string_equal(CALL("/load", "ii", 1, 2), expected);
  assert_string_equal(CALL("/load", "fs", 1.0, tone_path), expected);
  assert_string_equal(CALL("/load", "iss", 1, tone_path, "x"), expected);
}

/* /play */

static void
test_play_ok(void** state)
{
  (void)state;
  load(1, tone_path, TONE_FRAMES, 1);

  fl_osc_send(rig.osc, "/play", "if", 1, 1.0);
  assert_no_reply();
  assert_true(fl_osc_wait_voices(rig.osc, 1, 1000));

  fl_osc_send(rig.osc, "/play", "ii", 1, 100);
  assert_no_reply();
  assert_true(fl_osc_wait_voices(rig.osc, 2, 1000));

  // The edges of both velocity ranges are valid.
  fl_osc_send(rig.osc, "/play", "if", 1, 0.0);
  fl_osc_send(rig.osc, "/play", "ii", 1, 0);
  fl_osc_send(rig.osc, "/play", "ii", 1, 127);
  assert_no_reply();
  assert_true(fl_osc_wait_voices(rig.osc, 5, 1000));

  fl_osc_send(rig.osc, "/stop", "");
  assert_no_reply();
  assert_true(fl_osc_wait_voices(rig.osc, 0, 1000));
}

static void
test_play_bad_velocity(void** state)
{
  (void)state;
  load(1, tone_path, TONE_FRAMES, 1);

  const struct {
    double      velocity;
    const char* printed;
  } floats[] = {
    { (double)NAN, "nan" }, { (double)INFINITY, "inf" },   { -0.1, "-0.1" },
    { 1.5, "1.5" },         { -(double)INFINITY, "-inf" },
  };
  for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); ++i) {
    assert_string_equal(
      CALL("/play", "if", 1, floats[i].velocity),
      text("/fail ,sis \"/play\" 1 \"velocity %s is not in [0, 1]\"",
           floats[i].printed));
  }

  const int ints[] = { 200, 128, -1, INT32_MIN };
  for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); ++i) {
    assert_string_equal(
      CALL("/play", "ii", 1, ints[i]),
      text("/fail ,sis \"/play\" 1 \"velocity %d is not in 0..127\"", ints[i]));
  }

  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  assert_int_equal(status.voices_active, 0);
}

static void
test_play_empty_slot(void** state)
{
  (void)state;
  (void)CALL("/unload", "i", 5); // loaded or not

  assert_string_equal(CALL("/play", "if", 5, 1.0),
                      "/fail ,sis \"/play\" 5 \"slot 5 is empty\"");
  assert_string_equal(CALL("/play", "ii", 5, 64),
                      "/fail ,sis \"/play\" 5 \"slot 5 is empty\"");
}

static void
test_play_bad_id(void** state)
{
  (void)state;
  const int ids[] = { -1, 32, INT32_MAX };
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); ++i) {
    assert_string_equal(CALL("/play", "if", ids[i], 1.0),
                        range_fail("/play", ids[i]));
    assert_string_equal(CALL("/play", "ii", ids[i], 100),
                        range_fail("/play", ids[i]));
  }
}

static void
test_play_bad_types(void** state)
{
  (void)state;
  const char* const expected =
    "/fail ,ss \"/play\" \"bad arguments: expected ,if or ,ii\"";
  assert_string_equal(CALL("/play", "ff", 1.0, 1.0), expected);
  assert_string_equal(CALL("/play", "i", 1), expected);
  assert_string_equal(CALL("/play", ""), expected);
  assert_string_equal(CALL("/play", "is", 1, "loud"), expected);
  assert_string_equal(CALL("/play", "ifi", 1, 1.0, 3), expected);
  assert_string_equal(CALL("/play", "id", 1, 1.0), expected);
  assert_string_equal(CALL("/play", "hf", (int64_t)1, 1.0), expected);
}

/* /stop */

static void
test_stop(void** state)
{
  (void)state;
  load(1, tone_path, TONE_FRAMES, 1);
  load(2, tone_path, TONE_FRAMES, 1);

  // By slot: only that slot's voices fade.
  fl_osc_send(rig.osc, "/play", "if", 1, 0.5);
  fl_osc_send(rig.osc, "/play", "if", 2, 0.5);
  assert_true(fl_osc_wait_voices(rig.osc, 2, 1000));
  fl_osc_send(rig.osc, "/stop", "i", 1);
  assert_no_reply();
  assert_true(fl_osc_wait_voices(rig.osc, 1, 1000));

  // All voices.
  fl_osc_send(rig.osc, "/play", "if", 1, 0.5);
  assert_true(fl_osc_wait_voices(rig.osc, 2, 1000));
  fl_osc_send(rig.osc, "/stop", "");
  assert_no_reply();
  assert_true(fl_osc_wait_voices(rig.osc, 0, 1000));

  // A slot with nothing sounding, and an empty slot: nothing to do.
  fl_osc_send(rig.osc, "/stop", "i", 1);
  (void)CALL("/unload", "i", 6); // loaded or not
  fl_osc_send(rig.osc, "/stop", "i", 6);
  assert_no_reply();
}

static void
test_stop_bad(void** state)
{
  (void)state;
  const int ids[] = { -1, 32, INT32_MAX };
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); ++i) {
    assert_string_equal(CALL("/stop", "i", ids[i]),
                        range_fail("/stop", ids[i]));
  }

  const char* const expected =
    "/fail ,ss \"/stop\" \"bad arguments: expected , or ,i\"";
  assert_string_equal(CALL("/stop", "s", "all"), expected);
  assert_string_equal(CALL("/stop", "f", 1.0), expected);
  assert_string_equal(CALL("/stop", "ii", 1, 2), expected);
}

/* /unload */

static void
test_unload(void** state)
{
  (void)state;
  load(2, tone_path, TONE_FRAMES, 1);
  FlDaemonStatus before;
  assert_true(fl_osc_status(rig.osc, &before));

  // Unloading a sounding slot fades its voice out.
  fl_osc_send(rig.osc, "/play", "if", 2, 0.5);
  assert_true(fl_osc_wait_voices(rig.osc, 1, 1000));
  assert_string_equal(CALL("/unload", "i", 2), "/done ,si \"/unload\" 2");
  assert_true(fl_osc_wait_voices(rig.osc, 0, 1000));

  FlDaemonStatus after;
  assert_true(fl_osc_status(rig.osc, &after));
  assert_int_equal(after.slots_loaded, before.slots_loaded - 1);

  assert_string_equal(CALL("/query", "i", 2), "/slot ,isiiii 2 \"\" 0 0 0 0");
  assert_string_equal(CALL("/unload", "i", 2),
                      "/fail ,sis \"/unload\" 2 \"slot 2 is empty\"");
  assert_string_equal(CALL("/play", "if", 2, 1.0),
                      "/fail ,sis \"/play\" 2 \"slot 2 is empty\"");
}

static void
test_unload_bad(void** state)
{
  (void)state;
  const int ids[] = { -1, 32, INT32_MAX };
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); ++i) {
    assert_string_equal(CALL("/unload", "i", ids[i]),
                        range_fail("/unload", ids[i]));
  }

  const char* const expected =
    "/fail ,ss \"/unload\" \"bad arguments: expected ,i\"";
  assert_string_equal(CALL("/unload", ""), expected);
  assert_string_equal(CALL("/unload", "s", "2"), expected);
  assert_string_equal(CALL("/unload", "f", 2.0), expected);
}

/* /query */

static void
test_query(void** state)
{
  (void)state;
  load(4, stereo_path, 24000, 2);
  assert_string_equal(
    CALL("/query", "i", 4),
    text("/slot ,isiiii 4 \"%s\" 24000 2 48000 1", stereo_path));

  (void)CALL("/unload", "i", 9); // loaded or not
  assert_string_equal(CALL("/query", "i", 9), "/slot ,isiiii 9 \"\" 0 0 0 0");

  const int ids[] = { -1, 32, INT32_MAX };
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); ++i) {
    assert_string_equal(CALL("/query", "i", ids[i]),
                        range_fail("/query", ids[i]));
  }

  const char* const expected =
    "/fail ,ss \"/query\" \"bad arguments: expected ,i\"";
  assert_string_equal(CALL("/query", ""), expected);
  assert_string_equal(CALL("/query", "s", "4"), expected);
  assert_string_equal(CALL("/query", "f", 4.0), expected);
}

/* /notify */

static void
test_notify(void** state)
{
  (void)state;
  FlOsc* const listener = fl_osc_new(rig.daemon.port);
  assert_non_null(listener);

  assert_string_equal(LISTENER_CALL("/notify", "i", 1),
                      "/done ,si \"/notify\" 1");

  // Another client's /load and /unload, success and failure, are copied.
  const char* const loaded = "/done ,siiii \"/load\" 10 24000 2 48000";
  assert_string_equal(CALL("/load", "is", 10, stereo_path), loaded);
  assert_string_equal(listener_reply(listener), loaded);

  const char* const failed =
    "/fail ,sis \"/load\" 10 \"unsupported channel layout: 6 channels (mono "
    "and stereo are supported)\"";
  assert_string_equal(CALL("/load", "is", 10, six_path), failed);
  assert_string_equal(listener_reply(listener), failed);

  assert_string_equal(CALL("/unload", "i", 10), "/done ,si \"/unload\" 10");
  assert_string_equal(listener_reply(listener), "/done ,si \"/unload\" 10");

  // Other replies are not copied.
  assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
  assert_string_equal(CALL("/query", "i", 10), "/slot ,isiiii 10 \"\" 0 0 0 0");
  assert_no_reply_on(listener);

  // A registered client's own /load reply comes once, not twice.
  assert_string_equal(LISTENER_CALL("/load", "is", 11, stereo_path),
                      "/done ,siiii \"/load\" 11 24000 2 48000");
  assert_no_reply_on(listener);

  // Registering twice does not double the copies.
  assert_string_equal(LISTENER_CALL("/notify", "i", 1),
                      "/done ,si \"/notify\" 1");
  assert_string_equal(CALL("/unload", "i", 11), "/done ,si \"/unload\" 11");
  assert_string_equal(listener_reply(listener), "/done ,si \"/unload\" 11");
  assert_no_reply_on(listener);

  // Unregistered: no more copies.
  assert_string_equal(LISTENER_CALL("/notify", "i", 0),
                      "/done ,si \"/notify\" 0");
  assert_string_equal(CALL("/load", "is", 10, stereo_path),
                      "/done ,siiii \"/load\" 10 24000 2 48000");
  assert_no_reply_on(listener);

  assert_string_equal(LISTENER_CALL("/notify", "s", "1"),
                      "/fail ,ss \"/notify\" \"bad arguments: expected ,i\"");
  assert_string_equal(LISTENER_CALL("/notify", ""),
                      "/fail ,ss \"/notify\" \"bad arguments: expected ,i\"");
  fl_osc_free(listener);
}

/* Unknown addresses and wrong types on the no-argument forms */

static void
test_unknown_address(void** state)
{
  (void)state;
  assert_string_equal(CALL("/nope", ""),
                      "/fail ,ss \"/nope\" \"unknown address\"");
  assert_string_equal(CALL("/play/now", "if", 1, 1.0),
                      "/fail ,ss \"/play/now\" \"unknown address\"");
  assert_string_equal(CALL("/PING", ""),
                      "/fail ,ss \"/PING\" \"unknown address\"");
}

static void
test_wrong_types_no_arguments(void** state)
{
  (void)state;
  assert_string_equal(CALL("/status", "i", 1),
                      "/fail ,ss \"/status\" \"bad arguments: expected ,\"");
  assert_string_equal(CALL("/ping", "s", "x"),
                      "/fail ,ss \"/ping\" \"bad arguments: expected ,\"");
  assert_string_equal(CALL("/quit", "i", 1),
                      "/fail ,ss \"/quit\" \"bad arguments: expected ,\"");
  // The daemon is still there after a malformed /quit.
  assert_string_equal(CALL("/ping", ""), "/pong ,si \"0.1.0\" 1");
}

/* /quit, on a daemon of its own */

static void
test_quit(void** state)
{
  (void)state;
  char     name[64];
  FlDaemon daemon;
  fl_env_name(&rig.env, name, sizeof(name));
  const int port = fl_env_port(&rig.env);
  assert_true(port > 0);
  assert_true(
    fl_daemon_start(&daemon, &rig.env, rig.jackd.name, name, port, NULL));

  FlOsc* const osc = fl_osc_new(port);
  assert_non_null(osc);
  const char* const reply = fl_osc_call(osc, FL_TEST_REPLY_MS, "/quit", "");
  if (strcmp(reply, "/done ,s \"/quit\"")) {
    fl_daemon_print_log(&daemon);
  }
  assert_string_equal(reply, "/done ,s \"/quit\"");
  fl_osc_free(osc);

  const int status = fl_daemon_wait_exit(&daemon, 5000);
  if (status != 0) {
    fl_daemon_print_log(&daemon);
    fl_daemon_stop(&daemon);
  }
  assert_int_equal(status, 0);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cli_help),
    cmocka_unit_test(test_cli_version),
    cmocka_unit_test(test_cli_invalid),
    cmocka_unit_test(test_cli_list_osc),
    cmocka_unit_test_setup(test_cli_port_in_use, test_setup),
    cmocka_unit_test_setup(test_ping, test_setup),
    cmocka_unit_test_setup(test_status_shape, test_setup),
    cmocka_unit_test_setup(test_load_ok, test_setup),
    cmocka_unit_test_setup(test_load_errors, test_setup),
    cmocka_unit_test_setup(test_load_bad_id, test_setup),
    cmocka_unit_test_setup(test_load_bad_types, test_setup),
    cmocka_unit_test_setup(test_play_ok, test_setup),
    cmocka_unit_test_setup(test_play_bad_velocity, test_setup),
    cmocka_unit_test_setup(test_play_empty_slot, test_setup),
    cmocka_unit_test_setup(test_play_bad_id, test_setup),
    cmocka_unit_test_setup(test_play_bad_types, test_setup),
    cmocka_unit_test_setup(test_stop, test_setup),
    cmocka_unit_test_setup(test_stop_bad, test_setup),
    cmocka_unit_test_setup(test_unload, test_setup),
    cmocka_unit_test_setup(test_unload_bad, test_setup),
    cmocka_unit_test_setup(test_query, test_setup),
    cmocka_unit_test_setup(test_notify, test_setup),
    cmocka_unit_test_setup(test_unknown_address, test_setup),
    cmocka_unit_test_setup(test_wrong_types_no_arguments, test_setup),
    cmocka_unit_test_setup(test_quit, test_setup),
  };

  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  return fl_rig_finish(&rig, failures);
}
