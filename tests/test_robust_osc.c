/*
  Hostile OSC input over real UDP: wrong type tags at every address,
  out-of-range ids and velocities, unknown addresses, packets that are no
  OSC at all, bundles nested and broken, 64 KB messages and random
  garbage. Each gets its exact /fail (or, where the contract says so, no
  reply at all), and the daemon answers /ping afterwards.

  While all of that is sent, slot 0 plays a 20 s constant (DC) sample at
  full velocity into a recorder: test_audio_unbroken, the last test, checks
  that every recorded frame from the voice's onset on is exactly 0.5
  (out_1) and -0.25 (out_2). No test in between may /stop or steal that
  voice, so they play nothing else that could sound.

  A second daemon (--listen 0.0.0.0 --sample-root ROOT) shows what the
  default loopback binding keeps out, and that paths outside the root get
  the same reply whether or not the file exists.
*/
#include "harness.h"
#include "robust_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DC_SECONDS 20U
#define DC_FRAMES (DC_SECONDS * FL_TEST_RATE)

static FlRig    rig;         // the daemon under attack, playing DC
static FlUdp*   udp;         // raw datagrams to it from 127.0.0.1
static FlDaemon open_daemon; // --listen 0.0.0.0 --sample-root ROOT
static FlOsc*   open_osc;
static char     root_dir[256];
static long     dc_onset = -1;
static int64_t  dc_started_ms;

/* The reply to a packet, formatted. */
#define UDP_CALL(packet) fl_udp_call(udp, (packet), FL_TEST_REPLY_MS)

static FlPacket packet; // the packet being sent; big, so not on the stack
static FlPacket element;
static FlPacket inner;

static int
group_setup(void** state)
{
  (void)state;
  if (!fl_rig_start(&rig, "robosc", NULL, false)) {
    return -1;
  }

  char dc_path[PATH_MAX];
  fl_env_path(&rig.env, "dc.wav", dc_path, sizeof(dc_path));
  fl_env_path(&rig.env, "root", root_dir, sizeof(root_dir));
  if (mkdir(root_dir, 0755) ||
      !fl_write_sample(
        dc_path, FL_FILE_WAV_FLOAT, FL_SIGNAL_DC, 2, 48000, DC_FRAMES)) {
    return -1;
  }

  char name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int         open_port   = fl_env_port(&rig.env);
  const char* const open_args[] = {
    "--listen", "0.0.0.0", "--sample-root", root_dir, NULL
  };
  if (open_port < 0 ||
      !fl_daemon_start(
        &open_daemon, &rig.env, rig.jackd.name, name, open_port, open_args)) {
    return -1;
  }
  open_osc = fl_osc_new(open_port);

  udp          = fl_udp_new("127.0.0.1", "127.0.0.1", rig.daemon.port, 1 << 20);
  rig.recorder = fl_recorder_new(
    rig.jackd.name, rig.daemon.name, 2, (DC_SECONDS + 5U) * FL_TEST_RATE);
  if (!udp || !open_osc || !rig.recorder) {
    return -1;
  }

  // The DC voice starts now and must sound unbroken to the last test.
  const char* const loaded =
    fl_osc_call(rig.osc, 10000, "/load", "is", 0, dc_path);
  if (strcmp(loaded,
             fl_text("/done ,siiii \"/load\" 0 %u 2 48000", DC_FRAMES))) {
    fprintf(stderr, "loading the DC sample: %s\n", loaded);
    return -1;
  }
  fl_recorder_start(rig.recorder);
  if (!fl_recorder_wait(rig.recorder, FL_TEST_PERIOD, 2000)) {
    return -1;
  }
  fl_osc_send(rig.osc, "/play", "if", 0, 1.0);
  dc_started_ms          = fl_now_ms();
  const int64_t deadline = dc_started_ms + 3000;
  while (dc_onset < 0 && fl_now_ms() < deadline) {
    fl_recorder_wait(
      rig.recorder, fl_recorder_frames(rig.recorder) + FL_TEST_PERIOD, 100);
    dc_onset = fl_recorder_onset(rig.recorder, 0, 0.1f, 0);
  }
  return dc_onset >= 0 ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  fl_udp_free(udp);
  udp = NULL;
  fl_osc_free(open_osc);
  open_osc              = NULL;
  const int open_status = fl_daemon_stop(&open_daemon);
  return fl_rig_stop(&rig) && open_status == 0 ? 0 : -1;
}

/* Before each test: both daemons up, no reply waiting. Voices play on. */
static int
test_setup(void** state)
{
  (void)state;
  if (!udp || !fl_daemon_running(&rig.daemon) ||
      !fl_daemon_running(&open_daemon)) {
    return -1;
  }
  fl_udp_drain(udp);
  fl_osc_collect(rig.osc, 10);
  fl_osc_clear(rig.osc);
  return 0;
}

