#include <flitzi/osc.h>

#include <flitzi/log.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_PACKET_SIZE 65536U
#define MAX_BUNDLE_DEPTH 8
#define MAX_CONNECTIONS 16U
#define MAX_SUBSCRIBERS 64U
#define UDP_RECEIVE_BUFFER (4 * 1024 * 1024)
/* Datagrams handled per wake before the outbox gets a turn. */
#define UDP_BATCH 256

/* A queued reply or event, serialized by the thread that queued it. */
typedef struct Outgoing {
  struct Outgoing* next;
  FlOscPeer        peer;
  bool             has_peer;
  bool             notify;
  size_t           size;
  unsigned char    data[];
} Outgoing;

/* A TCP connection: OSC packets framed by a 32-bit big-endian length. */
typedef struct {
  int            fd; /* -1 when unused */
  int32_t        id;
  uint32_t       have; /* bytes of the current frame read so far */
  uint32_t       need; /* 0 while reading the length */
  unsigned char  length[4];
  unsigned char* frame;
} Connection;

struct FlOscServerImpl {
  FlOscConfig config;
  int         udp_fd;  /* IPv4, or the one address asked for */
  int         udp6_fd; /* ::1 beside 127.0.0.1 for "localhost", or -1 */
  int         tcp_fd;
  int         wake_fd; /* eventfd: the outbox has messages, or stop */
  pthread_t   thread;
  bool        started;
  atomic_bool stopping;

  pthread_mutex_t outbox_lock; /* non-RT threads only */
  Outgoing*       outbox_head;
  Outgoing*       outbox_tail;

  /* OSC thread only. */
  FlOscPeer      subscribers[MAX_SUBSCRIBERS];
  uint32_t       subscriber_count;
  Connection     connections[MAX_CONNECTIONS];
  int32_t        next_connection_id;
  unsigned char* packet;
  uint32_t       kernel_drops[2]; /* last SO_RXQ_OVFL count: udp_fd, udp6_fd */

  atomic_ullong dropped_packets;
  atomic_ullong messages;
  atomic_ullong failed;
};

static uint32_t
read_be32(const unsigned char* p)
{
  return ((uint32_t)p[0] << 24U) | ((uint32_t)p[1] << 16U) |
         ((uint32_t)p[2] << 8U) | (uint32_t)p[3];
}

static void
count_dropped(FlOscServer* server, uint64_t count)
{
  atomic_fetch_add_explicit(
    &server->dropped_packets, count, memory_order_relaxed);
}

static bool
same_peer(const FlOscPeer* a, const FlOscPeer* b)
{
  return a->connection == b->connection && a->address_size == b->address_size &&
         !memcmp(&a->address, &b->address, a->address_size);
}

/* Sending */

static void enqueue(FlOscServer* server, Outgoing* outgoing);

static Connection*
find_connection(FlOscServer* server, int32_t id)
{
  for (uint32_t i = 0U; i < MAX_CONNECTIONS; ++i) {
    if (server->connections[i].fd >= 0 && server->connections[i].id == id) {
      return &server->connections[i];
    }
  }
  return NULL;
}

static void
send_bytes(FlOscServer*     server,
           const FlOscPeer* peer,
           const void*      data,
           size_t           size)
{
  if (peer->connection >= 0) {
    Connection* const connection = find_connection(server, peer->connection);
    if (!connection) {
      return; /* it closed */
    }
    const unsigned char length[4] = { (unsigned char)(size >> 24U),
                                      (unsigned char)(size >> 16U),
                                      (unsigned char)(size >> 8U),
                                      (unsigned char)size };
    /* Non-blocking: a client that does not read loses replies, not us. */
    if (send(connection->fd, length, 4, MSG_NOSIGNAL) != 4 ||
        send(connection->fd, data, size, MSG_NOSIGNAL) != (ssize_t)size) {
      fl_log(FL_LOG_DEBUG, "TCP reply lost: %s", strerror(errno));
    }
  } else if (peer->address_size > 0U) {
    const int fd = peer->address.ss_family == AF_INET6 && server->udp6_fd >= 0
                     ? server->udp6_fd
                     : server->udp_fd;
    if (fd >= 0 && sendto(fd,
                          data,
                          size,
                          0,
                          (const struct sockaddr*)&peer->address,
                          peer->address_size) < 0) {
      fl_log(FL_LOG_DEBUG, "reply lost: %s", strerror(errno));
    }
  }
}

