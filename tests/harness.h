/*
  The integration-test harness: real processes, real sockets, real audio.

  A test program owns one temporary directory, a dummy JACK server with a
  name of its own, one or more flitzid processes, OSC clients that talk to
  them over UDP on the loopback, and a recorder: a JACK client of its own
  whose inputs are connected to flitzid's outputs. Nothing is mocked, so the
  tests see what a user sees.

  Every name (JACK server, JACK client, OSC port) is derived from the test
  program's pid, so the integration tests run in parallel. Child processes
  get SIGTERM when the test program dies (PR_SET_PDEATHSIG), so a crashed or
  timed-out test leaves no server behind.

  All functions here run in the test's main thread, except the recorder's
  process callback, which runs in the recorder's JACK thread and touches
  nothing but the recorder's preallocated buffers and atomics.

  The dummy backend's frame clock drifts against the wall clock, so times
  are mapped to frames with the JACK API at the moment they are needed
  (jack_get_time(), jack_time_to_frames() of the recorder's client), never
  with a calibration taken at start-up.
*/
#ifndef FLITZI_TESTS_HARNESS_H
#define FLITZI_TESTS_HARNESS_H

#include <jack/jack.h>
#include <lo/lo.h>

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/** Sample rate of every test server. */
#define FL_TEST_RATE 48000U

/** Period of every test server, in frames. */
#define FL_TEST_PERIOD 256U

/** How long to wait for a reply that must come, in milliseconds. */
#define FL_TEST_REPLY_MS 3000

/** How long to listen for a reply that must not come, in milliseconds. */
#define FL_TEST_SILENCE_MS 250

/* Time */

/** Milliseconds on CLOCK_MONOTONIC. */
int64_t fl_now_ms(void);

/** Sleep for `duration_ms` milliseconds. */
void fl_sleep_ms(int duration_ms);

/**
   Read jack_get_time() and CLOCK_REALTIME as one instant, as flitzid does
   for a timetag: retried until no preemption split the two reads.
*/
jack_time_t fl_clock_pair(struct timespec* realtime);

/** The OSC timetag `offset_us` microseconds after `realtime` (CLOCK_REALTIME).
 */
lo_timetag fl_timetag_after(const struct timespec* realtime, int64_t offset_us);

/* Temporary directory and unique names */

typedef struct {
  char     dir[256]; /**< mkdtemp'd, realpath'd; no trailing '/' */
  pid_t    pid;      /**< The test program's pid */
  unsigned serial;   /**< Counter for unique names and ports */
} FlTestEnv;

/**
   Create the temporary directory "/tmp/fltest-<label>-XXXXXX".
   Returns false (and prints why) on failure.
*/
bool fl_env_init(FlTestEnv* env, const char* label);

/** Remove the temporary directory and everything in it. */
void fl_env_remove(FlTestEnv* env);

/** Write "<dir>/<file_name>" into `path`. */
void fl_env_path(const FlTestEnv* env,
                 const char*      file_name,
                 char*            path,
                 size_t           path_size);

/** Write a name unique to this test program, "fltest-<pid>-<n>". */
void fl_env_name(FlTestEnv* env, char* name, size_t name_size);

/**
   Return a UDP and TCP port on 127.0.0.1 that is free now, derived from the
   pid so parallel tests start at different places. Returns -1 if none is.
*/
int fl_env_port(FlTestEnv* env);

/** Read a whole file into a new string (free() it), or NULL. */
char* fl_read_text(const char* path);

/* Child processes */

/**
   Run `argv` (argv[0] a path or a name in PATH) to completion with its
   output captured, and with JACK_DEFAULT_SERVER=`jack_server` and
   JACK_NO_START_SERVER=1 if `jack_server` is not NULL.

   Stores new strings with its standard output and error in `out` and `err`
   (free() them). Returns its exit status (0..255), -1 if a signal ended it,
   or -2 if it did not end within `timeout_ms` (it is then killed).
*/
int fl_run_capture(const FlTestEnv*   env,
                   const char* const* argv,
                   const char*        jack_server,
                   char**             out,
                   char**             err,
                   int                timeout_ms);

/* The dummy JACK server */

typedef struct {
  char     name[64];        /**< Server name (-n) */
  unsigned period_frames;   /**< Period (-p) */
  unsigned sample_rate;     /**< Rate (-r); FL_TEST_RATE unless changed
                                 before fl_jackd_start_again() */
  pid_t pid;                /**< 0 when not running */
  char  log_path[PATH_MAX]; /**< Its output, appended on restarts */
} FlJackd;