static void
assert_alive(void)
{
  assert_true(fl_daemon_running(&rig.daemon));
  assert_true(fl_packet_message(&packet, "/ping", ""));
  assert_string_equal(UDP_CALL(&packet), "/pong ,si \"0.1.0\" 1");
}

/* Fill `packet` with a message of `types`, each argument a fixed value. */
static void
message_of_types(FlPacket* out, const char* path, const char* types)
{
  out->size = 0;
  // Start from the address and ',' tags, then append each argument.
  lo_message const message = lo_message_new();
  for (const char* t = types; *t; ++t) {
    switch (*t) {
      case 'i':
        lo_message_add_int32(message, 0);
        break;
      case 'h':
        lo_message_add_int64(message, 0);
        break;
      case 'f':
        lo_message_add_float(message, 1.0f);
        break;
      case 'd':
        lo_message_add_double(message, 1.0);
        break;
      case 's':
        lo_message_add_string(message, "x.wav");
        break;
      case 'S':
        lo_message_add_symbol(message, "x");
        break;
      case 'c':
        lo_message_add_char(message, 'c');
        break;
      case 'b': {
        lo_blob const blob = lo_blob_new(4, "blob");
        lo_message_add_blob(message, blob);
        lo_blob_free(blob);
        break;
      }
      case 't':
        lo_message_add_timetag(message, (lo_timetag){ 0U, 1U });
        break;
      case 'm': {
        uint8_t midi[4] = { 0x90, 60, 100, 0 };
        lo_message_add_midi(message, midi);
        break;
      }
      case 'T':
        lo_message_add_true(message);
        break;
      case 'F':
        lo_message_add_false(message);
        break;
      case 'N':
        lo_message_add_nil(message);
        break;
      case 'I':
        lo_message_add_infinitum(message);
        break;
      default:
        break;
    }
  }
  size_t size = lo_message_length(message, path);
  if (size <= sizeof(out->data)) {
    lo_message_serialise(message, path, out->data, &size);
    out->size = size;
  }
  lo_message_free(message);
}

/* The accepted forms of every address, from `flitzid --list-osc`. */
typedef struct {
  char address[32];
  char forms[4][16];
  int  form_count;
} Method;

static int
read_methods(Method* methods, int capacity)
{
  const char* const argv[] = { getenv("FLITZID"), "--list-osc", NULL };
  char*             out    = NULL;
  char*             err    = NULL;
  const int status = fl_run_capture(&rig.env, argv, NULL, &out, &err, 5000);
  int       count  = 0;
  for (char* line = status == 0 ? strtok(out, "\n") : NULL;
       line && count < capacity;
       line = strtok(NULL, "\n")) {
    Method* const method = &methods[count++];
    memset(method, 0, sizeof(*method));
    char* word = strchr(line, ' ');
    if (!word) {
      continue;
    }
    *word++ = '\0';
    snprintf(method->address, sizeof(method->address), "%s", line);
    for (char* form = strtok_r(word, " ", &word);
         form && method->form_count < 4;
         form = strtok_r(NULL, " ", &word)) {
      snprintf(method->forms[method->form_count++],
               sizeof(method->forms[0]),
               "%s",
               strcmp(form, "-") ? form : "");
    }
  }
  free(out);
  free(err);
  return count;
}

/*
  Every address in the daemon's own dispatch table, with every type-tag
  string from a list of missing, extra and wrong arguments that it does not
  accept: /fail ,ss ADDRESS "bad arguments: expected FORMS". The arguments
  name slot 0, so an address that wrongly accepted one (/stop ,ii, /unload
  ,ih...) would also silence the DC voice.
*/
/* Whether a form of `flitzid --list-osc` accepts `types`: X is any number
   (i, f, d), * any value (a number or s), and "(...)+" at the end repeats
   one or more times (osc.h). Written here again on purpose: the test must
   not trust the daemon's own matcher. */
static bool
letter_accepts(char letter, char type)
{
  if (letter == 'X') {
    return type == 'i' || type == 'f' || type == 'd';
  }
  if (letter == '*') {
    return type == 'i' || type == 'f' || type == 'd' || type == 's';
  }
  return letter == type;
}

static bool
form_accepts(const char* form, const char* types)
{
  const char* const open = strchr(form, '(');
  const size_t      head = open ? (size_t)(open - form) : strlen(form);
  if (strlen(types) < head) {
    return false;
  }
  for (size_t i = 0; i < head; ++i) {
    if (!letter_accepts(form[i], types[i])) {
      return false;
    }
  }
  if (!open) {
    return types[head] == '\0';
  }
  const size_t unit = strlen(open) - 3U; /* "(" unit ")+" */
  const char*  rest = types + head;
  if (unit == 0U || !*rest || strlen(rest) % unit) {
    return false;
  }
  for (size_t i = 0; rest[i]; ++i) {
    if (!letter_accepts(open[1 + i % unit], rest[i])) {
      return false;
    }
  }
  return true;
}

