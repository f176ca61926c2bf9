/*
  flitzictl: control flitzid from the shell.

  Each command sends its OSC requests from this program's own socket, so the
  daemon's replies come back here, and waits for the answer. A request
  without a success reply (/play, /slot/set, ...) is followed by one that has
  one (/ping, /slot/get): flitzid answers in order, so a /fail comes first or
  not at all. `watch` and `meters` subscribe, print what arrives until
  SIGINT or SIGTERM, and unsubscribe. `top` is a live view on a terminal
  (raw mode, plain ANSI) that keeps asking and survives a restart of
  flitzid. The OSC API is described in osc-schema/flitzi-osc.json and
  docs/osc-api.md.

  Exit status: 0 success, 1 the daemon refused (its reason goes to stderr),
  2 no reply (or the request could not be sent), 64 usage error.

  This is one file rather than a module: a thin client that shares no code
  with the daemon, only the OSC API, which the schema describes.
*/

#include <lo/lo.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define FL_CTL_VERSION "0.1.0"
#define FL_CTL_DEFAULT_HOST "127.0.0.1"
#define FL_CTL_DEFAULT_PORT "9950"
#define FL_CTL_DEFAULT_TIMEOUT_MS 1000
#define FL_CTL_MAX_TIMEOUT_MS 3600000
#define FL_CTL_INBOX_SIZE 64U
#define FL_CTL_MAX_ARGS 16
#define FL_CTL_MAX_SETTINGS 32 /* key/value pairs in one /slot/set */
#define FL_CTL_DEFAULT_METER_HZ 20
#define FL_CTL_MAX_METER_HZ 60
#define FL_CTL_METER_WIDTH 24 /* characters of a meter bar */
#define FL_CTL_METER_FLOOR_DB (-60.0)
#define FL_CTL_MAX_WAVEFORM_POINTS 2048 /* flitzid's limit for /waveform */

/* Exit status (64 is EX_USAGE of sysexits.h). */
enum {
  FL_CTL_OK       = 0,
  FL_CTL_REFUSED  = 1,
  FL_CTL_NO_REPLY = 2,
  FL_CTL_USAGE    = 64,
};

/* A message received from the daemon; `message` holds a reference. */
typedef struct {
  char       path[64];
  lo_message message;
} FlCtlReply;

typedef struct FlCtlImpl FlCtl;

struct FlCtlImpl {
  const char* host;
  const char* port;
  int         timeout_ms;
  bool        json;
  lo_server   server; /* Our socket: requests leave and replies arrive here */
  lo_address  daemon;
  FlCtlReply  inbox[FL_CTL_INBOX_SIZE]; /* Received, not yet taken */
  unsigned    inbox_count;
  /* If set, every message goes here as it arrives instead of to the inbox
     (`top`: a meter bundle may hold more messages than the inbox). */
  void (*take_now)(FlCtl* ctl, const FlCtlReply* message);
};

/* Field names of the replies this program knows, for --json. */
typedef struct {
  const char* path;
  const char* types;
  const char* address; /* First argument, or NULL for any */
  const char* names[FL_CTL_MAX_ARGS];
} FlCtlShape;

static const FlCtlShape fl_ctl_shapes[] = {
  { "/pong", "si", NULL, { "version", "api" } },
  { "/done",
    "siiii",
    "/load",
    { "address", "id", "frames", "channels", "source_rate" } },
  { "/done", "si", "/notify", { "address", "flag" } },
  { "/done", "si", "/meters", { "address", "hz" } },
  { "/done",
    "sifff",
    "/analyze",
    { "address", "id", "bpm", "first_beat", "confidence" } },
  { "/done", "si", NULL, { "address", "id" } },
  { "/done", "s", NULL, { "address" } },
  { "/fail", "sis", NULL, { "address", "id", "reason" } },
  { "/fail", "ss", NULL, { "address", "reason" } },
  { "/slot",
    "isiiii",
    NULL,
    { "id", "path", "frames", "channels", "source_rate", "loaded" } },
  { "/status.reply",
    "iiiiiffiii",
    NULL,
    { "voices_active",
      "voices_max",
      "slots_loaded",
      "slots_max",
      "sample_rate",
      "dsp_load_avg_pct",
      "dsp_load_peak_pct",
      "xruns",
      "dropped_messages",
      "late_bundles" } },
  { "/event/xrun", "i", NULL, { "total" } },
  { "/event/started", "i", NULL, { "id" } },
  { "/event/stopped", "i", NULL, { "id" } },
  { "/meter/master", "ff", NULL, { "peak_l", "peak_r" } },
  { "/meter/slot", "iff", NULL, { "id", "peak", "position" } },
  { "/transport.reply",
    "sfidi",
    NULL,
    { "source", "bpm", "beats_per_bar", "beats", "rolling" } },
};

/*
  How `set` sends a key's value: 's' a string, 'f' a float32, 'i' an int32.
  A key this table does not know is sent as what its value looks like: an
  integer as an int32, another number as a float32, else a string.
*/
typedef struct {
  const char* key;
  char        type;
} FlCtlKeyType;

static const FlCtlKeyType fl_ctl_key_types[] = {
  { "mode", 's' },  { "quantize", 's' }, { "start", 'f' },  { "end", 'f' },
  { "xfade", 'f' }, { "gain", 'f' },     { "pan", 'f' },    { "rate", 'f' },
  { "bpm", 'f' },   { "voices", 'i' },   { "group", 'i' },  { "keylock", 'i' },
  { "hold", 'i' },  { "eq_low", 'f' },   { "eq_mid", 'f' }, { "eq_high", 'f' },
  { "bus", 'i' },
};

/*
  Set by the SIGINT/SIGTERM handler; read by `watch` and `meters` after
  ppoll() returns.
  Relaxed: the flag carries no other data, and both run in the main thread.
*/
static atomic_bool fl_ctl_interrupted;

static void
print_usage_line(FILE* stream)
{
  fputs("Usage: flitzictl [OPTION]... COMMAND [ARG]...\n", stream);
}

static int
usage_error(const char* format, const char* detail)
{
  fputs("flitzictl: ", stderr);
  fprintf(stderr, format, detail);
  fputc('\n', stderr);
  print_usage_line(stderr);
  fputs("Try 'flitzictl --help' for more information.\n", stderr);
  return FL_CTL_USAGE;
}

static void
print_help(void)
{
  print_usage_line(stdout);
  fputs(
    "Send a command to flitzid over OSC and print its reply.\n"
    "\n"
    "Commands:\n"
    "  ping               check that flitzid answers; print its version\n"
    "  load ID PATH       load an audio file into slot ID; waits until it is\n"
    "                     loaded (a relative PATH is made absolute here)\n"
    "  play ID VEL        play slot ID at velocity VEL: a gain 0..1 if VEL\n"
    "                     has a '.' or an 'e' (0.8, 1e-1), else MIDI 0..127\n"
    "  play-exclusive ID VEL\n"
    "                     play slot ID and fade out every other voice\n"
    "  stop [ID]          fade out the voices of slot ID, or every voice\n"
    "  release ID         end the voices of slot ID if it has hold 1\n"
    "  pause ID           pause the voices of slot ID\n"
    "  resume ID          resume the paused voices of slot ID\n"
    "  seek ID SECONDS    move the voices of slot ID to SECONDS into the "
    "sample\n"
    "  set ID KEY VALUE [KEY VALUE]...\n"
    "                     change settings of slot ID (mode, start, end, "
    "xfade,\n"
    "                     gain, pan, voices, group, ...); prints them all\n"
    "  get ID             print the settings of slot ID, one KEY=VALUE a line\n"
    "  reset ID           set every setting of slot ID back to its default\n"
    "  master GAIN_DB     set the master gain, -60..12 dB\n"
    "  tempo [BPM]        print the tempo, or set it (20..300) and print it\n"
    "                     once flitzid's transport shows it\n"
    "  signature [BEATS]  print the beats per bar, or set them (1..16)\n"
    "  quantize GRID|off  start pads on the next line of GRID: 1/64 1/32\n"
    "                     1/16 1/8 1/4 (a beat) 1/2 1 2 4 (bars); off: at "
    "once\n"
    "  downbeat           make the next period beat 0 of bar 0\n"
    "  transport          print source, bpm, beats_per_bar, beats and\n"
    "                     rolling, one KEY=VALUE a line\n"
    "  speed FACTOR       play every voice FACTOR times as fast, 0.5..2\n"
    "  bpmlock 0|1        lock pads with a bpm to the tempo (1) or not (0)\n"
    "  save               write flitzid's state file now (flitzid --state)\n"
    "  unload ID          empty slot ID\n"
    "  query [ID]         describe slot ID, or every slot, as a table\n"
    "  status             print voices, slots, DSP load and error counters\n"
    "  watch              print load and unload results, slots that start\n"
    "                     and stop, and xruns until interrupted (Ctrl-C)\n"
    "  meters [HZ]        show a meter per sounding slot, HZ times a second\n"
    "                     (default 20, at most 60), until interrupted\n"
    "  analyze ID         find the tempo and first beat of slot ID's sample\n"
    "  waveform ID POINTS [START [END]]\n"
    "                     print the min and max of each of POINTS parts of\n"
    "                     slot ID's first channel (START, END in seconds;\n"
    "                     END 0 or none: to the end), one 'MIN MAX' a line\n"
    "  top                a live view: tempo, bar and beat, DSP load, xruns,\n"
    "                     voices, and a row per loaded pad with its state,\n"
    "                     level and playhead; q quits\n"
    "  quit               shut flitzid down\n"
    "\n"
    "Options:\n"
    "  -H, --host HOST    flitzid's host (default " FL_CTL_DEFAULT_HOST ")\n"
    "  -p, --port PORT    flitzid's OSC port (default " FL_CTL_DEFAULT_PORT
    ")\n"
    "  -t, --timeout MS   how long to wait for a reply (default 1000)\n"
    "  -j, --json         print each reply as one JSON line\n"
    "  -h, --help         print this help and exit\n"
    "  -V, --version      print the version and exit\n"
    "\n"
    "Exit status: 0 success, 1 flitzid refused the command (its reason is\n"
    "printed on stderr), 2 no reply, 64 usage error.\n",
    stdout);
}

/* Time and deadlines */