void
fl_osc_reply(FlOscServer*     server,
             const FlOscPeer* peer,
             const char*      path,
             lo_message       message)
{
  if (!strcmp(path, "/fail")) {
    atomic_fetch_add_explicit(&server->failed, 1U, memory_order_relaxed);
  }

  size_t      size = 0U;
  void* const data = lo_message_serialise(message, path, NULL, &size);
  if (data) {
    send_bytes(server, peer, data, size);
    free(data);
  }
}

void
fl_osc_post(FlOscServer*     server,
            const FlOscPeer* peer,
            bool             notify,
            const char*      path,
            lo_message       message)
{
  const size_t    size     = lo_message_length(message, path);
  Outgoing* const outgoing = (Outgoing*)calloc(1, sizeof(Outgoing) + size);
  if (!outgoing) {
    lo_message_free(message);
    return;
  }

  size_t written = size;
  lo_message_serialise(message, path, outgoing->data, &written);
  lo_message_free(message);
  outgoing->size     = written;
  outgoing->notify   = notify;
  outgoing->has_peer = peer != NULL;
  if (peer) {
    outgoing->peer = *peer;
  }
  enqueue(server, outgoing);
}

/* Append to the outbox and wake the OSC thread. */
static void
enqueue(FlOscServer* server, Outgoing* outgoing)
{
  if (server->wake_fd < 0) {
    free(outgoing); /* a server without sockets sends nothing */
    return;
  }
  pthread_mutex_lock(&server->outbox_lock);
  if (server->outbox_tail) {
    server->outbox_tail->next = outgoing;
  } else {
    server->outbox_head = outgoing;
  }
  server->outbox_tail = outgoing;
  pthread_mutex_unlock(&server->outbox_lock);

  const uint64_t one = 1U;
  if (server->wake_fd >= 0 && write(server->wake_fd, &one, sizeof(one)) < 0) {
    fl_log(FL_LOG_DEBUG, "cannot wake the OSC thread: %s", strerror(errno));
  }
}

void
fl_osc_post_bundle(FlOscServer* server, const FlOscPeer* peer, lo_bundle bundle)
{
  const size_t    size     = lo_bundle_length(bundle);
  Outgoing* const outgoing = (Outgoing*)calloc(1, sizeof(Outgoing) + size);
  if (!outgoing) {
    lo_bundle_free_recursive(bundle);
    return;
  }

  size_t written = size;
  lo_bundle_serialise(bundle, outgoing->data, &written);
  lo_bundle_free_recursive(bundle);
  outgoing->size     = written;
  outgoing->has_peer = true;
  outgoing->peer     = *peer;
  enqueue(server, outgoing);
}

static void
flush_outbox(FlOscServer* server)
{
  pthread_mutex_lock(&server->outbox_lock);
  Outgoing* outgoing  = server->outbox_head;
  server->outbox_head = server->outbox_tail = NULL;
  pthread_mutex_unlock(&server->outbox_lock);

  while (outgoing) {
    Outgoing* const next = outgoing->next;
    if (outgoing->has_peer) {
      send_bytes(server, &outgoing->peer, outgoing->data, outgoing->size);
    }
    for (uint32_t i = 0U; outgoing->notify && i < server->subscriber_count;
         ++i) {
      if (!outgoing->has_peer ||
          !same_peer(&server->subscribers[i], &outgoing->peer)) {
        send_bytes(
          server, &server->subscribers[i], outgoing->data, outgoing->size);
      }
    }
    free(outgoing);
    outgoing = next;
  }
}

void
fl_osc_subscribe(FlOscServer* server, const FlOscPeer* peer, bool subscribe)
{
  for (uint32_t i = 0U; i < server->subscriber_count; ++i) {
    if (same_peer(&server->subscribers[i], peer)) {
      if (!subscribe) {
        server->subscribers[i] =
          server->subscribers[--server->subscriber_count];
      }
      return;
    }
  }
  if (subscribe && server->subscriber_count < MAX_SUBSCRIBERS) {
    server->subscribers[server->subscriber_count++] = *peer;
  }
}

/* Parsing and dispatch */

