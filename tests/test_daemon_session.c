/*
  Sessions (OSC API v2, §6): `flitzid --state FILE` and /save, with a real
  jackd, real flitzid processes killed with SIGKILL, real OSC over UDP, and
  flitzid's outputs recorded by a JACK client of our own. FILE is read with
  jansson, as flitzid writes it.

  - test_restore_identical: 8 pads with files and settings, a pad with
    settings alone, tempo, signature, quantize, speed, bpmlock and master
    gain; /save, kill -9, start again with the same FILE: /slot/get of every
    slot, /query and /transport are identical, and one timetagged bundle of
    8 plays records the same output before and after, sample by sample.
  - test_kills_during_changes: a stream of setting changes, each one
    acknowledged (/ping after it), with kill -9 at random moments and a
    restart from FILE after each: FILE always parses, holds a prefix of the
    changes (one snapshot), and every change acknowledged more than 1 s
    before the kill. 10 kills during 500 changes; with --stress (suite
    'stress') 200 kills during 10,000 changes.
  - test_missing_file: a slot whose file is gone stays empty, is reported
    (log; /fail to subscribers), keeps its settings and its place in FILE,
    and loads again once the file is back.
  - test_unparsable_files: broken JSON, a future version and a non-object
    are renamed aside (FILE.broken-<time>, unchanged), flitzid starts empty
    and writes a new FILE at the next change; a file with bad entries keeps
    what it cannot use.
  - test_read_only_dir, test_full_disk: the write fails, is logged once per
    kind of error, /save answers /fail with the reason, FILE keeps the last
    good state, nothing is lost in memory, and the next change after the
    fault is gone writes it all. Tests run as root, and root writes through
    chmod, so the directory is a small tmpfs of the test's own: remounted
    read-only for the first, 64 KiB and filled up for the second. Every
    mount is undone on every path out (teardown, exit, SIGTERM); without
    the right to mount, these two are skipped.
  - test_save_without_state; test_sigterm_writes_last_change (and FILE
    keeps its permissions).
*/
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <lo/lo.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define RATE FL_TEST_RATE
#define PADS 8
#define SLOTS 32             /* flitzid's default --slots */
#define SETTINGS_ONLY_SLOT 9 /* settings, no file */
#define CAPTURE_ATTEMPTS 8   /* captures the server spoiled, retried */
#define CAPTURE_FRAMES (RATE * 3 / 2)
#define BUNDLE_AHEAD_US 200000 /* the bundle's timetag, from now */
#define BEHIND_MS 1000         /* FILE is at most this far behind */
#define FILE_WAIT_MS 3000      /* waiting for a write that must come */

static FlRig rig;
static bool  stress;

static const char* text(const char* format, ...)
  __attribute__((format(printf, 1, 2)));

static const char*
text(const char* format, ...)
{
  static char buffer[4][1024];
  static int  next = 0;
  next             = (next + 1) % 4;
  va_list args;
  va_start(args, format);
  vsnprintf(buffer[next], sizeof(buffer[next]), format, args);
  va_end(args);
  return buffer[next];
}

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

/* Nothing came back for what was sent before: the next reply is /pong. */
static void
assert_no_reply_at(int line)
{
  const char* const reply = CALL("/ping", "");
  if (strncmp(reply, "/pong ", 6)) {
    fprintf(stderr, "line %d: expected no reply, got %s\n", line, reply);
    fail();
  }
}

#define assert_no_reply() assert_no_reply_at(__LINE__)

#define SEND_OK(...)                                \
  do {                                              \
    assert_true(fl_osc_send(rig.osc, __VA_ARGS__)); \
    assert_no_reply();                              \
  } while (0)

/* tmpfs mounts: undone on every way out */

#define MAX_MOUNTS 4
static char mounts[MAX_MOUNTS][PATH_MAX];
static int  mount_count;

static void
unmount_all(void)
{
  for (int i = mount_count - 1; i >= 0; --i) {
    umount2(mounts[i], MNT_DETACH);
  }
  mount_count = 0;
}

static void
on_terminate(int signal_number)
{
  for (int i = mount_count - 1; i >= 0; --i) {
    umount2(mounts[i], MNT_DETACH); /* a system call: async-signal-safe */
  }
  _exit(128 + signal_number);
}

/* Mount a tmpfs on `dir` (made here); false (with errno) if not allowed. */
static bool
mount_tmpfs(const char* dir, const char* options)
{
  if (mount_count == MAX_MOUNTS || (mkdir(dir, 0755) && errno != EEXIST)) {
    return false;
  }
  if (mount("tmpfs", dir, "tmpfs", 0, options)) {
    return false;
  }
  snprintf(mounts[mount_count++], PATH_MAX, "%s", dir);
  return true;
}