static int64_t
now_ms(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static double
now_seconds(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* Receiving */

static void
on_lo_error(int number, const char* message, const char* where)
{
  /* Reported where it matters (a send that fails, a reply that never comes);
     liblo's own lines would only repeat that in other words. */
  (void)number;
  (void)message;
  (void)where;
}

static int
on_message(const char* path,
           const char* types,
           lo_arg**    argv,
           int         argc,
           lo_message  message,
           void*       data)
{
  FlCtl* const ctl = (FlCtl*)data;

  (void)types;
  (void)argv;
  (void)argc;
  if (ctl->take_now) {
    FlCtlReply reply = { "", message }; /* Only for the call: no reference */
    snprintf(reply.path, sizeof(reply.path), "%s", path);
    ctl->take_now(ctl, &reply);
  } else if (ctl->inbox_count < FL_CTL_INBOX_SIZE) {
    FlCtlReply* const reply = &ctl->inbox[ctl->inbox_count++];
    snprintf(reply->path, sizeof(reply->path), "%s", path);
    lo_message_incref(message); /* Kept after the handler returns */
    reply->message = message;
  }
  return 0;
}

static void
reply_free(FlCtlReply* reply)
{
  if (reply->message) {
    lo_message_free(reply->message);
    reply->message = NULL;
  }
}

static const char*
reply_types(const FlCtlReply* reply)
{
  return lo_message_get_types(reply->message);
}

/*
  The arguments of a reply. liblo's lo_arg is a union with 64-bit members,
  but an argument is only 4-byte aligned in the message, so values are
  copied out rather than read through the union.
*/
static const void*
reply_arg(const FlCtlReply* reply, int index)
{
  return lo_message_get_argv(reply->message)[index];
}

static int32_t
arg_int(const FlCtlReply* reply, int index)
{
  int32_t value = 0;
  memcpy(&value, reply_arg(reply, index), sizeof(value));
  return value;
}

static float
arg_float(const FlCtlReply* reply, int index)
{
  float value = 0.0f;
  memcpy(&value, reply_arg(reply, index), sizeof(value));
  return value;
}

static double
arg_double(const FlCtlReply* reply, int index)
{
  double value = 0.0;
  memcpy(&value, reply_arg(reply, index), sizeof(value));
  return value;
}

static const char*
arg_string(const FlCtlReply* reply, int index)
{
  return (const char*)reply_arg(reply, index);
}

static bool
reply_is(const FlCtlReply* reply, const char* path, const char* types)
{
  return !strcmp(reply->path, path) && !strcmp(reply_types(reply), types);
}

/* Whether the reply's first argument is the string `address`. */
static bool
reply_names(const FlCtlReply* reply, const char* address)
{
  return reply_types(reply)[0] == 's' && !strcmp(arg_string(reply, 0), address);
}

/*
  Take the next message that arrived, waiting until `deadline_ms` (monotonic)
  for one. Returns false when the deadline passed first.
*/
static bool
next_reply(FlCtl* ctl, int64_t deadline_ms, FlCtlReply* reply)
{
  while (!ctl->inbox_count) {
    const int64_t left_ms = deadline_ms - now_ms();
    if (left_ms <= 0) {
      return false;
    }
    lo_server_recv_noblock(ctl->server,
                           (int)(left_ms < INT_MAX ? left_ms : INT_MAX));
  }

  *reply = ctl->inbox[0];
  --ctl->inbox_count;
  memmove(
    &ctl->inbox[0], &ctl->inbox[1], ctl->inbox_count * sizeof(ctl->inbox[0]));
  return true;
}

static int
no_reply(const FlCtl* ctl)
{
  fprintf(stderr,
          "flitzictl: no reply from flitzid at %s:%s within %d ms"
          " \xe2\x80\x94 is it running?\n",
          ctl->host,
          ctl->port,
          ctl->timeout_ms);
  return FL_CTL_NO_REPLY;
}

/* Sending */

/* Send `message` (consumed) to `address`; prints why on failure. */
static bool
send_request(FlCtl* ctl, const char* address, lo_message message)
{
  const int sent =
    lo_send_message_from(ctl->daemon, ctl->server, address, message);
  lo_message_free(message);
  if (sent < 0) {
    fprintf(stderr,
            "flitzictl: cannot send %s to %s:%s: %s\n",
            address,
            ctl->host,
            ctl->port,
            lo_address_errstr(ctl->daemon));
    return false;
  }
  return true;
}

static lo_message
message_of_ints(int count, int32_t first, int32_t second)
{
  lo_message message = lo_message_new();
  if (count > 0) {
    lo_message_add_int32(message, first);
  }
  if (count > 1) {
    lo_message_add_int32(message, second);
  }
  return message;
}

/*
  Whether `reply` answers a request to `address` about `id` (negative: any):
  a `success_path` reply naming it (for /done) or a /fail naming it.
*/
static bool
answers(const FlCtlReply* reply,
        const char*       address,
        const char*       success_path,
        int32_t           id)
{
  const char* const types = reply_types(reply);

  if (!strcmp(reply->path, "/fail")) {
    return reply_names(reply, address) &&
           (id < 0 || types[1] != 'i' || arg_int(reply, 1) == id);
  }
  if (!success_path || strcmp(reply->path, success_path)) {
    return false;
  }
  if (!strcmp(success_path, "/done")) {
    return reply_names(reply, address) &&
           (id < 0 || types[1] != 'i' || arg_int(reply, 1) == id);
  }
  return true;
}

/*
  Send a request and wait for its answer: a `success_path` reply or a /fail.
  Returns FL_CTL_OK or FL_CTL_REFUSED with `reply` set, or FL_CTL_NO_REPLY.
*/
static int
request(FlCtl*      ctl,
        const char* address,
        lo_message  message,
        const char* success_path,
        int32_t     id,
        FlCtlReply* reply)
{
  if (!send_request(ctl, address, message)) {
    return FL_CTL_NO_REPLY;
  }

  const int64_t deadline_ms = now_ms() + ctl->timeout_ms;
  while (next_reply(ctl, deadline_ms, reply)) {
    if (answers(reply, address, success_path, id)) {
      return strcmp(reply->path, "/fail") ? FL_CTL_OK : FL_CTL_REFUSED;
    }
    reply_free(reply);
  }
  return no_reply(ctl);
}

/*
  Wait, until `deadline_ms` at most, for the `path` reply of a request sent
  earlier (the /pong of a /ping, say), so that it is not left behind in the
  socket for whoever gets the port next.
*/
static void
drain_reply(FlCtl*      ctl,
            const char* path,
            const char* types,
            int64_t     deadline_ms)
{
  FlCtlReply reply = { "", NULL };
  while (next_reply(ctl, deadline_ms, &reply)) {
    const bool last = reply_is(&reply, path, types);
    reply_free(&reply);
    if (last) {
      return;
    }
  }
}

static void
drain_pong(FlCtl* ctl, int64_t deadline_ms)
{
  drain_reply(ctl, "/pong", "si", deadline_ms);
}

/* Printing */

static void
print_json_string(FILE* out, const char* text)
{
  fputc('"', out);
  for (const unsigned char* c = (const unsigned char*)text; *c; ++c) {
    if (*c == '"' || *c == '\\') {
      fprintf(out, "\\%c", *c);
    } else if (*c == '\n') {
      fputs("\\n", out);
    } else if (*c == '\t') {
      fputs("\\t", out);
    } else if (*c < 0x20 || *c == 0x7F) {
      fprintf(out, "\\u%04x", *c);
    } else {
      fputc(*c, out);
    }
  }
  fputc('"', out);
}

/* Print argument `index` of `reply` as a JSON value. */
static void
print_json_arg(FILE* out, const FlCtlReply* reply, int index)
{
  const char  type = reply_types(reply)[index];
  const void* arg  = reply_arg(reply, index);
  int64_t     wide = 0;
  double      real = 0.0;

  switch (type) {
    case 'i':
      fprintf(out, "%" PRId32, arg_int(reply, index));
      break;
    case 'h':
      memcpy(&wide, arg, sizeof(wide));
      fprintf(out, "%" PRId64, wide);
      break;
    case 'f':
    case 'd':
      if (type == 'f') {
        real = (double)arg_float(reply, index);
      } else {
        memcpy(&real, arg, sizeof(real));
      }
      if (isfinite(real)) {
        fprintf(out, "%.9g", real);
      } else {
        fputs("null", out); /* JSON has no NaN or infinity */
      }
      break;
    case 's':
    case 'S':
      print_json_string(out, arg_string(reply, index));
      break;
    case 'T':
      fputs("true", out);
      break;
    case 'F':
      fputs("false", out);
      break;
    default:
      fputs("null", out);
      break;
  }
}

static const FlCtlShape*
shape_of(const FlCtlReply* reply)
{
  for (size_t i = 0; i < sizeof(fl_ctl_shapes) / sizeof(fl_ctl_shapes[0]);
       ++i) {
    const FlCtlShape* const shape = &fl_ctl_shapes[i];
    if (reply_is(reply, shape->path, shape->types) &&
        (!shape->address || reply_names(reply, shape->address))) {
      return shape;
    }
  }
  return NULL;
}

/*
  Print a reply as one JSON object: {"reply": PATH, FIELD: VALUE...} with
  the field names of the schema, or {"reply", "types", "args"} for a reply
  this program does not know.
*/
static bool
is_settings(const FlCtlReply* reply)
{
  const char* const types = reply_types(reply);
  if (strcmp(reply->path, "/slot/settings") || types[0] != 'i') {
    return false;
  }
  size_t i = 1U;
  while (types[i] == 's' && types[i + 1U]) {
    i += 2U;
  }
  return types[i] == '\0';
}

static void
print_json_reply(const FlCtlReply* reply)
{
  const FlCtlShape* const shape = shape_of(reply);
  const char* const       types = reply_types(reply);
  const int               count = lo_message_get_argc(reply->message);

  fputs("{\"reply\": ", stdout);
  print_json_string(stdout, reply->path);
  if (is_settings(reply)) {
    /* /slot/settings ,i(s*)*: {"id": ID, KEY: VALUE...} */
    fprintf(stdout, ", \"id\": %" PRId32, arg_int(reply, 0));
    for (int i = 1; i + 1 < count; i += 2) {
      fputs(", ", stdout);
      print_json_string(stdout, arg_string(reply, i));
      fputs(": ", stdout);
      print_json_arg(stdout, reply, i + 1);
    }
  } else if (shape) {
    for (int i = 0; i < count; ++i) {
      fputs(", ", stdout);
      print_json_string(stdout, shape->names[i]);
      fputs(": ", stdout);
      print_json_arg(stdout, reply, i);
    }
  } else {
    fputs(", \"types\": ", stdout);
    print_json_string(stdout, types);
    fputs(", \"args\": [", stdout);
    for (int i = 0; i < count; ++i) {
      fputs(i ? ", " : "", stdout);
      print_json_arg(stdout, reply, i);
    }
    fputc(']', stdout);
  }
  fputs("}\n", stdout);
  fflush(stdout);
}

/* Print any message as "PATH ,TYPES ARG...", strings in double quotes. */
static void
print_raw_reply(FILE* out, const FlCtlReply* reply)
{
  const int count = lo_message_get_argc(reply->message);

  fprintf(out, "%s ,%s", reply->path, reply_types(reply));
  for (int i = 0; i < count; ++i) {
    fputc(' ', out);
    print_json_arg(out, reply, i);
  }
  fputc('\n', out);
  fflush(out);
}

/* Report a /fail: JSON on stdout if asked for, the reason on stderr. */
static int
refused(const FlCtl* ctl, const FlCtlReply* reply)
{
  const char* const types = reply_types(reply);

  if (ctl->json) {
    print_json_reply(reply);
  }
  if (!strcmp(types, "sis")) {
    fprintf(stderr,
            "flitzictl: %s %" PRId32 ": %s\n",
            arg_string(reply, 0),
            arg_int(reply, 1),
            arg_string(reply, 2));
  } else if (!strcmp(types, "ss")) {
    fprintf(stderr,
            "flitzictl: %s: %s\n",
            arg_string(reply, 0),
            arg_string(reply, 1));
  } else {
    fputs("flitzictl: refused: ", stderr);
    print_raw_reply(stderr, reply);
  }
  return FL_CTL_REFUSED;
}

/* Argument parsing */

static bool
parse_int32(const char* text, int32_t* value)
{
  char* end = NULL;
  errno     = 0;

  const long number = strtol(text, &end, 10);
  if (end == text || *end || errno || number < INT32_MIN ||
      number > INT32_MAX) {
    return false;
  }
  *value = (int32_t)number;
  return true;
}

static bool
parse_slot(const char* text, int32_t* id)
{
  return parse_int32(text, id);
}

/* A velocity with a '.' or an 'e' is a float gain, else an int (MIDI). */
static bool
parse_velocity(const char* text, bool* is_gain, float* gain, int32_t* midi)
{
  *is_gain = strpbrk(text, ".eE") != NULL;
  if (!*is_gain) {
    return parse_int32(text, midi);
  }

  char* end = NULL;
  errno     = 0;
  *gain     = strtof(text, &end);
  return end != text && !*end && errno != ERANGE;
}

/* A number in any form strtod() reads ("0.5", "-3", "1e-1", "nan"). */
static bool
parse_number(const char* text, double* value)
{
  char* end = NULL;
  errno     = 0;
  *value    = strtod(text, &end);
  return end != text && !*end && errno != ERANGE;
}

/*
  Make `path` absolute: resolved by realpath() if the file exists, else
  joined to the working directory so that the daemon reports the error with
  the path the user meant. Returns a string to free, or NULL.
*/
static char*
absolute_path(const char* path)
{
  if (path[0] == '/') {
    return strdup(path);
  }

  char* resolved = realpath(path, NULL);
  if (resolved) {
    return resolved;
  }

  char* const cwd = getcwd(NULL, 0);
  if (!cwd) {
    return NULL;
  }
  const size_t length = strlen(cwd) + 1 + strlen(path) + 1;
  char* const  joined = (char*)malloc(length);
  if (joined) {
    snprintf(joined, length, "%s/%s", cwd, path);
  }
  free(cwd);
  return joined;
}

/* Commands */

static int
cmd_ping(FlCtl* ctl)
{
  FlCtlReply   reply   = { "", NULL };
  const double start_s = now_seconds();
  const int    status =
    request(ctl, "/ping", lo_message_new(), "/pong", -1, &reply);
  const double round_trip_ms = (now_seconds() - start_s) * 1000.0;

  if (status == FL_CTL_OK && !reply_is(&reply, "/pong", "si")) {
    fputs("flitzictl: unexpected reply: ", stderr);
    print_raw_reply(stderr, &reply);
    reply_free(&reply);
    return FL_CTL_REFUSED;
  }
  if (status == FL_CTL_OK) {
    if (ctl->json) {
      print_json_reply(&reply);
    } else {
      printf("flitzid %s at %s:%s, OSC API %" PRId32 ", %.2f ms round trip\n",
             arg_string(&reply, 0),
             ctl->host,
             ctl->port,
             arg_int(&reply, 1),
             round_trip_ms);
    }
  } else if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  }
  reply_free(&reply);
  return status;
}

/*
  Wait for the answer to a request that may take long, on flitzid's loader
  thread (decoding and resampling a long file, analysing it): a
  `success_path` reply or a /fail about `id`. Instead of one timeout this
  pings the daemon while it waits, and gives up only when a /ping goes
  unanswered for the timeout. Send the request first. Returns as request().
*/
static int
await_slow_reply(FlCtl*      ctl,
                 const char* address,
                 const char* success_path,
                 int32_t     id,
                 FlCtlReply* reply)
{
  if (!send_request(ctl, "/ping", lo_message_new())) {
    return FL_CTL_NO_REPLY;
  }

  bool    ping_pending = true;
  int64_t deadline_ms  = now_ms() + ctl->timeout_ms;
  for (;;) {
    if (!next_reply(ctl, deadline_ms, reply)) {
      if (ping_pending) {
        return no_reply(ctl);
      }
      if (!send_request(ctl, "/ping", lo_message_new())) {
        return FL_CTL_NO_REPLY;
      }
      ping_pending = true;
      deadline_ms  = now_ms() + ctl->timeout_ms;
      continue;
    }

    if (answers(reply, address, success_path, id)) {
      if (ping_pending) {
        drain_pong(ctl, now_ms() + ctl->timeout_ms);
      }
      return strcmp(reply->path, "/fail") ? FL_CTL_OK : FL_CTL_REFUSED;
    }
    if (reply_is(reply, "/pong", "si")) {
      ping_pending = false;
      deadline_ms  = now_ms() + ctl->timeout_ms;
    }
    reply_free(reply);
  }
}

/* A load may take long; see await_slow_reply(). */
static int
cmd_load(FlCtl* ctl, int32_t id, const char* path)
{
  char* const absolute = absolute_path(path);
  if (!absolute) {
    fprintf(
      stderr, "flitzictl: cannot resolve '%s': %s\n", path, strerror(errno));
    return FL_CTL_REFUSED;
  }

  lo_message load = lo_message_new();
  lo_message_add_int32(load, id);
  lo_message_add_string(load, absolute);
  FlCtlReply reply  = { "", NULL };
  int        status = send_request(ctl, "/load", load)
                        ? await_slow_reply(ctl, "/load", "/done", id, &reply)
                        : FL_CTL_NO_REPLY;
  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (status == FL_CTL_OK && ctl->json) {
    print_json_reply(&reply);
  } else if (status == FL_CTL_OK && reply_is(&reply, "/done", "siiii")) {
    printf("slot %" PRId32 ": %s: %" PRId32 " frames, %" PRId32
           " channel%s, source rate %" PRId32 " Hz\n",
           arg_int(&reply, 1),
           absolute,
           arg_int(&reply, 2),
           arg_int(&reply, 3),
           arg_int(&reply, 3) == 1 ? "" : "s",
           arg_int(&reply, 4));
  } else if (status == FL_CTL_OK) {
    print_raw_reply(stdout, &reply);
  }
  if (status != FL_CTL_NO_REPLY) {
    reply_free(&reply);
  }
  free(absolute);
  return status;
}

/* Analysis: on the loader thread too, so waited for as a load is. */

static int
cmd_analyze(FlCtl* ctl, int32_t id)
{
  FlCtlReply reply  = { "", NULL };
  int        status = send_request(ctl, "/analyze", message_of_ints(1, id, 0))
                        ? await_slow_reply(ctl, "/analyze", "/done", id, &reply)
                        : FL_CTL_NO_REPLY;
  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (status == FL_CTL_OK && !reply_is(&reply, "/done", "sifff")) {
    fputs("flitzictl: unexpected reply: ", stderr);
    print_raw_reply(stderr, &reply);
    status = FL_CTL_REFUSED;
  } else if (status == FL_CTL_OK && ctl->json) {
    print_json_reply(&reply);
  } else if (status == FL_CTL_OK) {
    printf("slot %" PRId32 ": %.3f BPM, first beat at %.4f s, confidence "
           "%.2f\n",
           arg_int(&reply, 1),
           (double)arg_float(&reply, 2),
           (double)arg_float(&reply, 3),
           (double)arg_float(&reply, 4));
  }
  if (status != FL_CTL_NO_REPLY) {
    reply_free(&reply);
  }
  return status;
}

/*
  The (min, max) pairs of a /waveform.reply ,iib: its blob holds 2 x points
  big-endian float32. Returns the pair count, or -1 if the blob does not
  hold that many.
*/
static int32_t
waveform_pairs(const FlCtlReply* reply, float* pairs, int32_t max_pairs)
{
  /* A received blob is its int32 size (in host order by now) followed by
     its bytes (lo_arg's blob member), not a lo_blob. */
  const unsigned char* const arg    = (const unsigned char*)reply_arg(reply, 2);
  const int32_t              points = arg_int(reply, 1);
  int32_t                    size   = 0;
  memcpy(&size, arg, sizeof(size));
  if (points < 0 || points > max_pairs ||
      size != points * 2 * (int32_t)sizeof(uint32_t)) {
    return -1;
  }
  const unsigned char* const bytes = arg + sizeof(size);
  for (int32_t i = 0; i < 2 * points; ++i) {
    uint32_t bits = 0U;
    memcpy(&bits, bytes + (size_t)i * sizeof(bits), sizeof(bits));
    bits = ntohl(bits);
    memcpy(&pairs[i], &bits, sizeof(bits));
  }
  return points;
}

/* Print "MIN MAX" per point, or one JSON object with the pairs. */
static int
cmd_waveform(FlCtl* ctl, int32_t id, int32_t points, double start, double end)
{
  /* Positions as float64, frame-exact deep into a long sample (as seek). */
  lo_message waveform = message_of_ints(2, id, points);
  lo_message_add_double(waveform, start);
  lo_message_add_double(waveform, end);
  FlCtlReply reply = { "", NULL };
  int        status =
    send_request(ctl, "/waveform", waveform)
             ? await_slow_reply(ctl, "/waveform", "/waveform.reply", id, &reply)
             : FL_CTL_NO_REPLY;
  if (status == FL_CTL_NO_REPLY) {
    return status;
  }
  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
    reply_free(&reply);
    return status;
  }

  static float  pairs[2 * FL_CTL_MAX_WAVEFORM_POINTS];
  const int32_t count =
    reply_is(&reply, "/waveform.reply", "iib")
      ? waveform_pairs(&reply, pairs, FL_CTL_MAX_WAVEFORM_POINTS)
      : -1;
  if (count < 0) {
    fputs("flitzictl: unexpected reply: ", stderr);
    print_raw_reply(stderr, &reply);
    reply_free(&reply);
    return FL_CTL_REFUSED;
  }
  /* %.9g: every float32 printed so that it reads back as itself. */
  if (ctl->json) {
    printf("{\"reply\": \"/waveform.reply\", \"id\": %" PRId32
           ", \"points\": %" PRId32 ", \"blob\": [",
           arg_int(&reply, 0),
           count);
    for (int32_t i = 0; i < 2 * count; ++i) {
      fputs(i % 2 ? ", " : i ? "], [" : "[", stdout);
      if (isfinite(pairs[i])) {
        printf("%.9g", (double)pairs[i]);
      } else {
        fputs("null", stdout); /* JSON has no NaN or infinity */
      }
    }
    puts(count ? "]]}" : "]}");
  } else {
    for (int32_t i = 0; i < count; ++i) {
      printf("%.9g %.9g\n", (double)pairs[2 * i], (double)pairs[2 * i + 1]);
    }
  }
  fflush(stdout);
  reply_free(&reply);
  return FL_CTL_OK;
}