/**
   Start `jackd -n NAME -d dummy -r 48000 -p PERIOD` and wait (at most 10 s)
   until a client can connect to it. Returns false (and prints the server's
   log) on failure.
*/
bool fl_jackd_start(FlJackd*         jackd,
                    const FlTestEnv* env,
                    const char*      name,
                    unsigned         period_frames);

/**
   Stop the server with SIGTERM and reap it. Returns true if it exited 0, or
   if it died of SIGPIPE while shutting down (jackd 1.9.21 does that when a
   client hung up first; its leftover files in /dev/shm are then removed).
*/
bool fl_jackd_stop(FlJackd* jackd);

/** Start a stopped server again under the same name and period. */
bool fl_jackd_start_again(FlJackd* jackd);

/** Stop the server and start it again under the same name. */
bool fl_jackd_restart(FlJackd* jackd);

/**
   Count the lines of the server's log that contain `needle` (used to tell
   the driver's own xruns from a client's).
*/
unsigned fl_jackd_log_count(const FlJackd* jackd, const char* needle);

/**
   Open a JACK client on the server `server_name`, never starting a server.
   Returns NULL if the server is not there.
*/
jack_client_t* fl_jack_open(const char* server_name, const char* client_name);

/**
   Wait until the ports "<client_name>:out_1" .. "out_<channels>" exist on
   `server_name`. Returns false after `timeout_ms`.
*/
bool fl_jack_wait_ports(const char* server_name,
                        const char* client_name,
                        unsigned    channels,
                        int         timeout_ms);

/* flitzid */

typedef struct {
  char  name[64];           /**< JACK client name (-n) */
  char  server[64];         /**< JACK server name */
  int   port;               /**< OSC port (-p) */
  pid_t pid;                /**< 0 once reaped */
  int   exit_status;        /**< Set when reaped: 0..255, -1 for a signal */
  char  log_path[PATH_MAX]; /**< Its standard output and error */
} FlDaemon;

/**
   Start flitzid (the path in the environment variable FLITZID) as
   `flitzid -n NAME -p PORT EXTRA_ARGS...` against the JACK server `server`,
   without waiting for it. `extra_args` is NULL-terminated or NULL.
*/
bool fl_daemon_spawn(FlDaemon*          daemon,
                     const FlTestEnv*   env,
                     const char*        server,
                     const char*        name,
                     int                port,
                     const char* const* extra_args);

/**
   Wait until the daemon answers /ping with /pong and its ports
   NAME:out_1..out_<channels> exist. Prints its log on failure.
*/
bool fl_daemon_wait_ready(FlDaemon* daemon, unsigned channels, int timeout_ms);

/** fl_daemon_spawn() then fl_daemon_wait_ready() for two channels. */
bool fl_daemon_start(FlDaemon*          daemon,
                     const FlTestEnv*   env,
                     const char*        server,
                     const char*        name,
                     int                port,
                     const char* const* extra_args);

/**
   Wait for the daemon to exit by itself. Returns its exit status (0..255),
   -1 if a signal ended it, -2 if it is still running after `timeout_ms`.
*/
int fl_daemon_wait_exit(FlDaemon* daemon, int timeout_ms);

/**
   Stop the daemon with SIGTERM (SIGKILL after 10 s) and reap it. Returns its
   exit status as fl_daemon_wait_exit() does; the contract is 0.
*/
int fl_daemon_stop(FlDaemon* daemon);

/** True while the daemon's process has not exited. */
bool fl_daemon_running(FlDaemon* daemon);

/** Print the daemon's log to stderr, headed by its name. */
void fl_daemon_print_log(const FlDaemon* daemon);

/* OSC client */

/** One OSC argument of a received message. */
typedef struct {
  char type; /**< OSC type tag */
  union {
    int32_t i;
    int64_t h;
    float   f;
    double  d;
  } value;
  char* s; /**< For 's' and 'S' */
} FlOscArg;

#define FL_OSC_MAX_ARGS 16

/** A message received by an OSC client. */
typedef struct {
  char     path[256];
  char     types[FL_OSC_MAX_ARGS + 1];
  int      argc;
  FlOscArg argv[FL_OSC_MAX_ARGS];
} FlReply;

typedef struct FlOscImpl FlOsc;

/**
   Open an OSC client: a UDP server on a free port for replies, and the
   address 127.0.0.1:`daemon_port` it sends to (from that port).
*/
FlOsc* fl_osc_new(int daemon_port);

/** Close the client. fl_osc_free(NULL) does nothing. */
void fl_osc_free(FlOsc* osc);

/** The UDP port replies come back to. */
int fl_osc_port(const FlOsc* osc);

