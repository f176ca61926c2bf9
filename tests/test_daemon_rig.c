/*
  The performer's rig (OSC API v2, §1 eq_* / bus / hold, §4, §6 analysis)
  as a user hears and sees it: a real jackd, a real flitzid started with
  `--buses 2 --midi`, OSC over UDP, flitzid's four outputs recorded by a
  JACK client of our own, and MIDI from jackd2's jack_midiseq.

  - The isolator: a sample of three sines (60 Hz, 1 kHz, 10 kHz) played
    with each band killed in turn; each sine's level, fitted over whole
    cycles of all three, against the ideal LR4 response (the analog
    Linkwitz-Riley response at the frequency the prewarped bilinear
    transform maps f to, as tests/test_isolator.c computes it). All bands
    back at 0 dB: the recording is the sample, bit for bit.
  - Buses: a slot on bus 1 sounds on out_3/out_4 only; the master gain is
    bus 0's.
  - MIDI: jack_midiseq loops a sequence; a MIDI client of this file (the
    "MIDI probe") is connected to jack_midiseq's port too and records every
    event with its absolute JACK frame, so the frame of every note flitzid
    got is known exactly (and checked against the sequence: loop start +
    index + k * loop length). The probe can also send notes of its own at
    an exact frame (other channels, a note exactly on a grid line).
    flitzid is connected to jack_midiseq only after the probe has seen the
    sequence's phase, inside a stretch of the loop without events, so the
    notes flitzid got are exactly the probe's notes after that moment,
    and /stats must count them exactly.
  - /analyze on click tracks written here; /waveform against the min/max
    computed here; bad input for every new option, key and address.

  Frames: the recorder's index i is absolute JACK frame first_frame + i as
  long as fl_recorder_glitches() is 0; a take that the server spoiled (an
  xrun, a skipped period) says nothing about flitzid and is made again.
*/
#include "harness.h"

#include <jack/jack.h>
#include <jack/midiport.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lo/lo.h>
#include <sndfile.h>

#include <arpa/inet.h>
#include <complex.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#define RATE FL_TEST_RATE
#define PERIOD FL_TEST_PERIOD
#define BUSES 2U
#define PORTS (2U * BUSES)
#define RECORD_FRAMES (30U * RATE)

/* Takes of one scenario before giving up on a machine that glitches. */
#define CAPTURE_ATTEMPTS 6

/* The contract's fades at 48 kHz: /release and note-off (5 ms). */
#define RELEASE_FADE_FRAMES 240

/* jack_midiseq's velocity, and the gain flitzid makes of it. */
#define SEQ_VELOCITY 64
#define SEQ_GAIN ((float)SEQ_VELOCITY / 127.0f)

/* Length of the short one-shots the MIDI tests play: 10 ms of DC. */
#define BLIP_FRAMES 480U

/* Slots of the main daemon (32 slots, --midi-base 36). */
#define SLOT_EQ 0         /* 2.5 s: 60 Hz + 1 kHz + 10 kHz, 0.25 each */
#define SLOT_BUS 1        /* 0.5 s stereo ramps, bus 1 */
#define SLOT_DC 2         /* 1 s stereo DC 0.5 / -0.25 */
#define SLOT_NOTE 4       /* 4..7: blips of 0.1, 0.2, 0.3, 0.4; keys 40..43 */
#define SLOT_HOLD 8       /* key 44: DC loop 0.5, hold 1, bus 0 */
#define SLOT_NO_HOLD 9    /* key 45: DC loop 0.5, hold 0, bus 1 */
#define SLOT_GRID 10      /* key 46: a blip of 0.5 */
#define SLOT_GRID_EDGE 11 /* key 47: a blip of 0.5, bus 1 */
#define SLOT_CLICKS 12    /* 12..14: click tracks; 15: noise */
#define SLOT_NOISE 15
#define SLOT_WAVE 16 /* 1 s stereo: the waveform's sample */
#define SLOT_EMPTY 31
#define SLOTS_USED 17
#define MIDI_BASE 36

/* The second daemon: --midi --midi-channel 2 --midi-base 60. */
#define OTHER_BASE 60

static FlRig    rig;
static FlDaemon other;
static FlOsc*   other_osc;

#define CALL(...) fl_osc_call(rig.osc, FL_TEST_REPLY_MS, __VA_ARGS__)

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

#define SET(...) SEND_OK("/slot/set", __VA_ARGS__)

/* ---- Files ---- */

static float*
new_samples(size_t count)
{
  float* const samples = (float*)calloc(count, sizeof(float));
  assert_non_null(samples);
  return samples;
}

/* Write `frames` frames of `channels` interleaved floats as a float WAV. */
static void
write_wav(const char*  name,
          const float* samples,
          uint32_t     frames,
          unsigned     channels,
          char*        path,
          size_t       path_size)
{
  fl_env_path(&rig.env, name, path, path_size);
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  info.samplerate     = (int)RATE;
  info.channels       = (int)channels;
  info.format         = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  SNDFILE* const file = sf_open(path, SFM_WRITE, &info);
  if (!file) {
    fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
    fail();
  }
  assert_int_equal(sf_writef_float(file, samples, frames), frames);
  assert_int_equal(sf_close(file), 0);
}

static void
load_on(FlOsc*       osc,
        int          slot,
        const char*  name,
        const float* samples,
        uint32_t     frames,
        unsigned     channels)
{
  char path[PATH_MAX];
  write_wav(name, samples, frames, channels, path, sizeof(path));
  assert_string_equal(
    fl_osc_call(osc, 10000, "/load", "is", slot, path),
    text("/done ,siiii \"/load\" %d %u %u %u", slot, frames, channels, RATE));
}

static void
load(int          slot,
     const char*  name,
     const float* samples,
     uint32_t     frames,
     unsigned     channels)
{
  load_on(rig.osc, slot, name, samples, frames, channels);
}

/* A mono one-shot of `frames` frames of `value`. */
static void
load_dc(FlOsc* osc, int slot, float value, uint32_t frames)
{
  float* const samples = new_samples(frames);
  for (uint32_t i = 0; i < frames; ++i) {
    samples[i] = value;
  }
  load_on(osc, slot, text("dc-%d-%u.wav", slot, frames), samples, frames, 1);
  free(samples);
}

/* The value of the blips of the MIDI slots. */
static float
note_value(int slot)
{
  return slot == SLOT_GRID || slot == SLOT_GRID_EDGE
           ? 0.5f
           : 0.1f * (float)(slot - SLOT_NOTE + 1);
}

/* ---- Takes ---- */

static void
take_begin(void)
{
  fl_recorder_start(rig.recorder);
  assert_true(fl_recorder_wait(rig.recorder, 1, 2000));
}

/* Stop recording; true if the take is clean. A spoiled take is reported
   and its voices stopped, for the caller to make it again. */
static bool
take_end(const char* what)
{
  fl_recorder_stop(rig.recorder);
  const unsigned glitches = fl_recorder_glitches(rig.recorder);
  if (!glitches) {
    return true;
  }
  fprintf(stderr,
          "%s: %u xrun(s) or skipped period(s) while recording; recording "
          "again\n",
          what,
          glitches);
  assert_true(fl_rig_quiet(&rig, 2000));
  return false;
}

#define TAKES(attempt)                                               \
  for (int attempt = 1;; ++attempt)                                  \
    if (attempt > CAPTURE_ATTEMPTS) {                                \
      fail_msg("no clean capture in %d attempts", CAPTURE_ATTEMPTS); \
    } else

static const float*
recorded(unsigned channel)
{
  return fl_recorder_channel(rig.recorder, channel);
}

static long
recorded_frames(void)
{
  return (long)fl_recorder_frames(rig.recorder);
}

/* The recorder index of absolute frame `frame` (a clean take). */
static long
index_of(jack_nframes_t frame)
{
  return (long)(int32_t)(frame - fl_recorder_first_frame(rig.recorder));
}

/* Wait until `frames` frames are recorded. */
static void
wait_recorded(long frames)
{
  assert_true(fl_recorder_wait(rig.recorder, (uint32_t)frames, 10000));
}

/* Wait for the first frame of `channel` from `from` on that is not 0, and
   for `after` frames past it. Returns its index, or fails. */
static long
wait_sound(unsigned channel, uint32_t from, uint32_t after)
{
  const int64_t deadline = fl_now_ms() + 5000;
  long          onset    = -1;
  while (onset < 0 && fl_now_ms() < deadline) {
    const uint32_t frames = fl_recorder_frames(rig.recorder);
    fl_recorder_wait(rig.recorder, frames + PERIOD, 100);
    onset = fl_recorder_onset(rig.recorder, channel, 0.0f, from);
  }
  if (onset < 0) {
    fprintf(stderr, "no sound on out_%u from frame %u on\n", channel + 1, from);
    fail();
  }
  wait_recorded(onset + (long)after);
  return onset;
}

/* Every frame of `channel` in [from, to) is exactly `value`. */
static void
assert_level_at(int line, unsigned channel, long from, long to, float value)
{
  const float* const out = recorded(channel);
  for (long i = from; i < to; ++i) {
    if (out[i] != value) {
      fprintf(stderr,
              "line %d: out_%u frame %ld is %.9g, expected %.9g in [%ld, "
              "%ld)\n",
              line,
              channel + 1,
              i,
              (double)out[i],
              (double)value,
              from,
              to);
      fail();
    }
  }
}

#define assert_level(channel, from, to, value) \
  assert_level_at(__LINE__, (channel), (from), (to), (value))
#define assert_silent(channel, from, to) \
  assert_level_at(__LINE__, (channel), (from), (to), 0.0f)

/* ---- Replies ---- */

/* /stats.reply's 7th and 8th fields: MIDI notes taken and ignored. */
typedef struct {
  int64_t taken;
  int64_t ignored;
} NoteCounts;

static NoteCounts
note_counts(FlOsc* osc)
{
  NoteCounts counts = { -1, -1 };
  assert_true(fl_osc_send(osc, "/stats", ""));
  FlReply* const reply = fl_osc_wait(osc, "/stats.reply", FL_TEST_REPLY_MS);
  assert_non_null(reply);
  if (reply->argc < 8 || strncmp(reply->types, "hhhhhhhh", 8)) {
    fprintf(stderr, "/stats.reply ,%s\n", reply->types);
    fail();
  }
  counts.taken   = reply->argv[6].value.h;
  counts.ignored = reply->argv[7].value.h;
  fl_reply_free(reply);
  return counts;
}