/*
  Send a request that has no success reply (/play, /stop), then a /ping. The
  daemon checks these requests as it receives them and answers in order, so
  a /fail for the request arrives before the /pong or not at all.
*/
static int
send_unanswered(FlCtl* ctl, const char* address, lo_message message, int32_t id)
{
  if (!send_request(ctl, address, message) ||
      !send_request(ctl, "/ping", lo_message_new())) {
    return FL_CTL_NO_REPLY;
  }

  const int64_t deadline_ms = now_ms() + ctl->timeout_ms;
  FlCtlReply    reply       = { "", NULL };
  while (next_reply(ctl, deadline_ms, &reply)) {
    if (answers(&reply, address, NULL, id)) {
      const int status = refused(ctl, &reply);
      reply_free(&reply);
      drain_pong(ctl, deadline_ms);
      return status;
    }
    const bool pong = reply_is(&reply, "/pong", "si");
    reply_free(&reply);
    if (pong) {
      return FL_CTL_OK;
    }
  }
  return no_reply(ctl);
}

/* /play or /play/exclusive. */
static int
cmd_play(FlCtl*      ctl,
         const char* address,
         int32_t     id,
         bool        is_gain,
         float       gain,
         int32_t     midi)
{
  lo_message play = lo_message_new();
  lo_message_add_int32(play, id);
  if (is_gain) {
    lo_message_add_float(play, gain);
  } else {
    lo_message_add_int32(play, midi);
  }
  return send_unanswered(ctl, address, play, id);
}

static int
cmd_seek(FlCtl* ctl, int32_t id, double seconds)
{
  /* A float64: a position deep into a long sample stays frame-exact. */
  lo_message seek = lo_message_new();
  lo_message_add_int32(seek, id);
  lo_message_add_double(seek, seconds);
  return send_unanswered(ctl, "/seek", seek, id);
}

static int
cmd_master(FlCtl* ctl, float gain_db)
{
  lo_message master = lo_message_new();
  lo_message_add_float(master, gain_db);
  return send_unanswered(ctl, "/master/gain", master, -1);
}

static int
cmd_stop(FlCtl* ctl, bool all, int32_t id)
{
  return send_unanswered(
    ctl, "/stop", message_of_ints(all ? 0 : 1, id, 0), all ? -1 : id);
}

/* A request whose success reply is `/done ,s... ADDRESS`. */
static int
cmd_done(FlCtl*      ctl,
         const char* address,
         lo_message  message,
         int32_t     id,
         const char* done_text)
{
  FlCtlReply reply  = { "", NULL };
  const int  status = request(ctl, address, message, "/done", id, &reply);

  if (status == FL_CTL_OK) {
    if (ctl->json) {
      print_json_reply(&reply);
    } else {
      puts(done_text);
    }
  } else if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  }
  reply_free(&reply);
  return status;
}

/* Slot settings */

/* Print a /slot/settings reply: KEY=VALUE lines, or one JSON object. */
static void
print_settings(const FlCtl* ctl, const FlCtlReply* reply)
{
  if (ctl->json) {
    print_json_reply(reply);
    return;
  }
  const int count = lo_message_get_argc(reply->message);
  for (int i = 1; i + 1 < count; i += 2) {
    const char type = reply_types(reply)[i + 1];
    printf("%s=", arg_string(reply, i));
    if (type == 's') {
      fputs(arg_string(reply, i + 1), stdout);
    } else if (type == 'i') {
      printf("%" PRId32, arg_int(reply, i + 1));
    } else if (type == 'f') {
      printf("%g", (double)arg_float(reply, i + 1));
    } else {
      print_json_arg(stdout, reply, i + 1);
    }
    fputc('\n', stdout);
  }
  fflush(stdout);
}

static bool
settings_of(const FlCtlReply* reply, int32_t id)
{
  return is_settings(reply) && arg_int(reply, 0) == id;
}

