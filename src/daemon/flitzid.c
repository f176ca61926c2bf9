/*
  flitzid: the sample engine daemon. Option parsing and wiring; the work is
  in the modules. The main thread also frees retired samples, watches the
  JACK connection, and reconnects once a second when the server is gone.
*/
#include <flitzi/api.h>
#include <flitzi/backend.h>
#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/loader.h>
#include <flitzi/log.h>
#include <flitzi/osc.h>
#include <flitzi/session.h>
#include <flitzi/telemetry.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define EXIT_USAGE 64

typedef struct {
  const char* client_name;
  uint32_t    channels;
  uint32_t    slots;
  uint32_t    voices;
  const char* port;
  const char* listen_address;
  bool        tcp;
  bool        connect;
  FlQuality   quality;
  double      max_seconds;
  const char* sample_root;
  uint32_t    transport_mode;
  uint32_t    buses;
  bool        midi;
  uint32_t    midi_base;
  uint32_t    midi_channel;
  const char* state_path;
} Options;

/* What signal handlers, the RT thread and /quit may touch: a flag and a
   semaphore (sem_post is async-signal-safe and never blocks). */
static sem_t       main_wake;
static atomic_bool quit_requested;

static void
wake_main(void* data)
{
  (void)data;
  sem_post(&main_wake);
}

static void
request_quit(void* data)
{
  (void)data;
  atomic_store_explicit(&quit_requested, true, memory_order_relaxed);
  sem_post(&main_wake);
}

static void
on_signal(int signal_number)
{
  (void)signal_number;
  request_quit(NULL);
}

static void
print_usage(FILE* stream)
{
  fprintf(
    stream,
    "Usage: flitzid [OPTION]...\n"
    "Play audio files from numbered slots as JACK output, controlled over "
    "OSC.\n"
    "\n"
    "  -n, --name NAME              JACK client name (default flitzid)\n"
    "  -c, --channels N             channels per bus, 1 or 2 (default 2)\n"
    "  -s, --slots N                sample slots, 1..1024 (default 32)\n"
    "  -P, --voices N               polyphony, 1..1024 (default 32)\n"
    "      --midi                   a JACK MIDI input, midi_in: note k plays\n"
    "                               slot k - base at the note's frame\n"
    "      --midi-base K            the key of slot 0, 0..127 (default 36)\n"
    "      --midi-channel C         listen to channel C only, 1..16 (default "
    "all)\n"
    "      --buses N                output buses, 1..8 (default 1): bus b is\n"
    "                               out_(2b+1) and out_(2b+2); --connect\n"
    "                               wires bus 0\n"
    "  -p, --port PORT              OSC port (default 9950)\n"
    "  -l, --listen ADDR            numeric address to bind (default "
    "localhost:\n"
    "                               127.0.0.1 and ::1; OSC has no "
    "authentication)\n"
    "      --tcp                    also accept OSC over TCP on the same port\n"
    "      --connect                connect outputs to the first physical "
    "playback ports\n"
    "      --src-quality Q          best, medium or fastest (default medium)\n"
    "      --max-sample-seconds S   longest sample accepted, seconds "
    "(default 600)\n"
    "      --sample-root DIR        only load files below DIR\n"
    "      --transport MODE         internal, jack (follow a JACK timebase\n"
    "                               master) or master (be one); default "
    "internal\n"
    "      --state FILE             restore the slots and settings from FILE\n"
    "                               and keep it up to date (JSON)\n"
    "      --list-osc               print the OSC dispatch table and exit\n"
    "  -v, --verbose                more log output\n"
    "  -q, --quiet                  errors only\n"
    "  -h, --help                   show this help and exit\n"
    "  -V, --version                show the version and exit\n"
    "\n"
    "The JACK server is the one named by JACK_DEFAULT_SERVER; flitzid never\n"
    "starts one. If it is not running, or goes away, flitzid keeps its OSC\n"
    "server and samples and reconnects once a second.\n"
    "\n"
    "Example:\n"
    "  flitzid --connect &\n"
    "  oscsend localhost 9950 /load is 0 /path/kick.wav\n"
    "  oscsend localhost 9950 /play if 0 0.8\n");
}

static bool
parse_count(const char* option,
            const char* text,
            uint32_t    min,
            uint32_t    max,
            uint32_t*   value)
{
  char* end              = NULL;
  errno                  = 0;
  const long long parsed = strtoll(text, &end, 10);
  if (errno || end == text || *end || parsed < min || parsed > max) {
    fprintf(stderr,
            "flitzid: %s must be a whole number from %u to %u (got '%s')\n",
            option,
            min,
            max,
            text);
    return false;
  }
  *value = (uint32_t)parsed;
  return true;
}