static double
query_beats(void)
{
  assert_true(fl_osc_send(rig.osc, "/transport", ""));
  FlReply* const reply =
    fl_osc_wait(rig.osc, "/transport.reply", FL_TEST_REPLY_MS);
  assert_non_null(reply);
  assert_string_equal(reply->types, "sfidi");
  const double beats = reply->argv[3].value.d;
  fl_reply_free(reply);
  return beats;
}

/* ---- The MIDI probe: a JACK client of ours on the same server ---- */

typedef struct {
  jack_nframes_t frame; /* absolute JACK frame */
  uint8_t        bytes[3];
} MidiEvent;

#define PROBE_EVENTS 4096U
#define PROBE_SENDS 256U

typedef struct {
  jack_client_t* client;
  jack_port_t*   input;  /* connected to jack_midiseq's out */
  jack_port_t*   output; /* to flitzid's midi_in, when a test routes it */
  MidiEvent      events[PROBE_EVENTS]; /* the RT thread writes [count..) */
  MidiEvent      sends[PROBE_SENDS];   /* the main thread writes [count..) */
  atomic_uint    event_count; /* release: events[< count] are written */
  atomic_uint    send_count;  /* release: sends[< count] are written */
  atomic_uint    sent;        /* sends the RT thread has written out */
  atomic_uint    late;        /* sends whose frame had passed */
} MidiProbe;

static MidiProbe midi;

/*
  Code and data used in the realtime process thread: the probe's buffers
  are preallocated, its counters atomic.
*/
static int
on_midi_process(jack_nframes_t frames, void* data)
{
  MidiProbe* const     probe = (MidiProbe*)data;
  void* const          in    = jack_port_get_buffer(probe->input, frames);
  void* const          out   = jack_port_get_buffer(probe->output, frames);
  const jack_nframes_t first = jack_last_frame_time(probe->client);
  jack_midi_clear_buffer(out);

  unsigned count =
    atomic_load_explicit(&probe->event_count, memory_order_relaxed);
  const uint32_t events = jack_midi_get_event_count(in);
  for (uint32_t i = 0; i < events && count < PROBE_EVENTS; ++i) {
    jack_midi_event_t event;
    if (jack_midi_event_get(&event, in, i) || event.size < 1) {
      continue;
    }
    MidiEvent* const kept = &probe->events[count++];
    kept->frame           = first + event.time;
    memset(kept->bytes, 0, sizeof(kept->bytes));
    memcpy(kept->bytes, event.buffer, event.size < 3 ? event.size : 3);
  }
  atomic_store_explicit(&probe->event_count, count, memory_order_release);

  // Sends are in frame order; each goes out in the period of its frame.
  unsigned next = atomic_load_explicit(&probe->sent, memory_order_relaxed);
  const unsigned total =
    atomic_load_explicit(&probe->send_count, memory_order_acquire);
  while (next < total) {
    const MidiEvent* const send   = &probe->sends[next];
    const int32_t          offset = (int32_t)(send->frame - first);
    if (offset >= (int32_t)frames) {
      break;
    }
    if (offset < 0) {
      atomic_fetch_add_explicit(&probe->late, 1, memory_order_relaxed);
    }
    jack_midi_event_write(
      out, offset < 0 ? 0U : (jack_nframes_t)offset, send->bytes, 3);
    ++next;
  }
  atomic_store_explicit(&probe->sent, next, memory_order_release);
  return 0;
}

/* End of the realtime part. */

static bool
probe_open(const char* server)
{
  char name[64];
  snprintf(name, sizeof(name), "fl-midi-%ld", (long)getpid());
  midi.client = fl_jack_open(server, name);
  if (!midi.client) {
    return false;
  }
  midi.input = jack_port_register(
    midi.client, "in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
  midi.output = jack_port_register(
    midi.client, "out", JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, 0);
  if (!midi.input || !midi.output) {
    return false;
  }
  jack_set_process_callback(midi.client, on_midi_process, &midi);
  return jack_activate(midi.client) == 0;
}

static void
probe_close(void)
{
  if (midi.client) {
    jack_deactivate(midi.client);
    jack_client_close(midi.client);
    midi.client = NULL;
  }
}

static unsigned
probe_events(void)
{
  return atomic_load_explicit(&midi.event_count, memory_order_acquire);
}

/* Send three bytes at absolute frame `frame` (later than every send
   before it). */
static void
probe_send(jack_nframes_t frame, uint8_t status, uint8_t key, uint8_t velocity)
{
  const unsigned count =
    atomic_load_explicit(&midi.send_count, memory_order_relaxed);
  assert_true(count < PROBE_SENDS);
  midi.sends[count] = (MidiEvent){ frame, { status, key, velocity } };
  atomic_store_explicit(&midi.send_count, count + 1, memory_order_release);
}

/* Wait until every send has gone out; fails if one went out late. */
static void
probe_flush(void)
{
  const int64_t deadline = fl_now_ms() + 20000;
  while (atomic_load_explicit(&midi.sent, memory_order_acquire) <
           atomic_load_explicit(&midi.send_count, memory_order_relaxed) &&
         fl_now_ms() < deadline) {
    fl_sleep_ms(5);
  }
  assert_int_equal(
    atomic_load_explicit(&midi.sent, memory_order_acquire),
    atomic_load_explicit(&midi.send_count, memory_order_relaxed));
  assert_int_equal(atomic_load_explicit(&midi.late, memory_order_relaxed), 0);
}

static jack_nframes_t
frame_now(void)
{
  return jack_frame_time(midi.client);
}

static void
wait_until_frame(jack_nframes_t frame)
{
  for (;;) {
    const int32_t left = (int32_t)(frame - frame_now());
    if (left <= 0) {
      return;
    }
    fl_sleep_ms(1 + (int)((int64_t)left * 1000 / RATE / 2));
  }
}

/* Connect (or disconnect) the probe's output to `daemon`'s midi_in. */
static void
probe_route(const FlDaemon* daemon, bool on)
{
  char port[128];
  snprintf(port, sizeof(port), "%s:midi_in", daemon->name);
  const char* const from   = jack_port_name(midi.output);
  const int         status = on ? jack_connect(midi.client, from, port)
                                : jack_disconnect(midi.client, from, port);
  assert_true(status == 0 || (on && status == EEXIST));
  fl_sleep_ms(50);
}

/* ---- jack_midiseq ---- */

typedef struct {
  uint32_t start; /* index in the loop of the note-on */
  uint8_t  key;
  uint32_t length; /* note-off at start + length (< the loop) */
} SeqNote;

#define SEQ_MAX_NOTES 8

typedef struct {
  uint32_t loop_frames;
  unsigned count;
  SeqNote  notes[SEQ_MAX_NOTES];
  uint32_t quiet_from; /* a stretch of the loop without events, in which */
  uint32_t quiet_to;   /* flitzid is connected; quiet_to may pass the loop */
} Sequence;

/* A MIDI take: the sequencer's process and what the probe learnt. */
typedef struct {
  pid_t          pid;
  char           name[64];
  jack_nframes_t loop_start; /* the absolute frame of one loop's start */
  jack_nframes_t before;     /* flitzid was connected between these */
  jack_nframes_t after;
  unsigned       first_event; /* the probe's events of this take */
  unsigned       end_event;
} MidiTake;

static bool
find_program(const char* name, char* path, size_t path_size)
{
  const char* const search = getenv("PATH");
  const char*       at     = search ? search : "/usr/bin:/bin";
  while (*at) {
    const char* const end    = strchr(at, ':');
    const size_t      length = end ? (size_t)(end - at) : strlen(at);
    snprintf(path, path_size, "%.*s/%s", (int)length, at, name);
    if (access(path, X_OK) == 0) {
      return true;
    }
    at += length + (end ? 1 : 0);
  }
  return false;
}

/* Start `jack_midiseq NAME LOOP [START KEY LENGTH]...` on the test's
   server, its output in the test's directory. */
static bool
sequencer_spawn(MidiTake* take, const Sequence* sequence)
{
  char program[PATH_MAX];
  if (!find_program("jack_midiseq", program, sizeof(program))) {
    fprintf(stderr, "jack_midiseq (jackd2's example clients) not in PATH\n");
    return false;
  }
  fl_env_name(&rig.env, take->name, sizeof(take->name));

  static char numbers[1 + 3 * SEQ_MAX_NOTES][16];
  const char* argv[4 + 3 * SEQ_MAX_NOTES];
  int         argc = 0;
  argv[argc++]     = program;
  argv[argc++]     = take->name;
  snprintf(numbers[0], sizeof(numbers[0]), "%u", sequence->loop_frames);
  argv[argc++] = numbers[0];
  for (unsigned n = 0; n < sequence->count; ++n) {
    const SeqNote* const note = &sequence->notes[n];
    snprintf(numbers[1 + 3 * n], sizeof(numbers[0]), "%u", note->start);
    snprintf(numbers[2 + 3 * n], sizeof(numbers[0]), "%u", note->key);
    snprintf(numbers[3 + 3 * n], sizeof(numbers[0]), "%u", note->length);
    argv[argc++] = numbers[1 + 3 * n];
    argv[argc++] = numbers[2 + 3 * n];
    argv[argc++] = numbers[3 + 3 * n];
  }
  argv[argc] = NULL;

  // The environment, made before fork(): only exec follows it.
  static char server[128];
  snprintf(server, sizeof(server), "JACK_DEFAULT_SERVER=%s", rig.jackd.name);
  size_t count = 0;
  while (environ[count]) {
    ++count;
  }
  const char** const envp = (const char**)calloc(count + 3, sizeof(char*));
  assert_non_null(envp);
  size_t kept = 0;
  for (size_t i = 0; i < count; ++i) {
    if (strncmp(environ[i], "JACK_DEFAULT_SERVER=", 20) &&
        strncmp(environ[i], "JACK_NO_START_SERVER=", 21)) {
      envp[kept++] = environ[i];
    }
  }
  envp[kept++] = server;
  envp[kept++] = "JACK_NO_START_SERVER=1";
  envp[kept]   = NULL;

  char log_path[PATH_MAX];
  fl_env_path(&rig.env, "jack_midiseq.log", log_path, sizeof(log_path));
  const int   log    = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  const pid_t parent = getpid();
  const pid_t pid    = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
      _exit(127);
    }
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    execve(program, (char* const*)argv, (char* const*)envp);
    _exit(127);
  }
  if (log >= 0) {
    close(log);
  }
  free(envp);
  take->pid = pid > 0 ? pid : 0;
  return pid > 0;
}