static void
test_bad_types_every_address(void** state)
{
  (void)state;
  static const char* const candidates[] = {
    "",
    "i",
    "f",
    "s",
    "h",
    "d",
    "S",
    "c",
    "b",
    "t",
    "m",
    "T",
    "F",
    "N",
    "I",
    "ii",
    "if",
    "is",
    "si",
    "fi",
    "ff",
    "ss",
    "ih",
    "id",
    "iS",
    "hs",
    "ib",
    "iT",
    "iN",
    "fs",
    "iii",
    "ifi",
    "iff",
    "isi",
    "iss",
    "isf",
    "iis",
    "ifs",
    "sis",
    "iiii",
    "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii",
  };
  Method    methods[32];
  const int count = read_methods(methods, 32);
  assert_true(count >= 9);

  unsigned tried = 0;
  unsigned wrong = 0;
  for (int m = 0; m < count; ++m) {
    char expected[128] = "bad arguments: expected ";
    for (int f = 0; f < methods[m].form_count; ++f) {
      const size_t used = strlen(expected);
      snprintf(expected + used,
               sizeof(expected) - used,
               "%s,%s",
               f ? " or " : "",
               methods[m].forms[f]);
    }

    for (size_t c = 0; c < sizeof(candidates) / sizeof(candidates[0]); ++c) {
      bool accepted = false;
      for (int f = 0; f < methods[m].form_count; ++f) {
        accepted = accepted || form_accepts(methods[m].forms[f], candidates[c]);
      }
      if (accepted) {
        continue;
      }
      message_of_types(&packet, methods[m].address, candidates[c]);
      assert_true(packet.size > 0);
      const char* const got = UDP_CALL(&packet);
      const char* const want =
        fl_text("/fail ,ss \"%s\" \"%s\"", methods[m].address, expected);
      ++tried;
      if (strcmp(got, want)) {
        fprintf(stderr,
                "%s ,%s:\n  got      %s\n  expected %s\n",
                methods[m].address,
                candidates[c],
                got,
                want);
        ++wrong;
      }
    }
  }
  fprintf(stderr,
          "%d addresses, %u wrong type-tag strings sent, %u wrong answers\n",
          count,
          tried,
          wrong);
  assert_int_equal(wrong, 0);
  assert_alive();
}

static void
test_out_of_range_ids(void** state)
{
  (void)state;
  static const int32_t ids[] = { -1, 32, 33, 1000, INT32_MAX, INT32_MIN };
  unsigned             wrong = 0;
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); ++i) {
    const int32_t   id = ids[i];
    static FlPacket messages[6];
    const char*     addresses[6] = { "/load", "/play",   "/play",
                                     "/stop", "/unload", "/query" };
    fl_packet_message(&messages[0], "/load", "is", id, "/nonexistent.wav");
    fl_packet_message(&messages[1], "/play", "if", id, 1.0);
    fl_packet_message(&messages[2], "/play", "ii", id, 100);
    fl_packet_message(&messages[3], "/stop", "i", id);
    fl_packet_message(&messages[4], "/unload", "i", id);
    fl_packet_message(&messages[5], "/query", "i", id);
    for (size_t m = 0; m < 6; ++m) {
      const char* const got = UDP_CALL(&messages[m]);
      const char* const want =
        fl_text("/fail ,sis \"%s\" %d \"slot %d is out of range (0..31)\"",
                addresses[m],
                id,
                id);
      if (strcmp(got, want)) {
        fprintf(stderr, "got      %s\nexpected %s\n", got, want);
        ++wrong;
      }
    }
  }
  assert_int_equal(wrong, 0);
  assert_alive();
}

/* /play 1 (an empty slot) with a float velocity given as its bits. */
static const char*
play_float_bits(uint32_t bits)
{
  fl_packet_message(&packet, "/play", "if", 1, 0.0);
  // The float is the last word of the message, big-endian.
  unsigned char* const word = packet.data + packet.size - 4U;
  word[0]                   = (unsigned char)(bits >> 24U);
  word[1]                   = (unsigned char)(bits >> 16U);
  word[2]                   = (unsigned char)(bits >> 8U);
  word[3]                   = (unsigned char)bits;
  return UDP_CALL(&packet);
}