/*
  Wait for the answer to a /slot/get about `id` sent after `address`: a
  /fail of either request or the settings. Returns FL_CTL_OK with `reply`
  set to the settings, FL_CTL_REFUSED with the first /fail, or
  FL_CTL_NO_REPLY. After a /fail of `address` the /slot/get's own answer is
  waited for too, so that it is not left behind for the port's next user.
*/
static int
await_settings(FlCtl* ctl, const char* address, int32_t id, FlCtlReply* reply)
{
  const int64_t deadline_ms = now_ms() + ctl->timeout_ms;
  while (next_reply(ctl, deadline_ms, reply)) {
    if (settings_of(reply, id) || answers(reply, "/slot/get", NULL, id)) {
      return strcmp(reply->path, "/fail") ? FL_CTL_OK : FL_CTL_REFUSED;
    }
    if (address && answers(reply, address, NULL, id)) {
      FlCtlReply after = { "", NULL };
      while (next_reply(ctl, deadline_ms, &after)) {
        const bool last =
          settings_of(&after, id) || answers(&after, "/slot/get", NULL, id);
        reply_free(&after);
        if (last) {
          break;
        }
      }
      return FL_CTL_REFUSED;
    }
    reply_free(reply);
  }
  return no_reply(ctl);
}

static int
cmd_get(FlCtl* ctl, int32_t id)
{
  FlCtlReply reply  = { "", NULL };
  int        status = send_request(ctl, "/slot/get", message_of_ints(1, id, 0))
                        ? await_settings(ctl, NULL, id, &reply)
                        : FL_CTL_NO_REPLY;
  if (status == FL_CTL_OK) {
    print_settings(ctl, &reply);
  } else if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  }
  if (status != FL_CTL_NO_REPLY) {
    reply_free(&reply);
  }
  return status;
}

/* The wire type of `key`'s value (see fl_ctl_key_types), or 0 if unknown. */
static char
key_type(const char* key)
{
  for (size_t i = 0; i < sizeof(fl_ctl_key_types) / sizeof(fl_ctl_key_types[0]);
       ++i) {
    if (!strcmp(fl_ctl_key_types[i].key, key)) {
      return fl_ctl_key_types[i].type;
    }
  }
  return 0;
}

/*
  Add `text` as the value of `key` to `message`. Returns false if a number
  key's value is no number. An int key's value that is a number but not an
  integer is sent as a float, so that flitzid's reason says what it takes.
*/
static bool
add_setting_value(lo_message message, const char* key, const char* text)
{
  const char type   = key_type(key);
  int32_t    whole  = 0;
  double     number = 0.0;
  const bool is_int = parse_int32(text, &whole);
  const bool is_num = parse_number(text, &number);

  if (type == 's' || (!type && !is_num)) {
    lo_message_add_string(message, text);
  } else if ((type == 'i' || !type) && is_int) {
    lo_message_add_int32(message, whole);
  } else if (is_num) {
    lo_message_add_float(message, (float)number);
  } else {
    return false;
  }
  return true;
}

/*
  /slot/set has no success reply, so a /slot/get follows it: flitzid
  answers in order, and either the /fail of the set or the settings after
  it come back first.
*/
static int
cmd_set(FlCtl* ctl, int32_t id, char** pairs, int count)
{
  lo_message set = lo_message_new();
  lo_message_add_int32(set, id);
  for (int i = 0; i + 1 < count; i += 2) {
    lo_message_add_string(set, pairs[i]);
    if (!add_setting_value(set, pairs[i], pairs[i + 1])) {
      lo_message_free(set);
      char detail[160];
      snprintf(detail,
               sizeof(detail),
               "VALUE of '%.32s' must be a number: '%.64s'",
               pairs[i],
               pairs[i + 1]);
      return usage_error("%s", detail);
    }
  }

  FlCtlReply reply  = { "", NULL };
  int        status = send_request(ctl, "/slot/set", set) &&
                   send_request(ctl, "/slot/get", message_of_ints(1, id, 0))
                        ? await_settings(ctl, "/slot/set", id, &reply)
                        : FL_CTL_NO_REPLY;
  if (status == FL_CTL_OK) {
    print_settings(ctl, &reply);
  } else if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  }
  if (status != FL_CTL_NO_REPLY) {
    reply_free(&reply);
  }
  return status;
}

typedef struct {
  int32_t voices_active;
  int32_t voices_max;
  int32_t slots_loaded;
  int32_t slots_max;
  int32_t sample_rate;
  float   dsp_load_avg_pct;
  float   dsp_load_peak_pct;
  int32_t xruns;
  int32_t dropped_messages;
  int32_t late_bundles;
} FlCtlStatus;

static int
get_status(FlCtl* ctl, FlCtlStatus* out, bool print_json)
{
  FlCtlReply reply = { "", NULL };
  const int  status =
    request(ctl, "/status", lo_message_new(), "/status.reply", -1, &reply);

  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (status == FL_CTL_OK) {
    if (!reply_is(&reply, "/status.reply", "iiiiiffiii")) {
      fputs("flitzictl: unexpected reply: ", stderr);
      print_raw_reply(stderr, &reply);
      reply_free(&reply);
      return FL_CTL_REFUSED;
    }
    out->voices_active     = arg_int(&reply, 0);
    out->voices_max        = arg_int(&reply, 1);
    out->slots_loaded      = arg_int(&reply, 2);
    out->slots_max         = arg_int(&reply, 3);
    out->sample_rate       = arg_int(&reply, 4);
    out->dsp_load_avg_pct  = arg_float(&reply, 5);
    out->dsp_load_peak_pct = arg_float(&reply, 6);
    out->xruns             = arg_int(&reply, 7);
    out->dropped_messages  = arg_int(&reply, 8);
    out->late_bundles      = arg_int(&reply, 9);
    if (print_json) {
      print_json_reply(&reply);
    }
  }
  reply_free(&reply);
  return status;
}

static int
cmd_status(FlCtl* ctl)
{
  FlCtlStatus s      = { 0, 0, 0, 0, 0, 0.0f, 0.0f, 0, 0, 0 };
  const int   status = get_status(ctl, &s, ctl->json);
  if (status != FL_CTL_OK || ctl->json) {
    return status;
  }

  printf("flitzid at %s:%s\n", ctl->host, ctl->port);
  printf("  voices        %" PRId32 " of %" PRId32 " active\n",
         s.voices_active,
         s.voices_max);
  printf("  slots         %" PRId32 " of %" PRId32 " loaded\n",
         s.slots_loaded,
         s.slots_max);
  if (s.sample_rate > 0) {
    printf("  sample rate   %" PRId32 " Hz\n", s.sample_rate);
  } else {
    printf("  sample rate   - (no JACK server)\n");
  }
  printf("  DSP load      %.1f %% average, %.1f %% peak\n",
         (double)s.dsp_load_avg_pct,
         (double)s.dsp_load_peak_pct);
  printf("  xruns         %" PRId32 "\n", s.xruns);
  printf("  dropped       %" PRId32
         " messages (queue full, or lost by the kernel)\n",
         s.dropped_messages);
  printf("  late bundles  %" PRId32 "\n", s.late_bundles);
  return FL_CTL_OK;
}

/* One row of the `query` table. */
typedef struct {
  int32_t id;
  int32_t loaded;
  int32_t frames;
  int32_t channels;
  int32_t source_rate;
  char*   path;
} FlCtlSlot;

static int
query_slot(FlCtl* ctl, int32_t id, FlCtlSlot* slot)
{
  FlCtlReply reply = { "", NULL };
  const int  status =
    request(ctl, "/query", message_of_ints(1, id, 0), "/slot", -1, &reply);

  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (status == FL_CTL_OK) {
    if (!reply_is(&reply, "/slot", "isiiii")) {
      fputs("flitzictl: unexpected reply: ", stderr);
      print_raw_reply(stderr, &reply);
      reply_free(&reply);
      return FL_CTL_REFUSED;
    }
    if (ctl->json) {
      print_json_reply(&reply);
    }
    slot->id          = arg_int(&reply, 0);
    slot->path        = strdup(arg_string(&reply, 1));
    slot->frames      = arg_int(&reply, 2);
    slot->channels    = arg_int(&reply, 3);
    slot->source_rate = arg_int(&reply, 4);
    slot->loaded      = arg_int(&reply, 5);
  }
  reply_free(&reply);
  return status;
}

/* Table cells: text of each column, right-aligned except the path. */
#define FL_CTL_COLUMNS 7

static void
slot_cells(const FlCtlSlot* slot,
           int32_t          sample_rate,
           char             cells[FL_CTL_COLUMNS][32])
{
  snprintf(cells[0], 32, "%" PRId32, slot->id);
  snprintf(cells[1], 32, "%s", slot->loaded ? "yes" : "no");
  if (!slot->loaded) {
    for (int c = 2; c < FL_CTL_COLUMNS - 1; ++c) {
      snprintf(cells[c], 32, "-");
    }
    return;
  }
  snprintf(cells[2], 32, "%" PRId32, slot->frames);
  snprintf(cells[3], 32, "%" PRId32, slot->channels);
  snprintf(cells[4], 32, "%" PRId32, slot->source_rate);
  if (sample_rate > 0) {
    snprintf(cells[5], 32, "%.3f", (double)slot->frames / sample_rate);
  } else {
    snprintf(cells[5], 32, "-");
  }
}

static void
print_slot_table(const FlCtlSlot* slots, int32_t count, int32_t sample_rate)
{
  static const char* const headers[FL_CTL_COLUMNS] = {
    "id", "loaded", "frames", "channels", "rate", "seconds", "path"
  };

  char cells[FL_CTL_COLUMNS][32];
  int  widths[FL_CTL_COLUMNS];
  for (int c = 0; c < FL_CTL_COLUMNS; ++c) {
    widths[c] = (int)strlen(headers[c]);
  }
  for (int32_t i = 0; i < count; ++i) {
    slot_cells(&slots[i], sample_rate, cells);
    for (int c = 0; c < FL_CTL_COLUMNS - 1; ++c) {
      const int width = (int)strlen(cells[c]);
      widths[c]       = width > widths[c] ? width : widths[c];
    }
  }

  /* "loaded" is text and left-aligned; the numbers are right-aligned. */
  printf("%*s  %-*s  %*s  %*s  %*s  %*s  %s\n",
         widths[0],
         headers[0],
         widths[1],
         headers[1],
         widths[2],
         headers[2],
         widths[3],
         headers[3],
         widths[4],
         headers[4],
         widths[5],
         headers[5],
         headers[6]);
  for (int32_t i = 0; i < count; ++i) {
    slot_cells(&slots[i], sample_rate, cells);
    printf("%*s  %-*s  %*s  %*s  %*s  %*s  %s\n",
           widths[0],
           cells[0],
           widths[1],
           cells[1],
           widths[2],
           cells[2],
           widths[3],
           cells[3],
           widths[4],
           cells[4],
           widths[5],
           cells[5],
           slots[i].loaded ? slots[i].path : "-");
  }
}

static int
cmd_query(FlCtl* ctl, bool all, int32_t id)
{
  /* The sample rate gives the length in seconds; the slot count, the ids. */
  FlCtlStatus s      = { 0, 0, 0, 0, 0, 0.0f, 0.0f, 0, 0, 0 };
  int         status = get_status(ctl, &s, false);
  if (status != FL_CTL_OK) {
    return status;
  }

  const int32_t    count = all ? (s.slots_max > 0 ? s.slots_max : 0) : 1;
  FlCtlSlot* const slots =
    (FlCtlSlot*)calloc(count ? (size_t)count : 1U, sizeof(FlCtlSlot));
  if (!slots) {
    fputs("flitzictl: out of memory\n", stderr);
    return FL_CTL_REFUSED;
  }

  int32_t queried = 0;
  for (; queried < count && status == FL_CTL_OK; ++queried) {
    status = query_slot(ctl, all ? queried : id, &slots[queried]);
  }
  if (status == FL_CTL_OK && !ctl->json) {
    print_slot_table(slots, count, s.sample_rate);
  }

  for (int32_t i = 0; i < queried; ++i) {
    free(slots[i].path);
  }
  free(slots);
  return status;
}

/* Transport and tempo */

/* How long `tempo BPM` and `signature BEATS` wait for /transport to show
   the change, which it does from the next JACK period on (a few ms), and
   how often they ask meanwhile. */
#define FL_CTL_SETTLE_MS 200
#define FL_CTL_SETTLE_POLL_MS 5

/* The arguments of /transport.reply ,sfidi that `tempo` and `signature`
   print, by their index. */
typedef enum {
  FL_CTL_BPM           = 1,
  FL_CTL_BEATS_PER_BAR = 2,
} FlCtlClockField;

