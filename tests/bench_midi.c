/*
  MIDI note-on to onset through a real jackd (dummy backend) at periods of
  256 and 1024 frames: jackd2's jack_midiseq loops a sequence of notes at
  known frames, flitzid --midi plays a 10 ms blip for each, and the
  recorded onset minus the note's frame is the jitter (the goal: 0 frames,
  every time).

  The note frames are known twice over: a MIDI client of ours, connected to
  jack_midiseq's port like flitzid, records every event with its absolute
  JACK frame, and each must sit at the sequence's own place (the loop start,
  learnt from the first event, + the note's index + a whole number of
  loops). The recorder's frame i is flitzid's output in the same cycle, so
  onset - note frame is in frames of the engine, exactly.

  Baseline, from the same notes: their offsets within their periods, which
  is the jitter a MIDI input would have that started every note on its
  period's first frame. The ratio of the two spreads is printed.

  Run: meson test -C build --benchmark midi -v   (or build/tests/bench_midi)
  Optional argument: loops of the sequence per period size (default 13,
  10 notes each).
*/
#include "harness.h"

#include <jack/jack.h>
#include <jack/midiport.h>

#include <fcntl.h>
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
#define BLIP_FRAMES 480U
#define LOOP_FRAMES 24000U
#define NOTES 10U
#define FIRST_NOTE 1000U
#define NOTE_SPACING 2203U /* 155 frames further into a period each time */
#define NOTE_LENGTH 100U
#define KEY 36
#define ATTEMPTS 3
#define MAX_EVENTS 8192U

/* ---- The MIDI recorder ---- */

typedef struct {
  jack_nframes_t frame;
  uint8_t        status;
  uint8_t        key;
} NoteEvent;

typedef struct {
  jack_client_t* client;
  jack_port_t*   input;
  NoteEvent      events[MAX_EVENTS];
  atomic_uint    count; /* release: events[< count] are written */
} MidiRecorder;

static MidiRecorder midi;

/*
  Code and data used in the realtime process thread: the recorder's
  preallocated events and its counter.
*/
static int
on_midi_process(jack_nframes_t frames, void* data)
{
  MidiRecorder* const  recorder = (MidiRecorder*)data;
  void* const          in       = jack_port_get_buffer(recorder->input, frames);
  const jack_nframes_t first    = jack_last_frame_time(recorder->client);
  unsigned count = atomic_load_explicit(&recorder->count, memory_order_relaxed);
  const uint32_t events = jack_midi_get_event_count(in);
  for (uint32_t i = 0; i < events && count < MAX_EVENTS; ++i) {
    jack_midi_event_t event;
    if (jack_midi_event_get(&event, in, i) == 0 && event.size >= 2) {
      recorder->events[count++] =
        (NoteEvent){ first + event.time, event.buffer[0], event.buffer[1] };
    }
  }
  atomic_store_explicit(&recorder->count, count, memory_order_release);
  return 0;
}

/* End of the realtime part. */