static void
sequencer_stop(MidiTake* take)
{
  if (!take->pid) {
    return;
  }
  kill(take->pid, SIGTERM);
  int           status   = 0;
  const int64_t deadline = fl_now_ms() + 3000;
  while (waitpid(take->pid, &status, WNOHANG) == 0) {
    if (fl_now_ms() > deadline) {
      kill(take->pid, SIGKILL);
      waitpid(take->pid, &status, 0);
      break;
    }
    fl_sleep_ms(5);
  }
  take->pid = 0;
}

/* The index in the loop of an event of `sequence`, or -1. */
static long
sequence_index(const Sequence* sequence, const MidiEvent* event)
{
  const uint8_t type = event->bytes[0] & 0xF0U;
  for (unsigned n = 0; n < sequence->count; ++n) {
    const SeqNote* const note = &sequence->notes[n];
    if (note->key == event->bytes[1]) {
      return type == 0x90U   ? (long)note->start
             : type == 0x80U ? (long)(note->start + note->length)
                             : -1;
    }
  }
  return -1;
}

static uint32_t
loop_phase(const Sequence* sequence, const MidiTake* take, jack_nframes_t frame)
{
  return (uint32_t)(frame - take->loop_start) % sequence->loop_frames;
}

/* The frame's place in the loop, counted from the loop start before the
   quiet stretch: in quiet_from..quiet_to if it is in that stretch. */
static uint32_t
quiet_phase(const Sequence* sequence,
            const MidiTake* take,
            jack_nframes_t  frame)
{
  const uint32_t phase = loop_phase(sequence, take, frame);
  return phase < sequence->quiet_from ? phase + sequence->loop_frames : phase;
}

/*
  Start jack_midiseq with `sequence`, connect it to the probe, learn the
  loop's phase from the first event, and connect it to `target`'s midi_in
  (if not NULL) inside the sequence's quiet stretch. Returns false (the
  sequencer stopped) if that could not be done in the quiet stretch.
*/
static bool
midi_take_begin(MidiTake*       take,
                const Sequence* sequence,
                const FlDaemon* target)
{
  memset(take, 0, sizeof(*take));
  take->first_event = probe_events();
  if (!sequencer_spawn(take, sequence)) {
    fail();
  }
  char port[128];
  snprintf(port, sizeof(port), "%s:out", take->name);
  const int64_t deadline = fl_now_ms() + 5000;
  while (!jack_port_by_name(midi.client, port)) {
    if (fl_now_ms() > deadline || waitpid(take->pid, NULL, WNOHANG) != 0) {
      fprintf(stderr, "jack_midiseq's port %s did not appear\n", port);
      fail();
    }
    fl_sleep_ms(5);
  }
  // The port is there before its client is active, and cannot be
  // connected until it is.
  while (jack_connect(midi.client, port, jack_port_name(midi.input))) {
    if (fl_now_ms() > deadline) {
      fprintf(stderr, "cannot connect %s\n", port);
      fail();
    }
    fl_sleep_ms(5);
  }

  // The phase: the first event the probe sees, and its index in the loop.
  const int64_t first_deadline =
    fl_now_ms() + 5000 + 2000LL * sequence->loop_frames / RATE;
  while (probe_events() == take->first_event) {
    if (fl_now_ms() > first_deadline) {
      fprintf(stderr, "no MIDI from %s\n", port);
      fail();
    }
    fl_sleep_ms(5);
  }
  const MidiEvent* const first = &midi.events[take->first_event];
  const long             index = sequence_index(sequence, first);
  assert_true(index >= 0);
  take->loop_start = first->frame - (jack_nframes_t)index;

  // Into the quiet stretch, with a margin of eight periods on either side.
  const uint32_t margin = 8U * PERIOD;
  const uint32_t phase  = quiet_phase(sequence, take, frame_now());
  if (phase < sequence->quiet_from + margin ||
      phase + margin > sequence->quiet_to) {
    const uint32_t loop_phase_now = loop_phase(sequence, take, frame_now());
    const uint32_t target_phase   = sequence->quiet_from + margin;
    wait_until_frame(frame_now() +
                     (target_phase + sequence->loop_frames - loop_phase_now) %
                       sequence->loop_frames);
  }
  take->before = frame_now();
  if (target) {
    char to[128];
    snprintf(to, sizeof(to), "%s:midi_in", target->name);
    assert_int_equal(jack_connect(midi.client, port, to), 0);
  }
  // The connection takes effect from a cycle after the call returned.
  take->after               = frame_now() + 2U * PERIOD;
  const uint32_t from_phase = quiet_phase(sequence, take, take->before);
  const uint32_t to_phase   = from_phase + (take->after - take->before);
  if (from_phase < sequence->quiet_from || to_phase >= sequence->quiet_to) {
    fprintf(stderr,
            "connected at loop frames %u..%u, outside the quiet stretch "
            "%u..%u; again\n",
            from_phase,
            to_phase,
            sequence->quiet_from,
            sequence->quiet_to);
    sequencer_stop(take);
    return false;
  }
  return true;
}

/* The absolute frame of the first note-on of `key` at or after `frame`. */
static jack_nframes_t
next_note_on(const Sequence* sequence,
             const MidiTake* take,
             uint8_t         key,
             jack_nframes_t  frame)
{
  for (unsigned n = 0; n < sequence->count; ++n) {
    if (sequence->notes[n].key == key) {
      const jack_nframes_t start = take->loop_start + sequence->notes[n].start;
      const uint32_t       since = (uint32_t)(frame - start);
      const uint32_t       loops =
        (since + sequence->loop_frames - 1U) / sequence->loop_frames;
      return start + loops * sequence->loop_frames;
    }
  }
  fail();
  return 0;
}

/*
  Stop the sequencer and check what the probe saw: every event sits at the
  loop start + its index + a whole number of loops, and none between
  `before` and `after`. Returns false if not: jack_midiseq counts its loop
  in the frames it processed, so a cycle it missed (a busy machine) moves
  the rest of its loop; the take is made again.
*/
static bool
midi_take_end(MidiTake* take, const Sequence* sequence)
{
  sequencer_stop(take);
  fl_sleep_ms(20);
  take->end_event = probe_events();
  for (unsigned e = take->first_event; e < take->end_event; ++e) {
    const MidiEvent* const event = &midi.events[e];
    const long             index = sequence_index(sequence, event);
    if (index < 0 ||
        loop_phase(sequence, take, event->frame) != (uint32_t)index) {
      fprintf(stderr,
              "MIDI event %02x %02x %02x at frame %u: not at its place in "
              "the loop (index %ld, loop frame %u); again\n",
              event->bytes[0],
              event->bytes[1],
              event->bytes[2],
              event->frame,
              index,
              loop_phase(sequence, take, event->frame));
      return false;
    }
    if ((int32_t)(event->frame - take->before) >= 0 &&
        (int32_t)(event->frame - take->after) < 0) {
      fprintf(stderr,
              "MIDI event at frame %u while connecting; again\n",
              event->frame);
      return false;
    }
  }
  return true;
}

/* Did the take's event `e` reach flitzid? */
static bool
delivered(const MidiTake* take, unsigned e)
{
  return (int32_t)(midi.events[e].frame - take->after) >= 0;
}

/* ---- Set-up ---- */

static bool
start_daemon(FlDaemon* daemon, const char* const* args, unsigned ports)
{
  char name[64];
  fl_env_name(&rig.env, name, sizeof(name));
  const int port = fl_env_port(&rig.env);
  return port > 0 &&
         fl_daemon_spawn(daemon, &rig.env, rig.jackd.name, name, port, args) &&
         fl_daemon_wait_ready(daemon, ports, 10000);
}

static int
group_setup(void** state)
{
  (void)state;
  memset(&rig, 0, sizeof(rig));
  if (!fl_env_init(&rig.env, "rig")) {
    return -1;
  }
  char server[64];
  fl_env_name(&rig.env, server, sizeof(server));
  if (!fl_jackd_start(&rig.jackd, &rig.env, server, PERIOD)) {
    return -1;
  }
  static const char* const main_args[]  = { "--buses", "2", "--midi", NULL };
  static const char* const other_args[] = { "--midi", "--midi-channel",
                                            "2",      "--midi-base",
                                            "60",     NULL };
  if (!start_daemon(&rig.daemon, main_args, PORTS) ||
      !start_daemon(&other, other_args, 2)) {
    return -1;
  }
  rig.osc      = fl_osc_new(rig.daemon.port);
  other_osc    = fl_osc_new(other.port);
  rig.recorder = fl_recorder_new(server, rig.daemon.name, PORTS, RECORD_FRAMES);
  return rig.osc && other_osc && rig.recorder && probe_open(server) ? 0 : -1;
}

static int
group_teardown(void** state)
{
  (void)state;
  probe_close();
  fl_osc_free(other_osc);
  other_osc          = NULL;
  const int  status  = other.pid ? fl_daemon_stop(&other) : 0;
  const bool stopped = fl_rig_stop(&rig);
  if (status != 0) {
    fprintf(stderr, "the second flitzid exited with %d\n", status);
  }
  return stopped && status == 0 ? 0 : -1;
}

/* Before each test: silence, no quantization, master at 0 dB, default
   settings for every slot used. */
static int
test_setup(void** state)
{
  (void)state;
  if (!rig.recorder || !fl_rig_quiet(&rig, 2000)) {
    return -1;
  }
  jack_port_disconnect(midi.client, midi.output);
  fl_osc_send(rig.osc, "/quantize", "s", "off");
  fl_osc_send(rig.osc, "/master/gain", "f", 0.0);
  for (int slot = 0; slot < SLOTS_USED; ++slot) {
    fl_osc_send(rig.osc, "/slot/reset", "i", slot);
  }
  const char* const pong = CALL("/ping", "");
  return strncmp(pong, "/pong ", 6) ? -1 : 0;
}

/* ---- The isolator ---- */

static const double eq_hz[3]    = { 60.0, 1000.0, 10000.0 };
static const double eq_phase[3] = { 0.0, 0.5, 1.0 };
#define EQ_AMPLITUDE 0.25
#define EQ_FRAMES (RATE * 5U / 2U)
#define EQ_SETTLE RATE /* fit from 1 s after the onset ... */
#define EQ_FIT RATE    /* ... over 1 s: whole cycles of all three */

