/*
  The integration-test harness. See harness.h for the contract.
*/
#include "harness.h"

#include <sndfile.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

/* Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
#define FL_NTP_UNIX_OFFSET 2208988800U

/* Time */

int64_t
fl_now_ms(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void
fl_sleep_ms(int duration_ms)
{
  struct timespec duration = { duration_ms / 1000,
                               (long)(duration_ms % 1000) * 1000000L };
  while (nanosleep(&duration, &duration) != 0 && errno == EINTR) {
  }
}

jack_time_t
fl_clock_pair(struct timespec* realtime)
{
  jack_time_t best     = 0;
  jack_time_t best_gap = (jack_time_t)-1;
  for (int attempt = 0; attempt < 8 && best_gap > 20U; ++attempt) {
    struct timespec   system;
    const jack_time_t before = jack_get_time();
    clock_gettime(CLOCK_REALTIME, &system);
    const jack_time_t after = jack_get_time();
    if (after - before < best_gap) {
      best_gap  = after - before;
      best      = before + (after - before) / 2U;
      *realtime = system;
    }
  }
  return best;
}

lo_timetag
fl_timetag_after(const struct timespec* realtime, int64_t offset_us)
{
  int64_t ns = (int64_t)realtime->tv_nsec + offset_us * 1000;
  int64_t s  = (int64_t)realtime->tv_sec + ns / 1000000000;
  ns %= 1000000000;
  if (ns < 0) {
    ns += 1000000000;
    --s;
  }

  lo_timetag tag;
  tag.sec  = (uint32_t)(s + FL_NTP_UNIX_OFFSET);
  tag.frac = (uint32_t)((double)ns * 4294967296.0 / 1e9);
  return tag;
}

/* Temporary directory and unique names */

bool
fl_env_init(FlTestEnv* env, const char* label)
{
  char pattern[128];
  snprintf(pattern, sizeof(pattern), "/tmp/fltest-%s-XXXXXX", label);
  if (!mkdtemp(pattern)) {
    fprintf(stderr, "harness: mkdtemp %s: %s\n", pattern, strerror(errno));
    return false;
  }

  // Resolve the directory so paths the daemon reports compare equal.
  char resolved[PATH_MAX];
  if (!realpath(pattern, resolved) || strlen(resolved) >= sizeof(env->dir)) {
    fprintf(stderr, "harness: realpath %s failed\n", pattern);
    rmdir(pattern);
    return false;
  }

  snprintf(env->dir, sizeof(env->dir), "%s", resolved);
  env->pid    = getpid();
  env->serial = 0;
  return true;
}

static int
remove_entry(const char*        path,
             const struct stat* info,
             int                flag,
             struct FTW*        ftw)
{
  (void)info;
  (void)flag;
  (void)ftw;
  if (remove(path) != 0) {
    fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
  }
  return 0;
}

void
fl_env_remove(FlTestEnv* env)
{
  if (env->dir[0]) {
    nftw(env->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    env->dir[0] = '\0';
  }
}

void
fl_env_path(const FlTestEnv* env,
            const char*      file_name,
            char*            path,
            size_t           path_size)
{
  snprintf(path, path_size, "%s/%s", env->dir, file_name);
}

void
fl_env_name(FlTestEnv* env, char* name, size_t name_size)
{
  snprintf(name, name_size, "fltest-%ld-%u", (long)env->pid, env->serial++);
}

static bool
port_is_free(int type, int port)
{
  const int fd = socket(AF_INET, type, 0);
  if (fd < 0) {
    return false;
  }

  struct sockaddr_in address;
  memset(&address, 0, sizeof(address));
  address.sin_family      = AF_INET;
  address.sin_port        = htons((uint16_t)port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  const bool free_now =
    bind(fd, (const struct sockaddr*)&address, sizeof(address)) == 0;
  close(fd);
  return free_now;
}

int
fl_env_port(FlTestEnv* env)
{
  // Below the ephemeral range (32768..), so a client's reply port cannot
  // take it between this check and the daemon's bind.
  const int base = 20000 + (int)(((unsigned)env->pid * 16U) % 12000U);
  for (unsigned attempt = 0; attempt < 512; ++attempt) {
    const int port = base + (int)((env->serial++ * 7U) % 12000U);
    if (port_is_free(SOCK_DGRAM, port) && port_is_free(SOCK_STREAM, port)) {
      return port;
    }
  }
  return -1;
}

char*
fl_read_text(const char* path)
{
  FILE* file = fopen(path, "rb");
  if (!file) {
    return NULL;
  }

  size_t size     = 0;
  size_t capacity = 4096;
  char*  text     = malloc(capacity);
  size_t count    = 0;
  while (text && (count = fread(text + size, 1, capacity - size - 1, file))) {
    size += count;
    if (capacity - size - 1 == 0) {
      char* bigger = realloc(text, capacity * 2);
      if (!bigger) {
        free(text);
        text = NULL;
        break;
      }
      text = bigger;
      capacity *= 2;
    }
  }
  fclose(file);
  if (text) {
    text[size] = '\0';
  }
  return text;
}

/* Child processes */

/*
  Build the environment of a child in the parent: after fork() in a program
  with JACK threads, the child may only call async-signal-safe functions.
*/
typedef struct {
  char*  entries[512];
  char   server[128];
  size_t count;
} ChildEnvironment;

static void
child_environment_init(ChildEnvironment* child, const char* jack_server)
{
  child->count = 0;
  for (char** entry = environ; *entry && child->count < 509; ++entry) {
    if (strncmp(*entry, "JACK_DEFAULT_SERVER=", 20) &&
        strncmp(*entry, "JACK_NO_START_SERVER=", 21)) {
      child->entries[child->count++] = *entry;
    }
  }
  if (jack_server) {
    snprintf(child->server,
             sizeof(child->server),
             "JACK_DEFAULT_SERVER=%s",
             jack_server);
    child->entries[child->count++] = child->server;
    child->entries[child->count++] = (char*)"JACK_NO_START_SERVER=1";
  }
  child->entries[child->count] = NULL;
}

/* Find `name` in PATH unless it holds a '/'. */
static bool
find_program(const char* name, char* path, size_t path_size)
{
  if (strchr(name, '/')) {
    snprintf(path, path_size, "%s", name);
    return true;
  }

  const char* search = getenv("PATH");
  search             = search ? search : "/usr/local/bin:/usr/bin:/bin";
  while (*search) {
    const size_t length = strcspn(search, ":");
    snprintf(path, path_size, "%.*s/%s", (int)length, search, name);
    if (access(path, X_OK) == 0) {
      return true;
    }
    search += length + (search[length] == ':');
  }
  return false;
}

/*
  Fork and exec `argv` with stdin from /dev/null and stdout and stderr
  appended to the given files (or /dev/null). The child gets SIGTERM when
  the test program dies and has a process group of its own, so a kill of
  the test's group (meson's timeout) reaches it only as that SIGTERM.
*/
static pid_t
spawn(const char* const* argv,
      const char*        jack_server,
      const char*        out_path,
      const char*        err_path,
      bool               truncate)
{
  char program[PATH_MAX];
  if (!find_program(argv[0], program, sizeof(program))) {
    fprintf(stderr, "harness: %s not found in PATH\n", argv[0]);
    return -1;
  }

  ChildEnvironment child;
  child_environment_init(&child, jack_server);

  const int   flags  = O_WRONLY | O_CREAT | (truncate ? O_TRUNC : O_APPEND);
  const pid_t parent = getpid();
  const pid_t pid    = fork();
  if (pid < 0) {
    fprintf(stderr, "harness: fork: %s\n", strerror(errno));
    return -1;
  }

  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
      _exit(127);
    }
    setpgid(0, 0);

    const int in  = open("/dev/null", O_RDONLY);
    const int out = open(out_path ? out_path : "/dev/null", flags, 0644);
    const int err = (err_path && out_path && !strcmp(err_path, out_path))
                      ? dup(out)
                      : open(err_path ? err_path : "/dev/null", flags, 0644);
    if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
        dup2(err, 2) < 0) {
      _exit(127);
    }

    execve(program, (char* const*)argv, child.entries);
    static const char message[] = "harness: cannot execute ";
    if (write(2, message, sizeof(message) - 1) < 0 ||
        write(2, program, strlen(program)) < 0 || write(2, "\n", 1) < 0) {
      _exit(127);
    }
    _exit(127);
  }

  return pid;
}