/* Report a reply of an unexpected shape; frees it. */
static int
unexpected_reply(FlCtlReply* reply)
{
  fputs("flitzictl: unexpected reply: ", stderr);
  print_raw_reply(stderr, reply);
  reply_free(reply);
  return FL_CTL_REFUSED;
}

/*
  The answer to a /transport sent earlier, as `reply`: FL_CTL_OK and a
  /transport.reply ,sfidi for the caller to free, or FL_CTL_REFUSED or
  FL_CTL_NO_REPLY, reported and freed.
*/
static int
take_transport(FlCtl* ctl, FlCtlReply* reply, int status)
{
  if (status == FL_CTL_REFUSED) {
    refused(ctl, reply);
    reply_free(reply);
  } else if (status == FL_CTL_OK &&
             !reply_is(reply, "/transport.reply", "sfidi")) {
    status = unexpected_reply(reply);
  }
  return status;
}

static int
get_transport(FlCtl* ctl, FlCtlReply* reply)
{
  return take_transport(
    ctl,
    reply,
    request(
      ctl, "/transport", lo_message_new(), "/transport.reply", -1, reply));
}

/*
  Send `address` (a transport setting, which has no success reply) and a
  /transport after it. flitzid answers in order, so the first answer is the
  /fail of `address` or the transport reply. Returns as get_transport();
  after a /fail the transport reply is waited for as well, so that it is
  not left behind for the port's next user.
*/
static int
set_then_transport(FlCtl*      ctl,
                   const char* address,
                   lo_message  message,
                   FlCtlReply* reply)
{
  if (!send_request(ctl, address, message) ||
      !send_request(ctl, "/transport", lo_message_new())) {
    return FL_CTL_NO_REPLY;
  }

  const int64_t deadline_ms = now_ms() + ctl->timeout_ms;
  while (next_reply(ctl, deadline_ms, reply)) {
    if (answers(reply, address, NULL, -1)) {
      const int status = refused(ctl, reply);
      reply_free(reply);
      drain_reply(ctl, "/transport.reply", "sfidi", deadline_ms);
      return status;
    }
    if (answers(reply, "/transport", "/transport.reply", -1)) {
      return take_transport(
        ctl, reply, strcmp(reply->path, "/fail") ? FL_CTL_OK : FL_CTL_REFUSED);
    }
    reply_free(reply);
  }
  return no_reply(ctl);
}

static bool
clock_shows(const FlCtlReply* transport, FlCtlClockField field, double value)
{
  return field == FL_CTL_BPM
           ? fabs((double)arg_float(transport, FL_CTL_BPM) - value) < 1e-3
           : arg_int(transport, FL_CTL_BEATS_PER_BAR) == (int32_t)value;
}

/* "120 BPM", "4 beats per bar", or the transport reply as JSON. */
static void
print_clock(const FlCtl*      ctl,
            const FlCtlReply* transport,
            FlCtlClockField   field)
{
  if (ctl->json) {
    print_json_reply(transport);
  } else if (field == FL_CTL_BPM) {
    printf("%g BPM\n", (double)arg_float(transport, FL_CTL_BPM));
  } else {
    const int32_t beats = arg_int(transport, FL_CTL_BEATS_PER_BAR);
    printf("%" PRId32 " beat%s per bar\n", beats, beats == 1 ? "" : "s");
  }
  fflush(stdout);
}

/* `tempo`, `signature`: the setting as /transport reports it. */
static int
cmd_clock(FlCtl* ctl, FlCtlClockField field)
{
  FlCtlReply transport = { "", NULL };
  const int  status    = get_transport(ctl, &transport);
  if (status == FL_CTL_OK) {
    print_clock(ctl, &transport, field);
    reply_free(&transport);
  }
  return status;
}

/*
  `tempo BPM`, `signature BEATS`: send `address` with `message`, and print
  the setting once /transport shows `value`. A change shows from the next
  JACK period on, so the transport is asked again every few ms until it
  does, for FL_CTL_SETTLE_MS at most; if it still does not (no period ran:
  is JACK there?), flitzid took the change all the same, and what the
  transport shows is printed with a warning on stderr.
*/
static int
cmd_set_clock(FlCtl*          ctl,
              const char*     address,
              lo_message      message,
              FlCtlClockField field,
              double          value)
{
  FlCtlReply    transport = { "", NULL };
  int           status = set_then_transport(ctl, address, message, &transport);
  const int64_t settle_ms = now_ms() + FL_CTL_SETTLE_MS;
  while (status == FL_CTL_OK && !clock_shows(&transport, field, value) &&
         now_ms() < settle_ms) {
    reply_free(&transport);
    const struct timespec pause = { 0, FL_CTL_SETTLE_POLL_MS * 1000000L };
    nanosleep(&pause, NULL);
    status = get_transport(ctl, &transport);
  }
  if (status != FL_CTL_OK) {
    return status;
  }

  if (!clock_shows(&transport, field, value)) {
    fprintf(stderr,
            "flitzictl: %s was taken, but /transport does not show it after "
            "%d ms (is JACK running?)\n",
            address,
            FL_CTL_SETTLE_MS);
  }
  print_clock(ctl, &transport, field);
  reply_free(&transport);
  return FL_CTL_OK;
}

/* The transport as KEY=VALUE lines (the names of the OSC API), or JSON. */
static int
cmd_transport(FlCtl* ctl)
{
  FlCtlReply transport = { "", NULL };
  const int  status    = get_transport(ctl, &transport);
  if (status != FL_CTL_OK) {
    return status;
  }
  if (ctl->json) {
    print_json_reply(&transport);
  } else {
    printf("source=%s\nbpm=%g\nbeats_per_bar=%" PRId32
           "\nbeats=%.3f\nrolling=%" PRId32 "\n",
           arg_string(&transport, 0),
           (double)arg_float(&transport, FL_CTL_BPM),
           arg_int(&transport, FL_CTL_BEATS_PER_BAR),
           arg_double(&transport, 3),
           arg_int(&transport, 4));
    fflush(stdout);
  }
  reply_free(&transport);
  return FL_CTL_OK;
}

/*
  /save: flitzid's session thread writes the state file and answers when it
  is written (or why not), so this waits as a load does.
*/
static int
cmd_save(FlCtl* ctl)
{
  FlCtlReply reply  = { "", NULL };
  const int  status = send_request(ctl, "/save", lo_message_new())
                        ? await_slow_reply(ctl, "/save", "/done", -1, &reply)
                        : FL_CTL_NO_REPLY;
  if (status == FL_CTL_NO_REPLY) {
    return status;
  }
  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (ctl->json) {
    print_json_reply(&reply);
  } else {
    puts("saved");
  }
  reply_free(&reply);
  return status;
}

static void
on_signal(int number)
{
  (void)number;
  atomic_store_explicit(&fl_ctl_interrupted, true, memory_order_relaxed);
}

static void
print_event(const FlCtl* ctl, const FlCtlReply* event)
{
  if (ctl->json) {
    print_json_reply(event);
    return;
  }

  char            stamp[32] = "";
  struct timespec now;
  struct tm       local;
  clock_gettime(CLOCK_REALTIME, &now);
  if (localtime_r(&now.tv_sec, &local)) {
    const size_t length = strftime(stamp, sizeof(stamp), "%H:%M:%S", &local);
    snprintf(
      stamp + length, sizeof(stamp) - length, ".%03ld", now.tv_nsec / 1000000L);
  }

  printf("%s  ", stamp);
  if (reply_is(event, "/event/xrun", "i")) {
    printf("xrun (%" PRId32 " in total)\n", arg_int(event, 0));
  } else if (reply_is(event, "/event/started", "i")) {
    printf("slot %" PRId32 " started\n", arg_int(event, 0));
  } else if (reply_is(event, "/event/stopped", "i")) {
    printf("slot %" PRId32 " stopped\n", arg_int(event, 0));
  } else if (reply_is(event, "/done", "siiii")) {
    printf("%s %" PRId32 ": %" PRId32 " frames, %" PRId32
           " channel%s, source rate %" PRId32 " Hz\n",
           arg_string(event, 0),
           arg_int(event, 1),
           arg_int(event, 2),
           arg_int(event, 3),
           arg_int(event, 3) == 1 ? "" : "s",
           arg_int(event, 4));
  } else if (reply_is(event, "/done", "si")) {
    printf("%s %" PRId32 ": done\n", arg_string(event, 0), arg_int(event, 1));
  } else if (reply_is(event, "/fail", "sis")) {
    printf("%s %" PRId32 " failed: %s\n",
           arg_string(event, 0),
           arg_int(event, 1),
           arg_string(event, 2));
  } else {
    print_raw_reply(stdout, event);
  }
  fflush(stdout);
}

/*
  Catch SIGINT and SIGTERM for a command that runs until interrupted. The
  signals are blocked except inside ppoll() with `waiting`, so one that
  arrives between two waits is not lost: ppoll() returns EINTR at once and
  the flag is then set.
*/
static void
catch_interrupts(sigset_t* waiting)
{
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  sigprocmask(SIG_BLOCK, &blocked, waiting);
  sigdelset(waiting, SIGINT);
  sigdelset(waiting, SIGTERM);

  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
}

/*
  Wait for messages until interrupted, handing each to `take`. Returns
  false if polling failed.
*/
static bool
receive_until_interrupted(FlCtl*          ctl,
                          const sigset_t* waiting,
                          void (*take)(FlCtl* ctl, const FlCtlReply* message),
                          void (*batch_done)(FlCtl* ctl))
{
  FlCtlReply    message     = { "", NULL };
  struct pollfd socket_poll = { lo_server_get_socket_fd(ctl->server),
                                POLLIN,
                                0 };
  while (!atomic_load_explicit(&fl_ctl_interrupted, memory_order_relaxed)) {
    const bool any = ctl->inbox_count > 0U;
    while (ctl->inbox_count) {
      next_reply(ctl, 0, &message);
      take(ctl, &message);
      reply_free(&message);
    }
    if (any && batch_done) {
      batch_done(ctl);
    }
    const int ready = ppoll(&socket_poll, 1, NULL, waiting);
    if (ready > 0) {
      lo_server_recv_noblock(ctl->server, 0);
    } else if (ready < 0 && errno != EINTR) {
      fprintf(stderr, "flitzictl: poll: %s\n", strerror(errno));
      return false;
    }
  }
  return true;
}

static void
take_event(FlCtl* ctl, const FlCtlReply* event)
{
  print_event(ctl, event);
}

/*
  Undo a subscription (`address` with `off`, /notify 0 or /meters 0) and
  wait for its /done; what else arrives meanwhile is dropped.
*/
static int
unsubscribe(FlCtl* ctl, const char* address, lo_message off)
{
  if (!send_request(ctl, address, off)) {
    return FL_CTL_NO_REPLY;
  }
  FlCtlReply    reply       = { "", NULL };
  const int64_t deadline_ms = now_ms() + ctl->timeout_ms;
  while (next_reply(ctl, deadline_ms, &reply)) {
    const bool done = answers(&reply, address, "/done", -1);
    if (done && ctl->json) {
      print_json_reply(&reply);
    }
    reply_free(&reply);
    if (done) {
      return FL_CTL_OK;
    }
  }
  return no_reply(ctl);
}

/* Subscribe, print events until SIGINT or SIGTERM, unsubscribe. */
static int
cmd_watch(FlCtl* ctl)
{
  sigset_t waiting;
  catch_interrupts(&waiting);

  FlCtlReply reply = { "", NULL };
  int        status =
    request(ctl, "/notify", message_of_ints(1, 1, 0), "/done", -1, &reply);
  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (status == FL_CTL_OK && ctl->json) {
    print_json_reply(&reply); /* Tells a reader that events will follow */
  }
  reply_free(&reply);
  if (status != FL_CTL_OK) {
    return status;
  }
  if (!ctl->json) {
    fprintf(stderr,
            "flitzictl: watching flitzid at %s:%s; interrupt to stop\n",
            ctl->host,
            ctl->port);
  }

  receive_until_interrupted(ctl, &waiting, take_event, NULL);
  return unsubscribe(ctl, "/notify", message_of_ints(1, 0, 0));
}

/* Meters */

/* What `meters` shows: the latest bundle, drawn when it is complete. */
typedef struct {
  bool terminal; /* stdout is a terminal: redraw in place */
  int  lines;    /* lines drawn last time, to move back over */
  char frame[64][96];
  int  frame_lines;
} FlCtlMeterView;

