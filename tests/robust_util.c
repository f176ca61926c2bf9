/*
  Helpers for the robustness tests. See robust_util.h for the contract.
*/
#include "robust_util.h"

#include <lo/lo.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char*
fl_text(const char* format, ...)
{
  static char     buffers[8][16384];
  static unsigned next = 0;
  char* const     text = buffers[next++ % 8U];
  va_list         args;
  va_start(args, format);
  vsnprintf(text, sizeof(buffers[0]), format, args);
  va_end(args);
  return text;
}

/* Building OSC packets */

static bool
add_arguments(lo_message message, const char* types, va_list args)
{
  for (const char* type = types; *type; ++type) {
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
      case LO_CHAR:
        lo_message_add_char(message, (char)va_arg(args, int));
        break;
      case LO_TIMETAG: {
        const uint64_t   tag = va_arg(args, uint64_t);
        const lo_timetag tt  = { (uint32_t)(tag >> 32U), (uint32_t)tag };
        lo_message_add_timetag(message, tt);
        break;
      }
      case LO_BLOB: {
        const int         size  = va_arg(args, int);
        const void* const bytes = va_arg(args, const void*);
        lo_blob const     blob  = lo_blob_new(size, bytes);
        lo_message_add_blob(message, blob);
        lo_blob_free(blob);
        break;
      }
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
        fprintf(stderr, "robust: type '%c' is not supported\n", *type);
        return false;
    }
  }
  return true;
}

bool
fl_packet_message(FlPacket* packet, const char* path, const char* types, ...)
{
  lo_message const message = lo_message_new();
  if (!message) {
    return false;
  }

  va_list args;
  va_start(args, types);
  bool ok = add_arguments(message, types, args);
  va_end(args);

  size_t size = ok ? lo_message_length(message, path) : 0U;
  ok          = ok && size > 0U && size <= sizeof(packet->data);
  if (ok) {
    ok = lo_message_serialise(message, path, packet->data, &size) != NULL;
  }
  packet->size = ok ? size : 0U;
  lo_message_free(message);
  return ok;
}

void
fl_packet_bytes(FlPacket* packet, const void* bytes, size_t size)
{
  if (size <= sizeof(packet->data) - packet->size) {
    memcpy(packet->data + packet->size, bytes, size);
    packet->size += size;
  }
}

void
fl_packet_word(FlPacket* packet, uint32_t word)
{
  const unsigned char bytes[4] = { (unsigned char)(word >> 24U),
                                   (unsigned char)(word >> 16U),
                                   (unsigned char)(word >> 8U),
                                   (unsigned char)word };
  fl_packet_bytes(packet, bytes, sizeof(bytes));
}

void
fl_packet_bundle(FlPacket* packet, uint32_t seconds, uint32_t fraction)
{
  packet->size = 0U;
  fl_packet_bytes(packet, "#bundle", 8U);
  fl_packet_word(packet, seconds);
  fl_packet_word(packet, fraction);
}

void
fl_packet_element(FlPacket* packet, const FlPacket* element)
{
  fl_packet_word(packet, (uint32_t)element->size);
  fl_packet_bytes(packet, element->data, element->size);
}

/* A raw UDP endpoint */

struct FlUdpImpl {
  int                     fd;
  struct sockaddr_storage target;
  socklen_t               target_size;
  unsigned char           buffer[FL_DATAGRAM_MAX];
  char                    formatted[4096];
};

/* Fill `address` from a numeric host and a port. */
static bool
make_address(const char*              host,
             int                      port,
             struct sockaddr_storage* address,
             socklen_t*               size)
{
  memset(address, 0, sizeof(*address));
  struct sockaddr_in* const  v4 = (struct sockaddr_in*)address;
  struct sockaddr_in6* const v6 = (struct sockaddr_in6*)address;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port   = htons((uint16_t)port);
    *size          = sizeof(*v4);
    return true;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port   = htons((uint16_t)port);
    *size           = sizeof(*v6);
    return true;
  }
  fprintf(stderr, "robust: '%s' is no numeric address\n", host);
  return false;
}