/*
  Wait for `pid` to end for at most `timeout_ms` (negative: forever).
  Returns true and the wait status if it ended. A pidfd makes the wait a
  poll() with a timeout; kernels without one get a 5 ms polling loop.
*/
static bool
wait_child(pid_t pid, int timeout_ms, int* wait_status)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  const int     pidfd    = (int)syscall(SYS_pidfd_open, pid, 0);

  for (;;) {
    const pid_t reaped = waitpid(pid, wait_status, WNOHANG);
    if (reaped == pid || (reaped < 0 && errno != EINTR)) {
      if (pidfd >= 0) {
        close(pidfd);
      }
      return reaped == pid;
    }

    const int64_t left = timeout_ms < 0 ? 1000 : deadline - fl_now_ms();
    if (left <= 0) {
      break;
    }

    if (pidfd >= 0) {
      struct pollfd ready = { pidfd, POLLIN, 0 };
      poll(&ready, 1, (int)left);
    } else {
      fl_sleep_ms(left < 5 ? (int)left : 5);
    }
  }

  if (pidfd >= 0) {
    close(pidfd);
  }
  return false;
}

static int
exit_code(int wait_status)
{
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
}

int
fl_run_capture(const FlTestEnv*   env,
               const char* const* argv,
               const char*        jack_server,
               char**             out,
               char**             err,
               int                timeout_ms)
{
  char out_path[PATH_MAX];
  char err_path[PATH_MAX];
  char name[64];
  snprintf(name, sizeof(name), "run-%u.out", env->serial);
  fl_env_path(env, name, out_path, sizeof(out_path));
  snprintf(name, sizeof(name), "run-%u.err", env->serial);
  fl_env_path(env, name, err_path, sizeof(err_path));

  *out = NULL;
  *err = NULL;

  const pid_t pid = spawn(argv, jack_server, out_path, err_path, true);
  if (pid < 0) {
    return -1;
  }

  int status = 0;
  int result = -2;
  if (wait_child(pid, timeout_ms, &status)) {
    result = exit_code(status);
  } else {
    kill(pid, SIGKILL);
    wait_child(pid, -1, &status);
  }

  *out = fl_read_text(out_path);
  *err = fl_read_text(err_path);
  remove(out_path);
  remove(err_path);
  return result;
}

/* The dummy JACK server */

static atomic_bool quiet_jack = false;

/* JACK's messages, dropped while probing for a server that is not up yet. */
static void
on_jack_message(const char* message)
{
  if (!atomic_load_explicit(&quiet_jack, memory_order_relaxed)) {
    fprintf(stderr, "jack: %s\n", message);
  }
}

static void
install_jack_messages(void)
{
  static bool installed = false;
  if (!installed) {
    jack_set_error_function(on_jack_message);
    jack_set_info_function(on_jack_message);
    installed = true;
  }
}

jack_client_t*
fl_jack_open(const char* server_name, const char* client_name)
{
  install_jack_messages();
  jack_status_t status = (jack_status_t)0;
  return jack_client_open(
    client_name, JackNoStartServer | JackServerName, &status, server_name);
}

/* Open a client quietly: failures are expected while a server starts. */
static jack_client_t*
probe_server(const char* server_name)
{
  char name[64];
  snprintf(name, sizeof(name), "fl-probe-%ld", (long)getpid());
  atomic_store_explicit(&quiet_jack, true, memory_order_relaxed);
  jack_client_t* client = fl_jack_open(server_name, name);
  atomic_store_explicit(&quiet_jack, false, memory_order_relaxed);
  return client;
}

static void
print_file(const char* title, const char* path)
{
  char* text = fl_read_text(path);
  fprintf(stderr,
          "---- %s (%s) ----\n%s---- end of %s ----\n",
          title,
          path,
          text ? text : "(unreadable)\n",
          title);
  free(text);
}

static bool
jackd_spawn(FlJackd* jackd)
{
  char period[16];
  char rate[16];
  snprintf(period, sizeof(period), "%u", jackd->period_frames);
  snprintf(rate, sizeof(rate), "%u", jackd->sample_rate);
  const char* const argv[] = { "jackd", "-n", jackd->name, "-d",   "dummy",
                               "-r",    rate, "-p",        period, NULL };

  jackd->pid = spawn(argv, NULL, jackd->log_path, jackd->log_path, false);
  if (jackd->pid <= 0) {
    jackd->pid = 0;
    return false;
  }

  const int64_t deadline = fl_now_ms() + 10000;
  while (fl_now_ms() < deadline) {
    jack_client_t* client = probe_server(jackd->name);
    if (client) {
      jack_client_close(client);
      return true;
    }

    int status = 0;
    if (wait_child(jackd->pid, 50, &status)) {
      fprintf(
        stderr, "harness: jackd exited with status %d\n", exit_code(status));
      jackd->pid = 0;
      print_file("jackd log", jackd->log_path);
      return false;
    }
  }

  fprintf(stderr, "harness: jackd %s not reachable after 10 s\n", jackd->name);
  print_file("jackd log", jackd->log_path);
  fl_jackd_stop(jackd);
  return false;
}

bool
fl_jackd_start(FlJackd*         jackd,
               const FlTestEnv* env,
               const char*      name,
               unsigned         period_frames)
{
  char file_name[128];
  snprintf(jackd->name, sizeof(jackd->name), "%s", name);
  snprintf(file_name, sizeof(file_name), "jackd-%s.log", name);
  fl_env_path(env, file_name, jackd->log_path, sizeof(jackd->log_path));
  jackd->period_frames = period_frames;
  jackd->sample_rate   = FL_TEST_RATE;
  jackd->pid           = 0;
  return jackd_spawn(jackd);
}