static FlCtlMeterView fl_ctl_meter_view;

static double
peak_db(float peak)
{
  return peak > 0.0f ? 20.0 * log10((double)peak) : -INFINITY;
}

/* "[#######-----------------] -23.1 dBFS": a bar from -60 to 0 dBFS. */
static void
format_meter(char* text, size_t size, float peak)
{
  const double db     = peak_db(peak);
  double       filled = (db - FL_CTL_METER_FLOOR_DB) / -FL_CTL_METER_FLOOR_DB;
  filled              = filled < 0.0 ? 0.0 : filled > 1.0 ? 1.0 : filled;
  const int cells     = (int)lround(filled * FL_CTL_METER_WIDTH);

  char bar[FL_CTL_METER_WIDTH + 1];
  for (int i = 0; i < FL_CTL_METER_WIDTH; ++i) {
    bar[i] = i < cells ? '#' : '-';
  }
  bar[FL_CTL_METER_WIDTH] = '\0';
  if (isfinite(db)) {
    snprintf(text, size, "[%s] %6.1f dBFS", bar, db);
  } else {
    snprintf(text, size, "[%s]   -inf dBFS", bar);
  }
}

static void
add_meter_line(FlCtlMeterView* view, const char* line)
{
  const int max = (int)(sizeof(view->frame) / sizeof(view->frame[0]));
  if (view->frame_lines < max) {
    snprintf(
      view->frame[view->frame_lines++], sizeof(view->frame[0]), "%s", line);
  }
}

static void
take_meter(FlCtl* ctl, const FlCtlReply* message)
{
  FlCtlMeterView* const view = &fl_ctl_meter_view;
  char                  meter[64];
  char                  line[96];

  if (ctl->json) {
    if (reply_is(message, "/meter/master", "ff") ||
        reply_is(message, "/meter/slot", "iff")) {
      print_json_reply(message);
    }
    return;
  }
  if (reply_is(message, "/meter/master", "ff")) {
    /* A bundle starts with the master: what came before is one frame. */
    const float left  = arg_float(message, 0);
    const float right = arg_float(message, 1);
    format_meter(meter, sizeof(meter), left > right ? left : right);
    snprintf(line, sizeof(line), "master   %s", meter);
    view->frame_lines = 0;
    add_meter_line(view, line);
  } else if (reply_is(message, "/meter/slot", "iff")) {
    format_meter(meter, sizeof(meter), arg_float(message, 1));
    snprintf(line,
             sizeof(line),
             "slot %3" PRId32 " %s %9.3f s",
             arg_int(message, 0),
             meter,
             (double)arg_float(message, 2));
    add_meter_line(view, line);
  }
}

/* Draw the frame: over the last one on a terminal, else appended. */
static void
draw_meters(FlCtl* ctl)
{
  FlCtlMeterView* const view = &fl_ctl_meter_view;
  if (ctl->json || !view->frame_lines) {
    return;
  }
  if (view->terminal && view->lines) {
    printf("\033[%dA\033[J", view->lines); /* up, and clear to the end */
  }
  for (int i = 0; i < view->frame_lines; ++i) {
    puts(view->frame[i]);
  }
  fflush(stdout);
  view->lines       = view->frame_lines;
  view->frame_lines = 0;
}

/*
  Ask for `hz` meter bundles a second, show them until SIGINT or SIGTERM,
  then turn them off again (/meters 0).
*/
static int
cmd_meters(FlCtl* ctl, int32_t hz)
{
  sigset_t waiting;
  catch_interrupts(&waiting);
  fl_ctl_meter_view.terminal = isatty(STDOUT_FILENO);

  FlCtlReply reply = { "", NULL };
  int        status =
    request(ctl, "/meters", message_of_ints(1, hz, 0), "/done", -1, &reply);
  if (status == FL_CTL_REFUSED) {
    refused(ctl, &reply);
  } else if (status == FL_CTL_OK && ctl->json) {
    print_json_reply(&reply); /* Tells a reader that meters will follow */
  }
  reply_free(&reply);
  if (status != FL_CTL_OK) {
    return status;
  }

  receive_until_interrupted(ctl, &waiting, take_meter, draw_meters);
  return unsubscribe(ctl, "/meters", message_of_ints(1, 0, 0));
}

/* top: a live view of the rig */

/* Frames a second: the rate of flitzid's meter bundles. */
#define FL_CTL_TOP_METER_HZ 20
/* How often /status and a /query of every slot go out; a poll without any
   answer means flitzid is gone, and it is asked again as often. */
#define FL_CTL_TOP_POLL_MS 1000
#define FL_CTL_TOP_MAX_SLOTS 1024 /* flitzid's largest --slots */
#define FL_CTL_TOP_TRACK_WIDTH 12 /* characters of a playhead's track */
#define FL_CTL_TOP_LINE 512       /* bytes of a drawn line, at most */

/* A pad as `top` knows it. */
typedef struct {
  bool    loaded;
  bool    sounding; /* Between /event/started and /event/stopped */
  bool    metered;  /* In the latest meter bundle */
  float   peak;     /* Linear, from that bundle */
  float   position; /* Seconds into the sample of its newest voice */
  int32_t frames;
  char    file[64]; /* The last part of its path, printable */
} FlCtlPad;

typedef struct {
  bool           raw;       /* The terminal is in raw mode: restore it */
  struct termios saved;     /* The terminal as it was */
  bool           connected; /* flitzid answered during the last poll */
  bool           answered;  /* Something arrived since the last poll */
  int64_t        last_bundle_ms;
  bool           redraw;
  bool           have_status;
  FlCtlStatus    status;
  bool           have_transport;
  char           source[16];
  float          bpm;
  int32_t        beats_per_bar;
  double         beats;
  int32_t        rolling;
  float          master_peak;
  int32_t        slot_count;   /* Slots asked about: --slots, at most 1024 */
  char           problem[160]; /* The last /fail of our own requests */
  FlCtlPad       pads[FL_CTL_TOP_MAX_SLOTS];
} FlCtlTop;

static FlCtlTop fl_ctl_top;

/*
  Raw mode: keys one at a time, unechoed; no flow control (Ctrl-S would
  freeze the view) and no suspend (Ctrl-Z would stop it with the terminal
  raw). Ctrl-C still raises SIGINT, which ends `top` as q does. The view
  is drawn on the alternate screen, so the shell's screen comes back on
  exit.
*/
static bool
top_enter_terminal(FlCtlTop* top)
{
  if (tcgetattr(STDIN_FILENO, &top->saved)) {
    return false;
  }
  struct termios raw = top->saved;
  raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
  raw.c_iflag &= ~(tcflag_t)(IXON | ICRNL);
  raw.c_cc[VMIN]  = 1;
  raw.c_cc[VTIME] = 0;
  raw.c_cc[VSUSP] = _POSIX_VDISABLE;
  if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw)) {
    return false;
  }
  top->raw = true;
  fputs("\033[?1049h\033[?25l", stdout); /* Alternate screen, no cursor */
  fflush(stdout);
  return true;
}

/* Undo top_enter_terminal(); every way out of `top` passes here. */
static void
top_leave_terminal(FlCtlTop* top)
{
  if (!top->raw) {
    return;
  }
  fputs("\033[?25h\033[?1049l", stdout);
  fflush(stdout);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &top->saved);
  top->raw = false;
}

/* Send without a word on failure: the view says when flitzid is away. */
static void
top_send(FlCtl* ctl, const char* address, lo_message message)
{
  lo_send_message_from(ctl->daemon, ctl->server, address, message);
  lo_message_free(message);
}

/* Meters and events; sent again whenever meters stop coming, since a
   flitzid that restarted has forgotten both. */
static void
top_subscribe(FlCtl* ctl)
{
  top_send(ctl, "/notify", message_of_ints(1, 1, 0));
  top_send(ctl, "/meters", message_of_ints(1, FL_CTL_TOP_METER_HZ, 0));
}

static void
top_query_all(FlCtl* ctl, const FlCtlTop* top)
{
  for (int32_t id = 0; id < top->slot_count; ++id) {
    top_send(ctl, "/query", message_of_ints(1, id, 0));
  }
}

static void
top_forget(FlCtlTop* top)
{
  top->have_status    = false;
  top->have_transport = false;
  top->slot_count     = 0;
  top->master_peak    = 0.0f;
  memset(top->pads, 0, sizeof(top->pads));
}

/* The last part of `path`, with anything unprintable (a terminal escape in
   a file name) as '?'. */
static void
printable_file(char* file, size_t size, const char* path)
{
  const char* const slash = strrchr(path, '/');
  snprintf(file, size, "%s", slash ? slash + 1 : path);
  for (char* c = file; *c; ++c) {
    if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7F) {
      *c = '?';
    }
  }
}

static void
top_take_slot(FlCtlTop* top, const FlCtlReply* message)
{
  const int32_t id = arg_int(message, 0);
  if (id < 0 || id >= top->slot_count) {
    return;
  }
  FlCtlPad* const pad = &top->pads[id];
  pad->loaded         = arg_int(message, 5) != 0;
  pad->frames         = arg_int(message, 2);
  printable_file(pad->file, sizeof(pad->file), arg_string(message, 1));
  if (!pad->loaded) {
    pad->sounding = false;
    pad->metered  = false;
  }
}

static void
top_take_status(FlCtl* ctl, FlCtlTop* top, const FlCtlReply* message)
{
  FlCtlStatus* const s = &top->status;
  s->voices_active     = arg_int(message, 0);
  s->voices_max        = arg_int(message, 1);
  s->slots_loaded      = arg_int(message, 2);
  s->slots_max         = arg_int(message, 3);
  s->sample_rate       = arg_int(message, 4);
  s->dsp_load_avg_pct  = arg_float(message, 5);
  s->dsp_load_peak_pct = arg_float(message, 6);
  s->xruns             = arg_int(message, 7);
  top->have_status     = true;

  /* The first /status (or one of a flitzid restarted with other --slots)
     says which slots there are: ask about each at once. */
  const int32_t count = s->slots_max < 0 ? 0
                        : s->slots_max > FL_CTL_TOP_MAX_SLOTS
                          ? FL_CTL_TOP_MAX_SLOTS
                          : s->slots_max;
  if (count != top->slot_count) {
    memset(top->pads, 0, sizeof(top->pads));
    top->slot_count = count;
    top_query_all(ctl, top);
  }
}

/* Every message from flitzid, as it arrives (FlCtl's take_now). */
static void
top_take(FlCtl* ctl, const FlCtlReply* message)
{
  FlCtlTop* const top = &fl_ctl_top;
  top->answered       = true;
  if (!top->connected) {
    /* Back, or there for the first time. */
    top->connected  = true;
    top->problem[0] = '\0';
    top_subscribe(ctl);
    top->redraw = true;
  }

  if (reply_is(message, "/meter/master", "ff")) {
    /* A bundle starts with the master: the slots that follow are the ones
       sounding now. The whole bundle comes in one datagram, and the view is
       drawn after it. */
    for (int32_t id = 0; id < top->slot_count; ++id) {
      top->pads[id].metered = false;
    }
    const float left    = arg_float(message, 0);
    const float right   = arg_float(message, 1);
    top->master_peak    = left > right ? left : right;
    top->last_bundle_ms = now_ms();
    top->problem[0]     = '\0'; /* Meters come: /meters is no problem now */
    top->redraw         = true;
    top_send(ctl, "/transport", lo_message_new());
  } else if (reply_is(message, "/meter/slot", "iff")) {
    const int32_t id = arg_int(message, 0);
    if (id >= 0 && id < top->slot_count) {
      top->pads[id].metered  = true;
      top->pads[id].peak     = arg_float(message, 1);
      top->pads[id].position = arg_float(message, 2);
    }
  } else if (reply_is(message, "/event/started", "i") ||
             reply_is(message, "/event/stopped", "i")) {
    const int32_t id = arg_int(message, 0);
    if (id >= 0 && id < top->slot_count) {
      top->pads[id].sounding = !strcmp(message->path, "/event/started");
      top->redraw            = true;
    }
  } else if ((reply_is(message, "/done", "siiii") &&
              reply_names(message, "/load")) ||
             (reply_is(message, "/done", "si") &&
              reply_names(message, "/unload"))) {
    /* A copy of any client's load or unload (/notify): read that pad. */
    top_send(ctl, "/query", message_of_ints(1, arg_int(message, 1), 0));
  } else if (reply_is(message, "/slot", "isiiii")) {
    top_take_slot(top, message);
    top->redraw = true;
  } else if (reply_is(message, "/status.reply", "iiiiiffiii")) {
    top_take_status(ctl, top, message);
  } else if (reply_is(message, "/transport.reply", "sfidi")) {
    snprintf(top->source, sizeof(top->source), "%s", arg_string(message, 0));
    top->bpm            = arg_float(message, 1);
    top->beats_per_bar  = arg_int(message, 2);
    top->beats          = arg_double(message, 3);
    top->rolling        = arg_int(message, 4);
    top->have_transport = true;
  } else if (!strcmp(message->path, "/fail") &&
             reply_types(message)[0] == 's' &&
             (reply_names(message, "/meters") ||
              reply_names(message, "/notify"))) {
    /* One of ours (the copies of other clients' /load failures are not). */
    const char* const types = reply_types(message);
    snprintf(top->problem,
             sizeof(top->problem),
             "flitzid refused %s: %s",
             arg_string(message, 0),
             types[1] == 's' ? arg_string(message, 1) : "?");
    top->redraw = true;
  }
}