static void
fail(FlOscServer*     server,
     const FlOscPeer* peer,
     const char*      path,
     const char*      reason)
{
  lo_message const message = lo_message_new();
  lo_message_add_string(message, path);
  lo_message_add_string(message, reason);
  fl_osc_reply(server, peer, "/fail", message);
  lo_message_free(message);
}

static const FlOscMethod*
find_method(const FlOscServer* server, const char* path)
{
  for (size_t i = 0U; i < server->config.method_count; ++i) {
    if (!strcmp(server->config.methods[i].path, path)) {
      return &server->config.methods[i];
    }
  }
  return NULL;
}

/* Does the type tag `type` fit the form letter `letter`? X stands for a
   number (f, d or i) and * for any value (a number or s). */
static bool
fits(char letter, char type)
{
  const bool number = type == 'f' || type == 'd' || type == 'i';
  return type && (letter == type || (letter == 'X' && number) ||
                  (letter == '*' && (number || type == 's')));
}

/* Does `types` match `form`? A form is form letters, and may end in a group
   "(...)+" that repeats one or more times. */
static bool
matches_form(const char* form, const char* types)
{
  for (; *form && *form != '('; ++form, ++types) {
    if (!fits(*form, *types)) {
      return false;
    }
  }
  if (!*form) {
    return *types == '\0';
  }

  const char* const group = form + 1;
  const char* const close = strchr(group, ')');
  if (!close || close == group || close[1] != '+') {
    return false;
  }
  size_t repeats = 0U;
  while (*types) {
    for (const char* letter = group; letter < close; ++letter, ++types) {
      if (!fits(*letter, *types)) {
        return false;
      }
    }
    ++repeats;
  }
  return repeats > 0U;
}

static void
fail_bad_arguments(FlOscServer*       server,
                   const FlOscPeer*   peer,
                   const FlOscMethod* method)
{
  char   reason[256];
  size_t length =
    (size_t)snprintf(reason, sizeof(reason), "bad arguments: expected ");
  for (size_t i = 0U; method->forms[i] && length < sizeof(reason); ++i) {
    length += (size_t)snprintf(reason + length,
                               sizeof(reason) - length,
                               "%s,%s",
                               i ? " or " : "",
                               method->forms[i]);
  }
  fail(server, peer, method->path, reason);
}

static void
dispatch_message(FlOscServer*     server,
                 const FlOscPeer* peer,
                 unsigned char*   data,
                 size_t           size,
                 lo_timetag       time)
{
  /* The address: a '/'-led string ending inside the packet. */
  const void* const end = memchr(data, '\0', size);
  if (size % 4U || !end || data[0] != '/') {
    count_dropped(server, 1U);
    fl_log(FL_LOG_DEBUG, "dropped an unreadable packet of %zu bytes", size);
    return;
  }
  const char* const path = (const char*)data;
  atomic_fetch_add_explicit(&server->messages, 1U, memory_order_relaxed);

  int              result  = 0;
  lo_message const message = lo_message_deserialise(data, size, &result);
  if (!message) {
    /* Read and answered: a message, not a dropped packet. */
    fail(server, peer, path, "malformed message");
    return;
  }

  const FlOscMethod* const method = find_method(server, path);
  const char*              types  = lo_message_get_types(message);
  types                           = types ? types : "";
  if (!method) {
    fail(server, peer, path, "unknown address");
  } else {
    bool accepted = false;
    for (size_t i = 0U; method->forms[i] && !accepted; ++i) {
      accepted = matches_form(method->forms[i], types);
    }
    if (accepted) {
      method->handle(server->config.method_data,
                     server,
                     peer,
                     types,
                     lo_message_get_argv(message),
                     time);
    } else {
      fail_bad_arguments(server, peer, method);
    }
  }
  lo_message_free(message);
}