/**
   Send a message. `types` is an OSC type-tag string without the ','; the
   arguments follow it: 'i' int, 'h' int64_t, 'f' and 'd' double, 's' and
   'S' const char*, 'T' 'F' 'N' 'I' none.
*/
bool fl_osc_send(FlOsc* osc, const char* path, const char* types, ...);

/** Send a bundle with timetag `when` holding one message. */
bool fl_osc_send_bundle(FlOsc*      osc,
                        lo_timetag  when,
                        const char* path,
                        const char* types,
                        ...);

/**
   Return the first received message whose path is `path` (any path if
   NULL), receiving for at most `timeout_ms`; messages that do not match are
   kept, in order. Returns NULL on timeout. fl_reply_free() the result.
*/
FlReply* fl_osc_wait(FlOsc* osc, const char* path, int timeout_ms);

/** Receive everything that arrives within `duration_ms`; return the count kept.
 */
unsigned fl_osc_collect(FlOsc* osc, int duration_ms);

/** Number of received messages not yet taken by fl_osc_wait(). */
unsigned fl_osc_pending(const FlOsc* osc);

/** Drop every received message. */
void fl_osc_clear(FlOsc* osc);

/**
   Send a message and return the next reply, formatted by
   fl_reply_format(), or "(no reply within N ms)". The string lives until
   the next call on `osc`.
*/
const char* fl_osc_call(FlOsc*      osc,
                        int         timeout_ms,
                        const char* path,
                        const char* types,
                        ...);

/**
   Format a message as `/path ,types arg...`: ints in decimal, floats with
   %g, strings in double quotes, e.g. `/fail ,sis "/play" 3 "slot 3 is empty"`.
*/
const char* fl_reply_format(const FlReply* reply, char* text, size_t text_size);

void fl_reply_free(FlReply* reply);

/** The /status.reply fields. */
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
} FlDaemonStatus;

/**
   Send /status and parse the reply. Returns false if none came or its type
   tags are not ",iiiiiffiii".
*/
bool fl_osc_status(FlOsc* osc, FlDaemonStatus* status);

/**
   Poll /status until voices_active == `voices`; returns false after
   `timeout_ms`.
*/
bool fl_osc_wait_voices(FlOsc* osc, int32_t voices, int timeout_ms);

/* Recorder */

typedef struct FlRecorderImpl FlRecorder;

/** Inputs a recorder can have: every port of flitzid's eight buses. */
#define FL_RECORDER_MAX_CHANNELS 16U

/**
   Open a JACK client on `server` with inputs in_1..in_<channels> (1 to
   FL_RECORDER_MAX_CHANNELS) connected to "<source>:out_1"..
   "out_<channels>", able to record `capacity_frames` frames. Returns NULL
   (and prints why) on failure.
*/
FlRecorder* fl_recorder_new(const char* server,
                            const char* source,
                            unsigned    channels,
                            uint32_t    capacity_frames);

/** Close the client and free the buffers. fl_recorder_free(NULL) is a no-op. */
void fl_recorder_free(FlRecorder* recorder);

/**
   Start recording from the start of the next period. Recording stops by
   itself when the buffers are full.
*/
void fl_recorder_start(FlRecorder* recorder);

/** Stop recording; returns once the process thread has seen the stop. */
void fl_recorder_stop(FlRecorder* recorder);

/** Wait until at least `frames` frames are recorded; false after timeout. */
bool fl_recorder_wait(FlRecorder* recorder, uint32_t frames, int timeout_ms);

/** Frames recorded so far. */
uint32_t fl_recorder_frames(const FlRecorder* recorder);

/** The recorded frames of input `channel` (0-based). */
const float* fl_recorder_channel(const FlRecorder* recorder, unsigned channel);

/**
   The absolute JACK frame time of the first recorded frame. Later frames
   are first_frame + index only if fl_recorder_glitches() is 0; use
   fl_recorder_frame_at() to be sure.
*/
jack_nframes_t fl_recorder_first_frame(const FlRecorder* recorder);

/**
   The absolute JACK frame time of recorded frame `index`, from the timing
   of the period that recorded it. Returns false if it was not recorded.
*/
bool fl_recorder_frame_at(const FlRecorder* recorder,
                          uint32_t          index,
                          jack_nframes_t*   frame);

/**
   Periods recorded so far: the recorder's process callback has finished
   that many periods since recording started.
*/
uint32_t fl_recorder_period_count(const FlRecorder* recorder);

/** The recorded period (0-based) that holds frame `index`, or -1. */
long fl_recorder_period_of(const FlRecorder* recorder, uint32_t index);