static void
test_bad_velocity(void** state)
{
  (void)state;
  static const struct {
    uint32_t    bits;
    const char* shown;
  } floats[] = {
    { 0x7FC00000U, "nan" },         // quiet NaN
    { 0xFFC00000U, "-nan" },        // negative NaN
    { 0x7F800001U, "nan" },         // signalling NaN
    { 0x7F800000U, "inf" },         // +infinity
    { 0xFF800000U, "-inf" },        // -infinity
    { 0xBDCCCCCDU, "-0.1" },        // -0.1f
    { 0x3FC00000U, "1.5" },         // 1.5f
    { 0x7F7FFFFFU, "3.40282e+38" }, // FLT_MAX
    { 0x80000001U, "-1.4013e-45" }, // the smallest negative denormal
    { 0xBF800000U, "-1" },
  };
  unsigned wrong = 0;
  for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); ++i) {
    const char* const got = play_float_bits(floats[i].bits);
    const char* const want =
      fl_text("/fail ,sis \"/play\" 1 \"velocity %s is not in [0, 1]\"",
              floats[i].shown);
    if (strcmp(got, want)) {
      fprintf(stderr,
              "0x%08X:\n  got      %s\n  expected %s\n",
              floats[i].bits,
              got,
              want);
      ++wrong;
    }
  }

  static const int32_t ints[] = { -1, 128, 1000, INT32_MIN, INT32_MAX };
  for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); ++i) {
    fl_packet_message(&packet, "/play", "ii", 1, ints[i]);
    const char* const got  = UDP_CALL(&packet);
    const char* const want = fl_text(
      "/fail ,sis \"/play\" 1 \"velocity %d is not in 0..127\"", ints[i]);
    if (strcmp(got, want)) {
      fprintf(stderr, "got      %s\nexpected %s\n", got, want);
      ++wrong;
    }
  }
  assert_int_equal(wrong, 0);

  // -0.0 is a velocity in [0, 1]; slot 1 is empty, so that is the answer.
  assert_string_equal(play_float_bits(0x80000000U),
                      "/fail ,sis \"/play\" 1 \"slot 1 is empty\"");
  assert_alive();
}

/*
  Addresses that are not in the table, including OSC address patterns:
  flitzid matches addresses exactly and does not expand patterns.
*/
static void
test_unknown_addresses(void** state)
{
  (void)state;
  char long_address[1001];
  long_address[0] = '/';
  memset(long_address + 1, 'z', 999);
  long_address[1000]            = '\0';
  const char* const addresses[] = {
    "/foo",          "/",
    "/load/",        "/load/extra",
    "/LOAD",         "/Play",
    "//ping",        "/pin",
    "/pingg",        "/pl*y",
    "/p?ng",         "/{ping,pong}",
    "/[a-z]ing",     "/pong",
    "/fail",         "/done",
    "/status.reply", "/stats.reply",
    "/event/xrun",   "/ping ",
    "/\xff\xfe",     long_address,
  };
  unsigned wrong = 0;
  for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); ++i) {
    fl_packet_message(&packet, addresses[i], i % 2 ? "is" : "", 0, "x");
    const char* const got = UDP_CALL(&packet);
    const char* const want =
      fl_text("/fail ,ss \"%s\" \"unknown address\"", addresses[i]);
    if (strcmp(got, want)) {
      fprintf(stderr, "got      %s\nexpected %s\n", got, want);
      ++wrong;
    }
  }
  assert_int_equal(wrong, 0);
  assert_alive();
}

/*
  Datagrams that are no OSC packet: no reply, each counted once in /stats
  dropped_packets (and in /status dropped_messages), none as a message.
  Sent one at a time, each followed by /ping: the /pong must be the next
  datagram to come back.
*/
static void
test_packets_without_reply(void** state)
{
  (void)state;
  static unsigned char zeros[65000];
  static unsigned char noise[65000];
  uint32_t             seed = 12345U;
  for (size_t i = 0; i < sizeof(noise); ++i) {
    seed     = seed * 1664525U + 1013904223U;
    noise[i] = (unsigned char)(seed >> 24U);
  }
  noise[0] = 'x';

  static const struct {
    const char* what;
    const char* bytes;
    size_t      size;
  } cases[] = {
    { "an empty datagram", "", 0 },
    { "1 byte", "/", 1 },
    { "3 bytes", "/pi", 3 },
    { "4 zero bytes", "\0\0\0\0", 4 },
    { "an address without '/'", "ping\0\0\0\0,\0\0\0", 12 },
    { "an unpadded address", "/ping", 5 },
    { "a message of 11 bytes", "/ping\0\0\0,\0\0", 11 },
    { "\"#bundle\" alone", "#bundle", 8 },
    { "a bundle of 12 bytes", "#bundle\0\0\0\0\0", 12 },
    { "\"#bun\"", "#bun", 4 },
  };

  FlPacket ping;
  assert_true(fl_packet_message(&ping, "/ping", ""));
  FlStats before;
  FlStats after;
  assert_true(fl_stats(rig.osc, &before));

  const size_t count = sizeof(cases) / sizeof(cases[0]);
  unsigned     wrong = 0;
  for (size_t i = 0; i < count + 2; ++i) {
    const char* const what  = i < count    ? cases[i].what
                              : i == count ? "65000 zero bytes"
                                           : "65000 bytes of noise";
    const void* const bytes = i < count    ? (const void*)cases[i].bytes
                              : i == count ? (const void*)zeros
                                           : (const void*)noise;
    const size_t      size  = i < count ? cases[i].size : 65000U;
    assert_true(fl_udp_send(udp, bytes, size));
    const char* const got = UDP_CALL(&ping);
    if (strcmp(got, "/pong ,si \"0.1.0\" 1")) {
      fprintf(stderr, "%s: the next reply is %s, not the /pong\n", what, got);
      ++wrong;
    }
  }
  assert_int_equal(wrong, 0);

  assert_true(fl_stats(rig.osc, &after));
  // Every garbage datagram dropped once; the /pings and the /stats read.
  assert_int_equal(after.dropped_packets - before.dropped_packets, count + 2);
  assert_int_equal(after.messages - before.messages, count + 2 + 1);
  assert_int_equal(after.failed - before.failed, 0);
}