static void
dispatch_packet(FlOscServer*     server,
                const FlOscPeer* peer,
                unsigned char*   data,
                size_t           size,
                lo_timetag       time,
                int              depth)
{
  if (size < 8U || memcmp(data, "#bundle", 8U)) {
    dispatch_message(server, peer, data, size, time);
    return;
  }

  if (depth >= MAX_BUNDLE_DEPTH || size < 16U) {
    count_dropped(server, 1U);
    fl_log(FL_LOG_DEBUG,
           "dropped a bundle (%s)",
           size < 16U ? "too short" : "nested too deep");
    return;
  }

  const lo_timetag bundle_time = { read_be32(data + 8U),
                                   read_be32(data + 12U) };
  size_t           offset      = 16U;
  while (offset + 4U <= size) {
    const uint32_t element_size = read_be32(data + offset);
    offset += 4U;
    if (element_size == 0U || element_size % 4U ||
        element_size > size - offset) {
      count_dropped(server, 1U);
      fl_log(FL_LOG_DEBUG, "dropped the rest of a bundle: bad element size");
      return;
    }
    dispatch_packet(
      server, peer, data + offset, element_size, bundle_time, depth + 1);
    offset += element_size;
  }
}

void
fl_osc_dispatch(FlOscServer*     server,
                const FlOscPeer* peer,
                void*            data,
                size_t           size)
{
  const lo_timetag immediate = LO_TT_IMMEDIATE;
  if (size == 0U) {
    count_dropped(server, 1U);
    return;
  }
  dispatch_packet(server, peer, (unsigned char*)data, size, immediate, 0);
}

void
fl_osc_counters(const FlOscServer* server, FlOscCounters* counters)
{
  counters->messages =
    atomic_load_explicit(&server->messages, memory_order_relaxed);
  counters->failed =
    atomic_load_explicit(&server->failed, memory_order_relaxed);
  counters->dropped_packets =
    atomic_load_explicit(&server->dropped_packets, memory_order_relaxed);
}

/* Receiving */

static void
receive_udp(FlOscServer* server, int fd)
{
  for (int i = 0; i < UDP_BATCH; ++i) {
    FlOscPeer     peer = { .connection = -1 };
    struct iovec  iov  = { server->packet, MAX_PACKET_SIZE };
    unsigned char control[CMSG_SPACE(sizeof(uint32_t))];
    struct msghdr header  = { 0 };
    header.msg_name       = &peer.address;
    header.msg_namelen    = sizeof(peer.address);
    header.msg_iov        = &iov;
    header.msg_iovlen     = 1;
    header.msg_control    = control;
    header.msg_controllen = sizeof(control);

    const ssize_t size = recvmsg(fd, &header, MSG_DONTWAIT);
    if (size < 0) {
      return;
    }

    /* SO_RXQ_OVFL: the kernel's count of datagrams it dropped because our
       receive buffer was full. Add what it dropped since the last packet. */
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&header); c;
         c                 = CMSG_NXTHDR(&header, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        uint32_t drops = 0U;
        memcpy(&drops, CMSG_DATA(c), sizeof(drops));
        /* The count is per socket: keep one last value for each. */
        uint32_t* const last =
          &server->kernel_drops[fd == server->udp6_fd ? 1 : 0];
        count_dropped(server, drops - *last);
        *last = drops;
      }
    }

    if (header.msg_flags & MSG_TRUNC) {
      count_dropped(server, 1U);
      continue;
    }
    peer.address_size = header.msg_namelen;
    fl_osc_dispatch(server, &peer, server->packet, (size_t)size);
  }
}

static void
close_connection(Connection* connection)
{
  close(connection->fd);
  free(connection->frame);
  connection->fd    = -1;
  connection->frame = NULL;
}

static void
accept_tcp(FlOscServer* server)
{
  const int fd =
    accept4(server->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    return;
  }
  for (uint32_t i = 0U; i < MAX_CONNECTIONS; ++i) {
    Connection* const connection = &server->connections[i];
    if (connection->fd < 0) {
      *connection =
        (Connection){ fd, server->next_connection_id++, 0U, 0U, { 0 }, NULL };
      return;
    }
  }
  fl_log(
    FL_LOG_WARNING, "refused a TCP connection: %u are open", MAX_CONNECTIONS);
  close(fd);
}