FlUdp*
fl_udp_new(const char* local_address,
           const char* address,
           int         port,
           int         receive_buffer)
{
  FlUdp* const udp = (FlUdp*)calloc(1, sizeof(FlUdp));
  if (!udp) {
    return NULL;
  }
  udp->fd = -1;

  struct sockaddr_storage local;
  socklen_t               local_size = 0;
  if (!make_address(local_address, 0, &local, &local_size) ||
      !make_address(address, port, &udp->target, &udp->target_size)) {
    fl_udp_free(udp);
    return NULL;
  }

  udp->fd = socket(local.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (udp->fd < 0 ||
      bind(udp->fd, (const struct sockaddr*)&local, local_size) != 0) {
    fprintf(stderr,
            "robust: cannot bind a UDP socket to %s: %s\n",
            local_address,
            strerror(errno));
    fl_udp_free(udp);
    return NULL;
  }

  if (receive_buffer > 0) {
    // FORCE passes rmem_max when we may (root); the plain one otherwise.
    setsockopt(
      udp->fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    setsockopt(udp->fd,
               SOL_SOCKET,
               SO_RCVBUFFORCE,
               &receive_buffer,
               sizeof(receive_buffer));
  }
  return udp;
}

void
fl_udp_free(FlUdp* udp)
{
  if (udp) {
    if (udp->fd >= 0) {
      close(udp->fd);
    }
    free(udp);
  }
}

int
fl_udp_fd(const FlUdp* udp)
{
  return udp->fd;
}

bool
fl_udp_send(FlUdp* udp, const void* data, size_t size)
{
  return sendto(udp->fd,
                data,
                size,
                0,
                (const struct sockaddr*)&udp->target,
                udp->target_size) == (ssize_t)size;
}

bool
fl_udp_send_packet(FlUdp* udp, const FlPacket* packet)
{
  return fl_udp_send(udp, packet->data, packet->size);
}

bool
fl_udp_send_to(FlUdp*      udp,
               const char* address,
               int         port,
               const void* data,
               size_t      size)
{
  struct sockaddr_storage target;
  socklen_t               target_size = 0;
  return make_address(address, port, &target, &target_size) &&
         sendto(udp->fd,
                data,
                size,
                0,
                (const struct sockaddr*)&target,
                target_size) == (ssize_t)size;
}

/* Decode one datagram into a new FlReply. */
static FlReply*
decode(const unsigned char* data, size_t size)
{
  FlReply* const reply = (FlReply*)calloc(1, sizeof(FlReply));
  if (!reply) {
    return NULL;
  }

  int              result = 0;
  lo_message const message =
    size && data[0] == '/'
      ? lo_message_deserialise((void*)(uintptr_t)data, size, &result)
      : NULL;
  if (!message) {
    snprintf(reply->path, sizeof(reply->path), "(undecodable)");
    return reply;
  }

  // The address is a terminated string (liblo checked it); keep what fits.
  const size_t length = strnlen((const char*)data, sizeof(reply->path) - 1U);
  memcpy(reply->path, data, length);
  reply->path[length]     = '\0';
  const char* const types = lo_message_get_types(message);
  lo_arg** const    argv  = lo_message_get_argv(message);
  const int         argc  = lo_message_get_argc(message);
  snprintf(reply->types, sizeof(reply->types), "%s", types ? types : "");
  reply->argc = argc < FL_OSC_MAX_ARGS ? argc : FL_OSC_MAX_ARGS;
  for (int i = 0; i < reply->argc; ++i) {
    FlOscArg* const arg = &reply->argv[i];
    arg->type           = types[i];
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
  lo_message_free(message);
  return reply;
}

FlReply*
fl_udp_receive(FlUdp* udp, int timeout_ms)
{
  struct pollfd ready    = { udp->fd, POLLIN, 0 };
  const int64_t deadline = fl_now_ms() + timeout_ms;
  for (;;) {
    const ssize_t size =
      recv(udp->fd, udp->buffer, sizeof(udp->buffer), MSG_DONTWAIT);
    if (size >= 0) {
      return decode(udp->buffer, (size_t)size);
    }

    const int64_t left = deadline - fl_now_ms();
    if (left <= 0) {
      return NULL;
    }
    poll(&ready, 1, (int)left);
  }
}

FlReply*
fl_udp_wait(FlUdp* udp, const char* path, int timeout_ms, uint64_t* skipped)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  for (;;) {
    const int64_t  left  = deadline - fl_now_ms();
    FlReply* const reply = fl_udp_receive(udp, left > 0 ? (int)left : 0);
    if (!reply || !path || !strcmp(reply->path, path)) {
      return reply;
    }
    fl_reply_free(reply);
    if (skipped) {
      ++*skipped;
    }
  }
}

const char*
fl_udp_call(FlUdp* udp, const FlPacket* packet, int timeout_ms)
{
  if (!fl_udp_send_packet(udp, packet)) {
    snprintf(udp->formatted,
             sizeof(udp->formatted),
             "(could not send: %s)",
             strerror(errno));
    return udp->formatted;
  }

  FlReply* const reply = fl_udp_receive(udp, timeout_ms);
  if (!reply) {
    snprintf(udp->formatted,
             sizeof(udp->formatted),
             "(no reply within %d ms)",
             timeout_ms);
  } else {
    fl_reply_format(reply, udp->formatted, sizeof(udp->formatted));
    fl_reply_free(reply);
  }
  return udp->formatted;
}

uint64_t
fl_udp_drain(FlUdp* udp)
{
  uint64_t count = 0U;
  while (recv(udp->fd, udp->buffer, sizeof(udp->buffer), MSG_DONTWAIT) >= 0) {
    ++count;
  }
  return count;
}

/* A sending thread */

struct FlFlooderImpl {
  pthread_t     thread;
  FlUdp*        udp;
  FlPacket      packet;
  uint64_t      limit;
  atomic_bool   stop; ///< Set by the main thread
  atomic_ullong sent; ///< Written by the flooder
};

static void*
flood(void* data)
{
  FlFlooder* const flooder = (FlFlooder*)data;
  uint64_t         sent    = 0U;
  while (!atomic_load_explicit(&flooder->stop, memory_order_relaxed) &&
         (!flooder->limit || sent < flooder->limit)) {
    sent += fl_udp_send_packet(flooder->udp, &flooder->packet);
    if (sent % 1024U == 0U) {
      // Replies ("queue full") are not wanted; keep the queue short.
      fl_udp_drain(flooder->udp);
    }
  }
  atomic_store_explicit(&flooder->sent, sent, memory_order_relaxed);
  return NULL;
}

FlFlooder*
fl_flooder_start(int port, const FlPacket* packet, uint64_t limit)
{
  FlFlooder* const flooder = (FlFlooder*)calloc(1, sizeof(FlFlooder));
  if (!flooder) {
    return NULL;
  }
  flooder->udp = fl_udp_new("127.0.0.1", "127.0.0.1", port, 0);
  if (!flooder->udp) {
    free(flooder);
    return NULL;
  }
  flooder->packet = *packet;
  flooder->limit  = limit;
  atomic_init(&flooder->stop, false);
  atomic_init(&flooder->sent, 0U);
  if (pthread_create(&flooder->thread, NULL, flood, flooder)) {
    fl_udp_free(flooder->udp);
    free(flooder);
    return NULL;
  }
  return flooder;
}

uint64_t
fl_flooder_stop(FlFlooder* flooder)
{
  if (!flooder) {
    return 0U;
  }
  atomic_store_explicit(&flooder->stop, true, memory_order_relaxed);
  pthread_join(flooder->thread, NULL);
  const uint64_t sent =
    atomic_load_explicit(&flooder->sent, memory_order_relaxed);
  fl_udp_free(flooder->udp);
  free(flooder);
  return sent;
}

/* flitzid's counters */

bool
fl_stats(FlOsc* osc, FlStats* stats)
{
  fl_osc_send(osc, "/stats", "");
  FlReply* const reply = fl_osc_wait(osc, "/stats.reply", FL_TEST_REPLY_MS);
  /* v1's six counters come first; v2 adds the MIDI notes after them. */
  if (!reply || strncmp(reply->types, "hhhhhh", 6)) {
    char text[512];
    fprintf(stderr,
            "robust: /stats answered %s\n",
            reply ? fl_reply_format(reply, text, sizeof(text)) : "nothing");
    fl_reply_free(reply);
    return false;
  }

  const FlOscArg* const arg = reply->argv;
  stats->messages           = arg[0].value.h;
  stats->plays_queued       = arg[1].value.h;
  stats->plays_applied      = arg[2].value.h;
  stats->dropped_queue      = arg[3].value.h;
  stats->dropped_packets    = arg[4].value.h;
  stats->failed             = arg[5].value.h;
  fl_reply_free(reply);
  return true;
}

/* Processes */

long
fl_rss_kib(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
  char* const text = fl_read_text(path);
  if (!text) {
    return -1;
  }
  const char* const line = strstr(text, "\nVmRSS:");
  const long        kib  = line ? strtol(line + 7, NULL, 10) : -1;
  free(text);
  return kib;
}

bool
fl_udp_socket_state(int port, unsigned long* queued_bytes, unsigned long* drops)
{
  char* const text = fl_read_text("/proc/net/udp");
  if (!text) {
    return false;
  }

  // "sl local rem st tx:rx tr tm->when retrnsmt uid timeout inode ref
  // pointer drops", addresses as hex in the kernel's byte order.
  char v4[32];
  char any[32];
  snprintf(v4, sizeof(v4), "0100007F:%04X", (unsigned)port);
  snprintf(any, sizeof(any), "00000000:%04X", (unsigned)port);

  bool found    = false;
  *queued_bytes = 0UL;
  *drops        = 0UL;
  for (char* line = strchr(text, '\n'); line && line[1];
       line       = strchr(line + 1, '\n')) {
    char          local[64];
    unsigned long tx      = 0UL;
    unsigned long rx      = 0UL;
    unsigned long dropped = 0UL;
    if (sscanf(line + 1,
               " %*s %63s %*s %*s %lx:%lx %*s %*s %*s %*s %*s %*s %*s %lu",
               local,
               &tx,
               &rx,
               &dropped) == 4 &&
        (!strcmp(local, v4) || !strcmp(local, any))) {
      found = true;
      *queued_bytes += rx;
      *drops += dropped;
    }
  }
  free(text);
  return found;
}

bool
fl_udp_wait_drained(int port, int timeout_ms)
{
  const int64_t deadline = fl_now_ms() + timeout_ms;
  for (;;) {
    unsigned long queued = 0UL;
    unsigned long drops  = 0UL;
    if (!fl_udp_socket_state(port, &queued, &drops)) {
      return false;
    }
    if (queued == 0UL) {
      return true;
    }
    if (fl_now_ms() >= deadline) {
      fprintf(stderr,
              "robust: port %d still has %lu bytes queued after %d ms\n",
              port,
              queued,
              timeout_ms);
      return false;
    }
    fl_sleep_ms(2);
  }
}

const char* const fl_no_dac_prefix[] = {
  "setpriv",
  "--inh-caps=-dac_override,-dac_read_search",
  "--bounding-set=-dac_override,-dac_read_search",
  NULL,
};

/* Write `word` single-quoted for sh. */
static void
put_quoted(FILE* script, const char* word)
{
  fputc('\'', script);
  for (const char* c = word; *c; ++c) {
    if (*c == '\'') {
      fputs("'\\''", script);
    } else {
      fputc(*c, script);
    }
  }
  fputs("' ", script);
}

bool
fl_daemon_start_wrapped(FlDaemon*          daemon,
                        FlTestEnv*         env,
                        const char*        server,
                        const char*        name,
                        int                port,
                        const char* const* extra_args,
                        const char* const* prefix,
                        int                timeout_ms)
{
  const char* const flitzid = getenv("FLITZID");
  if (!flitzid || !*flitzid) {
    fprintf(stderr, "robust: FLITZID is not set (meson sets it)\n");
    return false;
  }
  char* const real = strdup(flitzid);

  char file_name[128];
  char script_path[PATH_MAX];
  snprintf(file_name, sizeof(file_name), "wrap-%s.sh", name);
  fl_env_path(env, file_name, script_path, sizeof(script_path));
  FILE* const script = fopen(script_path, "w");
  if (!real || !script) {
    fprintf(stderr, "robust: cannot write %s\n", script_path);
    free(real);
    if (script) {
      fclose(script);
    }
    return false;
  }
  fputs("#!/bin/sh\nexec ", script);
  for (size_t i = 0; prefix[i]; ++i) {
    put_quoted(script, prefix[i]);
  }
  put_quoted(script, real);
  fputs("\"$@\"\n", script);
  fclose(script);
  chmod(script_path, 0755);

  // fl_daemon_spawn() runs whatever FLITZID names.
  setenv("FLITZID", script_path, 1);
  const bool spawned =
    fl_daemon_spawn(daemon, env, server, name, port, extra_args);
  setenv("FLITZID", real, 1);
  free(real);
  return spawned && fl_daemon_wait_ready(daemon, 2, timeout_ms);
}

int
fl_jackd_kill(FlJackd* jackd)
{
  if (!jackd->pid) {
    return -1;
  }
  kill(jackd->pid, SIGKILL);
  int status = 0;
  while (waitpid(jackd->pid, &status, 0) < 0 && errno == EINTR) {
  }
  jackd->pid = 0;

  char needle[96];
  snprintf(needle, sizeof(needle), "_%s_", jackd->name);
  int        removed = 0;
  DIR* const shm     = opendir("/dev/shm");
  for (struct dirent* entry = shm ? readdir(shm) : NULL; entry;
       entry                = readdir(shm)) {
    if (strstr(entry->d_name, needle)) {
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

/* Recording */

long
fl_capture_play(FlRecorder* recorder,
                FlOsc*      osc,
                int         slot,
                double      velocity,
                float       threshold,
                uint32_t    frames)
{
  for (int attempt = 1; attempt <= 8; ++attempt) {
    fl_recorder_start(recorder);
    if (!fl_recorder_wait(recorder, 1, 2000)) {
      fprintf(stderr, "robust: the recorder does not record\n");
      return -1;
    }
    fl_osc_send(osc, "/play", "if", slot, velocity);

    long          onset    = -1;
    const int64_t deadline = fl_now_ms() + 3000;
    while (onset < 0 && fl_now_ms() < deadline) {
      fl_recorder_wait(
        recorder, fl_recorder_frames(recorder) + FL_TEST_PERIOD, 100);
      onset = fl_recorder_onset(recorder, 0, threshold, 0);
    }
    const bool complete =
      onset >= 0 && fl_recorder_wait(recorder, (uint32_t)onset + frames, 3000);
    fl_recorder_stop(recorder);

    const unsigned glitches = fl_recorder_glitches(recorder);
    if (!glitches) {
      if (!complete) {
        fprintf(
          stderr, "robust: /play %d: no complete sound within 3 s\n", slot);
        return -1;
      }
      return onset;
    }

    fprintf(stderr,
            "robust: capture %d of /play %d: %u xrun(s) or skipped "
            "period(s); recording again\n",
            attempt,
            slot,
            glitches);
    fl_osc_send(osc, "/stop", "");
    if (!fl_osc_wait_voices(osc, 0, 2000)) {
      return -1;
    }
  }
  fprintf(stderr, "robust: no clean capture in 8 attempts\n");
  return -1;
}

long
fl_find_deviation(const FlRecorder* recorder,
                  unsigned          channel,
                  uint32_t          start,
                  uint32_t          count,
                  float             value,
                  float             tolerance)
{
  const float* const frames = fl_recorder_channel(recorder, channel);
  for (uint32_t i = 0; frames && i < count; ++i) {
    if (!(fabsf(frames[start + i] - value) <= tolerance)) {
      return (long)(start + i);
    }
  }
  return frames ? -1 : 0;
}
