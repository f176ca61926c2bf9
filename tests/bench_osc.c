/*
  OSC throughput: how many /play messages a second flitzid accepts without a
  drop from one sender on loopback, while 32 voices play, and what happens
  past that rate.

  A dummy jackd and flitzid of its own (harness.h). The sender is a plain
  UDP socket sending one pre-encoded /play per datagram, paced to each
  target rate for 2 s; the figures come from flitzid's /stats before and
  after: messages received, plays queued and applied, messages dropped (the
  control queue full, or datagrams the kernel dropped) and /fail replies.
  After each step, /ping must be answered; its round trip is printed. The
  baseline in the same run is the sender's own ceiling: the rate at which
  this machine's loopback takes datagrams from one sender with no receiver
  work at all (to a socket nobody reads).

  Run: meson test -C build --benchmark osc -v
*/
#include "harness.h"
#include "robust_util.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double
now_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* "/play\0\0\0" ",ii\0" slot velocity: 20 bytes. */
static size_t
encode_play(unsigned char* out, int32_t slot, int32_t velocity)
{
  memcpy(out, "/play\0\0\0,ii\0", 12);
  const uint32_t s = htonl((uint32_t)slot);
  const uint32_t v = htonl((uint32_t)velocity);
  memcpy(out + 12, &s, 4);
  memcpy(out + 16, &v, 4);
  return 20;
}

/* Send `count` datagrams to `port` at `rate` per second (0: as fast as
   possible); return the rate achieved. */
static double
send_paced(int fd, int port, unsigned count, double rate)
{
  struct sockaddr_in to = { 0 };
  to.sin_family         = AF_INET;
  to.sin_port           = htons((uint16_t)port);
  to.sin_addr.s_addr    = htonl(INADDR_LOOPBACK);
  unsigned char packet[20];
  const size_t  size = encode_play(packet, 0, 1);

  const double begin = now_s();
  for (unsigned i = 0; i < count; ++i) {
    if (rate > 0.0) {
      /* Pace in bursts of 64 so the clock read costs nothing. */
      if (i % 64U == 0U) {
        const double due = begin + i / rate;
        while (now_s() < due) {
        }
      }
    }
    sendto(fd, packet, size, 0, (const struct sockaddr*)&to, sizeof(to));
  }
  return count / (now_s() - begin);
}

static double
ping_ms(FlOsc* osc)
{
  fl_osc_clear(osc);
  const double begin = now_s();
  fl_osc_send(osc, "/ping", "");
  FlReply* const reply = fl_osc_wait(osc, "/pong", 3000);
  const double   ms    = reply ? (now_s() - begin) * 1e3 : -1.0;
  fl_reply_free(reply);
  return ms;
}

int
main(void)
{
  FlTestEnv env;
  if (!fl_env_init(&env, "bench-osc")) {
    return 1;
  }
  char server[64];
  char name[64];
  fl_env_name(&env, server, sizeof(server));
  fl_env_name(&env, name, sizeof(name));

  FlJackd  jackd  = { 0 };
  FlDaemon daemon = { 0 };
  if (!fl_jackd_start(&jackd, &env, server, FL_TEST_PERIOD) ||
      !fl_daemon_start(&daemon, &env, server, name, fl_env_port(&env), NULL)) {
    return 1;
  }
  FlOsc* const osc = fl_osc_new(daemon.port);

  /* A 60 s quiet sample in slot 0, and 32 voices playing it. */
  char path[PATH_MAX];
  fl_env_path(&env, "long.wav", path, sizeof(path));
  SF_INFO info      = { 0 };
  info.channels     = 1;
  info.samplerate   = 48000;
  info.format       = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE*     file = sf_open(path, SFM_WRITE, &info);
  static float block[48000];
  for (int i = 0; i < 48000; ++i) {
    block[i] = 0.01f * sinf((float)i * 0.05f);
  }
  for (int s = 0; s < 60; ++s) {
    sf_writef_float(file, block, 48000);
  }
  sf_close(file);
  fl_osc_send(osc, "/load", "is", 0, path);
  fl_reply_free(fl_osc_wait(osc, "/done", 10000));
  for (int v = 0; v < 32; ++v) {
    fl_osc_send(osc, "/play", "ii", 0, 1);
  }
  fl_osc_wait_voices(osc, 32, 3000);

  const int fd = socket(AF_INET, SOCK_DGRAM, 0);

  /* The ceiling: datagrams per second into a socket nobody reads. */
  const int          sink         = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sink_address = { 0 };
  sink_address.sin_family         = AF_INET;
  sink_address.sin_addr.s_addr    = htonl(INADDR_LOOPBACK);
  socklen_t sink_size             = sizeof(sink_address);
  bind(sink, (struct sockaddr*)&sink_address, sizeof(sink_address));
  getsockname(sink, (struct sockaddr*)&sink_address, &sink_size);
  const double ceiling =
    send_paced(fd, ntohs(sink_address.sin_port), 400000U, 0.0);
  close(sink);

  printf("one loopback sender, one /play per datagram, 2 s per step, "
         "32 voices playing\n");
  printf("sender ceiling (loopback into a socket nobody reads): %.0f msg/s\n\n",
         ceiling);
  printf("%10s %10s %10s %10s %9s %9s %8s %9s %8s\n",
         "target/s",
         "sent/s",
         "received",
         "queued",
         "applied",
         "dropped",
         "failed",
         "lost",
         "ping ms");

  static const double rates[]      = { 25000.0,  50000.0,  100000.0,
                                       150000.0, 200000.0, 0.0 };
  int                 no_drop_rate = 0;
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); ++r) {
    FlStats before;
    FlStats after;
    fl_stats(osc, &before);
    const unsigned count =
      rates[r] > 0.0 ? (unsigned)(rates[r] * 2.0) : 600000U;
    const double sent_rate = send_paced(fd, daemon.port, count, rates[r]);
    fl_sleep_ms(300); /* let the queue drain */
    const double ping = ping_ms(osc);
    fl_stats(osc, &after);

    const int64_t received =
      after.messages - before.messages - 2; /* stats, ping */
    const int64_t queued  = after.plays_queued - before.plays_queued;
    const int64_t applied = after.plays_applied - before.plays_applied;
    const int64_t dropped = (after.dropped_queue - before.dropped_queue) +
                            (after.dropped_packets - before.dropped_packets);
    const int64_t failed = after.failed - before.failed;
    const int64_t lost   = (int64_t)count - queued;
    printf("%10.0f %10.0f %10lld %10lld %9lld %9lld %8lld %9lld %8.2f\n",
           rates[r],
           sent_rate,
           (long long)received,
           (long long)queued,
           (long long)applied,
           (long long)dropped,
           (long long)failed,
           (long long)lost,
           ping);
    if (lost == 0 && rates[r] > no_drop_rate) {
      no_drop_rate = (int)rates[r];
    }
  }
  printf("\nhighest paced rate with every /play applied: %d msg/s "
         "(goal >= 100000)\n",
         no_drop_rate);
  printf("lost = sent - queued; every lost message is counted as dropped "
         "(kernel or queue) or failed\n");

  close(fd);
  fl_osc_free(osc);
  fl_daemon_stop(&daemon);
  fl_jackd_stop(&jackd);
  fl_env_remove(&env);
  return 0;
}