/*
  Messages whose address is readable but whose body is not: a /fail naming
  the address, "malformed message". Each datagram is either a message read
  or a packet dropped, never both, so that sent = messages + dropped holds.
*/
static void
test_malformed_messages(void** state)
{
  (void)state;
  static const struct {
    const char* what;
    const char* bytes;
    size_t      size;
  } cases[] = {
    { "type tags without data", "/play\0\0\0,if\0", 12 },
    { "one int of two", "/query\0\0,ii\0\0\0\0\x05", 16 },
    { "a string without its end", "/load\0\0\0,is\0\0\0\0\0/abc", 20 },
    { "an unknown type tag", "/ping\0\0\0,x\0\0", 12 },
    { "no type-tag string", "/ping\0\0\0zzzz", 12 },
  };

  FlStats before;
  FlStats after;
  assert_true(fl_stats(rig.osc, &before));
  unsigned     wrong = 0;
  const size_t count = sizeof(cases) / sizeof(cases[0]);
  for (size_t i = 0; i < count; ++i) {
    packet.size = 0;
    fl_packet_bytes(&packet, cases[i].bytes, cases[i].size);
    const char* const got = UDP_CALL(&packet);
    const char* const want =
      fl_text("/fail ,ss \"%s\" \"malformed message\"", cases[i].bytes);
    if (strcmp(got, want)) {
      fprintf(stderr,
              "%s:\n  got      %s\n  expected %s\n",
              cases[i].what,
              got,
              want);
      ++wrong;
    }
  }
  assert_int_equal(wrong, 0);
  assert_true(fl_stats(rig.osc, &after));
  fprintf(stderr,
          "%zu malformed messages: messages +%lld, dropped_packets +%lld, "
          "failed +%lld\n",
          count,
          (long long)(after.messages - before.messages - 1),
          (long long)(after.dropped_packets - before.dropped_packets),
          (long long)(after.failed - before.failed));
  assert_int_equal(after.failed - before.failed, count);
  assert_int_equal((after.messages - before.messages - 1) +
                     (after.dropped_packets - before.dropped_packets),
                   count);
  assert_alive();
}

/* Send `packet` and count the /pong replies before the /slot of /query 5. */
static unsigned
pongs_of(const FlPacket* sent)
{
  assert_true(fl_udp_send_packet(udp, sent));
  FlPacket sentinel;
  fl_packet_message(&sentinel, "/query", "i", 5);
  assert_true(fl_udp_send_packet(udp, &sentinel));

  unsigned pongs = 0;
  for (;;) {
    FlReply* const reply = fl_udp_receive(udp, FL_TEST_REPLY_MS);
    assert_non_null(reply);
    const bool end = !strcmp(reply->path, "/slot");
    if (!end) {
      char line[1024];
      if (strcmp(reply->path, "/pong")) {
        fprintf(stderr,
                "unexpected: %s\n",
                fl_reply_format(reply, line, sizeof(line)));
      }
      assert_string_equal(reply->path, "/pong");
      ++pongs;
    }
    fl_reply_free(reply);
    if (end) {
      return pongs;
    }
  }
}

/* `depth` bundles, one inside the other, around /ping. */
static void
nested_ping(FlPacket* out, int depth)
{
  fl_packet_message(out, "/ping", "");
  for (int level = 0; level < depth; ++level) {
    inner = *out;
    fl_packet_bundle(out, 0U, 1U);
    fl_packet_element(out, &inner);
  }
}