/*
  Remove the files a server left in /dev/shm: its futex files
  ("jack_sem.<uid>_<server>_<client>") and its socket
  ("jack_<server>_<uid>_0"). Only a server that did not finish its shutdown
  leaves them, and only names of our own server are touched.
*/
static unsigned
remove_server_files(const FlJackd* jackd)
{
  char futexes[128];
  char socket[128];
  snprintf(futexes,
           sizeof(futexes),
           "jack_sem.%u_%s_",
           (unsigned)getuid(),
           jackd->name);
  snprintf(
    socket, sizeof(socket), "jack_%s_%u_", jackd->name, (unsigned)getuid());

  unsigned   removed = 0;
  DIR* const shm     = opendir("/dev/shm");
  for (struct dirent* entry = shm ? readdir(shm) : NULL; entry;
       entry                = readdir(shm)) {
    if (!strncmp(entry->d_name, futexes, strlen(futexes)) ||
        !strncmp(entry->d_name, socket, strlen(socket))) {
      char path[PATH_MAX];
      snprintf(path, sizeof(path), "/dev/shm/%s", entry->d_name);
      removed += unlink(path) == 0;
    }
  }
  if (shm) {
    closedir(shm);
  }
  return removed;
}

bool
fl_jackd_stop(FlJackd* jackd)
{
  if (!jackd->pid) {
    return true;
  }

  // Only SIGTERM: a killed server leaves its files in /dev/shm.
  int status = 0;
  kill(jackd->pid, SIGTERM);
  if (!wait_child(jackd->pid, 10000, &status)) {
    fprintf(stderr,
            "harness: jackd %s ignored SIGTERM for 10 s; killing it\n",
            jackd->name);
    kill(jackd->pid, SIGKILL);
    wait_child(jackd->pid, -1, &status);
    jackd->pid = 0;
    return false;
  }

  jackd->pid = 0;

  // jackd 1.9.21 reinstalls SIGPIPE's default action (SA_RESETHAND) while
  // it shuts down; a second write to a client that already hung up (flitzid
  // closes its client on the shutdown notice) then ends it with SIGPIPE
  // before it removes its futex files. That is the server's own teardown,
  // not a fault of the client: count it as stopped and tidy up after it.
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE) {
    const unsigned removed = remove_server_files(jackd);
    fprintf(stderr,
            "harness: jackd %s died of SIGPIPE while shutting down (a known "
            "jackd 1.9.21 teardown race); removed %u stale files from "
            "/dev/shm\n",
            jackd->name,
            removed);
    return true;
  }

  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr,
            "harness: jackd %s ended with wait status %#x on SIGTERM\n",
            jackd->name,
            (unsigned)status);
    print_file("jackd log", jackd->log_path);
    remove_server_files(jackd);
    return false;
  }
  return true;
}

bool
fl_jackd_start_again(FlJackd* jackd)
{
  return !jackd->pid && jackd_spawn(jackd);
}

bool
fl_jackd_restart(FlJackd* jackd)
{
  return fl_jackd_stop(jackd) && jackd_spawn(jackd);
}

unsigned
fl_jackd_log_count(const FlJackd* jackd, const char* needle)
{
  char* text = fl_read_text(jackd->log_path);
  if (!text) {
    return 0;
  }

  unsigned count = 0;
  for (const char* found = strstr(text, needle); found;
       found             = strstr(found + 1, needle)) {
    ++count;
  }
  free(text);
  return count;
}

bool
fl_jack_wait_ports(const char* server_name,
                   const char* client_name,
                   unsigned    channels,
                   int         timeout_ms)
{
  const int64_t  deadline = fl_now_ms() + timeout_ms;
  jack_client_t* client   = NULL;
  bool           found    = false;

  while (!found && fl_now_ms() < deadline) {
    if (!client) {
      client = probe_server(server_name);
    }

    if (client) {
      found = true;
      for (unsigned c = 1; c <= channels; ++c) {
        char port_name[128];
        snprintf(port_name, sizeof(port_name), "%s:out_%u", client_name, c);
        found = found && jack_port_by_name(client, port_name) != NULL;
      }
    }

    if (!found) {
      fl_sleep_ms(20);
    }
  }

  if (client) {
    jack_client_close(client);
  }
  return found;
}

/* flitzid */

bool
fl_daemon_spawn(FlDaemon*          daemon,
                const FlTestEnv*   env,
                const char*        server,
                const char*        name,
                int                port,
                const char* const* extra_args)
{
  const char* const path = getenv("FLITZID");
  if (!path || !*path) {
    fprintf(stderr, "harness: FLITZID is not set (meson sets it)\n");
    return false;
  }

  char file_name[128];
  snprintf(daemon->name, sizeof(daemon->name), "%s", name);
  snprintf(daemon->server, sizeof(daemon->server), "%s", server);
  snprintf(file_name, sizeof(file_name), "flitzid-%s.log", name);
  fl_env_path(env, file_name, daemon->log_path, sizeof(daemon->log_path));
  daemon->port        = port;
  daemon->pid         = 0;
  daemon->exit_status = -2;

  char port_text[16];
  snprintf(port_text, sizeof(port_text), "%d", port);

  const char* argv[64] = { path, "-n", name, "-p", port_text };
  size_t      argc     = 5;
  for (size_t i = 0; extra_args && extra_args[i] && argc < 63; ++i) {
    argv[argc++] = extra_args[i];
  }
  argv[argc] = NULL;

  daemon->pid = spawn(argv, server, daemon->log_path, daemon->log_path, true);
  if (daemon->pid <= 0) {
    daemon->pid = 0;
    return false;
  }
  return true;
}

bool
fl_daemon_running(FlDaemon* daemon)
{
  if (!daemon->pid) {
    return false;
  }

  int status = 0;
  if (waitpid(daemon->pid, &status, WNOHANG) == daemon->pid) {
    daemon->exit_status = exit_code(status);
    daemon->pid         = 0;
    return false;
  }
  return true;
}

bool
fl_daemon_wait_ready(FlDaemon* daemon, unsigned channels, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  FlOsc* const  osc      = fl_osc_new(daemon->port);
  bool          ponged   = false;

  while (osc && !ponged && fl_now_ms() < deadline &&
         fl_daemon_running(daemon)) {
    fl_osc_send(osc, "/ping", "");
    FlReply* const pong = fl_osc_wait(osc, "/pong", 100);
    ponged              = pong != NULL;
    fl_reply_free(pong);
  }
  fl_osc_free(osc);

  if (!ponged) {
    fprintf(stderr,
            "harness: flitzid %s did not answer /ping on port %d (%s)\n",
            daemon->name,
            daemon->port,
            fl_daemon_running(daemon) ? "still running" : "exited");
    fl_daemon_print_log(daemon);
    return false;
  }

  const int64_t left = deadline - fl_now_ms();
  if (!fl_jack_wait_ports(
        daemon->server, daemon->name, channels, left > 0 ? (int)left : 1)) {
    fprintf(stderr,
            "harness: ports %s:out_1..%u did not appear on %s\n",
            daemon->name,
            channels,
            daemon->server);
    fl_daemon_print_log(daemon);
    return false;
  }
  return true;
}