static bool
midi_open(const char* server)
{
  char name[64];
  snprintf(name, sizeof(name), "fl-mrec-%ld", (long)getpid());
  memset(&midi, 0, sizeof(midi));
  midi.client = fl_jack_open(server, name);
  if (!midi.client) {
    return false;
  }
  midi.input = jack_port_register(
    midi.client, "in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
  jack_set_process_callback(midi.client, on_midi_process, &midi);
  return midi.input && jack_activate(midi.client) == 0;
}

static void
midi_close(void)
{
  if (midi.client) {
    jack_deactivate(midi.client);
    jack_client_close(midi.client);
    midi.client = NULL;
  }
}

static unsigned
midi_count(void)
{
  return atomic_load_explicit(&midi.count, memory_order_acquire);
}

/* ---- jack_midiseq ---- */

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

static uint32_t
note_index(unsigned n)
{
  return FIRST_NOTE + n * NOTE_SPACING;
}

/* Start jack_midiseq NAME 24000 [index 36 100]... with the server's name in
   its environment; returns its pid, or 0. */
static pid_t
sequencer_spawn(const FlTestEnv* env, const char* server, const char* name)
{
  char program[PATH_MAX];
  if (!find_program("jack_midiseq", program, sizeof(program))) {
    fprintf(stderr, "bench_midi: jack_midiseq (jackd2) not in PATH\n");
    return 0;
  }
  static char numbers[1 + 3 * NOTES][16];
  const char* argv[4 + 3 * NOTES];
  int         argc = 0;
  argv[argc++]     = program;
  argv[argc++]     = name;
  snprintf(numbers[0], sizeof(numbers[0]), "%u", LOOP_FRAMES);
  argv[argc++] = numbers[0];
  for (unsigned n = 0; n < NOTES; ++n) {
    snprintf(numbers[1 + 3 * n], sizeof(numbers[0]), "%u", note_index(n));
    snprintf(numbers[2 + 3 * n], sizeof(numbers[0]), "%d", KEY);
    snprintf(numbers[3 + 3 * n], sizeof(numbers[0]), "%u", NOTE_LENGTH);
    argv[argc++] = numbers[1 + 3 * n];
    argv[argc++] = numbers[2 + 3 * n];
    argv[argc++] = numbers[3 + 3 * n];
  }
  argv[argc] = NULL;

  static char server_variable[128];
  snprintf(
    server_variable, sizeof(server_variable), "JACK_DEFAULT_SERVER=%s", server);
  size_t count = 0;
  while (environ[count]) {
    ++count;
  }
  const char** const envp = (const char**)calloc(count + 3, sizeof(char*));
  if (!envp) {
    return 0;
  }
  size_t kept = 0;
  for (size_t i = 0; i < count; ++i) {
    if (strncmp(environ[i], "JACK_DEFAULT_SERVER=", 20) &&
        strncmp(environ[i], "JACK_NO_START_SERVER=", 21)) {
      envp[kept++] = environ[i];
    }
  }
  envp[kept++] = server_variable;
  envp[kept++] = "JACK_NO_START_SERVER=1";
  envp[kept]   = NULL;

  char log_path[PATH_MAX];
  fl_env_path(env, "jack_midiseq.log", log_path, sizeof(log_path));
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
  return pid > 0 ? pid : 0;
}

static void
sequencer_stop(pid_t pid)
{
  kill(pid, SIGTERM);
  int           status   = 0;
  const int64_t deadline = fl_now_ms() + 3000;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (fl_now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return;
    }
    fl_sleep_ms(5);
  }
}

static void
wait_until_frame(jack_nframes_t frame)
{
  for (;;) {
    const int32_t left = (int32_t)(frame - jack_frame_time(midi.client));
    if (left <= 0) {
      return;
    }
    fl_sleep_ms(1 + (int)((int64_t)left * 1000 / RATE / 2));
  }
}

/* ---- One period size ---- */

typedef struct {
  unsigned period;
  unsigned notes;
  unsigned missed;    /* notes without an onset near them */
  unsigned misplaced; /* notes not at their sequence frame */
  long     min, max;  /* onset - note frame */
  long     base_min;  /* the notes' offsets in their periods */
  long     base_max;
  unsigned attempts;
  unsigned xruns_skipped; /* takes made again: xruns */
  unsigned slipped;       /* takes made again: jack_midiseq missed a cycle */
} Result;

/* The index in the loop of a note-on at `frame` given the loop start, or
   -1 if no note of the sequence is there. */
static long
sequence_place(jack_nframes_t frame, jack_nframes_t loop_start)
{
  const uint32_t phase = (uint32_t)(frame - loop_start) % LOOP_FRAMES;
  for (unsigned n = 0; n < NOTES; ++n) {
    if (note_index(n) == phase) {
      return (long)phase;
    }
  }
  return -1;
}