static void
test_nested_bundles(void** state)
{
  (void)state;
  // Inner messages are executed, at every depth up to 8 bundles.
  for (int depth = 1; depth <= 8; ++depth) {
    nested_ping(&packet, depth);
    assert_int_equal(pongs_of(&packet), 1);
  }

  // A 9th level is dropped whole: no reply, counted once.
  FlStats before;
  FlStats after;
  assert_true(fl_stats(rig.osc, &before));
  nested_ping(&packet, 9);
  assert_int_equal(pongs_of(&packet), 0);
  assert_true(fl_stats(rig.osc, &after));
  assert_int_equal(after.dropped_packets - before.dropped_packets, 1);

  // Messages and bundles side by side; /query 0 in the middle answers too.
  FlPacket ping;
  FlPacket query;
  fl_packet_message(&ping, "/ping", "");
  fl_packet_message(&query, "/query", "i", 0);
  nested_ping(&element, 3);
  fl_packet_bundle(&packet, 0U, 1U);
  fl_packet_element(&packet, &ping);
  fl_packet_element(&packet, &element);
  fl_packet_element(&packet, &ping);
  assert_int_equal(pongs_of(&packet), 3);

  fl_packet_bundle(&inner, 0U, 1U);
  fl_packet_element(&inner, &query);
  fl_packet_bundle(&packet, 0U, 1U);
  fl_packet_element(&packet, &inner);
  char dc_path[PATH_MAX];
  fl_env_path(&rig.env, "dc.wav", dc_path, sizeof(dc_path));
  assert_string_equal(
    UDP_CALL(&packet),
    fl_text("/slot ,isiiii 0 \"%s\" %u 2 48000 1", dc_path, DC_FRAMES));

  // A far-future timetag: everything but /play runs at once.
  fl_packet_bundle(&packet, 0xFFFFFFF0U, 0U);
  fl_packet_element(&packet, &ping);
  assert_int_equal(pongs_of(&packet), 1);

  // An empty bundle, and one holding an unreadable element then /ping.
  fl_packet_bundle(&packet, 0U, 1U);
  assert_int_equal(pongs_of(&packet), 0);
  fl_packet_bundle(&packet, 0U, 1U);
  fl_packet_word(&packet, 4U);
  fl_packet_word(&packet, 0U);
  fl_packet_element(&packet, &ping);
  assert_int_equal(pongs_of(&packet), 1);
  assert_alive();
}

/*
  A bad element length ends the bundle: what came before it ran, the rest
  is dropped (counted once), the daemon goes on.
*/
static void
test_bad_bundle_lengths(void** state)
{
  (void)state;
  FlPacket ping;
  fl_packet_message(&ping, "/ping", "");
  static const struct {
    const char* what;
    uint32_t    length;
  } lengths[] = {
    { "length 0", 0U },
    { "length not a multiple of 4", 13U },
    { "length past the end", 4000U },
    { "length 0xFFFFFFFF", 0xFFFFFFFFU },
    { "length 0x80000000", 0x80000000U },
  };
  for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); ++i) {
    FlStats before;
    FlStats after;
    assert_true(fl_stats(rig.osc, &before));
    fl_packet_bundle(&packet, 0U, 1U);
    fl_packet_element(&packet, &ping);
    fl_packet_word(&packet, lengths[i].length);
    fl_packet_bytes(&packet, ping.data, ping.size);
    fl_packet_element(&packet, &ping);
    const unsigned pongs = pongs_of(&packet);
    assert_true(fl_stats(rig.osc, &after));
    if (pongs != 1 || after.dropped_packets - before.dropped_packets != 1) {
      fprintf(stderr,
              "%s: %u pongs, %lld dropped\n",
              lengths[i].what,
              pongs,
              (long long)(after.dropped_packets - before.dropped_packets));
    }
    assert_int_equal(pongs, 1);
    assert_int_equal(after.dropped_packets - before.dropped_packets, 1);
  }

  // Inside a nested bundle only the inner rest is lost: the outer goes on.
  fl_packet_bundle(&inner, 0U, 1U);
  fl_packet_element(&inner, &ping);
  fl_packet_word(&inner, 7U);
  fl_packet_bytes(&inner, ping.data, ping.size);
  fl_packet_bundle(&packet, 0U, 1U);
  fl_packet_element(&packet, &inner);
  fl_packet_element(&packet, &ping);
  assert_int_equal(pongs_of(&packet), 2);

  // An element cut short by the end of the datagram, and trailing bytes.
  fl_packet_bundle(&packet, 0U, 1U);
  fl_packet_element(&packet, &ping);
  fl_packet_word(&packet, (uint32_t)ping.size);
  fl_packet_bytes(&packet, ping.data, ping.size - 4U);
  assert_int_equal(pongs_of(&packet), 1);
  fl_packet_bundle(&packet, 0U, 1U);
  fl_packet_element(&packet, &ping);
  fl_packet_bytes(&packet, "\0\0", 2);
  assert_int_equal(pongs_of(&packet), 1);
  assert_alive();
}

