/*
  The OSC server: sockets, packet parsing and dispatch, and replies.

  One thread (the OSC thread) owns the sockets. It sleeps in poll() until a
  packet, a queued reply or a stop request arrives, so an idle daemon costs
  nothing. Every packet goes through fl_osc_dispatch(): bundles are unpacked
  (bounds-checked, nested up to a depth limit, each message with its bundle's
  timetag), each message is decoded with liblo's lo_message_deserialise(),
  its address looked up in the method table and its type tags checked against
  the method's accepted forms; only then does the method's handler run. So a
  handler sees well-formed arguments of the types it declared, and everything
  else gets a /fail (or, with no readable address, is dropped and counted).

  Replies: handlers (on the OSC thread) reply with fl_osc_reply(); other
  threads queue messages with fl_osc_post(), which the OSC thread sends.
*/
#ifndef FLITZI_OSC_H
#define FLITZI_OSC_H

#include <flitzi/status.h>

#include <lo/lo.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct FlOscServerImpl FlOscServer;

/** Where a message came from, and where its replies go. */
typedef struct {
  struct sockaddr_storage address;      /**< UDP: the sender's address */
  uint32_t                address_size; /**< 0 for "nobody" */
  int32_t                 connection;   /**< TCP connection id, or -1 (UDP) */
} FlOscPeer;

/** A handler: called on the OSC thread with arguments of an accepted form. */
typedef void (*FlOscHandler)(void*            data,
                             FlOscServer*     server,
                             const FlOscPeer* peer,
                             const char*      types,
                             lo_arg* const*   argv,
                             lo_timetag       time);

/**
   A method: its address, the type-tag forms it accepts and its handler. In
   a form, X stands for any number (f, d or i), * for any value (a number or
   s), and a trailing group "(...)+" repeats one or more times: /slot/set is
   "i(s*)+".
*/
typedef struct {
  const char* path; /**< Address, e.g. "/play" */
  const char* const*
               forms; /**< Accepted type tags, NULL-terminated; "" is none */
  FlOscHandler handle;
} FlOscMethod;

typedef struct {
  const char*        listen_address; /**< Numeric address to bind; NULL: none */
  const char*        port;           /**< Port to bind (UDP, and TCP if tcp) */
  bool               tcp;            /**< Also accept OSC over TCP */
  const FlOscMethod* methods;
  size_t             method_count;
  void*              method_data; /**< Passed to every handler */
} FlOscConfig;

/**
   Create a server and bind its sockets (none if listen_address is NULL, for
   tests and fuzzing: then replies are dropped). Returns NULL with a reason
   ("cannot listen on 127.0.0.1:9950: port in use") on failure.
*/
FlOscServer* fl_osc_new(const FlOscConfig* config,
                        char*              reason,
                        size_t             reason_size);

/** Stop the thread if started and free. `fl_osc_free(NULL)` does nothing. */
void fl_osc_free(FlOscServer* server);

/** Start the OSC thread. */
FlStatus fl_osc_start(FlOscServer* server);

/**
   Parse, validate and dispatch one packet from `peer`. The OSC thread calls
   this for every packet it receives; tests and the fuzzer call it directly.
   `data` may be modified.
*/
void fl_osc_dispatch(FlOscServer*     server,
                     const FlOscPeer* peer,
                     void*            data,
                     size_t           size);

/** Send `message` to `peer` now. OSC thread (handlers) only. */
void fl_osc_reply(FlOscServer*     server,
                  const FlOscPeer* peer,
                  const char*      path,
                  lo_message       message);

/**
   Queue `message` for the OSC thread to send to `peer` (if not NULL) and, if
   `notify`, to every subscriber other than `peer`. Takes ownership of
   `message`. Any non-RT thread.
*/
void fl_osc_post(FlOscServer*     server,
                 const FlOscPeer* peer,
                 bool             notify,
                 const char*      path,
                 lo_message       message);

/**
   Queue `bundle` for the OSC thread to send to `peer`. Takes ownership of
   the bundle and its messages. Any non-RT thread.
*/
void fl_osc_post_bundle(FlOscServer*     server,
                        const FlOscPeer* peer,
                        lo_bundle        bundle);

/** Add or remove `peer` as a subscriber to events. OSC thread only. */
void fl_osc_subscribe(FlOscServer*     server,
                      const FlOscPeer* peer,
                      bool             subscribe);

/** What the server has seen; each count only grows. */
typedef struct {
  uint64_t messages;        /**< Messages read (each one of a bundle too) */
  uint64_t failed;          /**< /fail replies sent by handlers */
  uint64_t dropped_packets; /**< Datagrams lost unanswered: dropped by the
                                 kernel (receive queue full), truncated, or
                                 unreadable */
} FlOscCounters;

/** Copy the counters. Any thread. */
void fl_osc_counters(const FlOscServer* server, FlOscCounters* counters);

#endif /* FLITZI_OSC_H */