/* Once a second: is flitzid still there, what it holds, and whether it
   still sends meters. */
static void
top_poll(FlCtl* ctl, FlCtlTop* top)
{
  if (top->connected && !top->answered) {
    top->connected = false;
    top_forget(top);
  }
  top->answered = false;
  top_send(ctl, "/status", lo_message_new());
  if (top->connected) {
    if (now_ms() - top->last_bundle_ms > FL_CTL_TOP_POLL_MS) {
      /* Events may have been missed too: a pad that sounds shows in the
         meters again. */
      for (int32_t id = 0; id < top->slot_count; ++id) {
        top->pads[id].sounding = false;
      }
      top_subscribe(ctl);
    }
    top_query_all(ctl, top);
  }
  top->redraw = true;
}

/* "[----|-------]": where the newest voice is in the sample. */
static void
format_track(char* text, size_t size, double fraction, bool shown)
{
  char track[FL_CTL_TOP_TRACK_WIDTH + 1];
  memset(track, '-', FL_CTL_TOP_TRACK_WIDTH);
  track[FL_CTL_TOP_TRACK_WIDTH] = '\0';
  if (shown) {
    fraction        = fraction < 0.0 ? 0.0 : fraction > 1.0 ? 1.0 : fraction;
    const int place = (int)(fraction * (FL_CTL_TOP_TRACK_WIDTH - 1) + 0.5);
    track[place]    = '|';
  }
  snprintf(text, size, "[%s]", track);
}

/* Append a line (cut to the terminal's width) to the frame. */
static void
top_line(char* frame, size_t size, size_t* used, int columns, const char* line)
{
  const size_t length = strlen(line);
  const size_t shown  = length < (size_t)columns ? length : (size_t)columns;
  const int    wrote  = snprintf(frame + *used,
                             size - *used,
                             "%s%.*s\033[K",
                             *used ? "\n" : "",
                             (int)shown,
                             line);
  if (wrote > 0 && (size_t)wrote < size - *used) {
    *used += (size_t)wrote;
  }
}

static void
top_draw(const FlCtl* ctl, const FlCtlTop* top)
{
  int            columns = 80;
  int            rows    = 24;
  struct winsize window;
  if (!ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) && window.ws_col &&
      window.ws_row) {
    columns = window.ws_col;
    rows    = window.ws_row;
  }
  columns = columns < FL_CTL_TOP_LINE - 1 ? columns : FL_CTL_TOP_LINE - 1;

  static char frame[256 * 1024];
  size_t      used = 0U;
  char        line[FL_CTL_TOP_LINE];
  char        meter[64];
  char        track[FL_CTL_TOP_TRACK_WIDTH + 3];

  if (!top->connected) {
    snprintf(line,
             sizeof(line),
             "waiting for flitzid at %s:%s (asking again every second)",
             ctl->host,
             ctl->port);
    top_line(frame, sizeof(frame), &used, columns, line);
    top_line(frame, sizeof(frame), &used, columns, "");
    top_line(frame, sizeof(frame), &used, columns, "q quits");
    fprintf(stdout, "\033[H%s\033[J", frame);
    fflush(stdout);
    return;
  }

  /* The header: tempo, bar and beat, DSP load, xruns, voices. */
  int length =
    snprintf(line, sizeof(line), "flitzid at %s:%s", ctl->host, ctl->port);
  if (top->have_transport && top->beats_per_bar > 0) {
    const double bar  = floor(top->beats / top->beats_per_bar);
    const double beat = floor(top->beats - bar * top->beats_per_bar);
    length += snprintf(line + length,
                       sizeof(line) - (size_t)length,
                       "   %.2f BPM   bar %.0f beat %.0f of %" PRId32 "%s%s",
                       (double)top->bpm,
                       bar + 1.0,
                       beat + 1.0,
                       top->beats_per_bar,
                       strcmp(top->source, "internal") ? " (JACK)" : "",
                       top->rolling ? "" : " stopped");
  }
  if (top->have_status) {
    snprintf(line + length,
             sizeof(line) - (size_t)length,
             "   DSP %.1f %% (peak %.1f %%)   xruns %" PRId32
             "   voices %" PRId32 "/%" PRId32,
             (double)top->status.dsp_load_avg_pct,
             (double)top->status.dsp_load_peak_pct,
             top->status.xruns,
             top->status.voices_active,
             top->status.voices_max);
  }
  top_line(frame, sizeof(frame), &used, columns, line);
  format_meter(meter, sizeof(meter), top->master_peak);
  snprintf(line, sizeof(line), "master         %s", meter);
  top_line(frame, sizeof(frame), &used, columns, line);
  top_line(frame, sizeof(frame), &used, columns, "");
  snprintf(line,
           sizeof(line),
           " pad  state    %-*s  %-*s  %-19s  file",
           FL_CTL_METER_WIDTH + 14, /* "[bar] -12.3 dBFS" */
           "level",
           FL_CTL_TOP_TRACK_WIDTH + 2,
           "playhead",
           "seconds");
  top_line(frame, sizeof(frame), &used, columns, line);

  /* A row per loaded pad, as many as fit above the footer. */
  const int32_t rate  = top->have_status ? top->status.sample_rate : 0;
  int           room  = rows - 7;
  int32_t       shown = 0;
  int32_t       more  = 0;
  for (int32_t id = 0; id < top->slot_count; ++id) {
    const FlCtlPad* const pad = &top->pads[id];
    if (!pad->loaded) {
      continue;
    }
    if (room <= 0) {
      ++more;
      continue;
    }
    const bool   playing = pad->metered || pad->sounding;
    const double seconds = rate > 0 ? (double)pad->frames / rate : 0.0;
    format_meter(meter, sizeof(meter), pad->metered ? pad->peak : 0.0f);
    format_track(track,
                 sizeof(track),
                 seconds > 0.0 ? pad->position / seconds : 0.0,
                 pad->metered);
    char where[24];
    if (pad->metered) {
      snprintf(where, sizeof(where), "%7.3f", (double)pad->position);
    } else {
      snprintf(where, sizeof(where), "%7s", "-");
    }
    snprintf(line,
             sizeof(line),
             "%4" PRId32 "  %-7s  %s  %s  %s / %7.3f s  %s",
             id,
             playing ? "playing" : "stopped",
             meter,
             track,
             where,
             seconds,
             pad->file);
    top_line(frame, sizeof(frame), &used, columns, line);
    --room;
    ++shown;
  }
  if (!shown && !more) {
    top_line(frame, sizeof(frame), &used, columns, "   (no pad is loaded)");
  }
  if (more) {
    snprintf(line, sizeof(line), "   ... and %" PRId32 " more", more);
    top_line(frame, sizeof(frame), &used, columns, line);
  }
  top_line(frame, sizeof(frame), &used, columns, "");
  top_line(frame, sizeof(frame), &used, columns, top->problem);
  top_line(frame, sizeof(frame), &used, columns, "q quits");
  fprintf(stdout, "\033[H%s\033[J", frame);
  fflush(stdout);
}

/* Read the keys that are there; true if one of them quits. */
static bool
top_keys(void)
{
  char          keys[64];
  const ssize_t count = read(STDIN_FILENO, keys, sizeof(keys));
  if (count <= 0) {
    return count == 0; /* End of input: nobody is left to press q */
  }
  return memchr(keys, 'q', (size_t)count) || memchr(keys, 'Q', (size_t)count);
}