/* Messages of up to 64 KB: a /fail with a short reason, never a crash. */
static void
test_huge_messages(void** state)
{
  (void)state;
  static char         path[65536];
  static const size_t lengths[] = { 60000U, 65480U };
  for (size_t i = 0; i < 2; ++i) {
    path[0] = '/';
    memset(path + 1, 'p', lengths[i] - 1U);
    path[lengths[i]] = '\0';
    assert_true(fl_packet_message(&packet, "/load", "is", 3, path));
    assert_true(packet.size > lengths[i]);
    assert_string_equal(UDP_CALL(&packet),
                        fl_text("/fail ,sis \"/load\" 3 \"cannot open "
                                "'%.200s...': File name too long\"",
                                path));
  }

  // An unknown address of 60000 characters is named in its /fail.
  path[0] = '/';
  memset(path + 1, 'u', 59999U);
  path[60000] = '\0';
  assert_true(fl_packet_message(&packet, path, ""));
  assert_true(fl_udp_send_packet(udp, &packet));
  FlReply* const reply = fl_udp_receive(udp, FL_TEST_REPLY_MS);
  assert_non_null(reply);
  assert_string_equal(reply->path, "/fail");
  assert_string_equal(reply->types, "ss");
  assert_string_equal(reply->argv[0].s, path);
  assert_string_equal(reply->argv[1].s, "unknown address");
  fl_reply_free(reply);

  // /ping with 12000 int arguments.
  lo_message const many = lo_message_new();
  for (int i = 0; i < 12000; ++i) {
    lo_message_add_int32(many, i);
  }
  size_t size = lo_message_length(many, "/ping");
  assert_true(size <= sizeof(packet.data));
  lo_message_serialise(many, "/ping", packet.data, &size);
  lo_message_free(many);
  packet.size = size;
  assert_string_equal(UDP_CALL(&packet),
                      "/fail ,ss \"/ping\" \"bad arguments: expected ,\"");
  assert_alive();
}

/* xorshift64: the same garbage on every run. */
static uint64_t
next_random(uint64_t* state)
{
  *state ^= *state << 13U;
  *state ^= *state >> 7U;
  *state ^= *state << 17U;
  return *state;
}

/*
  20000 datagrams of random bytes and of harmless messages with random bytes
  changed (never /play, /stop, /unload or /quit, so nothing can touch the
  DC voice by chance): the daemon answers /ping afterwards.
*/
static void
test_random_garbage(void** state)
{
  (void)state;
  FlPacket seeds[5];
  fl_packet_message(&seeds[0], "/ping", "");
  fl_packet_message(&seeds[1], "/query", "i", 5);
  fl_packet_message(&seeds[2], "/status", "");
  fl_packet_message(&seeds[3], "/load", "is", 7, "/nonexistent/x.wav");
  fl_packet_bundle(&seeds[4], 0U, 1U);
  fl_packet_element(&seeds[4], &seeds[0]);
  fl_packet_element(&seeds[4], &seeds[1]);

  uint64_t random = 0x9E3779B97F4A7C15ULL;
#define NEXT() next_random(&random)

  for (int i = 0; i < 20000; ++i) {
    if (i % 2) {
      packet.size = (size_t)(NEXT() % 2000U);
      for (size_t b = 0; b < packet.size; ++b) {
        packet.data[b] = (unsigned char)NEXT();
      }
      if (packet.size && NEXT() % 2U) {
        packet.data[0] = NEXT() % 2U ? '/' : '#';
      }
    } else {
      packet                 = seeds[NEXT() % 5U];
      const unsigned changes = 1U + (unsigned)(NEXT() % 3U);
      for (unsigned c = 0; c < changes; ++c) {
        const size_t at = (size_t)(NEXT() % packet.size);
        packet.data[at] = (unsigned char)NEXT();
      }
      if (NEXT() % 8U == 0U) {
        packet.size = (size_t)(NEXT() % packet.size);
      }
    }
    assert_true(fl_udp_send_packet(udp, &packet));
    if (i % 64 == 0) {
      fl_udp_drain(udp);
    }
  }
#undef NEXT
  fl_sleep_ms(50);
  fl_udp_drain(udp);
  assert_alive();
  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  assert_true(status.voices_active >= 1);
}

/*
  Bound to loopback by default: a datagram to 127.0.0.2 (loopback too, but
  not the address the socket is bound to) gets no reply, one to ::1 does;
  with --listen 0.0.0.0 the daemon answers on 127.0.0.2.
*/
static void
test_loopback_only(void** state)
{
  (void)state;
  assert_true(fl_packet_message(&packet, "/ping", ""));
  assert_true(fl_udp_send_to(
    udp, "127.0.0.2", rig.daemon.port, packet.data, packet.size));
  FlReply* const none = fl_udp_receive(udp, FL_TEST_SILENCE_MS);
  char           line[1024];
  if (none) {
    fprintf(
      stderr, "127.0.0.2 got %s\n", fl_reply_format(none, line, sizeof(line)));
  }
  assert_null(none);
  fl_reply_free(none);

  FlUdp* const v6 = fl_udp_new("::1", "::1", rig.daemon.port, 0);
  assert_non_null(v6);
  assert_string_equal(fl_udp_call(v6, &packet, FL_TEST_REPLY_MS),
                      "/pong ,si \"0.1.0\" 1");
  fl_udp_free(v6);

  FlUdp* const anywhere =
    fl_udp_new("127.0.0.1", "127.0.0.2", open_daemon.port, 0);
  assert_non_null(anywhere);
  assert_string_equal(fl_udp_call(anywhere, &packet, FL_TEST_REPLY_MS),
                      "/pong ,si \"0.1.0\" 1");
  fl_udp_free(anywhere);
  assert_alive();
}