static float
eq_value(uint32_t n)
{
  double sum = 0.0;
  for (int k = 0; k < 3; ++k) {
    sum += sin(2.0 * M_PI * eq_hz[k] * n / RATE + eq_phase[k]);
  }
  return (float)(EQ_AMPLITUDE * sum);
}

static double complex
butterworth(double f, double fc, bool high)
{
  const double         warped = tan(M_PI * f / RATE) / tan(M_PI * fc / RATE);
  const double complex s      = I * warped;
  const double complex d      = s * s + M_SQRT2 * s + 1.0;
  return high ? s * s / d : 1.0 / d;
}

/* The ideal three-band response at f, in dB, for linear band gains: the
   low band through the allpass an LR4 pair at 4 kHz sums to. */
static double
ideal_db(double f, double low, double mid, double high)
{
  const double complex lp1   = cpow(butterworth(f, 250.0, false), 2);
  const double complex hp1   = cpow(butterworth(f, 250.0, true), 2);
  const double complex lp2   = cpow(butterworth(f, 4000.0, false), 2);
  const double complex hp2   = cpow(butterworth(f, 4000.0, true), 2);
  const double complex align = lp2 + hp2;
  return 20.0 *
         log10(cabs(low * lp1 * align + mid * hp1 * lp2 + high * hp1 * hp2));
}

/* The level of the sine at `hz` in `count` frames (whole cycles of every
   sine in the sample, so the others do not leak in), in dB of
   EQ_AMPLITUDE. */
static double
fitted_db(const float* out, uint32_t count, double hz)
{
  double s = 0.0, c = 0.0;
  for (uint32_t n = 0; n < count; ++n) {
    s += out[n] * sin(2.0 * M_PI * hz * n / RATE);
    c += out[n] * cos(2.0 * M_PI * hz * n / RATE);
  }
  const double amplitude = 2.0 * sqrt(s * s + c * c) / count;
  return 20.0 * log10(amplitude / EQ_AMPLITUDE);
}

/* Play SLOT_EQ at velocity 1 and record it from its onset to its end and
   a period beyond; returns the onset. */
static long
capture_eq(const char* what)
{
  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_EQ, 1.0));
    onset = wait_sound(0, 0, EQ_FRAMES + PERIOD);
    if (take_end(what)) {
      break;
    }
  }
  assert_silent(0, 0, onset);
  return onset;
}

static void
test_isolator(void** state)
{
  (void)state;
  float* const sample = new_samples(EQ_FRAMES);
  for (uint32_t n = 0; n < EQ_FRAMES; ++n) {
    sample[n] = eq_value(n);
  }
  load(SLOT_EQ, "three-sines.wav", sample, EQ_FRAMES, 1);

  // Each band killed in turn (-60 dB is silence), then all three moved.
  static const double sets[4][3] = { { -60.0, 0.0, 0.0 },
                                     { 0.0, -60.0, 0.0 },
                                     { 0.0, 0.0, -60.0 },
                                     { -20.0, 6.0, -6.0 } };
  for (int s = 0; s < 4; ++s) {
    SET("isfsfsf",
        SLOT_EQ,
        "eq_low",
        sets[s][0],
        "eq_mid",
        sets[s][1],
        "eq_high",
        sets[s][2]);
    const long onset = capture_eq("isolator");
    for (unsigned c = 0; c < 2; ++c) {
      const float* const out = recorded(c) + onset + EQ_SETTLE;
      for (int k = 0; k < 3; ++k) {
        double gains[3];
        for (int b = 0; b < 3; ++b) {
          gains[b] = sets[s][b] <= -60.0 ? 0.0 : pow(10.0, sets[s][b] / 20.0);
        }
        const double got    = fitted_db(out, EQ_FIT, eq_hz[k]);
        const double ideal  = ideal_db(eq_hz[k], gains[0], gains[1], gains[2]);
        const bool   killed = sets[s][k] <= -60.0;
        if (c == 0) {
          fprintf(stderr,
                  "eq %+5.0f/%+4.0f/%+4.0f dB, %5.0f Hz: %9.4f dB (ideal LR4 "
                  "%9.4f dB, %+.4f)%s\n",
                  sets[s][0],
                  sets[s][1],
                  sets[s][2],
                  eq_hz[k],
                  got,
                  ideal,
                  got - ideal,
                  killed ? ", killed" : "");
        }
        if (!(fabs(got - ideal) <= (killed ? 1.0 : 0.1))) {
          fprintf(
            stderr, "out_%u: off the ideal by %.4f dB\n", c + 1, got - ideal);
          fail();
        }
      }
    }
  }

  // Every band back at 0 dB (moved there, not reset): bypassed bit for bit,
  // on both outputs, and nothing on bus 1.
  SET("isfsfsf", SLOT_EQ, "eq_low", -20.0, "eq_mid", 3.0, "eq_high", -60.0);
  SET("isfsisd", SLOT_EQ, "eq_low", 0.0, "eq_mid", 0, "eq_high", 0.0);
  const long onset = capture_eq("isolator at 0 dB");
  for (unsigned c = 0; c < 2; ++c) {
    assert_int_equal(
      fl_recorder_compare(
        rig.recorder, c, onset, sample, EQ_FRAMES, 1, 1.0f, 0.0f),
      -1);
    assert_silent(c, onset + EQ_FRAMES, onset + EQ_FRAMES + PERIOD);
  }
  assert_silent(2, 0, onset + EQ_FRAMES + PERIOD);
  assert_silent(3, 0, onset + EQ_FRAMES + PERIOD);
  fprintf(stderr,
          "eq 0/0/0 dB: %u frames equal to the sample bit for bit on out_1 "
          "and out_2\n",
          EQ_FRAMES);
  free(sample);
}

/* ---- Buses ---- */

#define BUS_FRAMES (RATE / 2U)

static void
test_buses(void** state)
{
  (void)state;
  // A stereo sample whose every frame differs, on bus 1.
  float* const ramps = new_samples(2U * BUS_FRAMES);
  for (uint32_t i = 0; i < BUS_FRAMES; ++i) {
    ramps[2U * i]      = 0.1f + 0.8f * (float)i / (float)BUS_FRAMES;
    ramps[2U * i + 1U] = -0.05f - 0.4f * (float)i / (float)BUS_FRAMES;
  }
  load(SLOT_BUS, "ramps.wav", ramps, BUS_FRAMES, 2);
  SET("isi", SLOT_BUS, "bus", 1);

  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_BUS, 1.0));
    onset = wait_sound(2, 0, BUS_FRAMES + PERIOD);
    if (take_end("bus 1")) {
      break;
    }
  }
  const long end = recorded_frames();
  for (unsigned c = 0; c < 2; ++c) {
    assert_int_equal(
      fl_recorder_compare(
        rig.recorder, 2 + c, onset, ramps + c, BUS_FRAMES, 2, 1.0f, 0.0f),
      -1);
    assert_silent(2 + c, 0, onset);
    assert_silent(2 + c, onset + BUS_FRAMES, end);
    assert_silent(c, 0, end);
  }
  fprintf(stderr,
          "bus 1: %u frames on out_3/out_4 equal to the sample, out_1/out_2 "
          "silent for all %ld frames\n",
          BUS_FRAMES,
          end);

  // The master gain is bus 0's: at -6 dB a DC slot on bus 0 is turned down,
  // bus 1 plays on bit for bit.
  float* const dc = new_samples(2U * RATE);
  for (uint32_t i = 0; i < RATE; ++i) {
    dc[2U * i]      = 0.5f;
    dc[2U * i + 1U] = -0.25f;
  }
  load(SLOT_DC, "dc.wav", dc, RATE, 2);
  SEND_OK("/master/gain", "f", -6.0);
  fl_sleep_ms(50); /* past the 10 ms ramp */
  const float master = powf(10.0f, -6.0f / 20.0f);
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_BUS, 1.0));
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_DC, 1.0));
    onset = wait_sound(2, 0, BUS_FRAMES + PERIOD);
    if (take_end("master gain and bus 1")) {
      break;
    }
  }
  assert_int_equal(fl_recorder_compare(
                     rig.recorder, 2, onset, ramps, BUS_FRAMES, 2, 1.0f, 0.0f),
                   -1);
  assert_int_equal(
    fl_recorder_compare(
      rig.recorder, 3, onset, ramps + 1, BUS_FRAMES, 2, 1.0f, 0.0f),
    -1);
  const long dc_onset = fl_recorder_onset(rig.recorder, 0, 0.0f, 0);
  assert_true(dc_onset >= 0);
  assert_int_equal(
    fl_recorder_compare(
      rig.recorder, 0, dc_onset, dc, BUS_FRAMES, 2, master, 1e-6f),
    -1);
  assert_int_equal(
    fl_recorder_compare(
      rig.recorder, 1, dc_onset, dc + 1, BUS_FRAMES, 2, master, 1e-6f),
    -1);
  fprintf(stderr,
          "/master/gain -6: bus 0 at %.6f (out_1 %.6f), bus 1 unchanged\n",
          (double)master,
          (double)recorded(0)[dc_onset + 100]);
  free(dc);
  free(ramps);
}

/* ---- MIDI ---- */

static void
load_midi_slots(void)
{
  for (int slot = SLOT_NOTE; slot < SLOT_NOTE + 4; ++slot) {
    load_dc(rig.osc, slot, note_value(slot), BLIP_FRAMES);
  }
  load_dc(rig.osc, SLOT_GRID, note_value(SLOT_GRID), BLIP_FRAMES);
  load_dc(rig.osc, SLOT_GRID_EDGE, note_value(SLOT_GRID_EDGE), BLIP_FRAMES);
}

/* Add to `model` (indexed like the recording) a blip of `slot` from
   recorder index `onset` at `gain`. */
static void
add_blip(float* model, long frames, long onset, int slot, float gain)
{
  for (long i = onset; i < onset + (long)BLIP_FRAMES && i < frames; ++i) {
    if (i >= 0) {
      model[i] += note_value(slot) * gain;
    }
  }
}

/* The recording of `channel` equals `model` (to float rounding). */
static void
assert_model(unsigned channel, const float* model, long frames)
{
  const float* const out = recorded(channel);
  for (long i = 0; i < frames; ++i) {
    if (!(fabsf(out[i] - model[i]) <= 1e-6f)) {
      fprintf(stderr,
              "out_%u frame %ld is %.9g, the model says %.9g (the last "
              "differing frames before it: %.9g %.9g)\n",
              channel + 1,
              i,
              (double)out[i],
              (double)model[i],
              i > 1 ? (double)out[i - 2] : 0.0,
              i > 0 ? (double)out[i - 1] : 0.0);
      fail();
    }
  }
}