/*
  The live view, until q, SIGINT or SIGTERM. It never waits for a reply:
  every message is taken as it comes (top_take) and the view drawn after
  each meter bundle (20 a second) and each poll (once a second).
*/
static int
cmd_top(FlCtl* ctl)
{
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    return usage_error("%s", "top needs a terminal on stdin and stdout");
  }
  FlCtlTop* const top = &fl_ctl_top;
  sigset_t        waiting;
  catch_interrupts(&waiting);
  if (!top_enter_terminal(top)) {
    fprintf(
      stderr, "flitzictl: cannot set up the terminal: %s\n", strerror(errno));
    return FL_CTL_REFUSED;
  }

  ctl->take_now          = top_take;
  int64_t       next_ms  = now_ms();
  bool          quit     = false;
  int           status   = FL_CTL_OK;
  struct pollfd ready[2] = {
    { lo_server_get_socket_fd(ctl->server), POLLIN, 0 },
    { STDIN_FILENO, POLLIN, 0 },
  };
  while (!quit &&
         !atomic_load_explicit(&fl_ctl_interrupted, memory_order_relaxed)) {
    if (now_ms() >= next_ms) {
      top_poll(ctl, top);
      next_ms = now_ms() + FL_CTL_TOP_POLL_MS;
    }
    if (top->redraw) {
      top_draw(ctl, top);
      top->redraw = false;
    }
    const int64_t   left_ms = next_ms - now_ms();
    struct timespec timeout = { 0, 0 };
    if (left_ms > 0) {
      timeout.tv_sec  = (time_t)(left_ms / 1000);
      timeout.tv_nsec = (long)(left_ms % 1000) * 1000000L;
    }
    const int count = ppoll(ready, 2, &timeout, &waiting);
    if (count < 0 && errno != EINTR) {
      status = FL_CTL_NO_REPLY;
      break;
    }
    if (count > 0 && (ready[0].revents & POLLIN)) {
      while (lo_server_recv_noblock(ctl->server, 0) > 0) {
        /* Each message went to top_take() */
      }
    }
    if (count > 0 && (ready[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      quit = top_keys();
    }
  }
  ctl->take_now = NULL;
  top_leave_terminal(top);
  if (status != FL_CTL_OK) {
    fprintf(stderr, "flitzictl: poll: %s\n", strerror(errno));
    return status;
  }

  /* Unsubscribe (if flitzid is there to hear it); waiting for the /done
     leaves no reply behind for the port's next user. */
  if (top->connected) {
    unsubscribe(ctl, "/meters", message_of_ints(1, 0, 0));
    unsubscribe(ctl, "/notify", message_of_ints(1, 0, 0));
  }
  return FL_CTL_OK;
}

/* Command-line dispatch */

typedef struct {
  const char* name;
  int         min_args;
  int         max_args;
  const char* args;
  bool        takes_slot; /* Its first argument is a slot ID */
} FlCtlCommand;

static const FlCtlCommand fl_ctl_commands[] = {
  { "ping", 0, 0, "", false },
  { "load", 2, 2, " ID PATH", true },
  { "play", 2, 2, " ID VEL", true },
  { "play-exclusive", 2, 2, " ID VEL", true },
  { "stop", 0, 1, " [ID]", true },
  { "release", 1, 1, " ID", true },
  { "pause", 1, 1, " ID", true },
  { "resume", 1, 1, " ID", true },
  { "seek", 2, 2, " ID SECONDS", true },
  { "set",
    3,
    1 + 2 * FL_CTL_MAX_SETTINGS,
    " ID KEY VALUE [KEY VALUE]...",
    true },
  { "get", 1, 1, " ID", true },
  { "reset", 1, 1, " ID", true },
  { "master", 1, 1, " GAIN_DB", false },
  { "unload", 1, 1, " ID", true },
  { "query", 0, 1, " [ID]", true },
  { "status", 0, 0, "", false },
  { "watch", 0, 0, "", false },
  { "meters", 0, 1, " [HZ]", false },
  { "analyze", 1, 1, " ID", true },
  { "waveform", 2, 4, " ID POINTS [START [END]]", true },
  { "tempo", 0, 1, " [BPM]", false },
  { "signature", 0, 1, " [BEATS]", false },
  { "quantize", 1, 1, " GRID|off", false },
  { "downbeat", 0, 0, "", false },
  { "transport", 0, 0, "", false },
  { "speed", 1, 1, " FACTOR", false },
  { "bpmlock", 1, 1, " 0|1", false },
  { "save", 0, 0, "", false },
  { "top", 0, 0, "", false },
  { "quit", 0, 0, "", false },
};

/* tempo [BPM] and signature [BEATS]: print the setting, or change it. */
static int
run_clock(FlCtl* ctl, const char* name, char** args, int count)
{
  const FlCtlClockField field =
    strcmp(name, "tempo") ? FL_CTL_BEATS_PER_BAR : FL_CTL_BPM;
  if (count == 0) {
    return cmd_clock(ctl, field);
  }

  lo_message message = lo_message_new();
  double     value   = 0.0;
  if (field == FL_CTL_BPM) {
    if (!parse_number(args[0], &value)) {
      lo_message_free(message);
      return usage_error("BPM must be a number: '%s'", args[0]);
    }
    value = (double)(float)value; /* What flitzid gets */
    lo_message_add_float(message, (float)value);
  } else {
    int32_t beats = 0;
    if (!parse_int32(args[0], &beats)) {
      lo_message_free(message);
      return usage_error("BEATS must be a whole number: '%s'", args[0]);
    }
    value = beats;
    lo_message_add_int32(message, beats);
  }
  return cmd_set_clock(
    ctl, field == FL_CTL_BPM ? "/tempo" : "/signature", message, field, value);
}

static int
run(FlCtl* ctl, const FlCtlCommand* command, char** args, int count)
{
  const char* const name = command->name;
  int32_t           id   = 0;

  if (command->takes_slot && count > 0 && !parse_slot(args[0], &id)) {
    return usage_error("ID must be an integer: '%s'", args[0]);
  }

  if (!strcmp(name, "ping")) {
    return cmd_ping(ctl);
  }
  if (!strcmp(name, "load")) {
    return cmd_load(ctl, id, args[1]);
  }
  if (!strcmp(name, "play") || !strcmp(name, "play-exclusive")) {
    bool    is_gain = false;
    float   gain    = 0.0f;
    int32_t midi    = 0;
    if (!parse_velocity(args[1], &is_gain, &gain, &midi)) {
      return usage_error("VEL must be a number (0..1 or 0..127): '%s'",
                         args[1]);
    }
    return cmd_play(ctl,
                    strcmp(name, "play") ? "/play/exclusive" : "/play",
                    id,
                    is_gain,
                    gain,
                    midi);
  }
  if (!strcmp(name, "stop")) {
    return cmd_stop(ctl, count == 0, id);
  }
  if (!strcmp(name, "pause") || !strcmp(name, "resume") ||
      !strcmp(name, "release") || !strcmp(name, "reset")) {
    const char* const address = !strcmp(name, "pause")     ? "/pause"
                                : !strcmp(name, "resume")  ? "/resume"
                                : !strcmp(name, "release") ? "/release"
                                                           : "/slot/reset";
    return send_unanswered(ctl, address, message_of_ints(1, id, 0), id);
  }
  if (!strcmp(name, "seek")) {
    double seconds = 0.0;
    if (!parse_number(args[1], &seconds)) {
      return usage_error("SECONDS must be a number: '%s'", args[1]);
    }
    return cmd_seek(ctl, id, seconds);
  }
  if (!strcmp(name, "set")) {
    if (count % 2 == 0) {
      return usage_error("KEY '%s' has no VALUE", args[count - 1]);
    }
    return cmd_set(ctl, id, args + 1, count - 1);
  }
  if (!strcmp(name, "get")) {
    return cmd_get(ctl, id);
  }
  if (!strcmp(name, "master")) {
    double gain_db = 0.0;
    if (!parse_number(args[0], &gain_db)) {
      return usage_error("GAIN_DB must be a number: '%s'", args[0]);
    }
    return cmd_master(ctl, (float)gain_db);
  }
  if (!strcmp(name, "meters")) {
    int32_t hz = FL_CTL_DEFAULT_METER_HZ;
    if (count > 0 &&
        (!parse_int32(args[0], &hz) || hz < 1 || hz > FL_CTL_MAX_METER_HZ)) {
      return usage_error("HZ must be a whole number from 1 to 60: '%s'",
                         args[0]);
    }
    return cmd_meters(ctl, hz);
  }
  if (!strcmp(name, "analyze")) {
    return cmd_analyze(ctl, id);
  }
  if (!strcmp(name, "waveform")) {
    int32_t points  = 0;
    double  range[] = { 0.0, 0.0 }; /* START and END: 0 0 is all of it */
    if (!parse_int32(args[1], &points)) {
      return usage_error("POINTS must be a whole number: '%s'", args[1]);
    }
    for (int i = 2; i < count; ++i) {
      if (!parse_number(args[i], &range[i - 2])) {
        return usage_error(i == 2 ? "START must be a number: '%s'"
                                  : "END must be a number: '%s'",
                           args[i]);
      }
    }
    return cmd_waveform(ctl, id, points, range[0], range[1]);
  }
  if (!strcmp(name, "tempo") || !strcmp(name, "signature")) {
    return run_clock(ctl, name, args, count);
  }
  if (!strcmp(name, "quantize")) {
    lo_message quantize = lo_message_new();
    lo_message_add_string(quantize, args[0]);
    return send_unanswered(ctl, "/quantize", quantize, -1);
  }
  if (!strcmp(name, "downbeat")) {
    return send_unanswered(ctl, "/transport/downbeat", lo_message_new(), -1);
  }
  if (!strcmp(name, "transport")) {
    return cmd_transport(ctl);
  }
  if (!strcmp(name, "speed")) {
    double factor = 0.0;
    if (!parse_number(args[0], &factor)) {
      return usage_error("FACTOR must be a number: '%s'", args[0]);
    }
    lo_message speed = lo_message_new();
    lo_message_add_float(speed, (float)factor);
    return send_unanswered(ctl, "/speed", speed, -1);
  }
  if (!strcmp(name, "bpmlock")) {
    int32_t on = 0;
    if (!parse_int32(args[0], &on)) {
      return usage_error("bpmlock takes 0 or 1: '%s'", args[0]);
    }
    return send_unanswered(ctl, "/bpmlock", message_of_ints(1, on, 0), -1);
  }
  if (!strcmp(name, "save")) {
    return cmd_save(ctl);
  }
  if (!strcmp(name, "top")) {
    if (ctl->json) {
      return usage_error("%s", "top draws a view; --json does not apply");
    }
    return cmd_top(ctl);
  }
  if (!strcmp(name, "unload")) {
    return cmd_done(ctl, "/unload", message_of_ints(1, id, 0), id, "unloaded");
  }
  if (!strcmp(name, "query")) {
    return cmd_query(ctl, count == 0, id);
  }
  if (!strcmp(name, "status")) {
    return cmd_status(ctl);
  }
  if (!strcmp(name, "watch")) {
    return cmd_watch(ctl);
  }
  return cmd_done(
    ctl, "/quit", lo_message_new(), -1, "flitzid is shutting down");
}

/* A negative number ("-1", "-0.5") is an operand, never an option. */
static bool
is_negative_number(const char* arg)
{
  return arg[0] == '-' && (isdigit((unsigned char)arg[1]) || arg[1] == '.');
}

int
main(int argc, char** argv)
{
  static const struct option long_options[] = {
    { "host", required_argument, NULL, 'H' },
    { "port", required_argument, NULL, 'p' },
    { "timeout", required_argument, NULL, 't' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };

  FlCtl ctl;
  memset(&ctl, 0, sizeof(ctl));
  ctl.host       = FL_CTL_DEFAULT_HOST;
  ctl.port       = FL_CTL_DEFAULT_PORT;
  ctl.timeout_ms = FL_CTL_DEFAULT_TIMEOUT_MS;

  /* Options may come before, between and after the operands. "+" makes
     getopt stop at each operand, which is collected here, so that negative
     numbers can be told from options. */
  char** const operands      = (char**)calloc((size_t)argc, sizeof(char*));
  int          operand_count = 0;
  bool         only_operands = false;
  if (!operands) {
    fputs("flitzictl: out of memory\n", stderr);
    return FL_CTL_NO_REPLY;
  }
  opterr = 0;
  while (optind < argc) {
    if (only_operands || is_negative_number(argv[optind])) {
      operands[operand_count++] = argv[optind++];
      continue;
    }

    const int option =
      getopt_long(argc, argv, "+H:p:t:jhV", long_options, NULL);
    if (option == -1) {
      if (optind < argc) {
        only_operands = !strcmp(argv[optind - 1], "--");
        if (!only_operands) {
          operands[operand_count++] = argv[optind++];
        }
      }
      continue;
    }

    int32_t number = 0;
    switch (option) {
      case 'H':
        ctl.host = optarg;
        break;
      case 'p':
        if (!parse_int32(optarg, &number) || number < 1 || number > 65535) {
          free(operands);
          return usage_error("PORT must be 1..65535: '%s'", optarg);
        }
        ctl.port = optarg;
        break;
      case 't':
        if (!parse_int32(optarg, &number) || number < 1 ||
            number > FL_CTL_MAX_TIMEOUT_MS) {
          free(operands);
          return usage_error("MS must be 1..3600000: '%s'", optarg);
        }
        ctl.timeout_ms = number;
        break;
      case 'j':
        ctl.json = true;
        break;
      case 'h':
        print_help();
        free(operands);
        return FL_CTL_OK;
      case 'V':
        puts("flitzictl " FL_CTL_VERSION);
        free(operands);
        return FL_CTL_OK;
      default: {
        /* A long option is named by its word, a short one by its letter. */
        const char* const word = argv[optind - 1];
        char              text[64];
        if (!strncmp(word, "--", 2)) {
          snprintf(text, sizeof(text), "%.*s", (int)strcspn(word, "="), word);
        } else {
          snprintf(text, sizeof(text), "-%c", optopt);
        }
        free(operands);
        return usage_error(optopt && strchr("Hpt", optopt)
                             ? "option '%s' needs an argument"
                             : "unknown option '%s'",
                           text);
      }
    }
  }

  if (operand_count == 0) {
    free(operands);
    return usage_error("%s", "no command given");
  }

  const FlCtlCommand* command = NULL;
  for (size_t i = 0; i < sizeof(fl_ctl_commands) / sizeof(fl_ctl_commands[0]);
       ++i) {
    if (!strcmp(operands[0], fl_ctl_commands[i].name)) {
      command = &fl_ctl_commands[i];
    }
  }
  if (!command) {
    const int status = usage_error("unknown command '%s'", operands[0]);
    free(operands);
    return status;
  }
  const int arg_count = operand_count - 1;
  if (arg_count < command->min_args || arg_count > command->max_args) {
    fprintf(stderr,
            "flitzictl: wrong number of arguments for '%s'\n"
            "Usage: flitzictl [OPTION]... %s%s\n",
            command->name,
            command->name,
            command->args);
    free(operands);
    return FL_CTL_USAGE;
  }

  ctl.daemon = lo_address_new(ctl.host, ctl.port);
  /* Port "0": the kernel picks a free ephemeral port. liblo's own choice for
     NULL repeats across processes started close together (seen with liblo
     0.31), so one flitzictl could receive the late replies meant for the
     one before it. */
  ctl.server = lo_server_new_with_proto("0", LO_UDP, on_lo_error);
  if (!ctl.daemon || !ctl.server) {
    fputs("flitzictl: cannot open a UDP socket\n", stderr);
    lo_address_free(ctl.daemon);
    free(operands);
    return FL_CTL_NO_REPLY;
  }
  lo_server_add_method(ctl.server, NULL, NULL, on_message, &ctl);

  const int status = run(&ctl, command, operands + 1, arg_count);

  while (ctl.inbox_count) {
    reply_free(&ctl.inbox[--ctl.inbox_count]);
  }
  lo_server_free(ctl.server);
  lo_address_free(ctl.daemon);
  free(operands);
  return status;
}