/* Returns -1 to go on, or an exit status. */
static int
parse_options(int argc, char** argv, Options* options)
{
  enum {
    OPT_TCP = 256,
    OPT_CONNECT,
    OPT_QUALITY,
    OPT_MAX_SECONDS,
    OPT_SAMPLE_ROOT,
    OPT_LIST_OSC,
    OPT_TRANSPORT,
    OPT_BUSES,
    OPT_MIDI,
    OPT_MIDI_BASE,
    OPT_MIDI_CHANNEL,
    OPT_STATE,
  };
  static const struct option long_options[] = {
    { "name", required_argument, NULL, 'n' },
    { "channels", required_argument, NULL, 'c' },
    { "slots", required_argument, NULL, 's' },
    { "voices", required_argument, NULL, 'P' },
    { "port", required_argument, NULL, 'p' },
    { "listen", required_argument, NULL, 'l' },
    { "tcp", no_argument, NULL, OPT_TCP },
    { "connect", no_argument, NULL, OPT_CONNECT },
    { "src-quality", required_argument, NULL, OPT_QUALITY },
    { "max-sample-seconds", required_argument, NULL, OPT_MAX_SECONDS },
    { "sample-root", required_argument, NULL, OPT_SAMPLE_ROOT },
    { "list-osc", no_argument, NULL, OPT_LIST_OSC },
    { "transport", required_argument, NULL, OPT_TRANSPORT },
    { "buses", required_argument, NULL, OPT_BUSES },
    { "midi", no_argument, NULL, OPT_MIDI },
    { "midi-base", required_argument, NULL, OPT_MIDI_BASE },
    { "midi-channel", required_argument, NULL, OPT_MIDI_CHANNEL },
    { "state", required_argument, NULL, OPT_STATE },
    { "verbose", no_argument, NULL, 'v' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };

  uint32_t port = 0U;
  int      c    = 0;
  while ((c = getopt_long(
            argc, argv, "n:c:s:P:p:l:vqhV", long_options, NULL)) != -1) {
    switch (c) {
      case 'n':
        if (!optarg[0]) {
          fprintf(stderr, "flitzid: --name must not be empty\n");
          return EXIT_USAGE;
        }
        options->client_name = optarg;
        break;
      case 'c':
        if (!parse_count("--channels", optarg, 1U, 2U, &options->channels)) {
          return EXIT_USAGE;
        }
        break;
      case 's':
        if (!parse_count(
              "--slots", optarg, 1U, FL_MAX_SLOTS, &options->slots)) {
          return EXIT_USAGE;
        }
        break;
      case 'P':
        if (!parse_count(
              "--voices", optarg, 1U, FL_MAX_VOICES, &options->voices)) {
          return EXIT_USAGE;
        }
        break;
      case 'p':
        if (!parse_count("--port", optarg, 1U, 65535U, &port)) {
          return EXIT_USAGE;
        }
        options->port = optarg;
        break;
      case 'l':
        options->listen_address = optarg;
        break;
      case OPT_TCP:
        options->tcp = true;
        break;
      case OPT_CONNECT:
        options->connect = true;
        break;
      case OPT_QUALITY:
        if (!strcmp(optarg, "best")) {
          options->quality = FL_QUALITY_BEST;
        } else if (!strcmp(optarg, "medium")) {
          options->quality = FL_QUALITY_MEDIUM;
        } else if (!strcmp(optarg, "fastest")) {
          options->quality = FL_QUALITY_FASTEST;
        } else {
          fprintf(stderr,
                  "flitzid: --src-quality must be best, medium or fastest "
                  "(got '%s')\n",
                  optarg);
          return EXIT_USAGE;
        }
        break;
      case OPT_MAX_SECONDS: {
        char* end            = NULL;
        options->max_seconds = strtod(optarg, &end);
        if (end == optarg || *end || !(options->max_seconds > 0.0) ||
            options->max_seconds > 86400.0) {
          fprintf(stderr,
                  "flitzid: --max-sample-seconds must be a number of seconds "
                  "above 0, at most 86400 (got '%s')\n",
                  optarg);
          return EXIT_USAGE;
        }
        break;
      }
      case OPT_SAMPLE_ROOT:
        options->sample_root = optarg;
        break;
      case OPT_STATE:
        if (!optarg[0]) {
          fprintf(stderr, "flitzid: --state must name a file\n");
          return EXIT_USAGE;
        }
        options->state_path = optarg;
        break;
      case OPT_MIDI:
        options->midi = true;
        break;
      case OPT_MIDI_BASE:
        if (!parse_count(
              "--midi-base", optarg, 0U, 127U, &options->midi_base)) {
          return EXIT_USAGE;
        }
        break;
      case OPT_MIDI_CHANNEL:
        if (!parse_count(
              "--midi-channel", optarg, 1U, 16U, &options->midi_channel)) {
          return EXIT_USAGE;
        }
        break;
      case OPT_BUSES:
        if (!parse_count(
              "--buses", optarg, 1U, FL_MAX_BUSES, &options->buses)) {
          return EXIT_USAGE;
        }
        break;
      case OPT_TRANSPORT:
        if (!strcmp(optarg, "internal")) {
          options->transport_mode = FL_TRANSPORT_INTERNAL;
        } else if (!strcmp(optarg, "jack")) {
          options->transport_mode = FL_TRANSPORT_JACK;
        } else if (!strcmp(optarg, "master")) {
          options->transport_mode = FL_TRANSPORT_MASTER;
        } else {
          fprintf(stderr,
                  "flitzid: --transport must be internal, jack or master "
                  "(got '%s')\n",
                  optarg);
          return EXIT_USAGE;
        }
        break;
      case OPT_LIST_OSC:
        fl_api_print_table(stdout);
        return EXIT_SUCCESS;
      case 'v':
        fl_log_set_level(FL_LOG_DEBUG);
        break;
      case 'q':
        fl_log_set_level(FL_LOG_ERROR);
        break;
      case 'h':
        print_usage(stdout);
        return EXIT_SUCCESS;
      case 'V':
        printf("flitzid %s\n", FL_VERSION);
        return EXIT_SUCCESS;
      default:
        fprintf(stderr, "Try 'flitzid --help' for more information.\n");
        return EXIT_USAGE;
    }
  }

  if (options->buses > 1U && options->channels == 1U) {
    fprintf(stderr,
            "flitzid: --buses %u needs stereo buses; drop --channels 1\n",
            options->buses);
    return EXIT_USAGE;
  }

  if (optind < argc) {
    fprintf(stderr,
            "flitzid: unexpected argument '%s'\n"
            "Try 'flitzid --help' for more information.\n",
            argv[optind]);
    return EXIT_USAGE;
  }
  return -1;
}

/* Lock what the process has mapped now (the engine's rings and voices, the
   stack of JACK's process thread, which exists once the client is active,
   the code) as it is touched: MCL_ONFAULT locks the pages the RT thread has
   used without faulting in every thread stack and all of JACK's shared
   memory, so resident memory stays what is used. Samples are locked one by
   one by the loader. Called after every (re)connection, as each makes a new
   process thread. */
static void
lock_memory(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  /* Sanitizers map terabytes of shadow memory; locking it all would not end
     well. Their builds are for finding bugs, not for the stage. */
  fl_log(FL_LOG_DEBUG, "sanitizer build: memory is not locked");
#else
  static bool warned = false;
  if (mlockall(MCL_CURRENT | MCL_ONFAULT) && !warned) {
    fl_log(FL_LOG_WARNING,
           "cannot lock memory (%s); a page fault could cause an xrun "
           "(raise 'ulimit -l')",
           strerror(errno));
    warned = true;
  }
#endif
}

static uint32_t
free_retired(FlEngine* engine)
{
  uint32_t  count  = 0U;
  FlSample* sample = NULL;
  while ((sample = fl_engine_next_retired(engine))) {
    fl_sample_free(sample);
    ++count;
  }
  return count;
}

static double
now_seconds(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

typedef struct {
  FlBank*      bank;
  FlEngine*    engine;
  FlLoader*    loader;
  FlOscServer* server;
  FlBackend*   backend;
  FlTelemetry* telemetry;
  FlSession*   session; /* --state, or NULL */
  FlApi        api;
} Daemon;

static void
free_daemon(Daemon* daemon)
{
  /* Order: no new requests, the loader finishes while the RT thread still
     takes its retirements, then the RT thread stops and everything it held
     is freed here. */
  fl_session_detach(daemon->session);
  fl_osc_free(daemon->server);
  daemon->api.server = NULL;
  fl_loader_free(daemon->loader);
  fl_session_free(daemon->session); /* writes what changed last */
  fl_backend_free(daemon->backend);
  if (daemon->engine) {
    fl_engine_process_offline(daemon->engine);
    free_retired(daemon->engine);
  }
  fl_telemetry_free(daemon->telemetry);
  fl_engine_free(daemon->engine);
  fl_bank_free(daemon->bank);
  fl_sample_pool_trim(true);
}

static Daemon daemon_state;

/* The RT thread asked for a key-lock render: the loader makes it. */
static void
stretch_wanted(void*    data,
               uint32_t slot,
               double   ratio,
               uint32_t start,
               uint32_t end,
               bool     loop)
{
  Daemon* const daemon = (Daemon*)data;
  if (fl_loader_stretch(daemon->loader, slot, ratio, start, end, loop)) {
    fl_log(FL_LOG_WARNING, "key lock: the loader's queue is full");
  }
}

/* Before the client activates: fades for the server's rate, and samples
   resampled again if the rate is new. */
static void
prepare_daemon(void* data, uint32_t sample_rate)
{
  Daemon* const daemon = (Daemon*)data;
  fl_engine_set_sample_rate(daemon->engine, sample_rate);
  fl_loader_set_sample_rate(daemon->loader, sample_rate);
}

static void
run(Daemon* daemon)
{
  bool     connected      = false;
  bool     warned         = false;
  double   last_attempt   = -10.0;
  uint32_t reported_xruns = 0U;
  bool     files_queued   = false;

  while (!atomic_load_explicit(&quit_requested, memory_order_relaxed)) {
    if (connected && fl_backend_lost(daemon->backend)) {
      fl_log(FL_LOG_WARNING,
             "the JACK server went away; keeping %u loaded slots, "
             "reconnecting every second",
             fl_bank_loaded_count(daemon->bank));
      fl_backend_close(daemon->backend);
      connected = false;
      warned    = true;
    }

    if (!connected) {
      if (now_seconds() - last_attempt >= 1.0) {
        char reason[256];
        last_attempt = now_seconds();
        connected = !fl_backend_open(daemon->backend, reason, sizeof(reason));
        if (!connected && !warned) {
          fl_log(FL_LOG_WARNING, "%s; retrying every second", reason);
          warned = true;
        } else if (connected && warned) {
          fl_log(FL_LOG_INFO,
                 "reconnected; %u slots loaded",
                 fl_bank_loaded_count(daemon->bank));
          warned = false;
        }
        if (connected) {
          lock_memory();
        }
      }
      /* No RT thread runs: this thread takes its role. (After the attempt,
         so that the settings restored at start-up reach the RT thread.) */
      if (!connected) {
        fl_engine_process_offline(daemon->engine);
      }
    }

    /* --state: the files, once the first attempt set the sample rate. */
    if (!files_queued) {
      fl_session_load_files(daemon->session, daemon->loader);
      files_queued = true;
    }

    free_retired(daemon->engine);
    fl_sample_pool_trim(false);
    fl_telemetry_run(daemon->telemetry);

    FlBackendStats stats;
    fl_backend_stats(daemon->backend, false, &stats);
    if (stats.xruns != reported_xruns) {
      fl_log(FL_LOG_WARNING, "xrun (%u in total)", stats.xruns);
      fl_api_notify_xruns(&daemon->api, stats.xruns);
      reported_xruns = stats.xruns;
    }

    /* Sleep until woken (RT hand-back or telemetry, xrun, server gone,
       signal, /quit),
       or for a second while reconnecting, or for 1 s anyway. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    while (sem_timedwait(&main_wake, &until) && errno == EINTR) {
    }
  }
}

int
main(int argc, char** argv)
{
  Options options = {
    .client_name    = "flitzid",
    .channels       = 2U,
    .slots          = FL_DEFAULT_SLOTS,
    .voices         = FL_DEFAULT_VOICES,
    .buses          = 1U,
    .midi_base      = 36U,
    .port           = "9950",
    .listen_address = "localhost",
    .quality        = FL_QUALITY_MEDIUM,
    .max_seconds    = 600.0,
  };

  /* Every sample buffer gets a mapping of its own, returned (and unlocked)
     by free(). Without a fixed threshold glibc raises it after the first
     such free, and later samples come from a heap arena whose freed pages
     stay resident and mlock()ed. Setting it turns that adjustment off. */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);

  const int parsed = parse_options(argc, argv, &options);
  if (parsed >= 0) {
    return parsed;
  }

  char sample_root[PATH_MAX];
  if (options.sample_root) {
    if (!realpath(options.sample_root, sample_root)) {
      fprintf(stderr,
              "flitzid: --sample-root '%s': %s\n",
              options.sample_root,
              strerror(errno));
      return EXIT_USAGE;
    }
  }

  sem_init(&main_wake, 0, 0);
  atomic_init(&quit_requested, false);

  Daemon* const daemon               = &daemon_state;
  daemon->bank                       = fl_bank_new(options.slots);
  const uint32_t       ports         = options.channels * options.buses;
  const FlEngineConfig engine_config = { 48000U, ports,     options.voices,
                                         0U,     wake_main, NULL };
  daemon->engine =
    daemon->bank ? fl_engine_new(&engine_config, daemon->bank) : NULL;
  daemon->telemetry =
    daemon->engine ? fl_telemetry_new(daemon->engine, options.slots) : NULL;
  daemon->api.engine         = daemon->engine;
  daemon->api.bank           = daemon->bank;
  daemon->api.now_usecs      = fl_backend_now_usecs;
  daemon->api.quit           = request_quit;
  daemon->api.telemetry      = daemon->telemetry;
  daemon->api.max_voices     = options.voices;
  daemon->api.bus_count      = options.buses;
  daemon->api.transport_mode = options.transport_mode;
  fl_api_init(&daemon->api);

  const FlLoaderConfig loader_config = {
    daemon->engine,
    daemon->bank,
    { 48000U, options.quality, options.max_seconds },
    options.sample_root ? sample_root : NULL,
    0U,
    true,
    fl_api_load_done,
    &daemon->api,
  };
  daemon->loader     = daemon->telemetry ? fl_loader_new(&loader_config) : NULL;
  daemon->api.loader = daemon->loader;

  size_t             method_count = 0U;
  const FlOscMethod* methods      = fl_api_methods(&method_count);
  const FlOscConfig  osc_config   = {
       options.listen_address, options.port, options.tcp, methods,
       method_count,           &daemon->api
  };
  char reason[256] = "out of memory";
  daemon->server =
    daemon->loader ? fl_osc_new(&osc_config, reason, sizeof(reason)) : NULL;
  daemon->api.server = daemon->server;
  if (daemon->telemetry) {
    fl_telemetry_set_server(daemon->telemetry, daemon->server);
    fl_telemetry_set_stretch_handler(daemon->telemetry, stretch_wanted, daemon);
  }

  const FlBackendConfig backend_config = {
    .client_name      = options.client_name,
    .output_count     = ports,
    .connect_physical = options.connect,
    .engine           = daemon->engine,
    .wake             = wake_main,
    .wake_data        = daemon,
    .prepare          = prepare_daemon,
    .transport_mode   = options.transport_mode,
    .midi             = options.midi,
    .midi_base        = options.midi_base,
    .midi_channel     = options.midi_channel,
  };
  daemon->backend     = daemon->server ? fl_backend_new(&backend_config) : NULL;
  daemon->api.backend = daemon->backend;

  /* --state: read FILE and queue its settings before the OSC thread (the
     engine's control thread) runs; run() queues its files. */
  bool ready = daemon->backend != NULL;
  if (options.state_path && ready) {
    const FlSessionConfig session_config = {
      options.state_path, daemon->bank, options.voices, options.buses
    };
    daemon->session     = fl_session_new(&session_config);
    daemon->api.session = daemon->session;
    if (!daemon->session || fl_session_start(daemon->session, daemon->server)) {
      snprintf(reason, sizeof(reason), "--state: out of memory");
      ready = false;
    } else {
      fl_session_restore(daemon->session,
                         daemon->engine,
                         daemon->api.settings,
                         &daemon->api.globals);
    }
  }

  if (!ready || fl_osc_start(daemon->server)) {
    fprintf(stderr, "flitzid: %s\n", reason);
    free_daemon(daemon);
    return EXIT_FAILURE;
  }

  struct sigaction action = { 0 };
  action.sa_handler       = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  signal(SIGPIPE, SIG_IGN);

  fl_log(FL_LOG_INFO,
         "OSC on %s:%s%s, %u slots, %u voices",
         options.listen_address,
         options.port,
         options.tcp ? " (udp, tcp)" : "",
         options.slots,
         options.voices);
  run(daemon);

  fl_log(FL_LOG_INFO, "shutting down");
  free_daemon(daemon);
  sem_destroy(&main_wake);
  return EXIT_SUCCESS;
}