static void
receive_tcp(FlOscServer* server, Connection* connection)
{
  for (;;) {
    unsigned char* const target =
      connection->need ? connection->frame : connection->length;
    const uint32_t want = connection->need ? connection->need : 4U;
    const ssize_t  got  = recv(connection->fd,
                             target + connection->have,
                             want - connection->have,
                             MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
      close_connection(connection);
      return;
    }
    if (got < 0) {
      return;
    }

    connection->have += (uint32_t)got;
    if (connection->have < want) {
      continue;
    }

    connection->have = 0U;
    if (!connection->need) {
      const uint32_t size = read_be32(connection->length);
      if (size == 0U || size > MAX_PACKET_SIZE) {
        fl_log(
          FL_LOG_DEBUG, "closed a TCP connection: frame of %u bytes", size);
        close_connection(connection);
        return;
      }
      connection->need  = size;
      connection->frame = (unsigned char*)malloc(size);
      if (!connection->frame) {
        close_connection(connection);
        return;
      }
    } else {
      const FlOscPeer peer = { .address_size = 0U,
                               .connection   = connection->id };
      const uint32_t  size = connection->need;
      connection->need     = 0U;
      fl_osc_dispatch(server, &peer, connection->frame, size);
      /* The handler may have closed nothing; the frame is ours to free. */
      free(connection->frame);
      connection->frame = NULL;
    }
  }
}

static void*
osc_main(void* data)
{
  FlOscServer* const server = (FlOscServer*)data;
  struct pollfd      fds[4U + MAX_CONNECTIONS];
  Connection*        owners[4U + MAX_CONNECTIONS];

  while (!atomic_load_explicit(&server->stopping, memory_order_acquire)) {
    nfds_t count = 0U;
    fds[count++] = (struct pollfd){ server->wake_fd, POLLIN, 0 };
    fds[count++] = (struct pollfd){ server->udp_fd, POLLIN, 0 };
    fds[count++] = (struct pollfd){ server->udp6_fd, POLLIN, 0 };
    if (server->tcp_fd >= 0) {
      fds[count++] = (struct pollfd){ server->tcp_fd, POLLIN, 0 };
    }
    const nfds_t fixed = count;
    for (uint32_t i = 0U; i < MAX_CONNECTIONS; ++i) {
      if (server->connections[i].fd >= 0) {
        owners[count] = &server->connections[i];
        fds[count++]  = (struct pollfd){ server->connections[i].fd, POLLIN, 0 };
      }
    }

    /* Sleep until something arrives: no timeout, no polling. */
    if (poll(fds, count, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      fl_log(FL_LOG_ERROR, "poll: %s", strerror(errno));
      break;
    }

    if (fds[0].revents) {
      uint64_t value = 0U;
      if (read(server->wake_fd, &value, sizeof(value)) < 0 && errno != EAGAIN) {
        fl_log(FL_LOG_DEBUG, "eventfd: %s", strerror(errno));
      }
    }
    if (fds[1].revents) {
      receive_udp(server, server->udp_fd);
    }
    if (fds[2].revents) {
      receive_udp(server, server->udp6_fd);
    }
    if (fixed > 3U && fds[3].revents) {
      accept_tcp(server);
    }
    for (nfds_t i = fixed; i < count; ++i) {
      if (fds[i].revents && owners[i]->fd == fds[i].fd) {
        receive_tcp(server, owners[i]);
      }
    }
    flush_outbox(server);
  }
  flush_outbox(server);
  return NULL;
}

/* Set-up */

static int
bind_socket(const char* address,
            const char* port,
            int         type,
            char*       reason,
            size_t      reason_size)
{
  struct addrinfo hints = { 0 };
  hints.ai_family       = AF_UNSPEC;
  hints.ai_socktype     = type;
  hints.ai_flags        = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;

  struct addrinfo* info  = NULL;
  const int        error = getaddrinfo(address, port, &hints, &info);
  if (error) {
    snprintf(reason,
             reason_size,
             "cannot listen on %s:%s: %s",
             address,
             port,
             gai_strerror(error));
    return -1;
  }

  const int fd =
    socket(info->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(reason,
             reason_size,
             "cannot listen on %s:%s: %s",
             address,
             port,
             strerror(errno));
    freeaddrinfo(info);
    return -1;
  }

  const int on = 1;
  if (type == SOCK_STREAM) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  }
  if (bind(fd, info->ai_addr, info->ai_addrlen) ||
      (type == SOCK_STREAM && listen(fd, 8))) {
    snprintf(reason,
             reason_size,
             "cannot listen on %s:%s%s: %s",
             address,
             port,
             type == SOCK_STREAM ? "/tcp" : "",
             errno == EADDRINUSE ? "port in use" : strerror(errno));
    close(fd);
    freeaddrinfo(info);
    return -1;
  }
  freeaddrinfo(info);

  if (type == SOCK_DGRAM) {
    /* A deep queue absorbs bursts from sequencers; SO_RXQ_OVFL tells us
       exactly how many datagrams the kernel still had to drop. */
    const int size = UDP_RECEIVE_BUFFER;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on));
  }
  return fd;
}