/* Each note starts its voice on the note's own frame. */
static void
test_midi_note_frames(void** state)
{
  (void)state;
  load_midi_slots();
  // Slots 4..7 (keys 40..43) at frames all over their periods; keys 35
  // (below --midi-base), 68 (slot 32) and 127 are no slot's.
  const Sequence sequence = {
    48000U,
    7,
    { { 24000, 40, 100 },
      { 25337, 41, 100 },
      { 27001, 35, 100 },
      { 28555, 42, 100 },
      { 30123, 68, 100 },
      { 31999, 43, 100 },
      { 33777, 127, 100 } },
    35000U,
    70000U,
  };
  MidiTake   take;
  NoteCounts before = { 0, 0 };
  TAKES(attempt)
  {
    before = note_counts(rig.osc);
    take_begin();
    if (!midi_take_begin(&take, &sequence, &rig.daemon)) {
      take_end("MIDI frames");
      continue;
    }
    // Three loops after the connection.
    wait_until_frame(take.after + 3U * sequence.loop_frames);
    if (!midi_take_end(&take, &sequence)) {
      take_end("MIDI frames");
      assert_true(fl_rig_quiet(&rig, 2000));
      continue;
    }
    wait_recorded(recorded_frames() + 4 * PERIOD);
    if (take_end("MIDI frames")) {
      break;
    }
  }
  const NoteCounts after = note_counts(rig.osc);

  // The model: a blip of each delivered note-on's slot from its frame.
  const long   frames  = recorded_frames();
  float* const model   = new_samples((size_t)frames);
  int64_t      taken   = 0;
  int64_t      ignored = 0;
  unsigned     voices  = 0;
  fprintf(stderr, "MIDI notes (slot: frame in its period):");
  for (unsigned e = take.first_event; e < take.end_event; ++e) {
    if (!delivered(&take, e)) {
      continue;
    }
    const MidiEvent* const event = &midi.events[e];
    const int              slot  = event->bytes[1] - MIDI_BASE;
    if (slot < 0 || slot >= 32) {
      ++ignored;
      continue;
    }
    ++taken;
    if ((event->bytes[0] & 0xF0U) != 0x90U) {
      continue;
    }
    const long onset = index_of(event->frame);
    assert_true(onset >= 0 && onset + (long)BLIP_FRAMES <= frames);
    add_blip(model, frames, onset, slot, SEQ_GAIN);
    ++voices;
    fprintf(stderr, " %d:%ld", slot, onset % PERIOD);
  }
  fprintf(stderr, "\n");
  assert_true(voices >= 12); /* three loops; more if the stop was late */
  for (unsigned c = 0; c < 2; ++c) {
    assert_model(c, model, frames);
    assert_silent(2 + c, 0, frames);
  }
  fprintf(stderr,
          "%u voices each on its note's frame exactly, %ld frames as the "
          "model; /stats: %lld notes taken (expected %lld), %lld ignored "
          "(expected %lld)\n",
          voices,
          frames,
          (long long)(after.taken - before.taken),
          (long long)taken,
          (long long)(after.ignored - before.ignored),
          (long long)ignored);
  assert_int_equal(after.taken - before.taken, taken);
  assert_int_equal(after.ignored - before.ignored, ignored);
  free(model);
}

/*
  Put beat 0 on the frame of a timetag 100 ms ahead and return that
  absolute frame, exactly: the timetag's frame by its period's JACK timing
  (+-1) and beat 0's offset in its period from /transport (whose beats at
  a period's first frame, times the frames of a beat, are the frames from
  beat 0 to a period start).
*/
static jack_nframes_t
timetagged_downbeat(double frames_per_beat)
{
  struct timespec   realtime;
  const jack_time_t now  = fl_clock_pair(&realtime);
  const jack_time_t at   = now + 100000U;
  const lo_timetag  when = fl_timetag_after(&realtime, 100000);
  assert_true(fl_osc_send_bundle(rig.osc, when, "/transport/downbeat", ""));
  fl_sleep_ms(200);

  jack_nframes_t near = 0;
  assert_true(fl_recorder_time_to_frame(rig.recorder, at, &near));
  const double  since = query_beats() * frames_per_beat;
  const int64_t whole = llround(since);
  assert_true(fabs(since - (double)whole) < 1e-4);
  const jack_nframes_t first = fl_recorder_first_frame(rig.recorder);
  for (int32_t d = -2; d <= 2; ++d) {
    const jack_nframes_t candidate = near + (jack_nframes_t)d;
    const int64_t        offset    = (int32_t)(candidate - first) + whole;
    if (offset % PERIOD == 0) {
      return candidate;
    }
  }
  fprintf(stderr, "no frame near %u is beat 0\n", near);
  fail();
  return 0;
}

/* Quantized notes start on the first grid line at or after their frame. */
static void
test_midi_quantized(void** state)
{
  (void)state;
  load_midi_slots();
  SET("isi", SLOT_GRID_EDGE, "bus", 1);
  SEND_OK("/tempo", "f", 120.0);
  SEND_OK("/quantize", "s", "1/4");
  const int64_t line = 24000; /* a beat at 120 BPM */

  // 2.5 beats a loop: every loop's note falls elsewhere between lines.
  const Sequence sequence = {
    60000U, 1, { { 10000, 46, 100 } }, 12000U, 66000U,
  };
  MidiTake       take;
  jack_nframes_t beat_zero = 0;
  jack_nframes_t on_line   = 0;
  jack_nframes_t past_line = 0;
  TAKES(attempt)
  {
    take_begin();
    beat_zero = timetagged_downbeat((double)line);
    if (!midi_take_begin(&take, &sequence, &rig.daemon)) {
      take_end("quantized MIDI");
      continue;
    }
    // Notes of the probe's (slot 11, on bus 1): one on a line's very frame,
    // which starts there, and one a frame past a line, which waits for the
    // next.
    probe_route(&rig.daemon, true);
    const int64_t k =
      ((int32_t)(frame_now() - beat_zero) + RATE / 2) / line + 1;
    on_line   = beat_zero + (jack_nframes_t)(k * line);
    past_line = beat_zero + (jack_nframes_t)((k + 2) * line + 1);
    probe_send(on_line, 0x90, MIDI_BASE + SLOT_GRID_EDGE, 127);
    probe_send(on_line + 100U, 0x80, MIDI_BASE + SLOT_GRID_EDGE, 0);
    probe_send(past_line, 0x90, MIDI_BASE + SLOT_GRID_EDGE, 127);
    probe_send(past_line + 100U, 0x80, MIDI_BASE + SLOT_GRID_EDGE, 0);
    // Five of the sequence's notes, and their lines.
    wait_until_frame(take.after + 5U * sequence.loop_frames + (uint32_t)line);
    probe_flush();
    const bool placed = midi_take_end(&take, &sequence);
    probe_route(&rig.daemon, false);
    if (!placed) {
      take_end("quantized MIDI");
      assert_true(fl_rig_quiet(&rig, 2000));
      continue;
    }
    wait_recorded(recorded_frames() + 4 * PERIOD);
    if (take_end("quantized MIDI")) {
      break;
    }
  }
  SEND_OK("/quantize", "s", "off");

  const long   frames = recorded_frames();
  float* const model  = new_samples((size_t)frames);
  unsigned     notes  = 0;
  fprintf(stderr, "quantized MIDI notes (frames past a line -> line):");
  for (unsigned e = take.first_event; e < take.end_event; ++e) {
    const MidiEvent* const event = &midi.events[e];
    if (!delivered(&take, e) || event->bytes[0] != 0x90U) {
      continue;
    }
    const int64_t since = (int32_t)(event->frame - beat_zero);
    const int64_t k     = (since + line - 1) / line;
    const long    onset = index_of(beat_zero + (jack_nframes_t)(k * line));
    fprintf(stderr, " %lld->%lld", (long long)(since % line), (long long)k);
    add_blip(model, frames, onset, SLOT_GRID, SEQ_GAIN);
    ++notes;
  }
  fprintf(stderr, "\n");
  assert_true(notes >= 5);
  assert_model(0, model, frames);
  assert_model(1, model, frames);

  memset(model, 0, (size_t)frames * sizeof(float));
  add_blip(model, frames, index_of(on_line), SLOT_GRID_EDGE, 1.0f);
  add_blip(model,
           frames,
           index_of(past_line + (jack_nframes_t)line - 1U),
           SLOT_GRID_EDGE,
           1.0f);
  assert_model(2, model, frames);
  assert_model(3, model, frames);
  fprintf(stderr,
          "%u notes of jack_midiseq on the first line at or after their "
          "frame; a note on a line's frame started there, one a frame past "
          "a line on the next\n",
          notes);
  free(model);
}

/* A note-off releases a pad with hold 1 from its frame, not one with hold
   0; /release does the same. */