/*
  With --sample-root, a path outside it gets byte for byte the same reply
  before and after the file is created.
*/
static void
test_outside_root_same_reply(void** state)
{
  (void)state;
  char absolute[PATH_MAX];
  fl_env_path(&rig.env, "appears.wav", absolute, sizeof(absolute));
  const char* const sent[] = { "../appears.wav", absolute };
  char              before[2][2048];
  for (size_t i = 0; i < 2; ++i) {
    snprintf(
      before[i],
      sizeof(before[i]),
      "%s",
      fl_osc_call(open_osc, FL_TEST_REPLY_MS, "/load", "is", 1, sent[i]));
    assert_string_equal(
      before[i],
      fl_text("/fail ,sis \"/load\" 1 \"'%s' is outside the sample root\"",
              sent[i]));
  }
  assert_true(fl_write_sample(
    absolute, FL_FILE_WAV_PCM16, FL_SIGNAL_TONE, 1, 48000, 480));
  for (size_t i = 0; i < 2; ++i) {
    assert_string_equal(
      fl_osc_call(open_osc, FL_TEST_REPLY_MS, "/load", "is", 1, sent[i]),
      before[i]);
  }
}

/* The DC voice, recorded while every test above ran, never broke. */
static void
test_audio_unbroken(void** state)
{
  (void)state;
  FlDaemonStatus status;
  assert_true(fl_osc_status(rig.osc, &status));
  const int64_t elapsed_ms = fl_now_ms() - dc_started_ms;
  fprintf(
    stderr,
    "the tests took %lld ms of the DC sample's %u s; voices sounding: %d\n",
    (long long)elapsed_ms,
    DC_SECONDS,
    status.voices_active);
  // The voice must still sound, or part of the attack went unwatched.
  assert_true(elapsed_ms < (int64_t)DC_SECONDS * 1000 - 1000);
  assert_int_equal(status.voices_active, 1);

  fl_recorder_stop(rig.recorder);
  const uint32_t frames = fl_recorder_frames(rig.recorder);
  assert_true(frames > (uint32_t)dc_onset);
  const uint32_t count = frames - (uint32_t)dc_onset;
  fprintf(
    stderr,
    "recorded %u frames of DC from frame %ld (%u xruns or skipped periods "
    "seen by the recorder, %d xruns counted by flitzid)\n",
    count,
    dc_onset,
    fl_recorder_glitches(rig.recorder),
    status.xruns);
  const long left =
    fl_find_deviation(rig.recorder, 0, (uint32_t)dc_onset, count, 0.5f, 1e-6f);
  const long right = fl_find_deviation(
    rig.recorder, 1, (uint32_t)dc_onset, count, -0.25f, 1e-6f);
  if (left >= 0 || right >= 0) {
    const long at = left >= 0 ? left : right;
    fprintf(stderr,
            "frame %ld (%.3f s after the onset): out_1 %.9g, out_2 %.9g\n",
            at,
            (double)(at - dc_onset) / FL_TEST_RATE,
            (double)fl_recorder_channel(rig.recorder, 0)[at],
            (double)fl_recorder_channel(rig.recorder, 1)[at]);
  }
  assert_int_equal(left, -1);
  assert_int_equal(right, -1);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_bad_types_every_address, test_setup),
    cmocka_unit_test_setup(test_out_of_range_ids, test_setup),
    cmocka_unit_test_setup(test_bad_velocity, test_setup),
    cmocka_unit_test_setup(test_unknown_addresses, test_setup),
    cmocka_unit_test_setup(test_packets_without_reply, test_setup),
    cmocka_unit_test_setup(test_malformed_messages, test_setup),
    cmocka_unit_test_setup(test_nested_bundles, test_setup),
    cmocka_unit_test_setup(test_bad_bundle_lengths, test_setup),
    cmocka_unit_test_setup(test_huge_messages, test_setup),
    cmocka_unit_test_setup(test_random_garbage, test_setup),
    cmocka_unit_test_setup(test_loopback_only, test_setup),
    cmocka_unit_test_setup(test_outside_root_same_reply, test_setup),
    cmocka_unit_test_setup(test_audio_unbroken, test_setup),
  };

  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  if (failures) {
    fl_daemon_print_log(&open_daemon);
  }
  return fl_rig_finish(&rig, failures);
}