/**
   Count what spoils the recording since fl_recorder_start(): xruns the
   server reported to the recorder, and periods the recorder did not get
   (a jump in the frame time between two recorded periods). Under load the
   dummy backend has xruns of its own; a capture with glitches says nothing
   about flitzid's output and is made again.
*/
unsigned fl_recorder_glitches(const FlRecorder* recorder);

/**
   Index of the first recorded frame of `channel` at or after `from` whose
   magnitude exceeds `threshold`, or -1.
*/
long fl_recorder_onset(const FlRecorder* recorder,
                       unsigned          channel,
                       float             threshold,
                       uint32_t          from);

/**
   Map the absolute JACK time `usecs` to a frame the way the contract asks
   of flitzid's RT thread for a timetag: with the timing of the period it
   falls in (jack_get_cycle_times() of that period, recorded as it ran),
   the offset rounded to the nearest frame. Returns false if the recording
   does not reach that period or started after it.
*/
bool fl_recorder_time_to_frame(const FlRecorder* recorder,
                               jack_time_t       usecs,
                               jack_nframes_t*   frame);

/** The recorder's client, for jack_frame_time() and jack_time_to_frames(). */
jack_client_t* fl_recorder_client(FlRecorder* recorder);

/**
   Compare `frame_count` recorded frames of `channel` from index `onset`
   with `expected[i * stride] * gain`. Returns -1 if every frame is within
   `tolerance`, else the index (from `onset`) of the first that is not, after
   printing it.
*/
long fl_recorder_compare(const FlRecorder* recorder,
                         unsigned          channel,
                         long              onset,
                         const float*      expected,
                         uint32_t          frame_count,
                         unsigned          stride,
                         float             gain,
                         float             tolerance);

/** True once the server has shut the recorder's client down. */
bool fl_recorder_shut_down(const FlRecorder* recorder);

/* Generated sample files */

typedef enum {
  FL_FILE_WAV_PCM16,
  FL_FILE_WAV_FLOAT,
  FL_FILE_FLAC_PCM16,
} FlFileFormat;

typedef enum {
  FL_SIGNAL_CLICK, /**< 1.0 (channel 1: -0.5) at frame 0, then silence */
  FL_SIGNAL_RAMP,  /**< Falls linearly from 1.0 (channel 1: -0.5) towards 0 */
  FL_SIGNAL_TONE,  /**< 0.9 (ch 1: -0.7) at frame 0, then a sine per channel */
  FL_SIGNAL_DC,    /**< 0.5 (channel 1: -0.25) */
} FlSignal;

/**
   The value of `signal` at `frame` of `frame_count` in `channel`. Channels
   above 1 repeat channels 0 and 1.
*/
float fl_signal_value(FlSignal signal,
                      uint32_t frame,
                      uint32_t frame_count,
                      unsigned channel);

/**
   Write `frame_count` frames of `signal` with `channels` channels at
   `sample_rate` into a new file at `path`. Returns false (and prints
   libsndfile's reason) on failure.
*/
bool fl_write_sample(const char*  path,
                     FlFileFormat format,
                     FlSignal     signal,
                     unsigned     channels,
                     unsigned     sample_rate,
                     uint32_t     frame_count);

/**
   Read a whole sound file as interleaved floats (free() them), storing its
   frame and channel counts. Returns NULL on failure.
*/
float* fl_read_sample(const char* path,
                      uint32_t*   frame_count,
                      unsigned*   channels);

/* A whole rig: server, daemon, client and recorder */

typedef struct {
  FlTestEnv   env;
  FlJackd     jackd;
  FlDaemon    daemon;
  FlOsc*      osc;
  FlRecorder* recorder; /**< NULL unless asked for */
} FlRig;

/**
   Create the temporary directory, start a dummy server with a period of
   FL_TEST_PERIOD frames, start flitzid with `daemon_args` (NULL-terminated
   or NULL) on a free port, open an OSC client and, if `record`, a recorder
   of 30 s connected to both outputs.
*/
bool fl_rig_start(FlRig*             rig,
                  const char*        label,
                  const char* const* daemon_args,
                  bool               record);

/**
   Close the recorder and client, stop the daemon and the server. Returns
   false if the daemon did not exit with status 0. Keeps the directory.
*/
bool fl_rig_stop(FlRig* rig);

/**
   Before a test: the daemon is running, /stop has silenced every voice
   within `timeout_ms`, and no reply is left queued. Returns false if not.
*/
bool fl_rig_quiet(FlRig* rig, int timeout_ms);

/**
   End of a test program: if `failures` is not 0, print the daemon's and the
   server's logs; remove the directory. Returns `failures`.
*/
int fl_rig_finish(FlRig* rig, int failures);

#endif /* FLITZI_TESTS_HARNESS_H */