static bool
take(FlRig*      rig,
     FlRecorder* recorder,
     unsigned    period,
     unsigned    loops,
     Result*     result)
{
  const unsigned first_event = midi_count();
  char           name[64];
  fl_env_name(&rig->env, name, sizeof(name));
  fl_recorder_start(recorder);
  if (!fl_recorder_wait(recorder, 1, 3000)) {
    return false;
  }
  const pid_t pid = sequencer_spawn(&rig->env, rig->jackd.name, name);
  if (!pid) {
    return false;
  }
  char port[128];
  char to[128];
  snprintf(port, sizeof(port), "%s:out", name);
  snprintf(to, sizeof(to), "%s:midi_in", rig->daemon.name);
  // The port exists before its client is active, and cannot be connected
  // until it is.
  const int64_t deadline = fl_now_ms() + 10000;
  while (jack_connect(midi.client, port, jack_port_name(midi.input))) {
    if (fl_now_ms() > deadline) {
      fprintf(stderr, "bench_midi: cannot connect %s\n", port);
      sequencer_stop(pid);
      return false;
    }
    fl_sleep_ms(5);
  }
  if (jack_connect(midi.client, port, to)) {
    fprintf(stderr, "bench_midi: cannot connect %s to %s\n", port, to);
    sequencer_stop(pid);
    return false;
  }
  // Notes from two periods after both connections on reached both.
  const jack_nframes_t after = jack_frame_time(midi.client) + 2U * period;
  wait_until_frame(after + loops * LOOP_FRAMES);
  sequencer_stop(pid);
  fl_recorder_wait(recorder, fl_recorder_frames(recorder) + 4U * period, 2000);
  fl_recorder_stop(recorder);
  const unsigned glitches = fl_recorder_glitches(recorder);
  if (glitches) {
    fprintf(stderr,
            "period %u: %u xrun(s) or skipped period(s) while recording; "
            "recording again\n",
            period,
            glitches);
    ++result->xruns_skipped;
    return false;
  }

  const unsigned end_event = midi_count();
  if (end_event == first_event) {
    fprintf(stderr, "bench_midi: no MIDI from %s\n", port);
    return false;
  }
  // The loop start from the first note-on: the first note of a loop whose
  // index the phase gives.
  jack_nframes_t loop_start = 0;
  bool           found      = false;
  for (unsigned e = first_event; e < end_event && !found; ++e) {
    if ((midi.events[e].status & 0xF0U) == 0x90U) {
      // Which note: the one whose successors match.
      for (unsigned n = 0; n < NOTES && !found; ++n) {
        loop_start = midi.events[e].frame - note_index(n);
        found      = true;
        for (unsigned f = e; f < end_event && found; ++f) {
          found = (midi.events[f].status & 0xF0U) != 0x90U ||
                  sequence_place(midi.events[f].frame, loop_start) >= 0;
        }
      }
    }
  }
  if (!found) {
    fprintf(stderr, "bench_midi: the notes fit no place in the sequence\n");
  }

  const jack_nframes_t first_frame = fl_recorder_first_frame(recorder);
  const long           frames      = (long)fl_recorder_frames(recorder);
  const float* const   out         = fl_recorder_channel(recorder, 0);
  result->period                   = period;
  result->min = result->base_min = LONG_MAX;
  result->max = result->base_max = LONG_MIN;
  result->notes = result->missed = result->misplaced = 0;
  for (unsigned e = first_event; e < end_event; ++e) {
    const NoteEvent* const event = &midi.events[e];
    if ((event->status & 0xF0U) != 0x90U ||
        (int32_t)(event->frame - after) < 0) {
      continue;
    }
    const long index = (long)(int32_t)(event->frame - first_frame);
    if (index < 1000 || index + 1000 > frames) {
      continue;
    }
    ++result->notes;
    if (!found || sequence_place(event->frame, loop_start) < 0) {
      ++result->misplaced;
    }
    // The previous blip ended at least 1700 frames before; the next one
    // starts at least 2203 after.
    long onset = -1;
    for (long i = index - 1000; i < index + 1000; ++i) {
      if (out[i] != 0.0f) {
        onset = i;
        break;
      }
    }
    if (onset < 0) {
      ++result->missed;
      continue;
    }
    const long jitter = onset - index;
    const long offset = index % (long)period; /* index 0 starts a period */
    result->min       = jitter < result->min ? jitter : result->min;
    result->max       = jitter > result->max ? jitter : result->max;
    result->base_min  = offset < result->base_min ? offset : result->base_min;
    result->base_max  = offset > result->base_max ? offset : result->base_max;
  }
  // jack_midiseq counts its loop in the frames it processed: a cycle it
  // missed on a busy machine moves the rest of its loop, and then the note
  // frames are no longer the sequence's.
  if (result->misplaced) {
    fprintf(stderr,
            "period %u: %u notes off their place in the sequence; again\n",
            period,
            result->misplaced);
    ++result->slipped;
    return false;
  }
  return true;
}