bool
fl_daemon_start(FlDaemon*          daemon,
                const FlTestEnv*   env,
                const char*        server,
                const char*        name,
                int                port,
                const char* const* extra_args)
{
  return fl_daemon_spawn(daemon, env, server, name, port, extra_args) &&
         fl_daemon_wait_ready(daemon, 2, 10000);
}

int
fl_daemon_wait_exit(FlDaemon* daemon, int timeout_ms)
{
  if (!daemon->pid) {
    return daemon->exit_status;
  }

  int status = 0;
  if (!wait_child(daemon->pid, timeout_ms, &status)) {
    return -2;
  }
  daemon->pid         = 0;
  daemon->exit_status = exit_code(status);
  if (WIFSIGNALED(status)) {
    fprintf(stderr,
            "harness: flitzid %s was ended by signal %d\n",
            daemon->name,
            WTERMSIG(status));
  }
  return daemon->exit_status;
}

int
fl_daemon_stop(FlDaemon* daemon)
{
  if (!daemon->pid) {
    return daemon->exit_status;
  }

  kill(daemon->pid, SIGTERM);
  const int result = fl_daemon_wait_exit(daemon, 10000);
  if (result == -2) {
    fprintf(stderr,
            "harness: flitzid %s ignored SIGTERM for 10 s; killing it\n",
            daemon->name);
    kill(daemon->pid, SIGKILL);
    fl_daemon_wait_exit(daemon, -1);
    daemon->exit_status = -2;
    return -2;
  }
  return result;
}

void
fl_daemon_print_log(const FlDaemon* daemon)
{
  char title[128];
  snprintf(title, sizeof(title), "flitzid %s log", daemon->name);
  print_file(title, daemon->log_path);
}

/* OSC client */

struct FlOscImpl {
  lo_server  server; ///< Bound to a free port; replies come here
  lo_address daemon; ///< 127.0.0.1:<daemon port>
  FlReply**  queue;  ///< Received, not yet taken, oldest first
  unsigned   queue_count;
  unsigned   queue_capacity;
  char       formatted[2048]; ///< fl_osc_call()'s answer
};

static void
on_lo_error(int number, const char* message, const char* where)
{
  fprintf(stderr,
          "harness: liblo error %d: %s (%s)\n",
          number,
          message ? message : "",
          where ? where : "");
}

void
fl_reply_free(FlReply* reply)
{
  if (reply) {
    for (int i = 0; i < reply->argc; ++i) {
      free(reply->argv[i].s);
    }
    free(reply);
  }
}

/* Copy every message into the queue; the test decides what it expected. */
static int
on_message(const char* path,
           const char* types,
           lo_arg**    argv,
           int         argc,
           lo_message  message,
           void*       user_data)
{
  (void)message;
  FlOsc* const   osc   = (FlOsc*)user_data;
  FlReply* const reply = (FlReply*)calloc(1, sizeof(FlReply));
  if (!reply) {
    return 0;
  }

  snprintf(reply->path, sizeof(reply->path), "%s", path);
  snprintf(reply->types, sizeof(reply->types), "%s", types);
  reply->argc = argc < FL_OSC_MAX_ARGS ? argc : FL_OSC_MAX_ARGS;
  for (int i = 0; i < reply->argc; ++i) {
    FlOscArg* const arg = &reply->argv[i];
    arg->type           = types[i];
    /* liblo's arguments are 4-byte aligned inside the packet, lo_arg is an
       8-byte aligned union: copy the bytes rather than read the union. */
    switch (types[i]) {
      case LO_INT32:
        memcpy(&arg->value.i, argv[i], sizeof(arg->value.i));
        break;
      case LO_INT64:
        memcpy(&arg->value.h, argv[i], sizeof(arg->value.h));
        break;
      case LO_FLOAT:
        memcpy(&arg->value.f, argv[i], sizeof(arg->value.f));
        break;
      case LO_DOUBLE:
        memcpy(&arg->value.d, argv[i], sizeof(arg->value.d));
        break;
      case LO_STRING:
      case LO_SYMBOL:
        arg->s = strdup((const char*)argv[i]);
        break;
      default:
        break;
    }
  }

  if (osc->queue_count == osc->queue_capacity) {
    const unsigned capacity =
      osc->queue_capacity ? osc->queue_capacity * 2 : 64;
    FlReply** const queue =
      (FlReply**)realloc(osc->queue, capacity * sizeof(FlReply*));
    if (!queue) {
      fl_reply_free(reply);
      return 0;
    }
    osc->queue          = queue;
    osc->queue_capacity = capacity;
  }
  osc->queue[osc->queue_count++] = reply;
  return 0;
}

FlOsc*
fl_osc_new(int daemon_port)
{
  FlOsc* const osc = (FlOsc*)calloc(1, sizeof(FlOsc));
  if (!osc) {
    return NULL;
  }

  char port_text[16];
  snprintf(port_text, sizeof(port_text), "%d", daemon_port);
  osc->server = lo_server_new_with_proto(NULL, LO_UDP, on_lo_error);
  osc->daemon = lo_address_new("127.0.0.1", port_text);
  if (!osc->server || !osc->daemon) {
    fl_osc_free(osc);
    return NULL;
  }

  // Keep every message exactly as it came: no type coercion on our side.
  lo_server_enable_coercion(osc->server, 0);
  lo_server_add_method(osc->server, NULL, NULL, on_message, osc);
  return osc;
}

void
fl_osc_free(FlOsc* osc)
{
  if (osc) {
    fl_osc_clear(osc);
    free(osc->queue);
    if (osc->daemon) {
      lo_address_free(osc->daemon);
    }
    if (osc->server) {
      lo_server_free(osc->server);
    }
    free(osc);
  }
}

int
fl_osc_port(const FlOsc* osc)
{
  return lo_server_get_port(osc->server);
}

static lo_message
message_from(const char* types, va_list args)
{
  lo_message message = lo_message_new();
  for (const char* type = types; message && *type; ++type) {
    switch (*type) {
      case LO_INT32:
        lo_message_add_int32(message, va_arg(args, int));
        break;
      case LO_INT64:
        lo_message_add_int64(message, va_arg(args, int64_t));
        break;
      case LO_FLOAT:
        lo_message_add_float(message, (float)va_arg(args, double));
        break;
      case LO_DOUBLE:
        lo_message_add_double(message, va_arg(args, double));
        break;
      case LO_STRING:
        lo_message_add_string(message, va_arg(args, const char*));
        break;
      case LO_SYMBOL:
        lo_message_add_symbol(message, va_arg(args, const char*));
        break;
      case LO_TRUE:
        lo_message_add_true(message);
        break;
      case LO_FALSE:
        lo_message_add_false(message);
        break;
      case LO_NIL:
        lo_message_add_nil(message);
        break;
      case LO_INFINITUM:
        lo_message_add_infinitum(message);
        break;
      default:
        fprintf(stderr, "harness: type '%c' is not supported\n", *type);
        lo_message_free(message);
        return NULL;
    }
  }
  return message;
}