static bool
remount_tmpfs(const char* dir, const char* options, bool read_only)
{
  return !mount(
    "tmpfs", dir, "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0UL), options);
}

static void
unmount_tmpfs(const char* dir)
{
  for (int i = 0; i < mount_count; ++i) {
    if (!strcmp(mounts[i], dir)) {
      umount2(dir, MNT_DETACH);
      memmove(
        &mounts[i], &mounts[i + 1], (size_t)(mount_count - i - 1) * PATH_MAX);
      --mount_count;
      return;
    }
  }
}

/* The probe: a liblo client that keeps every argument of one reply
   (/slot/settings has more than the harness's FlReply keeps). */

#define PROBE_MAX_ARGS 64

typedef struct {
  char    type;
  int32_t i;
  double  number;
  char    s[128];
} ProbeArg;

typedef struct {
  lo_server  server;
  lo_address daemon;
  bool       got;
  char       path[64];
  char       types[PROBE_MAX_ARGS + 1];
  int        argc;
  ProbeArg   argv[PROBE_MAX_ARGS];
  char       formatted[2048];
} Probe;

static Probe probe;

static int
on_probe_message(const char* path,
                 const char* types,
                 lo_arg**    argv,
                 int         argc,
                 lo_message  message,
                 void*       data)
{
  (void)message;
  Probe* const p = (Probe*)data;
  if (p->got) {
    return 0;
  }
  p->got = true;
  snprintf(p->path, sizeof(p->path), "%s", path);
  snprintf(p->types, sizeof(p->types), "%s", types);
  p->argc = argc < PROBE_MAX_ARGS ? argc : PROBE_MAX_ARGS;

  size_t length =
    (size_t)snprintf(p->formatted, sizeof(p->formatted), "%s ,%s", path, types);
  for (int i = 0; i < p->argc; ++i) {
    ProbeArg* const arg = &p->argv[i];
    memset(arg, 0, sizeof(*arg));
    arg->type = types[i];
    /* Arguments are 4-byte aligned in the packet: copy, do not cast. */
    if (types[i] == 'i') {
      memcpy(&arg->i, argv[i], sizeof(arg->i));
      arg->number = arg->i;
    } else if (types[i] == 'f') {
      float value = 0.0f;
      memcpy(&value, argv[i], sizeof(value));
      arg->number = value;
    } else if (types[i] == 'd') {
      memcpy(&arg->number, argv[i], sizeof(arg->number));
    } else if (types[i] == 's') {
      snprintf(arg->s, sizeof(arg->s), "%s", (const char*)argv[i]);
    }
    if (length >= sizeof(p->formatted)) {
      continue;
    }
    if (types[i] == 'i') {
      length += (size_t)snprintf(
        p->formatted + length, sizeof(p->formatted) - length, " %d", arg->i);
    } else if (types[i] == 's') {
      length += (size_t)snprintf(p->formatted + length,
                                 sizeof(p->formatted) - length,
                                 " \"%s\"",
                                 arg->s);
    } else {
      /* %.9g: a float32 exactly, so "identical" means bit for bit. */
      length += (size_t)snprintf(p->formatted + length,
                                 sizeof(p->formatted) - length,
                                 " %.9g",
                                 arg->number);
    }
  }
  return 0;
}

static void
probe_close(void)
{
  if (probe.daemon) {
    lo_address_free(probe.daemon);
  }
  if (probe.server) {
    lo_server_free(probe.server);
  }
  probe.daemon = NULL;
  probe.server = NULL;
}

static bool
probe_open(int daemon_port)
{
  probe_close();
  char port[16];
  snprintf(port, sizeof(port), "%d", daemon_port);
  probe.server = lo_server_new_with_proto(NULL, LO_UDP, NULL);
  probe.daemon = lo_address_new("127.0.0.1", port);
  if (!probe.server || !probe.daemon) {
    return false;
  }
  lo_server_enable_coercion(probe.server, 0);
  lo_server_add_method(probe.server, NULL, NULL, on_probe_message, &probe);
  return true;
}

/* Send `message` (freed here) and return the formatted reply. */
static const char*
probe_call(const char* path, lo_message message)
{
  probe.got = false;
  const int sent =
    lo_send_message_from(probe.daemon, probe.server, path, message);
  lo_message_free(message);
  if (sent < 0) {
    return "(could not send)";
  }
  const int64_t deadline = fl_now_ms() + FL_TEST_REPLY_MS;
  while (!probe.got && fl_now_ms() < deadline) {
    lo_server_recv_noblock(probe.server, 50);
  }
  return probe.got ? probe.formatted : "(no reply)";
}

/* /slot/get `slot`, formatted (every key and value). */
static const char*
slot_get(int slot)
{
  lo_message const message = lo_message_new();
  lo_message_add_int32(message, slot);
  return probe_call("/slot/get", message);
}

/* Daemons */

/*
  Start a new flitzid on the rig's server (a new client name and port each
  time, so a killed one's leftovers cannot be in the way) with --state
  `state` (NULL: none) and `extra` (NULL-terminated or NULL); with a
  recorder if `record`.
*/
static bool
start_daemon(const char* state, bool record, const char* const* extra)
{
  fl_recorder_free(rig.recorder);
  rig.recorder = NULL;
  fl_osc_free(rig.osc);
  rig.osc = NULL;

  const char* args[16] = { NULL };
  size_t      argc     = 0U;
  if (state) {
    args[argc++] = "--state";
    args[argc++] = state;
  }
  for (size_t i = 0U; extra && extra[i] && argc < 15U; ++i) {
    args[argc++] = extra[i];
  }

  char name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int port = fl_env_port(&rig.env);
  if (port < 0 || !fl_daemon_start(
                    &rig.daemon, &rig.env, rig.jackd.name, name, port, args)) {
    return false;
  }
  rig.osc = fl_osc_new(port);
  if (!rig.osc || !probe_open(port)) {
    return false;
  }
  if (record) {
    rig.recorder = fl_recorder_new(rig.jackd.name, name, 2, 10U * RATE);
  }
  return !record || rig.recorder;
}

static void
kill_daemon(void)
{
  fl_recorder_free(rig.recorder);
  rig.recorder = NULL;
  if (rig.daemon.pid) {
    kill(rig.daemon.pid, SIGKILL);
    assert_int_equal(fl_daemon_wait_exit(&rig.daemon, 5000), -1);
  }
}

static void
stop_daemon(void)
{
  fl_recorder_free(rig.recorder);
  rig.recorder = NULL;
  if (rig.daemon.pid) {
    assert_int_equal(fl_daemon_stop(&rig.daemon), 0);
  }
}

/* Lines of the current daemon's log that contain `needle`. */
static unsigned
log_count(const char* needle)
{
  char* const log   = fl_read_text(rig.daemon.log_path);
  unsigned    count = 0U;
  for (const char* at = log; at && (at = strstr(at, needle)); ++at) {
    ++count;
  }
  free(log);
  return count;
}

static void
assert_logged_at(const char* needle, int line)
{
  if (log_count(needle) == 0U) {
    fprintf(stderr, "line %d: the log has no '%s'\n", line, needle);
    fl_daemon_print_log(&rig.daemon);
    fail();
  }
}

#define assert_logged(needle) assert_logged_at((needle), __LINE__)

/* FILE */

/* "<dir>/<file_name>"; the string lives until 64 more calls (a test keeps
   a handful). */
static const char*
env_path(const char* file_name)
{
  static char paths[64][PATH_MAX];
  static int  next = 0;
  next             = (next + 1) % 64;
  fl_env_path(&rig.env, file_name, paths[next], sizeof(paths[next]));
  return paths[next];
}

/* FILE as JSON, or NULL if it does not exist; fails the test if it exists
   and does not parse. */
static json_t*
load_state(const char* path)
{
  if (access(path, F_OK)) {
    return NULL;
  }
  json_error_t  error;
  json_t* const root = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
  if (!root) {
    fprintf(stderr,
            "%s does not parse: line %d, column %d: %s\n",
            path,
            error.line,
            error.column,
            error.text);
    fail();
  }
  return root;
}

static double
state_number(const json_t* root, const char* name)
{
  return json_number_value(json_object_get(root, name));
}

/* The entry of `slot` in FILE's "slots", or NULL. */
static json_t*
state_slot(const json_t* root, int slot)
{
  size_t  index = 0U;
  json_t* entry = NULL;
  json_array_foreach(json_object_get(root, "slots"), index, entry)
  {
    if (json_integer_value(json_object_get(entry, "slot")) == slot) {
      return entry;
    }
  }
  return NULL;
}

static double
state_setting(const json_t* root, int slot, const char* key)
{
  return json_number_value(
    json_object_get(json_object_get(state_slot(root, slot), "settings"), key));
}

/* Wait until FILE's tempo is `bpm`; returns the milliseconds it took, or -1
   after `timeout_ms`. */
static long
wait_state_tempo(const char* path, double bpm, int timeout_ms)
{
  const int64_t start = fl_now_ms();
  while (fl_now_ms() - start <= timeout_ms) {
    json_t* const root = load_state(path);
    const double  got  = root ? state_number(root, "tempo") : 0.0;
    json_decref(root);
    if (got == bpm) {
      return (long)(fl_now_ms() - start);
    }
    fl_sleep_ms(10);
  }
  return -1;
}

static bool
same_file(const char* path, const char* expected)
{
  char* const got  = fl_read_text(path);
  const bool  same = got && !strcmp(got, expected);
  free(got);
  return same;
}

/* Names in the test's directory that start with `prefix`: the count, and
   the last one in `found`. */
static unsigned
find_files(const char* prefix, char* found, size_t found_size)
{
  DIR* const dir   = opendir(rig.env.dir);
  unsigned   count = 0U;
  for (struct dirent* entry = dir ? readdir(dir) : NULL; entry;
       entry                = readdir(dir)) {
    if (!strncmp(entry->d_name, prefix, strlen(prefix))) {
      ++count;
      if (found) {
        fl_env_path(&rig.env, entry->d_name, found, found_size);
      }
    }
  }
  if (dir) {
    closedir(dir);
  }
  return count;
}

/* The pads */

typedef struct {
  const char* name;
  FlSignal    signal;
  unsigned    channels;
  uint32_t    frames;
} PadFile;

static const PadFile pad_files[PADS] = {
  { "p0-tone.wav", FL_SIGNAL_TONE, 1, RATE },
  { "p1-ramp.wav", FL_SIGNAL_RAMP, 2, RATE },
  { "p2-click.wav", FL_SIGNAL_CLICK, 1, RATE / 2 },
  { "p3-tone.wav", FL_SIGNAL_TONE, 2, 2 * RATE },
  { "p4-dc.wav", FL_SIGNAL_DC, 2, RATE },
  { "p5-tone.wav", FL_SIGNAL_TONE, 1, RATE / 2 },
  { "p6-ramp.wav", FL_SIGNAL_RAMP, 1, RATE },
  { "p7-tone.wav", FL_SIGNAL_TONE, 2, 3 * RATE / 2 },
};

/* Every pad's settings, the keys of §1 across them; numbers as doubles. */
static void
set_pads(void)
{
  SEND_OK("/slot/set",
          "isssdsdsdsdsd",
          0,
          "mode",
          "loop",
          "start",
          0.1,
          "end",
          0.35,
          "xfade",
          5.0,
          "gain",
          -3.0,
          "pan",
          -0.25);
  SEND_OK("/slot/set",
          "isssdsdsdsdsd",
          1,
          "mode",
          "oneshot",
          "start",
          0.05,
          "gain",
          -6.0,
          "pan",
          0.5,
          "eq_low",
          -12.0,
          "eq_high",
          3.0);
  SEND_OK("/slot/set", "isisisd", 2, "voices", 1, "group", 2, "gain", 2.5);
  SEND_OK("/slot/set",
          "isssdsdsd",
          3,
          "mode",
          "loop",
          "rate",
          0.75,
          "xfade",
          2.0,
          "eq_mid",
          -6.0);
  SEND_OK("/slot/set",
          "isssdsdsdsdsi",
          4,
          "mode",
          "loop",
          "start",
          0.2,
          "end",
          0.6,
          "gain",
          -20.0,
          "pan",
          -1.0,
          "group",
          3);
  SEND_OK("/slot/set",
          "isssdsssi",
          5,
          "mode",
          "loop",
          "bpm",
          130.0,
          "quantize",
          "1/4",
          "hold",
          1);
  SEND_OK("/slot/set",
          "isdsisdsd",
          6,
          "rate",
          1.5,
          "voices",
          2,
          "gain",
          -1.5,
          "eq_high",
          -60.0);
  SEND_OK("/slot/set",
          "isssdsdsdsd",
          7,
          "mode",
          "loop",
          "start",
          0.5,
          "end",
          1.25,
          "xfade",
          10.0,
          "pan",
          0.75);
  SEND_OK("/slot/set",
          "isdsssi",
          SETTINGS_ONLY_SLOT,
          "gain",
          -9.0,
          "mode",
          "loop",
          "keylock",
          1);
}

static void
set_globals(void)
{
  SEND_OK("/tempo", "d", 97.5);
  SEND_OK("/signature", "i", 3);
  SEND_OK("/quantize", "s", "1/8");
  SEND_OK("/speed", "d", 1.25);
  SEND_OK("/bpmlock", "i", 1);
  SEND_OK("/master/gain", "d", -4.5);
}

/* Wait until `count` slots are loaded (/status). */
static bool
wait_loaded(int32_t count, int timeout_ms)
{
  const int64_t  deadline = fl_now_ms() + timeout_ms;
  FlDaemonStatus status   = { 0 };
  while (fl_now_ms() < deadline) {
    if (fl_osc_status(rig.osc, &status) && status.slots_loaded == count) {
      return true;
    }
    fl_sleep_ms(20);
  }
  fprintf(stderr, "%d slots loaded, not %d\n", status.slots_loaded, count);
  return false;
}

/*
  Record one bundle: /transport/downbeat and a /play of each of the 8 pads
  (velocities 1/8 .. 8/8), timetagged for the frame AIM_OFFSET of a period
  some 200 ms ahead, and copy CAPTURE_FRAMES frames of both outputs from
  that frame on. The same frame of a period and the same beat position
  (the downbeat) make the same output: the RT thread renders a period as
  one block, and a locked voice's place follows the beats since the
  downbeat. A capture that the server spoiled (xrun, skipped period), or
  whose start missed its frame, is made again.
*/
#define AIM_OFFSET 100U

static void
record_bundle(float* left, float* right)
{
  for (int attempt = 1; attempt <= CAPTURE_ATTEMPTS; ++attempt) {
    fl_osc_send(rig.osc, "/stop", "");
    assert_true(fl_osc_wait_voices(rig.osc, 0, 3000));
    fl_sleep_ms(50); /* the fade tails, which /status does not count */
    fl_osc_clear(rig.osc);

    fl_recorder_start(rig.recorder);
    assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
    jack_client_t* const client = fl_recorder_client(rig.recorder);
    struct timespec      realtime;
    const jack_time_t    now    = fl_clock_pair(&realtime);
    jack_nframes_t       target = jack_time_to_frames(client, now) +
                            (jack_nframes_t)(BUNDLE_AHEAD_US * RATE / 1000000);
    target = target - target % FL_TEST_PERIOD + AIM_OFFSET;
    /* The voice starts on the first frame at or after its time: a few
       microseconds before the frame's (a frame is 20.8 us). */
    const jack_time_t at = jack_frames_to_time(client, target) - 5U;
    lo_bundle const   bundle =
      lo_bundle_new(fl_timetag_after(&realtime, (int64_t)(at - now)));
    lo_bundle_add_message(bundle, "/transport/downbeat", lo_message_new());
    for (int pad = 0; pad < PADS; ++pad) {
      lo_message const message = lo_message_new();
      lo_message_add_int32(message, pad);
      lo_message_add_float(message, (float)(pad + 1) / (float)PADS);
      lo_bundle_add_message(bundle, "/play", message);
    }
    assert_true(lo_send_bundle_from(probe.daemon, probe.server, bundle) > 0);
    lo_bundle_free_recursive(bundle);

    const uint32_t want =
      (uint32_t)(2U * BUNDLE_AHEAD_US * RATE / 1000000U) + CAPTURE_FRAMES;
    const bool recorded = fl_recorder_wait(rig.recorder, want, 10000);
    fl_recorder_stop(rig.recorder);
    const long     onset_left  = fl_recorder_onset(rig.recorder, 0, 0.0f, 0);
    const long     onset_right = fl_recorder_onset(rig.recorder, 1, 0.0f, 0);
    const long     onset       = onset_left < 0             ? onset_right
                                 : onset_right < 0          ? onset_left
                                 : onset_left < onset_right ? onset_left
                                                            : onset_right;
    jack_nframes_t onset_frame = 0U;
    if (!recorded || fl_recorder_glitches(rig.recorder) || onset < 0 ||
        (uint32_t)onset + CAPTURE_FRAMES > fl_recorder_frames(rig.recorder) ||
        !fl_recorder_frame_at(rig.recorder, (uint32_t)onset, &onset_frame) ||
        onset_frame != target) {
      fprintf(stderr,
              "capture %d spoiled (%u glitches, onset at frame %u of a period, "
              "frame %u, not %u); again\n",
              attempt,
              fl_recorder_glitches(rig.recorder),
              (unsigned)(onset_frame % FL_TEST_PERIOD),
              (unsigned)onset_frame,
              (unsigned)target);
      continue;
    }
    memcpy(left,
           fl_recorder_channel(rig.recorder, 0) + onset,
           CAPTURE_FRAMES * sizeof(float));
    memcpy(right,
           fl_recorder_channel(rig.recorder, 1) + onset,
           CAPTURE_FRAMES * sizeof(float));
    fl_osc_send(rig.osc, "/stop", "");
    return;
  }
  fail_msg("no capture without glitches in %d attempts", CAPTURE_ATTEMPTS);
}

/* Count the frames of `got` that differ from `want` (bit for bit). */
static unsigned
count_differences(const char* what, const float* want, const float* got)
{
  unsigned differences = 0U;
  float    largest     = 0.0f;
  long     first       = -1;
  for (uint32_t i = 0U; i < CAPTURE_FRAMES; ++i) {
    if (memcmp(&want[i], &got[i], sizeof(float))) {
      first = first < 0 ? (long)i : first;
      ++differences;
      largest = fmaxf(largest, fabsf(want[i] - got[i]));
    }
  }
  if (differences) {
    fprintf(stderr,
            "%s: %u of %u frames differ, the first at %ld (%.9g, not "
            "%.9g), by up to %g\n",
            what,
            differences,
            CAPTURE_FRAMES,
            first,
            (double)got[first],
            (double)want[first],
            (double)largest);
  }
  return differences;
}

/*
  /transport as "source bpm beats_per_bar rolling", once it is `expected`
  (the RT thread publishes it a period after it takes a change) or after a
  second.
*/
static void
transport_text(char* out, size_t out_size, const char* expected)
{
  const int64_t deadline = fl_now_ms() + 1000;
  for (;;) {
    FlReply* reply = NULL;
    assert_true(fl_osc_send(rig.osc, "/transport", ""));
    assert_non_null(reply = fl_osc_wait(rig.osc, "/transport.reply", 3000));
    snprintf(out,
             out_size,
             "%s %.9g %d %d",
             reply->argv[0].s,
             (double)reply->argv[1].value.f,
             reply->argv[2].value.i,
             reply->argv[4].value.i);
    fl_reply_free(reply);
    if (!strcmp(out, expected) || fl_now_ms() >= deadline) {
      return;
    }
    fl_sleep_ms(10);
  }
}

/* Tests */

static void
test_restore_identical(void** state)
{
  (void)state;
  const char* const session = env_path("restore.json");
  assert_true(start_daemon(session, true, NULL));

  for (int pad = 0; pad < PADS; ++pad) {
    const char* const path = env_path(pad_files[pad].name);
    assert_true(fl_write_sample(path,
                                FL_FILE_WAV_FLOAT,
                                pad_files[pad].signal,
                                pad_files[pad].channels,
                                RATE,
                                pad_files[pad].frames));
    assert_string_equal(CALL("/load", "is", pad, path),
                        text("/done ,siiii \"/load\" %d %u %u 48000",
                             pad,
                             pad_files[pad].frames,
                             pad_files[pad].channels));
  }
  set_pads();
  set_globals();

  static char  settings[SLOTS][2048];
  static char  slots[SLOTS][1024];
  static float before[2][CAPTURE_FRAMES];
  static float after[2][CAPTURE_FRAMES];
  char         transport[256];
  for (int slot = 0; slot < SLOTS; ++slot) {
    snprintf(settings[slot], sizeof(settings[slot]), "%s", slot_get(slot));
    snprintf(slots[slot], sizeof(slots[slot]), "%s", CALL("/query", "i", slot));
  }
  transport_text(transport, sizeof(transport), "internal 97.5 3 1");
  assert_string_equal(transport, "internal 97.5 3 1");
  record_bundle(before[0], before[1]);

  /* /save answers once FILE holds it all. */
  assert_string_equal(CALL("/save", ""), "/done ,s \"/save\"");
  json_t* const root = load_state(session);
  assert_non_null(root);
  assert_int_equal(json_integer_value(json_object_get(root, "version")), 1);
  assert_true(state_number(root, "tempo") == 97.5);
  assert_int_equal(json_integer_value(json_object_get(root, "signature")), 3);
  assert_string_equal(json_string_value(json_object_get(root, "quantize")),
                      "1/8");
  assert_true(state_number(root, "speed") == 1.25);
  assert_true(json_is_true(json_object_get(root, "bpmlock")));
  assert_true(state_number(root, "master_gain") == -4.5);
  assert_int_equal(json_array_size(json_object_get(root, "slots")), PADS + 1);
  assert_string_equal(
    json_string_value(json_object_get(state_slot(root, 3), "path")),
    env_path(pad_files[3].name));
  assert_null(json_object_get(state_slot(root, SETTINGS_ONLY_SLOT), "path"));
  assert_true(state_setting(root, 0, "end") == 0.35);
  json_decref(root);

  kill_daemon();
  assert_true(start_daemon(session, true, NULL));
  assert_true(wait_loaded(PADS, 10000));

  for (int slot = 0; slot < SLOTS; ++slot) {
    assert_string_equal(slot_get(slot), settings[slot]);
    assert_string_equal(CALL("/query", "i", slot), slots[slot]);
  }
  char restored[256];
  transport_text(restored, sizeof(restored), transport);
  assert_string_equal(restored, transport);

  record_bundle(after[0], after[1]);
  const unsigned differences = count_differences("out_1", before[0], after[0]) +
                               count_differences("out_2", before[1], after[1]);
  float peak = 0.0f;
  for (uint32_t i = 0U; i < CAPTURE_FRAMES; ++i) {
    peak = fmaxf(peak, fmaxf(fabsf(before[0][i]), fabsf(before[1][i])));
  }
  printf("# restore: %d slots and the transport identical; %u x 2 frames "
         "recorded (peak %.3f), %u differ\n",
         SLOTS,
         CAPTURE_FRAMES,
         (double)peak,
         differences);
  assert_true(peak > 0.1f);
  assert_int_equal(differences, 0);
  /* Restoring what FILE held wrote nothing (it holds it already). */
  assert_int_equal(log_count("written again"), 0);
  stop_daemon();
}

/* A small xorshift: the kill moments, reproducible from the printed seed. */
static uint64_t random_state;

static uint32_t
random_below(uint32_t bound)
{
  random_state ^= random_state << 13U;
  random_state ^= random_state >> 7U;
  random_state ^= random_state << 17U;
  return (uint32_t)(random_state % bound);
}

static int
compare_u32(const void* a, const void* b)
{
  const uint32_t x = *(const uint32_t*)a;
  const uint32_t y = *(const uint32_t*)b;
  return x < y ? -1 : x > y;
}

/*
  Change i (1-based) sets pad i % 8's start to i seconds (empty pads: any
  start goes), acknowledged by the /pong after it. FILE then tells, per pad,
  the last change it holds. A daemon starts from FILE (`base`) and gets the
  changes first..sent; a snapshot holds the first n of them, so each pad
  holds the last of its own among them, or its base. The changes a kill
  leaves out of FILE are gone (the next daemon starts from FILE): none may
  have been acknowledged more than BEHIND_MS before the kill.
*/
static void
test_kills_during_changes(void** state)
{
  (void)state;
  const uint32_t kills     = stress ? 200U : 10U;
  const uint32_t changes   = stress ? 10000U : 500U;
  const char*    seed_text = getenv("FLTEST_SEED");
  const uint64_t seed =
    seed_text ? strtoull(seed_text, NULL, 10) : (uint64_t)fl_now_ms();
  random_state = seed | 1U;
  printf("# kills: %u kills during %u changes, seed %llu (FLTEST_SEED)\n",
         kills,
         changes,
         (unsigned long long)seed);

  /* The kill after change cuts[k] (distinct, sorted, the last one last). */
  uint32_t* const cuts  = (uint32_t*)calloc(kills, sizeof(uint32_t));
  int64_t* const  acked = (int64_t*)calloc(changes + 1U, sizeof(int64_t));
  assert_non_null(cuts);
  assert_non_null(acked);
  for (uint32_t k = 0U; k + 1U < kills; ++k) {
    bool fresh = false;
    while (!fresh) {
      cuts[k] = 1U + random_below(changes - 1U);
      fresh   = true;
      for (uint32_t j = 0U; j < k; ++j) {
        fresh = fresh && cuts[j] != cuts[k];
      }
    }
  }
  cuts[kills - 1U] = changes;
  qsort(cuts, kills, sizeof(uint32_t), compare_u32);

  const char* const session = env_path("kills.json");
  assert_true(start_daemon(session, false, NULL));

  uint32_t sent       = 0U;
  uint32_t first      = 1U;     /* this daemon's first change */
  uint32_t base[PADS] = { 0U }; /* what it started with */
  long     worst_age  = 0;
  uint32_t in_flight  = 0U; /* changes FILE did not hold yet at a kill */
  uint32_t absent     = 0U; /* kills before FILE existed */
  uint32_t writes_cut = 0U; /* kills with changes not in FILE */
  int64_t  kill_time  = 0;
  for (uint32_t k = 0U; k < kills; ++k) {
    /* The changes up to this cut, at a jittered pace (0..40 ms apart),
       then a while before the kill: as often under 50 ms (a write may be
       under way) as up to 1.5 s. */
    while (sent < cuts[k]) {
      const uint32_t i = ++sent;
      assert_true(fl_osc_send(
        rig.osc, "/slot/set", "isd", (int)(i % PADS), "start", (double)i));
      const char* const reply = CALL("/ping", "");
      acked[i]                = fl_now_ms();
      if (strncmp(reply, "/pong ", 6)) {
        fail_msg("change %u: expected /pong, got %s", i, reply);
      }
      fl_sleep_ms((int)random_below(41U));
    }
    fl_sleep_ms(
      (int)(random_below(2U) ? random_below(50U) : random_below(1500U)));
    kill_time = fl_now_ms();
    kill_daemon();

    /* FILE parses and holds one snapshot: this daemon's first n changes. */
    json_t* const root           = load_state(session);
    uint32_t      held           = 0U;
    uint32_t      pad_held[PADS] = { 0U };
    for (int pad = 0; root && pad < PADS; ++pad) {
      pad_held[pad] = (uint32_t)state_setting(root, pad, "start");
      held          = pad_held[pad] > held ? pad_held[pad] : held;
    }
    absent += root == NULL;
    json_decref(root);
    const uint32_t n = held >= first ? held - first + 1U : 0U;
    assert_true(first + n <= sent + 1U);
    for (int pad = 0; pad < PADS; ++pad) {
      uint32_t expected = base[pad];
      for (uint32_t i = first + n - 1U; i >= first && i + PADS >= first + n;
           --i) {
        if (i % PADS == (uint32_t)pad) {
          expected = i;
          break;
        }
      }
      if (pad_held[pad] != expected) {
        fail_msg("kill %u: FILE holds change %u for pad %d, not %u: not one "
                 "snapshot of changes %u..%u",
                 k,
                 pad_held[pad],
                 pad,
                 expected,
                 first,
                 first + n - 1U);
      }
    }
    /* Every change acknowledged more than BEHIND_MS before the kill. */
    if (first + n <= sent) {
      const long age = (long)(kill_time - acked[first + n]);
      worst_age      = age > worst_age ? age : worst_age;
      in_flight += sent - (first + n - 1U);
      ++writes_cut;
      if (age > BEHIND_MS) {
        fail_msg("kill %u: FILE holds changes up to %u of %u; change %u was "
                 "acknowledged %ld ms before the kill",
                 k,
                 first + n - 1U,
                 sent,
                 first + n,
                 age);
      }
    }
    memcpy(base, pad_held, sizeof(base));
    first = sent + 1U;

    /* Start again from FILE: it holds what FILE held. */
    assert_true(start_daemon(session, false, NULL));
    for (int pad = 0; pad < PADS; ++pad) {
      slot_get(pad);
      assert_true(probe.got && probe.argc > 4 && probe.types[4] == 'f');
      assert_true(probe.argv[4].number == (double)pad_held[pad]);
    }
  }
  printf("# kills: %u kills, FILE always parsed and held one snapshot; %u "
         "kills left acknowledged changes out of it (%u changes, the oldest "
         "%ld ms old; the contract: %d ms); FILE missing at %u kills\n",
         kills,
         writes_cut,
         in_flight,
         worst_age,
         BEHIND_MS,
         absent);
  assert_int_equal(find_files("kills.json.broken", NULL, 0), 0);
  free(cuts);
  free(acked);
  stop_daemon();
}

static void
test_missing_file(void** state)
{
  (void)state;
  const char* const session = env_path("missing.json");
  const char* const slow    = env_path("slow.wav");
  const char* const gone    = env_path("gone.wav");
  const char* const kept    = env_path("kept.wav");
  const char* const extra[] = { "--src-quality", "best", NULL };
  /* Slot 0 takes a while to load (30 s at 44.1 kHz, the best converter),
     so a client can subscribe before the loader reaches slot 1. */
  assert_true(fl_write_sample(
    slow, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 2, 44100, 30U * 44100U));
  assert_true(
    fl_write_sample(gone, FL_FILE_WAV_FLOAT, FL_SIGNAL_RAMP, 1, RATE, RATE));
  assert_true(
    fl_write_sample(kept, FL_FILE_WAV_FLOAT, FL_SIGNAL_TONE, 2, RATE, RATE));
  assert_true(start_daemon(session, false, extra));
  assert_string_equal(CALL("/load", "is", 0, slow),
                      "/done ,siiii \"/load\" 0 1440001 2 44100");
  assert_string_equal(CALL("/load", "is", 1, gone),
                      "/done ,siiii \"/load\" 1 48000 1 48000");
  assert_string_equal(CALL("/load", "is", 2, kept),
                      "/done ,siiii \"/load\" 2 48000 2 48000");
  SEND_OK("/slot/set", "isssdsd", 1, "mode", "loop", "gain", -7.0, "end", 0.5);
  SEND_OK("/tempo", "d", 88.0);
  char settings[2048];
  snprintf(settings, sizeof(settings), "%s", slot_get(1));
  assert_string_equal(CALL("/save", ""), "/done ,s \"/save\"");
  stop_daemon();
  assert_int_equal(unlink(gone), 0);

  /* Subscribe while slot 0 is still loading. */
  char name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int         port   = fl_env_port(&rig.env);
  const char* const args[] = {
    "--state", session, "--src-quality", "best", NULL
  };
  fl_osc_free(rig.osc);
  assert_true(
    fl_daemon_spawn(&rig.daemon, &rig.env, rig.jackd.name, name, port, args));
  rig.osc = fl_osc_new(port);
  assert_true(probe_open(port));
  FlOsc* const  listener = fl_osc_new(port);
  FlReply*      done     = NULL;
  const int64_t deadline = fl_now_ms() + 10000;
  assert_non_null(listener);
  while (!done && fl_now_ms() < deadline) {
    fl_osc_send(listener, "/notify", "i", 1);
    done = fl_osc_wait(listener, "/done", 5);
  }
  assert_non_null(done);
  fl_reply_free(done);
  const bool early =
    !strcmp(CALL("/query", "i", 0), "/slot ,isiiii 0 \"\" 0 0 0 0");
  FlReply* const failure = fl_osc_wait(listener, "/fail", early ? 15000 : 500);
  char           formatted[1024] = "(none)";
  if (failure) {
    fl_reply_format(failure, formatted, sizeof(formatted));
  }
  fl_reply_free(failure);
  fl_osc_free(listener);
  if (early) {
    assert_string_equal(formatted,
                        text("/fail ,sis \"/load\" 1 \"cannot open '%s': No "
                             "such file or directory\"",
                             gone));
  } else {
    printf("# missing: slot 0 was loaded before the subscription; /fail to "
           "subscribers not checked\n");
  }
  assert_true(fl_daemon_wait_ready(&rig.daemon, 2, 10000));
  assert_true(wait_loaded(2, 20000));
  assert_logged(text("/load 1 failed: cannot open '%s': No such file or "
                     "directory",
                     gone));

  /* Empty, with its settings; the other two are back. */
  assert_string_equal(CALL("/query", "i", 1), "/slot ,isiiii 1 \"\" 0 0 0 0");
  assert_string_equal(CALL("/query", "i", 2),
                      text("/slot ,isiiii 2 \"%s\" 48000 2 48000 1", kept));
  assert_string_equal(slot_get(1), settings);

  /* The next change keeps the slot's file and settings in FILE. */
  SEND_OK("/tempo", "d", 89.0);
  assert_in_range(wait_state_tempo(session, 89.0, FILE_WAIT_MS), 0, BEHIND_MS);
  json_t* root = load_state(session);
  assert_non_null(root);
  assert_string_equal(
    json_string_value(json_object_get(state_slot(root, 1), "path")), gone);
  assert_true(state_setting(root, 1, "gain") == -7.0);
  assert_string_equal(
    json_string_value(json_object_get(
      json_object_get(state_slot(root, 1), "settings"), "mode")),
    "loop");
  json_decref(root);

  /* Back in place, it loads again. */
  assert_true(
    fl_write_sample(gone, FL_FILE_WAV_FLOAT, FL_SIGNAL_RAMP, 1, RATE, RATE));
  stop_daemon();
  assert_true(start_daemon(session, false, extra));
  assert_true(wait_loaded(3, 20000));
  assert_string_equal(CALL("/query", "i", 1),
                      text("/slot ,isiiii 1 \"%s\" 48000 1 48000 1", gone));
  assert_string_equal(slot_get(1), settings);

  /* /unload of the slot whose file was gone forgets it in FILE. */
  assert_int_equal(unlink(gone), 0);
  stop_daemon();
  assert_true(start_daemon(session, false, NULL));
  assert_true(wait_loaded(2, 20000));
  assert_string_equal(CALL("/unload", "i", 1),
                      "/fail ,sis \"/unload\" 1 \"slot 1 is empty\"");
  SEND_OK("/tempo", "d", 90.0);
  assert_in_range(wait_state_tempo(session, 90.0, FILE_WAIT_MS), 0, BEHIND_MS);
  root = load_state(session);
  assert_null(json_object_get(state_slot(root, 1), "path"));
  json_decref(root);
  stop_daemon();
}

/* Start on a FILE holding `content`: it must be set aside, unchanged, with
   `reason` in the log; flitzid starts empty and writes a new FILE at the
   next change. */
static void
check_set_aside(const char* file_name, const char* content, const char* reason)
{
  const char* const session = env_path(file_name);
  FILE* const       file    = fopen(session, "w");
  assert_non_null(file);
  fputs(content, file);
  fclose(file);

  assert_true(start_daemon(session, false, NULL));
  char aside[PATH_MAX] = "";
  char prefix[128];
  snprintf(prefix, sizeof(prefix), "%s.broken-", file_name);
  assert_int_equal(find_files(prefix, aside, sizeof(aside)), 1);
  assert_true(same_file(aside, content));
  assert_int_equal(access(session, F_OK), -1);
  assert_logged(text("the state file '%s' %s", session, reason));
  assert_logged(text("; it is kept as '%s' and a new one is written at the "
                     "next change",
                     aside));
  assert_string_equal(CALL("/query", "i", 0), "/slot ,isiiii 0 \"\" 0 0 0 0");
  FlReply* reply = NULL;
  assert_true(fl_osc_send(rig.osc, "/transport", ""));
  assert_non_null(reply = fl_osc_wait(rig.osc, "/transport.reply", 3000));
  assert_true(reply->argv[1].value.f == 120.0f);
  fl_reply_free(reply);

  SEND_OK("/tempo", "d", 77.0);
  const long took = wait_state_tempo(session, 77.0, FILE_WAIT_MS);
  assert_in_range(took, 0, BEHIND_MS);
  assert_true(same_file(aside, content));
  printf("# set aside: %s -> %s; a new FILE %ld ms after the next change\n",
         file_name,
         strrchr(aside, '/') + 1,
         took);
  stop_daemon();
}

static void
test_unparsable_files(void** state)
{
  (void)state;
  check_set_aside("broken.json",
                  "{\"version\": 1, \"tempo\": 97.5, \"slots\": [{\"slot\": ",
                  "cannot be parsed (line 1, column ");
  check_set_aside("future.json",
                  "{\"version\": 99, \"tempo\": 97.5}\n",
                  "is version 99; this flitzid reads version 1");
  check_set_aside("array.json", "[1, 2, 3]\n", "is not a JSON object");
  check_set_aside("empty.json", "", "cannot be parsed (line ");

  /* Usable, with entries that are not: they stay in FILE, and what can be
     used is. */
  const char* const session = env_path("partial.json");
  FILE* const       file    = fopen(session, "w");
  assert_non_null(file);
  fputs("{\"version\": 1, \"tempo\": 300.5, \"signature\": 5,\n"
        " \"slots\": [\n"
        "  {\"slot\": 3, \"settings\": {\"gain\": 99, \"pan\": 0.5, "
        "\"sparkle\": 1, \"mode\": \"loop\"}},\n"
        "  {\"slot\": 40, \"path\": \"/far/away.wav\"},\n"
        "  \"not a slot\"\n"
        " ]}\n",
        file);
  fclose(file);
  assert_true(start_daemon(session, false, NULL));
  assert_logged("tempo must be a number from 20 to 300; using 120");
  assert_logged("slot 3: gain must be a number from -60 to 12 dB (got 99); "
                "using the default");
  assert_logged("slot 3: unknown key 'sparkle' ignored");
  assert_logged("slot 40 is beyond --slots 32; kept in the file, not "
                "restored");
  assert_logged("slot entry 2 is not an object; kept as it is");
  slot_get(3);
  assert_true(strstr(probe.formatted, "\"mode\" \"loop\" ") != NULL);
  assert_true(strstr(probe.formatted, "\"gain\" 0 \"pan\" 0.5 ") != NULL);
  FlReply* reply = NULL;
  assert_true(fl_osc_send(rig.osc, "/transport", ""));
  assert_non_null(reply = fl_osc_wait(rig.osc, "/transport.reply", 3000));
  assert_true(reply->argv[1].value.f == 120.0f);
  assert_int_equal(reply->argv[2].value.i, 5);
  fl_reply_free(reply);
  SEND_OK("/tempo", "d", 78.0);
  assert_in_range(wait_state_tempo(session, 78.0, FILE_WAIT_MS), 0, BEHIND_MS);
  json_t* const root = load_state(session);
  assert_string_equal(
    json_string_value(json_object_get(state_slot(root, 40), "path")),
    "/far/away.wav");
  json_t* const slots = json_object_get(root, "slots");
  assert_string_equal(
    json_string_value(json_array_get(slots, json_array_size(slots) - 1U)),
    "not a slot");
  json_decref(root);
  assert_int_equal(find_files("partial.json.broken", NULL, 0), 0);
  stop_daemon();
}

/* The tmpfs tests: the mounts are undone by the teardown whatever
   happened. */
static int
teardown_mounts(void** state)
{
  (void)state;
  if (rig.daemon.pid) {
    fl_daemon_stop(&rig.daemon);
  }
  unmount_all();
  return 0;
}

/*
  A fault (`make` turns it on, `clear` off) under FILE in `dir`: changes
  after it are not written, the write is logged once per kind (`error`),
  /save fails with the reason, FILE keeps the last good state, the state in
  memory is whole, and the first change after the fault is gone writes it.
*/
static void
check_write_fault(const char* dir,
                  const char* error,
                  bool (*make)(const char* dir),
                  bool (*clear)(const char* dir))
{
  char session[PATH_MAX];
  snprintf(session, sizeof(session), "%s/state.json", dir);
  assert_true(start_daemon(session, false, NULL));
  SEND_OK("/tempo", "d", 101.0);
  SEND_OK("/slot/set", "isd", 0, "gain", -1.0);
  assert_string_equal(CALL("/save", ""), "/done ,s \"/save\"");
  char* const good = fl_read_text(session);
  assert_non_null(good);

  assert_true(make(dir));
  SEND_OK("/tempo", "d", 102.0);
  SEND_OK("/slot/set", "isd", 0, "gain", -2.0);
  char reason[PATH_MAX + 128];
  snprintf(reason, sizeof(reason), "cannot write '%s.tmp': %s", session, error);
  assert_string_equal(CALL("/save", ""),
                      text("/fail ,ss \"/save\" \"%s\"", reason));
  for (int change = 0; change < 5; ++change) {
    SEND_OK("/tempo", "d", 103.0 + change);
    fl_sleep_ms(150); /* more than one write interval: each one tries */
  }
  SEND_OK("/slot/set", "isd", 0, "gain", -3.0);
  assert_string_equal(CALL("/save", ""),
                      text("/fail ,ss \"/save\" \"%s\"", reason));
  assert_int_equal(log_count(error), 1);
  assert_true(same_file(session, good));
  free(good);
  assert_int_equal(access(text("%s.tmp", session), F_OK), -1);

  /* Nothing lost in memory. */
  FlReply* reply = NULL;
  assert_true(fl_osc_send(rig.osc, "/transport", ""));
  assert_non_null(reply = fl_osc_wait(rig.osc, "/transport.reply", 3000));
  assert_true(reply->argv[1].value.f == 107.0f);
  fl_reply_free(reply);
  slot_get(0);
  assert_true(strstr(probe.formatted, "\"gain\" -3 ") != NULL);

  /* Gone: the next change writes everything. */
  assert_true(clear(dir));
  SEND_OK("/tempo", "d", 110.0);
  const long took = wait_state_tempo(session, 110.0, FILE_WAIT_MS);
  assert_in_range(took, 0, BEHIND_MS);
  json_t* const root = load_state(session);
  assert_true(state_setting(root, 0, "gain") == -3.0);
  json_decref(root);
  assert_logged(text("state file '%s' written again", session));
  assert_string_equal(CALL("/save", ""), "/done ,s \"/save\"");
  printf("# %s: /save failed with \"%s\", logged once; written %ld ms after "
         "the next change once cleared\n",
         error,
         reason,
         took);
  stop_daemon();
}

#define TMPFS_OPTIONS "size=64k,mode=0755"

static bool
make_read_only(const char* dir)
{
  return remount_tmpfs(dir, TMPFS_OPTIONS, true);
}

static bool
make_writable(const char* dir)
{
  return remount_tmpfs(dir, TMPFS_OPTIONS, false);
}

static void
test_read_only_dir(void** state)
{
  (void)state;
  const char* const dir = env_path("read-only");
  if (!mount_tmpfs(dir, TMPFS_OPTIONS)) {
    printf("# cannot mount a tmpfs (%s): skipped\n", strerror(errno));
    skip();
  }
  check_write_fault(
    dir, "Read-only file system", make_read_only, make_writable);
  unmount_tmpfs(dir);
}

static bool
fill_up(const char* dir)
{
  const int fd =
    open(text("%s/filler", dir), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    return false;
  }
  static const char block[4096] = { 0 };
  while (write(fd, block, sizeof(block)) > 0) {
  }
  const bool full = errno == ENOSPC;
  close(fd);
  return full;
}

static bool
empty_out(const char* dir)
{
  return !unlink(text("%s/filler", dir));
}

static void
test_full_disk(void** state)
{
  (void)state;
  const char* const dir = env_path("full");
  if (!mount_tmpfs(dir, TMPFS_OPTIONS)) {
    printf("# cannot mount a tmpfs (%s): skipped\n", strerror(errno));
    skip();
  }
  check_write_fault(dir, "No space left on device", fill_up, empty_out);
  unmount_tmpfs(dir);
}

static void
test_save_without_state(void** state)
{
  (void)state;
  assert_true(start_daemon(NULL, false, NULL));
  assert_string_equal(
    CALL("/save", ""),
    "/fail ,ss \"/save\" \"no state file (start flitzid with --state FILE)\"");
  stop_daemon();
}

static void
test_sigterm_writes_last_change(void** state)
{
  (void)state;
  const char* const session = env_path("sigterm.json");
  assert_true(start_daemon(session, false, NULL));
  SEND_OK("/tempo", "d", 123.0);
  assert_in_range(wait_state_tempo(session, 123.0, FILE_WAIT_MS), 0, BEHIND_MS);
  /* A FILE made private stays private across rewrites. */
  assert_int_equal(chmod(session, 0600), 0);
  SEND_OK("/tempo", "d", 123.5);
  assert_in_range(wait_state_tempo(session, 123.5, FILE_WAIT_MS), 0, BEHIND_MS);
  struct stat st;
  assert_int_equal(stat(session, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* Within the write interval of the last write: written on the way out. */
  SEND_OK("/tempo", "d", 124.0);
  stop_daemon();
  json_t* const root = load_state(session);
  assert_true(state_number(root, "tempo") == 124.0);
  json_decref(root);
}

static int
group_setup(void** state)
{
  (void)state;
  memset(&rig, 0, sizeof(rig));
  if (!fl_env_init(&rig.env, "session")) {
    return -1;
  }
  char server[64];
  fl_env_name(&rig.env, server, sizeof(server));
  return fl_jackd_start(&rig.jackd, &rig.env, server, FL_TEST_PERIOD) ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  probe_close();
  unmount_all();
  return 0;
}

int
main(int argc, char** argv)
{
  stress = argc > 1 && !strcmp(argv[1], "--stress");
  atexit(unmount_all);
  struct sigaction action = { 0 };
  action.sa_handler       = on_terminate;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);

  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_restore_identical),
    cmocka_unit_test(test_kills_during_changes),
    cmocka_unit_test(test_missing_file),
    cmocka_unit_test(test_unparsable_files),
    cmocka_unit_test_teardown(test_read_only_dir, teardown_mounts),
    cmocka_unit_test_teardown(test_full_disk, teardown_mounts),
    cmocka_unit_test(test_save_without_state),
    cmocka_unit_test(test_sigterm_writes_last_change),
  };
  const struct CMUnitTest long_runs[] = {
    cmocka_unit_test(test_kills_during_changes),
  };

  const int failures =
    stress
      ? cmocka_run_group_tests_name(
          "daemon_session --stress", long_runs, group_setup, group_teardown)
      : cmocka_run_group_tests_name(
          "daemon_session", tests, group_setup, group_teardown);
  unmount_all();
  return fl_rig_finish(&rig, failures);
}