static void
test_midi_release(void** state)
{
  (void)state;
  float* const dc = new_samples(RATE);
  for (uint32_t i = 0; i < RATE; ++i) {
    dc[i] = 0.5f;
  }
  load(SLOT_HOLD, "hold.wav", dc, RATE, 1);
  load(SLOT_NO_HOLD, "no-hold.wav", dc, RATE, 1);
  free(dc);
  SET("isssi", SLOT_HOLD, "mode", "loop", "hold", 1);
  SET("isssisi", SLOT_NO_HOLD, "mode", "loop", "hold", 0, "bus", 1);

  const uint8_t  hold_key    = MIDI_BASE + SLOT_HOLD;
  const uint8_t  no_hold_key = MIDI_BASE + SLOT_NO_HOLD;
  const Sequence sequence    = {
       96000U,
       2,
       { { 20011, hold_key, 12101 }, { 20011, no_hold_key, 12101 } },
       34000U,
       110000U,
  };
  MidiTake       take;
  jack_nframes_t note_on  = 0;
  jack_nframes_t note_off = 0;
  TAKES(attempt)
  {
    take_begin();
    if (!midi_take_begin(&take, &sequence, &rig.daemon)) {
      take_end("note-off");
      continue;
    }
    note_on  = next_note_on(&sequence, &take, hold_key, take.after);
    note_off = note_on + 12101U;
    // Stop the sequencer 0.3 s after the note-off, long before its next
    // loop.
    wait_until_frame(note_off + RATE * 3U / 10U);
    const bool placed   = midi_take_end(&take, &sequence);
    unsigned   notes_on = 0;
    for (unsigned e = take.first_event; e < take.end_event; ++e) {
      notes_on += delivered(&take, e) && midi.events[e].bytes[0] == 0x90U &&
                  midi.events[e].bytes[1] == hold_key;
    }
    if (!placed || notes_on != 1) {
      fprintf(stderr, "%u note-ons delivered (1 expected)\n", notes_on);
      take_end("note-off");
      assert_true(fl_rig_quiet(&rig, 2000));
      continue;
    }
    wait_recorded(index_of(note_off) + RATE * 3 / 10 + 4 * PERIOD);
    if (take_end("note-off")) {
      break;
    }
  }
  const long  on    = index_of(note_on);
  const long  off   = index_of(note_off);
  const long  end   = recorded_frames();
  const float level = 0.5f * SEQ_GAIN;
  for (unsigned c = 0; c < 2; ++c) {
    // Hold 1 on bus 0: sounding from the note-on's frame to the note-off's,
    // silent from 5 ms after it.
    assert_silent(c, 0, on);
    assert_level(c, on, off, level);
    assert_silent(c, off + RELEASE_FADE_FRAMES, end);
    // Hold 0 on bus 1: the note-off changes nothing.
    assert_silent(2 + c, 0, on);
    assert_level(2 + c, on, end, level);
  }
  const float* const out  = recorded(0);
  long               last = off;
  while (last < end && out[last] != 0.0f) {
    ++last;
  }
  fprintf(stderr,
          "note-off at frame %ld (%ld into its period): hold 1 sounded from "
          "%ld, faded over %ld frames from the note-off (first %.6f), hold 0 "
          "played on\n",
          off,
          off % PERIOD,
          on,
          last - off,
          (double)out[off]);
  assert_true(fl_rig_quiet(&rig, 2000));

  // /release: the held pad fades out in 5 ms, the other plays on.
  long onset = -1;
  long fade  = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_HOLD, 1.0));
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_NO_HOLD, 1.0));
    onset = wait_sound(0, 0, RATE / 10);
    SEND_OK("/release", "i", SLOT_HOLD);
    SEND_OK("/release", "i", SLOT_NO_HOLD);
    fl_sleep_ms(100);
    FlDaemonStatus status;
    assert_true(fl_osc_status(rig.osc, &status));
    assert_int_equal(status.voices_active, 1);
    wait_recorded(recorded_frames() + RATE / 10);
    if (take_end("/release")) {
      break;
    }
  }
  const long frames = recorded_frames();
  fade              = onset;
  while (fade < frames && recorded(0)[fade] == 0.5f) {
    ++fade;
  }
  assert_true(fade < frames);
  for (unsigned c = 0; c < 2; ++c) {
    assert_level(c, onset, fade, 0.5f);
    assert_silent(c, fade + RELEASE_FADE_FRAMES, frames);
    const long other_onset = fl_recorder_onset(rig.recorder, 2 + c, 0.0f, 0);
    assert_true(other_onset >= 0);
    assert_level(2 + c, other_onset, frames, 0.5f);
  }
  fprintf(stderr,
          "/release: the held pad faded out within %d frames, the other "
          "played on\n",
          RELEASE_FADE_FRAMES);
  assert_true(fl_rig_quiet(&rig, 2000));

  // A note-on at velocity 0 is a note-off too, from its own frame.
  jack_nframes_t start = 0;
  jack_nframes_t stop  = 0;
  TAKES(attempt)
  {
    take_begin();
    probe_route(&rig.daemon, true);
    start = frame_now() + RATE / 5U;
    stop  = start + 5077U;
    probe_send(start, 0x90, hold_key, 127);
    probe_send(stop, 0x90, hold_key, 0);
    probe_flush();
    probe_route(&rig.daemon, false);
    wait_recorded(index_of(stop) + RATE / 10);
    if (take_end("velocity 0")) {
      break;
    }
  }
  for (unsigned c = 0; c < 2; ++c) {
    assert_silent(c, 0, index_of(start));
    assert_level(c, index_of(start), index_of(stop), 0.5f);
    assert_silent(c, index_of(stop) + RELEASE_FADE_FRAMES, recorded_frames());
  }
  fprintf(stderr,
          "velocity 0 at frame %ld (%ld into its period): the held pad faded "
          "out from there\n",
          index_of(stop),
          index_of(stop) % PERIOD);
}

/* --midi-channel 2 --midi-base 60: channel 1 is not listened to; keys
   below the base and past the slots are ignored; all counted. */
static void
test_midi_channel_and_base(void** state)
{
  (void)state;
  load_dc(other_osc, 0, 0.5f, 3U * RATE);
  assert_true(fl_osc_send(other_osc, "/stop", ""));
  assert_true(fl_osc_wait_voices(other_osc, 0, 2000));

  // Channel 1, from jack_midiseq: keys 60 (slot 0), 61 and 30.
  const Sequence sequence = {
    48000U,
    3,
    { { 10000, OTHER_BASE, 100 },
      { 12000, OTHER_BASE + 1, 100 },
      { 14000, 30, 100 } },
    16000U,
    56000U,
  };
  MidiTake   take;
  NoteCounts before = { 0, 0 };
  NoteCounts middle = { 0, 0 };
  int32_t    voices = -1;
  TAKES(attempt)
  {
    before = note_counts(other_osc);
    take_begin();
    if (!midi_take_begin(&take, &sequence, &other)) {
      take_end("MIDI channels");
      continue;
    }
    wait_until_frame(take.after + 2U * sequence.loop_frames);
    // Nothing sounded: every note was on channel 1.
    FlDaemonStatus status;
    assert_true(fl_osc_status(other_osc, &status));
    voices = status.voices_active;
    middle = note_counts(other_osc);
    if (!midi_take_end(&take, &sequence)) {
      take_end("MIDI channels");
      continue;
    }
    if (take_end("MIDI channels")) {
      break;
    }
  }
  int64_t events = 0;
  for (unsigned e = take.first_event; e < take.end_event; ++e) {
    events += delivered(&take, e);
  }
  const NoteCounts after = note_counts(other_osc);
  fprintf(stderr,
          "--midi-channel 2: %lld notes on channel 1 delivered; /stats: %lld "
          "taken, %lld ignored; %d voices\n",
          (long long)events,
          (long long)(after.taken - before.taken),
          (long long)(after.ignored - before.ignored),
          voices);
  assert_true(events >= 12);
  assert_int_equal(voices, 0);
  assert_int_equal(middle.taken - before.taken, 0);
  assert_int_equal(after.taken - before.taken, 0);
  assert_int_equal(after.ignored - before.ignored, events);

  // Channel 2 from the probe: key 59 (below the base), 60 (slot 0, which
  // plays), 92 (slot 32 of 32), its note-off, and key 60 on channel 3.
  probe_route(&other, true);
  const jack_nframes_t at = frame_now() + RATE / 10;
  probe_send(at, 0x91, OTHER_BASE - 1, 100);
  probe_send(at + 1000U, 0x91, OTHER_BASE, 127);
  probe_send(at + 2000U, 0x91, OTHER_BASE + 32, 100);
  probe_send(at + 3000U, 0x81, OTHER_BASE, 0);
  probe_send(at + 4000U, 0x81, OTHER_BASE - 1, 0);
  probe_send(at + 5000U, 0x92, OTHER_BASE, 100);
  probe_flush();
  assert_true(fl_osc_wait_voices(other_osc, 1, 2000));
  const NoteCounts probed = note_counts(other_osc);
  probe_route(&other, false);
  fprintf(stderr,
          "channel 2: key 60 played slot 0; /stats: +%lld taken, +%lld "
          "ignored\n",
          (long long)(probed.taken - after.taken),
          (long long)(probed.ignored - after.ignored));
  assert_int_equal(probed.taken - after.taken, 2);
  assert_int_equal(probed.ignored - after.ignored, 4);
  assert_true(fl_osc_send(other_osc, "/stop", ""));
  assert_true(fl_osc_wait_voices(other_osc, 0, 2000));
}

/* ---- Analysis ---- */

#define CLICK_SECONDS 30U

/* 30 s of short 2 kHz clicks (10 ms, decaying) on every beat from `first`
   seconds on, at `bpm`. */
static float*
click_track(double bpm, double first)
{
  const uint32_t frames = CLICK_SECONDS * RATE;
  float* const   track  = new_samples(frames);
  for (double t = first; t < CLICK_SECONDS; t += 60.0 / bpm) {
    const uint32_t at = (uint32_t)llround(t * RATE);
    for (uint32_t i = 0; i < RATE / 100U && at + i < frames; ++i) {
      track[at + i] = (float)(0.8 * exp(-(double)i / 96.0) *
                              sin(2.0 * M_PI * 2000.0 * i / RATE));
    }
  }
  return track;
}

static void
test_analyze(void** state)
{
  (void)state;
  static const double bpms[]   = { 90.0, 120.5, 174.0 };
  static const double firsts[] = { 0.25, 0.6, 0.1 };
  for (int i = 0; i < 3; ++i) {
    float* const track = click_track(bpms[i], firsts[i]);
    load(SLOT_CLICKS + i,
         text("clicks-%g.wav", bpms[i]),
         track,
         CLICK_SECONDS * RATE,
         1);
    free(track);
    const int64_t begin = fl_now_ms();
    assert_true(fl_osc_send(rig.osc, "/analyze", "i", SLOT_CLICKS + i));
    FlReply* const reply = fl_osc_wait(rig.osc, NULL, 30000);
    assert_non_null(reply);
    char formatted[512];
    fl_reply_format(reply, formatted, sizeof(formatted));
    if (strcmp(reply->path, "/done") || strcmp(reply->types, "sifff") ||
        strcmp(reply->argv[0].s, "/analyze") ||
        reply->argv[1].value.i != SLOT_CLICKS + i) {
      fprintf(stderr, "/analyze %d answered %s\n", SLOT_CLICKS + i, formatted);
      fail();
    }
    const double bpm   = reply->argv[2].value.f;
    const double first = reply->argv[3].value.f;
    fprintf(stderr,
            "%.1f BPM, first click at %.3f s: %s (%.3f BPM off, first beat "
            "%.2f ms off; %lld ms)\n",
            bpms[i],
            firsts[i],
            formatted,
            bpm - bpms[i],
            (first - firsts[i]) * 1000.0,
            (long long)(fl_now_ms() - begin));
    assert_true(fabs(bpm - bpms[i]) <= 0.5);
    assert_true(fabs(first - firsts[i]) <= 0.010);
    assert_true(reply->argv[4].value.f > 0.0f);
    fl_reply_free(reply);
  }

  // Noise: no tempo.
  const uint32_t frames = 20U * RATE;
  float* const   noise  = new_samples(frames);
  uint32_t       seed   = 12345U;
  for (uint32_t i = 0; i < frames; ++i) {
    seed     = seed * 1664525U + 1013904223U;
    noise[i] = (float)((double)(seed >> 8) / 16777216.0 - 0.5);
  }
  load(SLOT_NOISE, "noise.wav", noise, frames, 1);
  free(noise);
  assert_true(fl_osc_send(rig.osc, "/analyze", "i", SLOT_NOISE));
  FlReply* const reply = fl_osc_wait(rig.osc, NULL, 30000);
  assert_non_null(reply);
  char formatted[512];
  fl_reply_format(reply, formatted, sizeof(formatted));
  fprintf(stderr, "noise: %s\n", formatted);
  assert_string_equal(reply->path, "/fail");
  assert_string_equal(reply->types, "sis");
  assert_string_equal(reply->argv[0].s, "/analyze");
  assert_int_equal(reply->argv[1].value.i, SLOT_NOISE);
  assert_true(!strncmp(reply->argv[2].s, "no tempo found", 14));
  fl_reply_free(reply);
}