static bool
send_message(FlOsc* osc, const char* path, const char* types, va_list args)
{
  lo_message message = message_from(types, args);
  if (!message) {
    return false;
  }

  const int sent =
    lo_send_message_from(osc->daemon, osc->server, path, message);
  lo_message_free(message);
  if (sent < 0) {
    fprintf(stderr,
            "harness: sending %s: %s\n",
            path,
            lo_address_errstr(osc->daemon));
  }
  return sent >= 0;
}

bool
fl_osc_send(FlOsc* osc, const char* path, const char* types, ...)
{
  va_list args;
  va_start(args, types);
  const bool sent = send_message(osc, path, types, args);
  va_end(args);
  return sent;
}

bool
fl_osc_send_bundle(FlOsc*      osc,
                   lo_timetag  when,
                   const char* path,
                   const char* types,
                   ...)
{
  va_list args;
  va_start(args, types);
  lo_message message = message_from(types, args);
  va_end(args);
  if (!message) {
    return false;
  }

  lo_bundle bundle = lo_bundle_new(when);
  lo_bundle_add_message(bundle, path, message);
  const int sent = lo_send_bundle_from(osc->daemon, osc->server, bundle);
  lo_bundle_free_recursive(bundle);
  if (sent < 0) {
    fprintf(stderr,
            "harness: sending a bundle: %s\n",
            lo_address_errstr(osc->daemon));
  }
  return sent >= 0;
}

/* Take the first queued message whose path is `path` (any if NULL). */
static FlReply*
take(FlOsc* osc, const char* path)
{
  for (unsigned i = 0; i < osc->queue_count; ++i) {
    if (!path || !strcmp(osc->queue[i]->path, path)) {
      FlReply* const reply = osc->queue[i];
      memmove(&osc->queue[i],
              &osc->queue[i + 1],
              (osc->queue_count - i - 1) * sizeof(FlReply*));
      --osc->queue_count;
      return reply;
    }
  }
  return NULL;
}

FlReply*
fl_osc_wait(FlOsc* osc, const char* path, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  FlReply*      reply    = take(osc, path);
  while (!reply) {
    const int64_t left = deadline - fl_now_ms();
    if (left <= 0) {
      break;
    }
    lo_server_recv_noblock(osc->server, (int)left);
    reply = take(osc, path);
  }
  return reply;
}

unsigned
fl_osc_collect(FlOsc* osc, int duration_ms)
{
  const int64_t deadline = fl_now_ms() + duration_ms;
  for (int64_t left = duration_ms; left > 0; left = deadline - fl_now_ms()) {
    lo_server_recv_noblock(osc->server, (int)left);
  }
  while (lo_server_recv_noblock(osc->server, 0) > 0) {
  }
  return osc->queue_count;
}

unsigned
fl_osc_pending(const FlOsc* osc)
{
  return osc->queue_count;
}

void
fl_osc_clear(FlOsc* osc)
{
  for (unsigned i = 0; i < osc->queue_count; ++i) {
    fl_reply_free(osc->queue[i]);
  }
  osc->queue_count = 0;
}

const char*
fl_osc_call(FlOsc*      osc,
            int         timeout_ms,
            const char* path,
            const char* types,
            ...)
{
  va_list args;
  va_start(args, types);
  const bool sent = send_message(osc, path, types, args);
  va_end(args);
  if (!sent) {
    return "(could not send)";
  }

  FlReply* const reply = fl_osc_wait(osc, NULL, timeout_ms);
  if (!reply) {
    snprintf(osc->formatted,
             sizeof(osc->formatted),
             "(no reply within %d ms)",
             timeout_ms);
  } else {
    fl_reply_format(reply, osc->formatted, sizeof(osc->formatted));
    fl_reply_free(reply);
  }
  return osc->formatted;
}

const char*
fl_reply_format(const FlReply* reply, char* text, size_t text_size)
{
  size_t length =
    (size_t)snprintf(text, text_size, "%s ,%s", reply->path, reply->types);
  for (int i = 0; i < reply->argc && length < text_size; ++i) {
    const FlOscArg* const arg     = &reply->argv[i];
    char* const           end     = text + length;
    const size_t          left    = text_size - length;
    int                   written = 0;
    switch (arg->type) {
      case LO_INT32:
        written = snprintf(end, left, " %d", arg->value.i);
        break;
      case LO_INT64:
        written = snprintf(end, left, " %lld", (long long)arg->value.h);
        break;
      case LO_FLOAT:
        written = snprintf(end, left, " %g", (double)arg->value.f);
        break;
      case LO_DOUBLE:
        written = snprintf(end, left, " %g", arg->value.d);
        break;
      case LO_STRING:
      case LO_SYMBOL:
        written = snprintf(end, left, " \"%s\"", arg->s);
        break;
      default:
        written = snprintf(end, left, " %c", arg->type);
        break;
    }
    length += written > 0 ? (size_t)written : 0U;
  }
  return text;
}

bool
fl_osc_status(FlOsc* osc, FlDaemonStatus* status)
{
  fl_osc_send(osc, "/status", "");
  FlReply* const reply = fl_osc_wait(osc, "/status.reply", FL_TEST_REPLY_MS);
  if (!reply || strcmp(reply->types, "iiiiiffiii")) {
    char text[512];
    fprintf(stderr,
            "harness: /status answered %s\n",
            reply ? fl_reply_format(reply, text, sizeof(text)) : "nothing");
    fl_reply_free(reply);
    return false;
  }

  const FlOscArg* const arg = reply->argv;
  status->voices_active     = arg[0].value.i;
  status->voices_max        = arg[1].value.i;
  status->slots_loaded      = arg[2].value.i;
  status->slots_max         = arg[3].value.i;
  status->sample_rate       = arg[4].value.i;
  status->dsp_load_avg_pct  = arg[5].value.f;
  status->dsp_load_peak_pct = arg[6].value.f;
  status->xruns             = arg[7].value.i;
  status->dropped_messages  = arg[8].value.i;
  status->late_bundles      = arg[9].value.i;
  fl_reply_free(reply);
  return true;
}

bool
fl_osc_wait_voices(FlOsc* osc, int32_t voices, int timeout_ms)
{
  const int64_t  deadline = fl_now_ms() + timeout_ms;
  FlDaemonStatus status   = { 0 };
  while (fl_osc_status(osc, &status)) {
    if (status.voices_active == voices) {
      return true;
    }
    if (fl_now_ms() >= deadline) {
      fprintf(stderr,
              "harness: voices_active is %d, not %d, after %d ms\n",
              status.voices_active,
              voices,
              timeout_ms);
      return false;
    }
    fl_sleep_ms(5);
  }
  return false;
}

/* Recorder */

/* Recorder states; only the main thread leaves RECORDER_RUNNING. */
enum {
  RECORDER_IDLE,
  RECORDER_ARMED,   ///< The next process cycle starts recording
  RECORDER_RUNNING, ///< The process cycle appends
};

/* JACK's timing of one recorded period. */
typedef struct {
  uint32_t       index;         ///< Index in the buffers of its first frame
  jack_nframes_t frames;        ///< Frame time of the period's first frame
  jack_nframes_t frame_count;   ///< Frames in the period
  jack_time_t    current_usecs; ///< Its start on JACK's clock
  jack_time_t    next_usecs;    ///< The next period's start
} CycleTimes;

