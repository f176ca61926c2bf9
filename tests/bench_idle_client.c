/*
  The floor for a JACK client's CPU cost: a client with flitzid's two output
  ports whose process callback only writes silence. scripts/bench-cpu runs it
  beside flitzid and reports flitzid's CPU next to this one's.

  Usage: bench_idle_client NAME   (runs until SIGTERM)
*/
#include <jack/jack.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static jack_port_t* ports[2];

static int
on_process(jack_nframes_t frame_count, void* data)
{
  (void)data;
  for (int c = 0; c < 2; ++c) {
    memset(jack_port_get_buffer(ports[c], frame_count),
           0,
           frame_count * sizeof(float));
  }
  return 0;
}

int
main(int argc, char** argv)
{
  jack_client_t* const client =
    jack_client_open(argc > 1 ? argv[1] : "idle", JackNoStartServer, NULL);
  if (!client) {
    fprintf(stderr, "bench_idle_client: no JACK server\n");
    return 1;
  }
  ports[0] = jack_port_register(
    client, "out_1", JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
  ports[1] = jack_port_register(
    client, "out_2", JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
  jack_set_process_callback(client, on_process, NULL);
  if (!ports[0] || !ports[1] || jack_activate(client)) {
    jack_client_close(client);
    return 1;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, NULL);
  int received = 0;
  sigwait(&signals, &received);
  jack_client_close(client);
  return 0;
}