static bool
run_period(unsigned period, unsigned loops, Result* result)
{
  memset(result, 0, sizeof(*result));
  FlRig rig;
  memset(&rig, 0, sizeof(rig));
  static const char* const args[] = { "--midi", NULL };
  char                     server[64];
  char                     client[64];
  char                     sample[PATH_MAX];
  bool                     ok = fl_env_init(&rig.env, "bench-midi");
  if (ok) {
    fl_env_name(&rig.env, server, sizeof(server));
    fl_env_name(&rig.env, client, sizeof(client));
    fl_env_path(&rig.env, "blip.wav", sample, sizeof(sample));
    const int port = fl_env_port(&rig.env);
    ok             = port > 0 &&
         fl_write_sample(
           sample, FL_FILE_WAV_FLOAT, FL_SIGNAL_DC, 1, RATE, BLIP_FRAMES) &&
         fl_jackd_start(&rig.jackd, &rig.env, server, period) &&
         fl_daemon_start(&rig.daemon, &rig.env, server, client, port, args);
    rig.osc = ok ? fl_osc_new(port) : NULL;
    ok      = ok && rig.osc;
  }
  FlRecorder* recorder = NULL;
  if (ok) {
    char expected[128];
    snprintf(expected,
             sizeof(expected),
             "/done ,siiii \"/load\" 0 %u 1 %u",
             BLIP_FRAMES,
             RATE);
    const char* const reply =
      fl_osc_call(rig.osc, FL_TEST_REPLY_MS, "/load", "is", 0, sample);
    ok = !strcmp(reply, expected);
    if (!ok) {
      fprintf(stderr, "bench_midi: /load answered %s\n", reply);
    }
    recorder = ok ? fl_recorder_new(server, client, 1, 20U * RATE) : NULL;
    ok       = recorder && midi_open(server);
  }
  bool measured = false;
  for (unsigned attempt = 1; ok && !measured && attempt <= ATTEMPTS;
       ++attempt) {
    result->attempts = attempt;
    measured         = take(&rig, recorder, period, loops, result);
    fl_rig_quiet(&rig, 2000);
  }
  midi_close();
  fl_recorder_free(recorder);
  rig.recorder = NULL;
  if (!fl_rig_stop(&rig)) {
    ok = false;
  }
  if (!ok || !measured) {
    fl_daemon_print_log(&rig.daemon);
  }
  fl_env_remove(&rig.env);
  return ok && measured;
}

int
main(int argc, char** argv)
{
  const unsigned loops = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 13U;
  if (loops < 2U || loops > 60U) {
    fprintf(stderr, "bench_midi: want 2..60 loops\n");
    return 1;
  }
  printf("flitzi MIDI benchmark: jack_midiseq -> flitzid --midi on a dummy "
         "jackd at %u Hz\n"
         "a loop of %u frames with %u notes (indices %u + k * %u), %u loops "
         "per period size; a %u-frame blip per note\n\n",
         RATE,
         LOOP_FRAMES,
         NOTES,
         FIRST_NOTE,
         NOTE_SPACING,
         loops,
         BLIP_FRAMES);
  fflush(stdout);

  static const unsigned periods[] = { 256U, 1024U };
  Result                results[2];
  int                   status = 0;
  for (size_t p = 0; p < 2; ++p) {
    if (!run_period(periods[p], loops, &results[p])) {
      fprintf(stderr, "bench_midi: period %u: no clean take\n", periods[p]);
      return 1;
    }
    const Result* const r = &results[p];
    if (r->notes < 100U || r->missed || r->misplaced) {
      status = 1;
    }
  }

  printf("%-7s %6s %7s %9s %20s %26s %7s\n",
         "period",
         "notes",
         "missed",
         "off-grid",
         "onset - note frame",
         "baseline: offset in period",
         "ratio");
  for (size_t p = 0; p < 2; ++p) {
    const Result* const r = &results[p];
    char                jitter[64];
    char                base[64];
    snprintf(jitter,
             sizeof(jitter),
             "%ld..%ld (spread %ld)",
             r->min,
             r->max,
             r->max - r->min);
    snprintf(base,
             sizeof(base),
             "%ld..%ld (spread %ld)",
             r->base_min,
             r->base_max,
             r->base_max - r->base_min);
    printf("%-7u %6u %7u %9u %20s %26s %7.3f\n",
           r->period,
           r->notes,
           r->missed,
           r->misplaced,
           jitter,
           base,
           (double)(r->max - r->min) / (double)(r->base_max - r->base_min));
  }
  printf("\nonset - note frame in frames of the engine (0: the voice's first "
         "frame is the note's frame); off-grid: notes not at loop start + "
         "index; baseline: what starting each note on its period's first "
         "frame would give; ratio: the spreads' (goal 0 frames of jitter)\n");
  for (size_t p = 0; p < 2; ++p) {
    if (results[p].xruns_skipped || results[p].slipped) {
      printf("period %u: takes made again: %u spoiled by xruns, %u with "
             "jack_midiseq's loop moved\n",
             results[p].period,
             results[p].xruns_skipped,
             results[p].slipped);
    }
  }
  return status;
}