struct FlRecorderImpl {
  jack_client_t* client;
  CycleTimes*    periods; ///< One per recorded period, preallocated
  uint32_t       period_capacity;
  jack_port_t*   inputs[FL_RECORDER_MAX_CHANNELS];
  float*         buffers[FL_RECORDER_MAX_CHANNELS]; ///< capacity_frames each
  unsigned       channels;
  uint32_t       capacity_frames;

  atomic_uint state;          ///< RECORDER_*
  atomic_uint frame_count;    ///< Frames in buffers, published by the RT thread
  atomic_uint period_count;   ///< Entries in periods, published likewise
  atomic_uint first_frame;    ///< Absolute frame time of buffers[c][0]
  atomic_uint cycles;         ///< Process cycles seen, for fl_recorder_stop()
  atomic_uint xruns;          ///< Xruns the server reported to this client
  unsigned    xruns_at_start; ///< xruns when recording started (main thread)
  atomic_bool shut_down;      ///< Set by the server's shutdown callback
  sem_t       cycle_done;     ///< Posted after every process cycle
};

/*
  Code and data used in the realtime process thread: on_process() and
  on_shutdown() touch only the recorder's atomics, its preallocated buffers
  and the semaphore (sem_post() does not block).
*/
static int
on_process(jack_nframes_t nframes, void* arg)
{
  FlRecorder* const recorder                     = (FlRecorder*)arg;
  const float*      in[FL_RECORDER_MAX_CHANNELS] = { NULL };
  for (unsigned c = 0; c < recorder->channels; ++c) {
    in[c] = (const float*)jack_port_get_buffer(recorder->inputs[c], nframes);
  }

  // Acquire: pairs with the main thread's release of ARMED, after which it
  // does not touch the buffers until frame_count says frames are there.
  unsigned state = atomic_load_explicit(&recorder->state, memory_order_acquire);
  if (state == RECORDER_ARMED) {
    atomic_store_explicit(&recorder->first_frame,
                          jack_last_frame_time(recorder->client),
                          memory_order_relaxed);
    atomic_store_explicit(&recorder->frame_count, 0, memory_order_relaxed);
    atomic_store_explicit(&recorder->period_count, 0, memory_order_relaxed);
    // The main thread may have stopped us meanwhile: only ARMED → RUNNING.
    unsigned expected = RECORDER_ARMED;
    if (atomic_compare_exchange_strong_explicit(&recorder->state,
                                                &expected,
                                                RECORDER_RUNNING,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
      state = RECORDER_RUNNING;
    }
  }

  if (state == RECORDER_RUNNING) {
    const uint32_t position =
      atomic_load_explicit(&recorder->frame_count, memory_order_relaxed);
    const uint32_t room  = recorder->capacity_frames - position;
    const uint32_t count = nframes < room ? nframes : room;
    for (unsigned c = 0; c < recorder->channels; ++c) {
      memcpy(recorder->buffers[c] + position, in[c], count * sizeof(float));
    }

    // Every recorded period gets its timing, so an index maps to a frame
    // even across a period the server skipped.
    const uint32_t period =
      atomic_load_explicit(&recorder->period_count, memory_order_relaxed);
    if (count && period < recorder->period_capacity) {
      CycleTimes times        = { position, 0U, nframes, 0U, 0U };
      float      period_usecs = 0.0f;
      if (jack_get_cycle_times(recorder->client,
                               &times.frames,
                               &times.current_usecs,
                               &times.next_usecs,
                               &period_usecs)) {
        times.frames = jack_last_frame_time(recorder->client);
      }
      recorder->periods[period] = times;
      atomic_store_explicit(
        &recorder->period_count, period + 1, memory_order_release);
    }

    // Release: the frames and first_frame are visible before the count.
    atomic_store_explicit(
      &recorder->frame_count, position + count, memory_order_release);
  }

  atomic_fetch_add_explicit(&recorder->cycles, 1, memory_order_release);
  sem_post(&recorder->cycle_done);
  return 0;
}

static int
on_xrun(void* arg)
{
  FlRecorder* const recorder = (FlRecorder*)arg;
  atomic_fetch_add_explicit(&recorder->xruns, 1, memory_order_release);
  return 0;
}

static void
on_shutdown(void* arg)
{
  FlRecorder* const recorder = (FlRecorder*)arg;
  atomic_store_explicit(&recorder->shut_down, true, memory_order_release);
  sem_post(&recorder->cycle_done);
}

/* End of the realtime part. */

FlRecorder*
fl_recorder_new(const char* server,
                const char* source,
                unsigned    channels,
                uint32_t    capacity_frames)
{
  FlRecorder* const recorder = (FlRecorder*)calloc(1, sizeof(FlRecorder));
  if (!recorder || channels < 1 || channels > FL_RECORDER_MAX_CHANNELS) {
    free(recorder);
    return NULL;
  }

  recorder->channels        = channels;
  recorder->capacity_frames = capacity_frames;
  recorder->period_capacity = capacity_frames / 16U + 16U;
  recorder->periods =
    (CycleTimes*)calloc(recorder->period_capacity, sizeof(CycleTimes));
  if (!recorder->periods) {
    free(recorder);
    return NULL;
  }
  sem_init(&recorder->cycle_done, 0, 0);
  for (unsigned c = 0; c < channels; ++c) {
    // calloc touches no pages; memset does, so the RT copy never faults.
    recorder->buffers[c] = (float*)malloc(capacity_frames * sizeof(float));
    if (!recorder->buffers[c]) {
      fl_recorder_free(recorder);
      return NULL;
    }
    memset(recorder->buffers[c], 0, capacity_frames * sizeof(float));
  }

  char name[64];
  snprintf(name, sizeof(name), "fl-rec-%ld", (long)getpid());
  recorder->client = fl_jack_open(server, name);
  if (!recorder->client) {
    fprintf(stderr, "harness: recorder cannot open a client on %s\n", server);
    fl_recorder_free(recorder);
    return NULL;
  }

  for (unsigned c = 0; c < channels; ++c) {
    char port_name[16];
    snprintf(port_name, sizeof(port_name), "in_%u", c + 1);
    recorder->inputs[c] = jack_port_register(
      recorder->client, port_name, JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    if (!recorder->inputs[c]) {
      fl_recorder_free(recorder);
      return NULL;
    }
  }

  jack_set_process_callback(recorder->client, on_process, recorder);
  jack_set_xrun_callback(recorder->client, on_xrun, recorder);
  jack_on_shutdown(recorder->client, on_shutdown, recorder);
  if (jack_activate(recorder->client)) {
    fprintf(stderr, "harness: recorder cannot activate\n");
    fl_recorder_free(recorder);
    return NULL;
  }

  for (unsigned c = 0; c < channels; ++c) {
    char source_port[128];
    snprintf(source_port, sizeof(source_port), "%s:out_%u", source, c + 1);
    const int status = jack_connect(
      recorder->client, source_port, jack_port_name(recorder->inputs[c]));
    if (status) {
      fprintf(stderr,
              "harness: cannot connect %s to %s (%d)\n",
              source_port,
              jack_port_name(recorder->inputs[c]),
              status);
      fl_recorder_free(recorder);
      return NULL;
    }
  }
  return recorder;
}

void
fl_recorder_free(FlRecorder* recorder)
{
  if (recorder) {
    if (recorder->client) {
      jack_deactivate(recorder->client);
      jack_client_close(recorder->client);
    }
    sem_destroy(&recorder->cycle_done);
    free(recorder->periods);
    for (unsigned c = 0; c < FL_RECORDER_MAX_CHANNELS; ++c) {
      free(recorder->buffers[c]);
    }
    free(recorder);
  }
}

void
fl_recorder_start(FlRecorder* recorder)
{
  fl_recorder_stop(recorder);
  recorder->xruns_at_start =
    atomic_load_explicit(&recorder->xruns, memory_order_acquire);
  atomic_store_explicit(&recorder->frame_count, 0, memory_order_relaxed);
  atomic_store_explicit(&recorder->state, RECORDER_ARMED, memory_order_release);
}

/* Wait for the next process cycle (or shutdown); false after timeout. */
static bool
wait_cycle(FlRecorder* recorder, int timeout_ms)
{
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  deadline.tv_sec += timeout_ms / 1000 + deadline.tv_nsec / 1000000000L;
  deadline.tv_nsec %= 1000000000L;
  while (sem_timedwait(&recorder->cycle_done, &deadline) != 0) {
    if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

void
fl_recorder_stop(FlRecorder* recorder)
{
  const unsigned cycles =
    atomic_load_explicit(&recorder->cycles, memory_order_acquire);
  atomic_store_explicit(&recorder->state, RECORDER_IDLE, memory_order_release);

  // Two more cycles: the one in flight may have read RUNNING; the next one
  // has seen IDLE. Afterwards the buffers and frame_count are ours.
  const int64_t deadline = fl_now_ms() + 1000;
  while (atomic_load_explicit(&recorder->cycles, memory_order_acquire) -
             cycles <
           2 &&
         !fl_recorder_shut_down(recorder) && fl_now_ms() < deadline) {
    wait_cycle(recorder, 100);
  }
}

bool
fl_recorder_wait(FlRecorder* recorder, uint32_t frames, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  while (fl_recorder_frames(recorder) < frames) {
    const int64_t left = deadline - fl_now_ms();
    if (left <= 0 || fl_recorder_shut_down(recorder) ||
        frames > recorder->capacity_frames) {
      return false;
    }
    wait_cycle(recorder, (int)left);
  }
  return true;
}

uint32_t
fl_recorder_frames(const FlRecorder* recorder)
{
  const unsigned state =
    atomic_load_explicit(&recorder->state, memory_order_acquire);
  return state == RECORDER_ARMED
           ? 0U
           : atomic_load_explicit(&recorder->frame_count, memory_order_acquire);
}

const float*
fl_recorder_channel(const FlRecorder* recorder, unsigned channel)
{
  return channel < recorder->channels ? recorder->buffers[channel] : NULL;
}

jack_nframes_t
fl_recorder_first_frame(const FlRecorder* recorder)
{
  return atomic_load_explicit(&recorder->first_frame, memory_order_relaxed);
}

long
fl_recorder_onset(const FlRecorder* recorder,
                  unsigned          channel,
                  float             threshold,
                  uint32_t          from)
{
  const uint32_t     frames = fl_recorder_frames(recorder);
  const float* const buffer = fl_recorder_channel(recorder, channel);
  for (uint32_t i = from; buffer && i < frames; ++i) {
    if (fabsf(buffer[i]) > threshold) {
      return (long)i;
    }
  }
  return -1;
}

long
fl_recorder_compare(const FlRecorder* recorder,
                    unsigned          channel,
                    long              onset,
                    const float*      expected,
                    uint32_t          frame_count,
                    unsigned          stride,
                    float             gain,
                    float             tolerance)
{
  const float* const buffer = fl_recorder_channel(recorder, channel);
  const uint32_t     frames = fl_recorder_frames(recorder);
  if (!buffer || onset < 0 || (uint64_t)onset + frame_count > frames) {
    fprintf(stderr,
            "harness: compare: onset %ld + %u frames is beyond the %u "
            "recorded\n",
            onset,
            frame_count,
            frames);
    return 0;
  }

  for (uint32_t i = 0; i < frame_count; ++i) {
    const float want = expected[(size_t)i * stride] * gain;
    const float got  = buffer[(size_t)onset + i];
    if (!(fabsf(got - want) <= tolerance)) {
      fprintf(stderr,
              "harness: out_%u frame %u after onset: recorded %.9g, "
              "expected %.9g (difference %.3g > %.3g)\n",
              channel + 1,
              i,
              (double)got,
              (double)want,
              (double)fabsf(got - want),
              (double)tolerance);
      return (long)i;
    }
  }
  return -1;
}

bool
fl_recorder_time_to_frame(const FlRecorder* recorder,
                          jack_time_t       usecs,
                          jack_nframes_t*   frame)
{
  // Period by period, as an RT thread that holds a voice until its period
  // comes: the first period whose timing puts the time before its end takes
  // it, at the rounded offset, or at its first frame if the time has just
  // passed (the estimated periods need not tile JACK's clock exactly).
  const uint32_t count =
    atomic_load_explicit(&recorder->period_count, memory_order_acquire);
  for (uint32_t i = 0; i < count; ++i) {
    const CycleTimes* const times = &recorder->periods[i];
    if (times->next_usecs <= times->current_usecs) {
      continue;
    }

    const double offset =
      floor((double)((int64_t)usecs - (int64_t)times->current_usecs) *
              (double)times->frame_count /
              (double)(times->next_usecs - times->current_usecs) +
            0.5);
    if (offset < (double)times->frame_count) {
      *frame = times->frames + (offset > 0.0 ? (jack_nframes_t)offset : 0U);
      return i > 0 || offset >= 0.0;
    }
  }
  return false;
}

bool
fl_recorder_frame_at(const FlRecorder* recorder,
                     uint32_t          index,
                     jack_nframes_t*   frame)
{
  const uint32_t count =
    atomic_load_explicit(&recorder->period_count, memory_order_acquire);
  for (uint32_t i = 0; i < count; ++i) {
    const CycleTimes* const times = &recorder->periods[i];
    if (index >= times->index && index - times->index < times->frame_count) {
      *frame = times->frames + (index - times->index);
      return true;
    }
  }
  return false;
}

uint32_t
fl_recorder_period_count(const FlRecorder* recorder)
{
  const unsigned state =
    atomic_load_explicit(&recorder->state, memory_order_acquire);
  return state == RECORDER_ARMED ? 0U
                                 : atomic_load_explicit(&recorder->period_count,
                                                        memory_order_acquire);
}

long
fl_recorder_period_of(const FlRecorder* recorder, uint32_t index)
{
  const uint32_t count = fl_recorder_period_count(recorder);
  for (uint32_t i = 0; i < count; ++i) {
    const CycleTimes* const times = &recorder->periods[i];
    if (index >= times->index && index - times->index < times->frame_count) {
      return (long)i;
    }
  }
  return -1;
}

unsigned
fl_recorder_glitches(const FlRecorder* recorder)
{
  unsigned glitches =
    atomic_load_explicit(&recorder->xruns, memory_order_acquire) -
    recorder->xruns_at_start;

  const uint32_t count =
    atomic_load_explicit(&recorder->period_count, memory_order_acquire);
  for (uint32_t i = 1; i < count; ++i) {
    const CycleTimes* const before = &recorder->periods[i - 1];
    glitches +=
      recorder->periods[i].frames != before->frames + before->frame_count;
  }
  return glitches;
}

jack_client_t*
fl_recorder_client(FlRecorder* recorder)
{
  return recorder->client;
}

bool
fl_recorder_shut_down(const FlRecorder* recorder)
{
  return atomic_load_explicit(&recorder->shut_down, memory_order_acquire);
}

/* Generated sample files */

float
fl_signal_value(FlSignal signal,
                uint32_t frame,
                uint32_t frame_count,
                unsigned channel)
{
  const bool right = channel % 2U == 1U;
  switch (signal) {
    case FL_SIGNAL_CLICK:
      return frame ? 0.0f : (right ? -0.5f : 1.0f);
    case FL_SIGNAL_RAMP: {
      const float fall = 1.0f - (float)frame / (float)frame_count;
      return right ? -0.5f * fall : fall;
    }
    case FL_SIGNAL_TONE:
      if (frame == 0) {
        return right ? -0.7f : 0.9f;
      }
      // 440 Hz (left) and 660 Hz (right) at 48 kHz; the file's rate is only
      // its header.
      return right
               ? 0.25f *
                   sinf(2.0f * (float)M_PI * 660.0f * (float)frame / 48000.0f)
               : 0.5f *
                   sinf(2.0f * (float)M_PI * 440.0f * (float)frame / 48000.0f);
    case FL_SIGNAL_DC:
      return right ? -0.25f : 0.5f;
  }
  return 0.0f;
}

bool
fl_write_sample(const char*  path,
                FlFileFormat format,
                FlSignal     signal,
                unsigned     channels,
                unsigned     sample_rate,
                uint32_t     frame_count)
{
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  info.samplerate = (int)sample_rate;
  info.channels   = (int)channels;
  switch (format) {
    case FL_FILE_WAV_PCM16:
      info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
      break;
    case FL_FILE_WAV_FLOAT:
      info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
      break;
    case FL_FILE_FLAC_PCM16:
      info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
      break;
  }

  SNDFILE* const file = sf_open(path, SFM_WRITE, &info);
  if (!file) {
    fprintf(stderr, "harness: cannot write %s: %s\n", path, sf_strerror(NULL));
    return false;
  }

  // Blocks of 4096 frames, not one frame at a time.
  enum { BLOCK_FRAMES = 4096 };
  float* const block = (float*)malloc(BLOCK_FRAMES * channels * sizeof(float));
  bool         ok    = block != NULL;
  for (uint32_t start = 0; ok && start < frame_count; start += BLOCK_FRAMES) {
    const uint32_t count = frame_count - start < BLOCK_FRAMES
                             ? frame_count - start
                             : (uint32_t)BLOCK_FRAMES;
    for (uint32_t i = 0; i < count; ++i) {
      for (unsigned c = 0; c < channels; ++c) {
        block[i * channels + c] =
          fl_signal_value(signal, start + i, frame_count, c);
      }
    }
    ok = sf_writef_float(file, block, count) == (sf_count_t)count;
  }
  free(block);

  if (!ok) {
    fprintf(stderr, "harness: writing %s: %s\n", path, sf_strerror(file));
  }
  sf_close(file);
  return ok;
}

float*
fl_read_sample(const char* path, uint32_t* frame_count, unsigned* channels)
{
  SF_INFO info;
  memset(&info, 0, sizeof(info));
  SNDFILE* const file = sf_open(path, SFM_READ, &info);
  if (!file) {
    fprintf(stderr, "harness: cannot read %s: %s\n", path, sf_strerror(NULL));
    return NULL;
  }

  float* const frames =
    (float*)malloc((size_t)info.frames * (size_t)info.channels * sizeof(float));
  if (frames && sf_readf_float(file, frames, info.frames) != info.frames) {
    free(frames);
    sf_close(file);
    return NULL;
  }
  sf_close(file);
  *frame_count = (uint32_t)info.frames;
  *channels    = (unsigned)info.channels;
  return frames;
}

/* A whole rig */

bool
fl_rig_start(FlRig*             rig,
             const char*        label,
             const char* const* daemon_args,
             bool               record)
{
  memset(rig, 0, sizeof(*rig));
  if (!fl_env_init(&rig->env, label)) {
    return false;
  }

  char server[64];
  char client[64];
  fl_env_name(&rig->env, server, sizeof(server));
  fl_env_name(&rig->env, client, sizeof(client));
  const int port = fl_env_port(&rig->env);
  if (port < 0 ||
      !fl_jackd_start(&rig->jackd, &rig->env, server, FL_TEST_PERIOD) ||
      !fl_daemon_start(
        &rig->daemon, &rig->env, server, client, port, daemon_args)) {
    return false;
  }

  rig->osc = fl_osc_new(port);
  if (!rig->osc) {
    return false;
  }

  if (record) {
    rig->recorder = fl_recorder_new(server, client, 2, 30U * FL_TEST_RATE);
    if (!rig->recorder) {
      return false;
    }
  }
  return true;
}

bool
fl_rig_quiet(FlRig* rig, int timeout_ms)
{
  if (!rig->osc || !fl_daemon_running(&rig->daemon)) {
    return false;
  }
  fl_osc_send(rig->osc, "/stop", "");
  const bool quiet = fl_osc_wait_voices(rig->osc, 0, timeout_ms);
  fl_osc_collect(rig->osc, 20);
  fl_osc_clear(rig->osc);
  return quiet;
}

bool
fl_rig_stop(FlRig* rig)
{
  fl_recorder_free(rig->recorder);
  rig->recorder = NULL;
  fl_osc_free(rig->osc);
  rig->osc = NULL;

  bool clean = true;
  if (rig->daemon.pid) {
    const int status = fl_daemon_stop(&rig->daemon);
    if (status != 0) {
      fprintf(stderr,
              "harness: flitzid %s exited with %d on SIGTERM (expected 0)\n",
              rig->daemon.name,
              status);
      clean = false;
    }
  }
  fl_jackd_stop(&rig->jackd);
  return clean;
}

int
fl_rig_finish(FlRig* rig, int failures)
{
  fl_rig_stop(rig);
  if (failures && rig->daemon.log_path[0]) {
    fl_daemon_print_log(&rig->daemon);
  }
  if (failures && rig->jackd.log_path[0]) {
    print_file("jackd log", rig->jackd.log_path);
  }
  fl_env_remove(&rig->env);
  return failures;
}