/* /waveform through a liblo client of its own: the harness keeps no blobs. */

#define WAVE_MAX_POINTS 2048

typedef struct {
  bool    got;
  char    path[64];
  char    types[16];
  int32_t slot;
  int32_t points;
  int32_t blob_size;
  uint8_t blob[2 * WAVE_MAX_POINTS * 4];
  char    reason[256];
} WaveReply;

static int
on_wave_message(const char* path,
                const char* types,
                lo_arg**    argv,
                int         argc,
                lo_message  message,
                void*       data)
{
  (void)message;
  WaveReply* const reply = (WaveReply*)data;
  if (reply->got) {
    return 0;
  }
  reply->got = true;
  snprintf(reply->path, sizeof(reply->path), "%s", path);
  snprintf(reply->types, sizeof(reply->types), "%s", types);
  if (!strcmp(types, "iib") && argc == 3) {
    memcpy(&reply->slot, argv[0], sizeof(reply->slot));
    memcpy(&reply->points, argv[1], sizeof(reply->points));
    const lo_blob blob = (lo_blob)argv[2];
    reply->blob_size   = (int32_t)lo_blob_datasize(blob);
    if (reply->blob_size > 0 &&
        (size_t)reply->blob_size <= sizeof(reply->blob)) {
      memcpy(reply->blob, lo_blob_dataptr(blob), (size_t)reply->blob_size);
    }
  } else if (!strcmp(types, "sis") && argc == 3) {
    snprintf(reply->reason, sizeof(reply->reason), "%s", (const char*)argv[2]);
  }
  return 0;
}

static void
waveform(int32_t    slot,
         int32_t    points,
         double     start,
         double     end,
         WaveReply* reply)
{
  lo_server const server = lo_server_new_with_proto(NULL, LO_UDP, NULL);
  char            port[16];
  snprintf(port, sizeof(port), "%d", rig.daemon.port);
  lo_address const daemon = lo_address_new("127.0.0.1", port);
  assert_non_null(server);
  assert_non_null(daemon);
  memset(reply, 0, sizeof(*reply));
  lo_server_add_method(server, NULL, NULL, on_wave_message, reply);
  assert_true(lo_send_from(daemon,
                           server,
                           LO_TT_IMMEDIATE,
                           "/waveform",
                           "iiff",
                           slot,
                           points,
                           start,
                           end) >= 0);
  const int64_t deadline = fl_now_ms() + 10000;
  while (!reply->got && fl_now_ms() < deadline) {
    lo_server_recv_noblock(server, 50);
  }
  lo_address_free(daemon);
  lo_server_free(server);
  assert_true(reply->got);
}

#define WAVE_FRAMES RATE

static float
wave_value(uint32_t i)
{
  return (float)(sin((double)i * 0.0137) * (0.1 + 0.8 * i / WAVE_FRAMES));
}

static void
test_waveform(void** state)
{
  (void)state;
  // Stereo: the second channel is louder, and must not show.
  float* const sample = new_samples(2U * WAVE_FRAMES);
  for (uint32_t i = 0; i < WAVE_FRAMES; ++i) {
    sample[2U * i]      = wave_value(i);
    sample[2U * i + 1U] = 0.95f;
  }
  load(SLOT_WAVE, "wave.wav", sample, WAVE_FRAMES, 2);
  free(sample);

  static const struct {
    int32_t points;
    double  start, end;
  } cases[] = {
    { 100, 0.0, 0.0 },    /* 480 frames a point, to the end */
    { 7, 0.1, 0.8 },      /* 4800 */
    { 2048, 0.0, 1.0 },   /* 23.4375 */
    { 2048, 0.5, 0.501 }, /* 48 frames: each point one frame */
    { 1, 0.25, 0.0 },     /* the last 36000 frames */
    { 3, 0.999, 0.0 },    /* 48 frames */
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); ++c) {
    WaveReply reply;
    waveform(SLOT_WAVE, cases[c].points, cases[c].start, cases[c].end, &reply);
    if (strcmp(reply.path, "/waveform.reply") || strcmp(reply.types, "iib")) {
      fprintf(stderr,
              "/waveform answered %s ,%s %s\n",
              reply.path,
              reply.types,
              reply.reason);
      fail();
    }
    assert_int_equal(reply.slot, SLOT_WAVE);
    assert_int_equal(reply.points, cases[c].points);
    assert_int_equal(reply.blob_size, 8 * cases[c].points);

    // Equal spans of [first, last): span p is [first + p n / points,
    // first + (p + 1) n / points), rounded down, and at least one frame.
    const int64_t first = llround(cases[c].start * RATE);
    const int64_t last =
      cases[c].end > 0.0 ? llround(cases[c].end * RATE) : WAVE_FRAMES;
    const int64_t n = last - first;
    for (int32_t p = 0; p < cases[c].points; ++p) {
      int64_t from = first + p * n / cases[c].points;
      int64_t to   = first + (p + 1) * n / cases[c].points;
      to           = to > from ? to : from + 1;
      float low = wave_value((uint32_t)from), high = low;
      for (int64_t f = from + 1; f < to; ++f) {
        low  = fminf(low, wave_value((uint32_t)f));
        high = fmaxf(high, wave_value((uint32_t)f));
      }
      uint32_t words[2];
      memcpy(words, reply.blob + 8 * p, sizeof(words));
      const uint32_t bits[2] = { ntohl(words[0]), ntohl(words[1]) };
      float          got[2];
      memcpy(got, bits, sizeof(got));
      if (got[0] != low || got[1] != high) {
        fprintf(stderr,
                "/waveform %d points %g..%g s, point %d (frames %lld..%lld): "
                "(%.9g, %.9g), expected (%.9g, %.9g)\n",
                cases[c].points,
                cases[c].start,
                cases[c].end,
                p,
                (long long)from,
                (long long)to,
                (double)got[0],
                (double)got[1],
                (double)low,
                (double)high);
        fail();
      }
    }
    fprintf(stderr,
            "/waveform %d points over %g..%g s: %d bytes, every pair equal "
            "to the min/max of its span\n",
            cases[c].points,
            cases[c].start,
            cases[c].end,
            reply.blob_size);
  }
}

/* ---- Bad input ---- */

/* flitzid ARGS must exit 64 with `message` on stderr. */
static void
assert_usage_error(const char* const* args, const char* message)
{
  const char* argv[8] = { getenv("FLITZID") };
  int         argc    = 1;
  for (; args[argc - 1]; ++argc) {
    argv[argc] = args[argc - 1];
  }
  argv[argc]    = NULL;
  char*     out = NULL;
  char*     err = NULL;
  const int status =
    fl_run_capture(&rig.env, argv, rig.jackd.name, &out, &err, 10000);
  fprintf(stderr, "flitzid");
  for (int i = 1; i < argc; ++i) {
    fprintf(stderr, " %s", argv[i]);
  }
  fprintf(stderr, ": exit %d, %s", status, err ? err : "(nothing)\n");
  assert_int_equal(status, 64);
  assert_non_null(err);
  assert_non_null(strstr(err, message));
  free(out);
  free(err);
}

static void
test_bad_options(void** state)
{
  (void)state;
  static const char* const base_128[] = {
    "--midi", "--midi-base", "128", NULL
  };
  static const char* const base_minus[] = { "--midi-base", "-1", NULL };
  static const char* const base_text[]  = { "--midi-base", "C2", NULL };
  static const char* const channel_0[]  = { "--midi-channel", "0", NULL };
  static const char* const channel_17[] = {
    "--midi", "--midi-channel", "17", NULL
  };
  static const char* const buses_0[]    = { "--buses", "0", NULL };
  static const char* const buses_9[]    = { "--buses", "9", NULL };
  static const char* const buses_mono[] = {
    "--buses", "2", "--channels", "1", NULL
  };
  assert_usage_error(base_128,
                     "flitzid: --midi-base must be a whole number from 0 to "
                     "127 (got '128')");
  assert_usage_error(base_minus,
                     "flitzid: --midi-base must be a whole number from 0 to "
                     "127 (got '-1')");
  assert_usage_error(base_text,
                     "flitzid: --midi-base must be a whole number from 0 to "
                     "127 (got 'C2')");
  assert_usage_error(channel_0,
                     "flitzid: --midi-channel must be a whole number from 1 "
                     "to 16 (got '0')");
  assert_usage_error(channel_17,
                     "flitzid: --midi-channel must be a whole number from 1 "
                     "to 16 (got '17')");
  assert_usage_error(buses_0,
                     "flitzid: --buses must be a whole number from 1 to 8 "
                     "(got '0')");
  assert_usage_error(buses_9,
                     "flitzid: --buses must be a whole number from 1 to 8 "
                     "(got '9')");
  assert_usage_error(
    buses_mono, "flitzid: --buses 2 needs stereo buses; drop --channels 1");

  // The edges are taken: 16 ports, a MIDI input.
  static const char* const edges[] = { "--buses",     "8",   "--midi",
                                       "--midi-base", "127", "--midi-channel",
                                       "16",          NULL };
  FlDaemon                 edge;
  assert_true(start_daemon(&edge, edges, 16));
  char port[128];
  snprintf(port, sizeof(port), "%s:midi_in", edge.name);
  assert_non_null(jack_port_by_name(midi.client, port));
  snprintf(port, sizeof(port), "%s:out_16", edge.name);
  assert_non_null(jack_port_by_name(midi.client, port));
  assert_int_equal(fl_daemon_stop(&edge), 0);
  fprintf(stderr,
          "--buses 8 --midi --midi-base 127 --midi-channel 16: 16 "
          "outputs and midi_in, exit 0 on SIGTERM\n");
}

