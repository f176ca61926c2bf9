/*
  Sessions (OSC API v2, §6): `flitzid --state FILE` and /save.

  The session keeps a copy of what a restart must bring back: every slot's
  settings (as the user gave them, FlSlotSettings) and the global settings
  (tempo, signature, quantize, speed, bpmlock, master gain); the file in each
  slot is read from the bank when the state is written. The control thread
  tells the session about every change it makes, the loader about every load
  and unload it finishes; each such call marks the state changed and wakes
  the session's writer thread, which rewrites FILE within a second.

  A write is atomic: the JSON text (jansson) goes to FILE.tmp, is flushed
  and fsync()ed, renamed over FILE, and the directory is fsync()ed, so a
  kill at any moment leaves a complete old or new FILE. Writes are
  coalesced: at most one starts every FL_SESSION_WRITE_INTERVAL_MS, and it
  holds every change made before it took its snapshot. A write that fails
  (read-only directory, full disk) is logged once per kind of error; the
  state stays in memory and is written on the next change (or /save).

  At start-up fl_session_new() reads FILE. A FILE that does not exist is an
  empty session. A FILE that cannot be parsed (or is not a session of a
  version this flitzid reads) is renamed aside to FILE.broken-<UTC time>
  and never overwritten; the session starts empty. A slot entry that cannot
  be used (beyond --slots, or malformed) is kept as it is and written back,
  and a slot whose file fails to load keeps its path in FILE until the slot
  is loaded or unloaded, so nothing in FILE is lost by a bad start.

  Threads: fl_session_new(), fl_session_restore(), fl_session_load_files(),
  fl_session_start(), fl_session_detach() and fl_session_free() on the main
  thread (restore before the control thread runs); fl_session_set_slot(),
  fl_session_set_globals(), fl_session_slot_requested() and fl_session_save()
  on the control (OSC) thread; fl_session_slot_done() on the loader thread.
  Never the RT thread. Every function taking a session does nothing when it is
  NULL (no --state).
*/
#ifndef FLITZI_SESSION_H
#define FLITZI_SESSION_H

#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/loader.h>
#include <flitzi/osc.h>
#include <flitzi/settings.h>
#include <flitzi/status.h>

#include <stdbool.h>
#include <stdint.h>

/** The version of the file format written, and the newest one read. */
#define FL_SESSION_VERSION 1

/** The shortest time between the starts of two writes. */
#define FL_SESSION_WRITE_INTERVAL_MS 100

/** The global settings as the user last set them (OSC API v2, §3 and §4). */
typedef struct {
  double   tempo_bpm;      /**< /tempo, FL_MIN_BPM..FL_MAX_BPM */
  uint32_t beats_per_bar;  /**< /signature, 1..FL_MAX_BEATS_PER_BAR */
  char     quantize[8];    /**< /quantize: "off" or a grid value ("1/4") */
  double   speed;          /**< /speed, 0.5..2 */
  bool     bpmlock;        /**< /bpmlock */
  double   master_gain_db; /**< /master/gain, -60..12 dB */
} FlGlobalSettings;

/** Set the contract's defaults: 120 BPM, 4 beats, off, 1, off, 0 dB. */
void fl_global_settings_reset(FlGlobalSettings* globals);

typedef struct FlSessionImpl FlSession;

typedef struct {
  const char* path;       /**< FILE, as given to --state */
  FlBank*     bank;       /**< Slots and the paths of their files */
  uint32_t    max_voices; /**< --voices: the top of the voices key */
  uint32_t    bus_count;  /**< --buses: the top of the bus key + 1 */
} FlSessionConfig;

/**
   Read the state in `config->path` (see above for a missing or unparsable
   FILE; each problem is logged with the file's name). The writer thread
   does not run yet. Returns NULL only if an allocation fails.
*/
FlSession* fl_session_new(const FlSessionConfig* config);

/**
   Bring the settings read by fl_session_new() back: set `settings` (one per
   slot of the bank) and `globals`, and queue them to `engine`. Main thread,
   before the control thread runs (it is the producer of the engine's
   queue). Returns FL_ERR_QUEUE_FULL if the engine's queue could not take
   every setting.
*/
FlStatus fl_session_restore(FlSession*        session,
                            FlEngine*         engine,
                            FlSlotSettings*   settings,
                            FlGlobalSettings* globals);

/**
   Queue a load of every slot's file read by fl_session_new() to `loader`,
   all at once, so that the loader's parallel decoding has them all. A load
   that fails is answered by the loader like any other, with no requester:
   logged, and /fail ,sis "/load" id reason to subscribers. Main thread,
   once the sample rate is known (after the first attempt to reach JACK),
   so that the files are decoded once.
*/
void fl_session_load_files(FlSession* session, FlLoader* loader);

/**
   Start the writer thread; replies to /save go through `server` (any
   thread may post to it). Returns FL_ERR_NO_MEMORY if the thread cannot
   start.
*/
FlStatus fl_session_start(FlSession* session, FlOscServer* server);

/**
   Stop sending replies (call before `server` is freed): a /save still
   waiting is written but not answered.
*/
void fl_session_detach(FlSession* session);

/**
   Write what changed since the last write (after the loader and the control
   thread stopped calling in), stop the writer thread and free the session.
   fl_session_free(NULL) does nothing.
*/
void fl_session_free(FlSession* session);

/** A slot's settings changed to `settings`. Control thread. */
void fl_session_set_slot(FlSession*            session,
                         uint32_t              slot,
                         const FlSlotSettings* settings);

/** The global settings changed to `globals`. Control thread. */
void fl_session_set_globals(FlSession*              session,
                            const FlGlobalSettings* globals);

/**
   A client queued a load or unload of `slot`: the file read from FILE is
   not loaded into it any more (the client's request comes first). Control
   thread.
*/
void fl_session_slot_requested(FlSession* session, uint32_t slot);

/**
   The loader finished a request: a load that succeeded, or any unload,
   changes what FILE holds for the slot (other outcomes change nothing).
   Loader thread, before the reply is posted, so that a client that has its
   /done knows the change will be written.
*/
void fl_session_slot_done(FlSession* session, const FlLoadResult* result);

/**
   /save: write the state now (even if unchanged), then post
   /done ,s "/save" to `peer`, or /fail ,ss "/save" reason. Returns
   FL_ERR_QUEUE_FULL if too many /save wait already. Control thread.
*/
FlStatus fl_session_save(FlSession* session, const FlOscPeer* peer);

#endif /* FLITZI_SESSION_H */