FlOscServer*
fl_osc_new(const FlOscConfig* config, char* reason, size_t reason_size)
{
  FlOscServer* const server = (FlOscServer*)calloc(1, sizeof(FlOscServer));
  if (!server) {
    snprintf(reason, reason_size, "out of memory");
    return NULL;
  }

  server->config  = *config;
  server->udp_fd  = -1;
  server->udp6_fd = -1;
  server->tcp_fd  = -1;
  server->wake_fd = -1;
  atomic_init(&server->stopping, false);
  atomic_init(&server->dropped_packets, 0U);
  atomic_init(&server->messages, 0U);
  atomic_init(&server->failed, 0U);
  pthread_mutex_init(&server->outbox_lock, NULL);
  for (uint32_t i = 0U; i < MAX_CONNECTIONS; ++i) {
    server->connections[i].fd = -1;
  }

  if (!config->listen_address) {
    return server;
  }

  server->packet  = (unsigned char*)malloc(MAX_PACKET_SIZE);
  server->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!server->packet || server->wake_fd < 0) {
    snprintf(
      reason, reason_size, "cannot set up the OSC server: %s", strerror(errno));
    fl_osc_free(server);
    return NULL;
  }

  /* "localhost" is loopback in both families: clients that resolve it to
     ::1 (liblo does, where /etc/hosts lists it) reach us too. */
  const bool  loopback = !strcmp(config->listen_address, "localhost");
  const char* address  = loopback ? "127.0.0.1" : config->listen_address;
  server->udp_fd =
    bind_socket(address, config->port, SOCK_DGRAM, reason, reason_size);
  if (server->udp_fd >= 0 && loopback) {
    char ignored[256];
    server->udp6_fd =
      bind_socket("::1", config->port, SOCK_DGRAM, ignored, sizeof(ignored));
    if (server->udp6_fd < 0 && strstr(ignored, "port in use")) {
      snprintf(reason, reason_size, "%s", ignored);
      fl_osc_free(server);
      return NULL;
    }
  }
  if (server->udp_fd < 0 ||
      (config->tcp &&
       (server->tcp_fd = bind_socket(
          address, config->port, SOCK_STREAM, reason, reason_size)) < 0)) {
    fl_osc_free(server);
    return NULL;
  }
  return server;
}

FlStatus
fl_osc_start(FlOscServer* server)
{
  if (server->udp_fd < 0 ||
      pthread_create(&server->thread, NULL, osc_main, server)) {
    return FL_ERR_OPEN;
  }
  pthread_setname_np(server->thread, "flitzi-osc");
  server->started = true;
  return FL_SUCCESS;
}

void
fl_osc_free(FlOscServer* server)
{
  if (!server) {
    return;
  }

  if (server->started) {
    atomic_store_explicit(&server->stopping, true, memory_order_release);
    const uint64_t one = 1U;
    if (write(server->wake_fd, &one, sizeof(one)) < 0) {
      fl_log(FL_LOG_DEBUG, "cannot wake the OSC thread: %s", strerror(errno));
    }
    pthread_join(server->thread, NULL);
  }

  for (uint32_t i = 0U; i < MAX_CONNECTIONS; ++i) {
    if (server->connections[i].fd >= 0) {
      close_connection(&server->connections[i]);
    }
  }
  for (Outgoing* o = server->outbox_head; o;) {
    Outgoing* const next = o->next;
    free(o);
    o = next;
  }
  if (server->udp_fd >= 0) {
    close(server->udp_fd);
  }
  if (server->udp6_fd >= 0) {
    close(server->udp6_fd);
  }
  if (server->tcp_fd >= 0) {
    close(server->tcp_fd);
  }
  if (server->wake_fd >= 0) {
    close(server->wake_fd);
  }
  pthread_mutex_destroy(&server->outbox_lock);
  free(server->packet);
  free(server);
}