#define REFUSED(reply, ...)                                               \
  do {                                                                    \
    const char* const got_ = CALL(__VA_ARGS__);                           \
    if (strcmp(got_, (reply))) {                                          \
      fprintf(                                                            \
        stderr, "line %d: %s\n  expected %s\n", __LINE__, got_, (reply)); \
      fail();                                                             \
    }                                                                     \
  } while (0)

static void
bad_addresses(void)
{
  // /release: a slot id in range; an empty slot or one without hold is no
  // error (nothing to release).
  REFUSED("/fail ,sis \"/release\" 32 \"slot 32 is out of range (0..31)\"",
          "/release",
          "i",
          32);
  REFUSED("/fail ,sis \"/release\" -1 \"slot -1 is out of range (0..31)\"",
          "/release",
          "i",
          -1);
  REFUSED("/fail ,ss \"/release\" \"bad arguments: expected ,i\"",
          "/release",
          "f",
          1.0);
  SEND_OK("/release", "i", SLOT_EMPTY);
  SEND_OK("/release", "i", SLOT_DC); /* hold 0: the DC loop plays on */

  // /analyze
  REFUSED(text("/fail ,sis \"/analyze\" %d \"slot %d is empty\"",
               SLOT_EMPTY,
               SLOT_EMPTY),
          "/analyze",
          "i",
          SLOT_EMPTY);
  REFUSED("/fail ,sis \"/analyze\" 32 \"slot 32 is out of range (0..31)\"",
          "/analyze",
          "i",
          32);
  REFUSED("/fail ,ss \"/analyze\" \"bad arguments: expected ,i\"",
          "/analyze",
          "s",
          "0");

  // /waveform on the 1 s sample of SLOT_WAVE.
  const char* const wave = "/fail ,sis \"/waveform\" 16 \"%s\"";
  REFUSED(text(wave, "points 0 is not in 1..2048"),
          "/waveform",
          "iiff",
          SLOT_WAVE,
          0,
          0.0,
          0.0);
  REFUSED(text(wave, "points 2049 is not in 1..2048"),
          "/waveform",
          "iiff",
          SLOT_WAVE,
          2049,
          0.0,
          0.0);
  REFUSED(text(wave, "points -1 is not in 1..2048"),
          "/waveform",
          "iiii",
          SLOT_WAVE,
          -1,
          0,
          0);
  REFUSED(text(wave, "start 1 s is not in the sample (0 to 1 s)"),
          "/waveform",
          "iiff",
          SLOT_WAVE,
          10,
          1.0,
          0.0);
  REFUSED(text(wave, "start 2 s is not in the sample (0 to 1 s)"),
          "/waveform",
          "iiid",
          SLOT_WAVE,
          10,
          2,
          0.0);
  REFUSED(text(wave, "start -0.1 s is not in the sample (0 to 1 s)"),
          "/waveform",
          "iidf",
          SLOT_WAVE,
          10,
          -0.1,
          0.0);
  REFUSED(text(wave, "start nan s is not in the sample (0 to 1 s)"),
          "/waveform",
          "iiff",
          SLOT_WAVE,
          10,
          (double)NAN,
          0.0);
  REFUSED(
    text(wave, "end 0.2 s must be 0 (the end) or after start and at most 1 s"),
    "/waveform",
    "iiff",
    SLOT_WAVE,
    10,
    0.5,
    0.2);
  REFUSED(
    text(wave, "end 0.5 s must be 0 (the end) or after start and at most 1 s"),
    "/waveform",
    "iiff",
    SLOT_WAVE,
    10,
    0.5,
    0.5);
  REFUSED(
    text(wave, "end 1.5 s must be 0 (the end) or after start and at most 1 s"),
    "/waveform",
    "iiff",
    SLOT_WAVE,
    10,
    0.0,
    1.5);
  REFUSED(
    text(wave, "end -1 s must be 0 (the end) or after start and at most 1 s"),
    "/waveform",
    "iiii",
    SLOT_WAVE,
    10,
    0,
    -1);
  REFUSED(text("/fail ,sis \"/waveform\" %d \"slot %d is empty\"",
               SLOT_EMPTY,
               SLOT_EMPTY),
          "/waveform",
          "iiff",
          SLOT_EMPTY,
          10,
          0.0,
          0.0);
  REFUSED("/fail ,sis \"/waveform\" 32 \"slot 32 is out of range (0..31)\"",
          "/waveform",
          "iiff",
          32,
          10,
          0.0,
          0.0);
  REFUSED("/fail ,ss \"/waveform\" \"bad arguments: expected ,iiXX\"",
          "/waveform",
          "iif",
          SLOT_WAVE,
          10,
          0.0);
  REFUSED("/fail ,ss \"/waveform\" \"bad arguments: expected ,iiXX\"",
          "/waveform",
          "ifff",
          SLOT_WAVE,
          10.0,
          0.0,
          0.0);

  // The rig's keys, on the playing DC slot: nothing changes.
  const char* const set = "/fail ,sis \"/slot/set\" 2 \"%s\"";
  REFUSED(text(set, "eq_low must be a number from -60 to 6 dB (got 6.001)"),
          "/slot/set",
          "isf",
          SLOT_DC,
          "eq_low",
          6.001);
  REFUSED(text(set, "eq_mid must be a number from -60 to 6 dB (got -60.001)"),
          "/slot/set",
          "isd",
          SLOT_DC,
          "eq_mid",
          -60.001);
  REFUSED(text(set, "eq_high must be a number from -60 to 6 dB (got nan)"),
          "/slot/set",
          "isf",
          SLOT_DC,
          "eq_high",
          (double)NAN);
  REFUSED(text(set, "eq_high must be a number from -60 to 6 dB (got 7)"),
          "/slot/set",
          "isi",
          SLOT_DC,
          "eq_high",
          7);
  REFUSED(text(set, "eq_low takes a number (float, double or int)"),
          "/slot/set",
          "iss",
          SLOT_DC,
          "eq_low",
          "-6");
  REFUSED(text(set, "hold must be a whole number from 0 to 1 (got 2)"),
          "/slot/set",
          "isi",
          SLOT_DC,
          "hold",
          2);
  REFUSED(text(set, "hold must be a whole number from 0 to 1 (got -1)"),
          "/slot/set",
          "isi",
          SLOT_DC,
          "hold",
          -1);
  REFUSED(text(set, "hold takes a whole number (int32)"),
          "/slot/set",
          "isf",
          SLOT_DC,
          "hold",
          1.0);
  REFUSED(text(set, "bus must be a whole number from 0 to 1 (got 2)"),
          "/slot/set",
          "isi",
          SLOT_DC,
          "bus",
          2);
  REFUSED(text(set, "bus must be a whole number from 0 to 1 (got -1)"),
          "/slot/set",
          "isi",
          SLOT_DC,
          "bus",
          -1);
  REFUSED(text(set, "bus takes a whole number (int32)"),
          "/slot/set",
          "isd",
          SLOT_DC,
          "bus",
          1.0);
  // Good pairs before a bad one: none is applied.
  REFUSED(text(set, "bus must be a whole number from 0 to 1 (got 8)"),
          "/slot/set",
          "isfsisi",
          SLOT_DC,
          "eq_low",
          -60.0,
          "hold",
          1,
          "bus",
          8);
}

static void
test_bad_input(void** state)
{
  (void)state;
  float* const dc = new_samples(2U * RATE);
  for (uint32_t i = 0; i < RATE; ++i) {
    dc[2U * i]      = 0.5f;
    dc[2U * i + 1U] = -0.25f;
  }
  load(SLOT_DC, "dc.wav", dc, RATE, 2);
  free(dc);
  float* const silence = new_samples(WAVE_FRAMES);
  load(SLOT_WAVE, "wave-silent.wav", silence, WAVE_FRAMES, 1);
  free(silence);
  assert_string_equal(CALL("/unload", "i", SLOT_EMPTY),
                      text("/fail ,sis \"/unload\" %d \"slot %d is empty\"",
                           SLOT_EMPTY,
                           SLOT_EMPTY));
  SET("iss", SLOT_DC, "mode", "loop");

  long onset = -1;
  TAKES(attempt)
  {
    take_begin();
    assert_true(fl_osc_send(rig.osc, "/play", "if", SLOT_DC, 1.0));
    onset = wait_sound(0, 0, PERIOD);
    bad_addresses();
    // Longer than a pass of the 1 s loop after the battery: a gain, bus,
    // isolator or release applied by mistake would have been heard.
    wait_recorded(recorded_frames() + RATE * 12 / 10);
    FlDaemonStatus status;
    assert_true(fl_osc_status(rig.osc, &status));
    assert_int_equal(status.voices_active, 1);
    if (take_end("bad input")) {
      break;
    }
  }
  const long frames = recorded_frames();
  assert_level(0, onset, frames, 0.5f);
  assert_level(1, onset, frames, -0.25f);
  assert_silent(2, 0, frames);
  assert_silent(3, 0, frames);
  fprintf(stderr,
          "bad input: the DC loop on bus 0 played on unharmed for %ld frames "
          "(%.1f s), bus 1 silent\n",
          frames - onset,
          (double)(frames - onset) / RATE);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_isolator, test_setup),
    cmocka_unit_test_setup(test_buses, test_setup),
    cmocka_unit_test_setup(test_midi_note_frames, test_setup),
    cmocka_unit_test_setup(test_midi_quantized, test_setup),
    cmocka_unit_test_setup(test_midi_release, test_setup),
    cmocka_unit_test_setup(test_midi_channel_and_base, test_setup),
    cmocka_unit_test_setup(test_analyze, test_setup),
    cmocka_unit_test_setup(test_waveform, test_setup),
    cmocka_unit_test_setup(test_bad_options, test_setup),
    cmocka_unit_test_setup(test_bad_input, test_setup),
  };
  const int failures =
    cmocka_run_group_tests(tests, group_setup, group_teardown);
  if (failures && other.log_path[0]) {
    fl_daemon_print_log(&other);
  }
  return fl_rig_finish(&rig, failures);
}
