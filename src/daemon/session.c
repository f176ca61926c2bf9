#include <flitzi/session.h>

#include <flitzi/log.h>
#include <flitzi/transport.h>

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* /save requests that may wait for one write. */
#define MAX_SAVE_PEERS 32U

/* A state of 1024 slots with long paths is a few MB; anything far larger
   is no state file. */
#define MAX_STATE_BYTES (64L * 1024L * 1024L)

/* How long start-up waits for room in the loader's queue (more files than
   its length): the loader empties it as it decodes. */
#define LOAD_QUEUE_WAIT_MS 60000

/* logged_error of a session that must not write (FILE could not be read or
   moved aside): the reason is logged once, at start-up. */
#define ERROR_BLOCKED (-1)

struct FlSessionImpl {
  char*    path;     /* FILE */
  char*    tmp_path; /* FILE.tmp */
  char*    dir_path; /* FILE's directory, fsync()ed after a rename */
  FlBank*  bank;
  uint32_t slot_count;
  uint32_t max_voices;
  uint32_t bus_count;

  /* Guarded by lock. The control thread and the loader write the state,
     the writer thread takes snapshots of it; none of them is the RT
     thread, so a mutex and a condition variable are the plain choice. */
  pthread_mutex_t  lock;
  pthread_cond_t   wake; /* on CLOCK_MONOTONIC */
  FlSlotSettings*  settings;
  char**           pending_paths; /* a file read from FILE and not loaded */
  bool*            requested;     /* a client's load or unload came first */
  FlGlobalSettings globals;
  uint64_t         changes; /* changes so far */
  uint64_t         written; /* changes the last write attempt held */
  FlOscPeer        save_peers[MAX_SAVE_PEERS];
  uint32_t         save_count;
  FlOscServer*     server;
  bool             stopping;
  bool             started;
  bool             initialized;  /* lock and wake exist */
  bool             restored;     /* FILE was read */
  char             blocked[640]; /* not "": never write, and this is why */

  /* Entries of FILE's "slots" that this flitzid cannot use, written back
     as they were. Read-only once the writer runs; only it reads them. */
  json_t* kept;

  /* Writer thread only (before it starts: fl_session_new()). */
  pthread_t       thread;
  int             logged_error; /* errno of the failure logged last, or 0 */
  char*           last_text;    /* what FILE holds, as far as we know */
  FlSlotInfo*     info;
  FlSlotSettings* snapshot_settings;
  char**          snapshot_paths;
};

void
fl_global_settings_reset(FlGlobalSettings* globals)
{
  globals->tempo_bpm      = FL_DEFAULT_BPM;
  globals->beats_per_bar  = FL_DEFAULT_BEATS_PER_BAR;
  globals->speed          = 1.0;
  globals->bpmlock        = false;
  globals->master_gain_db = 0.0;
  snprintf(globals->quantize, sizeof(globals->quantize), "off");
}

static int64_t
now_ms(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static bool
settings_are_default(const FlSlotSettings* settings)
{
  const FlSettingInfo* const table = fl_settings_table();
  for (int key = 0; key < FL_KEY_COUNT; ++key) {
    if (settings->value[key] != table[key].initial) {
      return false;
    }
  }
  return true;
}

/* Reading FILE */

/* One setting from FILE: a string for an enum, a whole number for an
   integer key, any number for a number key, in the key's range. */
static bool
read_setting(const FlSession* session,
             FlSettingKey     key,
             const json_t*    value,
             double*          number,
             char*            reason,
             size_t           reason_size)
{
  const FlSettingInfo* const info = &fl_settings_table()[key];
  if (info->type == FL_VALUE_ENUM) {
    char choices[160];
    fl_settings_choices(key, choices, sizeof(choices));
    const char* const text  = json_string_value(value);
    size_t            index = 0U;
    while (text && info->choices[index] && strcmp(info->choices[index], text)) {
      ++index;
    }
    if (!text || !info->choices[index]) {
      snprintf(reason, reason_size, "%s must be %s", info->name, choices);
      return false;
    }
    *number = (double)index;
  } else if (!json_is_number(value)) {
    snprintf(reason, reason_size, "%s must be a number", info->name);
    return false;
  } else {
    *number = json_number_value(value);
    if (info->type == FL_VALUE_INTEGER && *number != floor(*number)) {
      snprintf(reason, reason_size, "%s must be a whole number", info->name);
      return false;
    }
  }
  return fl_settings_check(
    key, *number, session->max_voices, session->bus_count, reason, reason_size);
}

/* A slot's "settings": every key of the table that it names, by name; keys
   it does not name keep their defaults (a file older than the key). */
static void
read_slot_settings(const FlSession* session,
                   uint32_t         slot,
                   const json_t*    object,
                   FlSlotSettings*  settings)
{
  fl_settings_reset(settings);
  if (!json_is_object(object)) {
    if (object) {
      fl_log(FL_LOG_WARNING,
             "state file '%s': slot %u: \"settings\" is not an object; using "
             "the defaults",
             session->path,
             slot);
    }
    return;
  }

  const char* name  = NULL;
  json_t*     value = NULL;
  json_object_foreach((json_t*)object, name, value)
  {
    const FlSettingKey key = fl_settings_find(name);
    char               reason[320];
    double             number = 0.0;
    if (key == FL_KEY_COUNT) {
      fl_log(FL_LOG_WARNING,
             "state file '%s': slot %u: unknown key '%.64s' ignored",
             session->path,
             slot,
             name);
    } else if (!read_setting(
                 session, key, value, &number, reason, sizeof(reason))) {
      fl_log(FL_LOG_WARNING,
             "state file '%s': slot %u: %s; using the default",
             session->path,
             slot,
             reason);
    } else {
      settings->value[key] = number;
    }
  }

  char reason[320];
  if (!fl_settings_check_region(settings, 0.0, reason, sizeof(reason))) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': slot %u: %s; using the whole sample",
           session->path,
           slot,
           reason);
    settings->value[FL_KEY_START] = fl_settings_table()[FL_KEY_START].initial;
    settings->value[FL_KEY_END]   = fl_settings_table()[FL_KEY_END].initial;
  }
}

/* A global number: absent keeps the default; out of range is reported. */
static void
read_global(const FlSession* session,
            const json_t*    root,
            const char*      name,
            double           min,
            double           max,
            bool             whole,
            double*          value)
{
  const json_t* const item = json_object_get(root, name);
  if (!item) {
    return;
  }
  const double number = json_number_value(item);
  if (!json_is_number(item) || !(number >= min && number <= max) ||
      (whole && number != floor(number))) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': %s must be a%s number from %g to %g; using %g",
           session->path,
           name,
           whole ? " whole" : "",
           min,
           max,
           *value);
    return;
  }
  *value = number;
}

static void
read_globals(FlSession* session, const json_t* root)
{
  FlGlobalSettings* const globals       = &session->globals;
  double                  beats_per_bar = (double)globals->beats_per_bar;
  read_global(
    session, root, "tempo", FL_MIN_BPM, FL_MAX_BPM, false, &globals->tempo_bpm);
  read_global(session,
              root,
              "signature",
              1.0,
              (double)FL_MAX_BEATS_PER_BAR,
              true,
              &beats_per_bar);
  globals->beats_per_bar = (uint32_t)beats_per_bar;
  read_global(session, root, "speed", 0.5, 2.0, false, &globals->speed);
  read_global(
    session, root, "master_gain", -60.0, 12.0, false, &globals->master_gain_db);

  const json_t* const bpmlock = json_object_get(root, "bpmlock");
  if (json_is_boolean(bpmlock)) {
    globals->bpmlock = json_is_true(bpmlock);
  } else if (bpmlock) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': bpmlock must be true or false; using false",
           session->path);
  }

  const json_t* const quantize = json_object_get(root, "quantize");
  const char* const   grid     = json_string_value(quantize);
  double              beats    = 0.0;
  if (grid && (!strcmp(grid, "off") || fl_transport_parse_grid(grid, &beats))) {
    snprintf(globals->quantize, sizeof(globals->quantize), "%s", grid);
  } else if (quantize) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': quantize must be off or a grid value (1/64 .. "
           "4); using off",
           session->path);
  }
}

/* One entry of "slots". Returns false if it cannot be used (it is then
   kept as it is). */
static bool
read_slot(FlSession* session, const json_t* entry, const bool* seen)
{
  const json_t* const id   = json_object_get(entry, "slot");
  const json_t* const path = json_object_get(entry, "path");
  const char* const   text = json_string_value(path);
  if (!json_is_integer(id)) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': a slot entry without a slot number is kept as "
           "it is",
           session->path);
    return false;
  }
  const json_int_t slot = json_integer_value(id);
  if (slot < 0 || slot >= (json_int_t)session->slot_count) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': slot %lld is beyond --slots %u; kept in the "
           "file, not restored",
           session->path,
           (long long)slot,
           session->slot_count);
    return false;
  }
  if (seen[slot]) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': slot %lld appears twice; the second entry is "
           "kept in the file, not restored",
           session->path,
           (long long)slot);
    return false;
  }
  if ((path && !text) || (text && (!text[0] || strlen(text) >= PATH_MAX))) {
    fl_log(FL_LOG_WARNING,
           "state file '%s': slot %lld: \"path\" must be a file name; the "
           "entry is kept in the file, not restored",
           session->path,
           (long long)slot);
    return false;
  }

  if (text && !(session->pending_paths[slot] = strdup(text))) {
    return false;
  }
  read_slot_settings(session,
                     (uint32_t)slot,
                     json_object_get(entry, "settings"),
                     &session->settings[slot]);
  return true;
}

/* Take the state out of FILE's JSON. Returns false with a reason if it is
   no session this flitzid reads. */
static bool
read_state(FlSession*    session,
           const json_t* root,
           char*         reason,
           size_t        reason_size)
{
  if (!json_is_object(root)) {
    snprintf(reason, reason_size, "is not a JSON object");
    return false;
  }
  const json_t* const version = json_object_get(root, "version");
  if (!json_is_integer(version)) {
    snprintf(reason, reason_size, "has no \"version\" number");
    return false;
  }
  if (json_integer_value(version) < 1 ||
      json_integer_value(version) > FL_SESSION_VERSION) {
    snprintf(reason,
             reason_size,
             "is version %lld; this flitzid reads version %d",
             (long long)json_integer_value(version),
             FL_SESSION_VERSION);
    return false;
  }
  const json_t* const slots = json_object_get(root, "slots");
  if (slots && !json_is_array(slots)) {
    snprintf(reason, reason_size, "has \"slots\" that is not an array");
    return false;
  }

  read_globals(session, root);
  bool* const seen = (bool*)calloc(session->slot_count, sizeof(bool));
  if (!seen) {
    snprintf(reason, reason_size, "is too large for the memory left");
    return false;
  }
  size_t  index = 0U;
  json_t* entry = NULL;
  json_array_foreach((json_t*)slots, index, entry)
  {
    if (json_is_object(entry) && read_slot(session, entry, seen)) {
      seen[json_integer_value(json_object_get(entry, "slot"))] = true;
    } else {
      if (!json_is_object(entry)) {
        fl_log(FL_LOG_WARNING,
               "state file '%s': slot entry %zu is not an object; kept as it "
               "is",
               session->path,
               index);
      }
      json_array_append(session->kept, entry);
    }
  }
  free(seen);
  return true;
}

/* FILE cannot be used: rename it to FILE.broken-<UTC time>, never to be
   overwritten. If even that fails, the session writes nothing. */
static void
set_aside(FlSession* session, const char* why)
{
  char         stamp[32];
  struct tm    utc;
  const time_t now   = time(NULL);
  const size_t size  = strlen(session->path) + 64U;
  char* const  aside = (char*)malloc(size);
  struct stat  st;
  if (!aside) {
    snprintf(session->blocked,
             sizeof(session->blocked),
             "the state file '%.256s' %.200s and could not be moved aside; it "
             "is not overwritten",
             session->path,
             why);
    fl_log(FL_LOG_ERROR, "%s", session->blocked);
    session->logged_error = ERROR_BLOCKED;
    return;
  }
  gmtime_r(&now, &utc);
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &utc);
  snprintf(aside, size, "%s.broken-%s", session->path, stamp);
  for (unsigned n = 1U; !lstat(aside, &st) && n < 1000U; ++n) {
    snprintf(aside, size, "%s.broken-%s-%u", session->path, stamp, n);
  }

  if (rename(session->path, aside)) {
    snprintf(session->blocked,
             sizeof(session->blocked),
             "the state file '%.256s' %.200s and cannot be moved aside (%s); "
             "it is not overwritten",
             session->path,
             why,
             strerror(errno));
    fl_log(FL_LOG_ERROR,
           "%s: starting with empty slots, and saving nothing",
           session->blocked);
    session->logged_error = ERROR_BLOCKED;
  } else {
    fl_log(FL_LOG_ERROR,
           "the state file '%s' %s; it is kept as '%s' and a new one is "
           "written at the next change; starting with empty slots and the "
           "default settings",
           session->path,
           why,
           aside);
  }
  free(aside);
}

static void
read_file(FlSession* session)
{
  struct stat st;
  if (stat(session->path, &st)) {
    if (errno == ENOENT) {
      fl_log(FL_LOG_INFO,
             "state file '%s' does not exist yet; it is written at the first "
             "change",
             session->path);
    } else {
      snprintf(session->blocked,
               sizeof(session->blocked),
               "cannot read the state file '%.256s': %s; it is not "
               "overwritten",
               session->path,
               strerror(errno));
      fl_log(FL_LOG_ERROR, "%s", session->blocked);
      session->logged_error = ERROR_BLOCKED;
    }
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(session->blocked,
             sizeof(session->blocked),
             "the state file '%.256s' is not a regular file; it is not "
             "overwritten",
             session->path);
    fl_log(FL_LOG_ERROR, "%s", session->blocked);
    session->logged_error = ERROR_BLOCKED;
    return;
  }
  if (st.st_size > MAX_STATE_BYTES) {
    set_aside(session, "is too large to be a state file");
    return;
  }

  json_error_t  error;
  json_t* const root =
    json_load_file(session->path, JSON_REJECT_DUPLICATES, &error);
  char why[400];
  if (!root && json_error_code(&error) == json_error_cannot_open_file) {
    snprintf(session->blocked,
             sizeof(session->blocked),
             "cannot read the state file '%.256s': %.200s; it is not "
             "overwritten",
             session->path,
             error.text);
    fl_log(FL_LOG_ERROR, "%s", session->blocked);
    session->logged_error = ERROR_BLOCKED;
    return;
  }
  if (!root) {
    snprintf(why,
             sizeof(why),
             "cannot be parsed (line %d, column %d: %.200s)",
             error.line,
             error.column,
             error.text);
    set_aside(session, why);
    return;
  }

  char reason[200];
  if (!read_state(session, root, reason, sizeof(reason))) {
    /* Forget what was taken from it: the file is not this session. */
    for (uint32_t slot = 0U; slot < session->slot_count; ++slot) {
      free(session->pending_paths[slot]);
      session->pending_paths[slot] = NULL;
      fl_settings_reset(&session->settings[slot]);
    }
    fl_global_settings_reset(&session->globals);
    json_array_clear(session->kept);
    snprintf(why, sizeof(why), "%s", reason);
    set_aside(session, why);
  } else {
    session->restored = true;
  }
  json_decref(root);
}

/* Writing FILE */

/* The session as JSON: globals, then every slot that holds a file or
   settings other than the defaults, then the entries kept from FILE. NULL
   if any part of it cannot be made (out of memory): a FILE without a slot
   would lose it. */
static json_t*
state_json(const FlSession*        session,
           const FlGlobalSettings* globals,
           const FlSlotSettings*   settings,
           char* const*            paths)
{
  json_t* const root  = json_object();
  json_t* const slots = json_array();
  bool          ok    = root && slots;
  ok                  = ok &&
       !json_object_set_new(root, "version", json_integer(FL_SESSION_VERSION));
  ok = ok && !json_object_set_new(root, "tempo", json_real(globals->tempo_bpm));
  ok = ok &&
       !json_object_set_new(
         root, "signature", json_integer((json_int_t)globals->beats_per_bar));
  ok = ok &&
       !json_object_set_new(root, "quantize", json_string(globals->quantize));
  ok = ok && !json_object_set_new(root, "speed", json_real(globals->speed));
  ok =
    ok && !json_object_set_new(root, "bpmlock", json_boolean(globals->bpmlock));
  ok = ok && !json_object_set_new(
               root, "master_gain", json_real(globals->master_gain_db));

  const FlSettingInfo* const table = fl_settings_table();
  for (uint32_t slot = 0U; ok && slot < session->slot_count; ++slot) {
    if (!paths[slot] && settings_are_default(&settings[slot])) {
      continue;
    }
    json_t* const entry  = json_object();
    json_t* const values = json_object();
    ok                   = entry && values &&
         !json_object_set_new(entry, "slot", json_integer((json_int_t)slot));
    if (ok && paths[slot]) {
      ok = !json_object_set_new(entry, "path", json_string(paths[slot]));
    }
    for (int key = 0; ok && key < FL_KEY_COUNT; ++key) {
      const double value = settings[slot].value[key];
      json_t*      item  = NULL;
      if (table[key].type == FL_VALUE_ENUM) {
        item = json_string(table[key].choices[(int)value]);
      } else if (table[key].type == FL_VALUE_INTEGER) {
        item = json_integer((json_int_t)value);
      } else {
        item = json_real(value);
      }
      ok = !json_object_set_new(values, table[key].name, item);
    }
    if (ok) {
      ok = !json_object_set_new(entry, "settings", values);
    } else {
      json_decref(values);
    }
    ok = ok && !json_array_append(slots, entry);
    json_decref(entry);
  }
  ok = ok && !json_array_extend(slots, session->kept);
  ok = ok && !json_object_set(root, "slots", slots);
  json_decref(slots);
  if (!ok) {
    json_decref(root);
    return NULL;
  }
  return root;
}

static char*
state_text(const FlSession*        session,
           const FlGlobalSettings* globals,
           const FlSlotSettings*   settings,
           char* const*            paths)
{
  json_t* const root = state_json(session, globals, settings, paths);
  if (!root) {
    return NULL;
  }
  /* 17 significant digits: every double reads back as the same double. */
  char* const text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
  json_decref(root);
  return text;
}

/* Write `text` to FILE atomically. Returns 0, or the errno of the step that
   failed, with a reason naming the file and the cause. */
static int
write_atomically(const FlSession* session,
                 const char*      text,
                 char*            reason,
                 size_t           reason_size)
{
  const int fd =
    open(session->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error = errno;
    snprintf(reason,
             reason_size,
             "cannot write '%.256s': %s",
             session->tmp_path,
             strerror(error));
    return error;
  }

  /* The new FILE keeps the old one's permissions (it names the user's
     files; a user who made it private keeps it private). */
  struct stat  st;
  size_t       done  = 0U;
  const size_t size  = strlen(text);
  int          error = 0;
  if (!stat(session->path, &st) && fchmod(fd, st.st_mode & 07777)) {
    error = errno;
  }
  while (done < size && !error) {
    const ssize_t count = write(fd, text + done, size - done);
    if (count >= 0) {
      done += (size_t)count;
    } else if (errno != EINTR) {
      error = errno;
    }
  }
  /* write(2) keeps no buffer of ours: fsync() is the flush to the disk. */
  if (!error && fsync(fd)) {
    error = errno;
  }
  if (close(fd) && !error) {
    error = errno;
  }
  if (error) {
    snprintf(reason,
             reason_size,
             "cannot write '%.256s': %s",
             session->tmp_path,
             strerror(error));
    unlink(session->tmp_path);
    return error;
  }

  if (rename(session->tmp_path, session->path)) {
    error = errno;
    snprintf(reason,
             reason_size,
             "cannot rename '%.256s' to '%.256s': %s",
             session->tmp_path,
             session->path,
             strerror(error));
    unlink(session->tmp_path);
    return error;
  }

  /* The rename is on the disk once the directory is. */
  const int dir = open(session->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0 || (fsync(dir) && errno != EINVAL)) {
    error = errno;
    snprintf(reason,
             reason_size,
             "cannot sync the directory '%.256s': %s",
             session->dir_path,
             strerror(error));
  }
  if (dir >= 0) {
    close(dir);
  }
  return error;
}

/* One write: a snapshot under the lock (held on entry and on return), the
   file outside it. */
static void
write_once(FlSession* session, int64_t* last_start_ms)
{
  const uint64_t         target     = session->changes;
  const uint32_t         save_count = session->save_count;
  FlOscPeer              peers[MAX_SAVE_PEERS];
  const FlGlobalSettings globals = session->globals;
  memcpy(peers, session->save_peers, save_count * sizeof(FlOscPeer));
  session->save_count = 0U;
  memcpy(session->snapshot_settings,
         session->settings,
         session->slot_count * sizeof(FlSlotSettings));
  bool copied = true; /* every path copied (no strdup() failed) */
  for (uint32_t slot = 0U; slot < session->slot_count; ++slot) {
    const char* const pending     = session->pending_paths[slot];
    session->snapshot_paths[slot] = pending ? strdup(pending) : NULL;
    copied = copied && (!pending || session->snapshot_paths[slot]);
  }
  pthread_mutex_unlock(&session->lock);
  *last_start_ms = now_ms();

  /* The file in a slot is the bank's: what the loader published last. */
  for (uint32_t slot = 0U; slot < session->slot_count; ++slot) {
    if (fl_bank_info(session->bank, slot, session->info) &&
        session->info->loaded) {
      free(session->snapshot_paths[slot]);
      session->snapshot_paths[slot] = strdup(session->info->path);
      copied                        = copied && session->snapshot_paths[slot];
    }
  }

  char        reason[640] = "";
  int         error       = 0;
  char* const text        = session->blocked[0] || !copied
                              ? NULL
                              : state_text(session,
                                    &globals,
                                    session->snapshot_settings,
                                    session->snapshot_paths);
  for (uint32_t slot = 0U; slot < session->slot_count; ++slot) {
    free(session->snapshot_paths[slot]);
    session->snapshot_paths[slot] = NULL;
  }

  if (session->blocked[0]) {
    error = ERROR_BLOCKED;
    snprintf(reason, sizeof(reason), "%s", session->blocked);
  } else if (!text) {
    error = ENOMEM;
    snprintf(reason,
             sizeof(reason),
             "cannot write '%.256s': %s",
             session->path,
             strerror(ENOMEM));
  } else if (save_count == 0U && session->logged_error == 0 &&
             session->last_text && !strcmp(text, session->last_text)) {
    /* FILE holds this already (a restored slot loaded, say). */
  } else {
    error = write_atomically(session, text, reason, sizeof(reason));
  }

  if (error && error != session->logged_error) {
    fl_log(FL_LOG_ERROR,
           "%s; the session is kept in memory and written at the next "
           "change",
           reason);
    session->logged_error = error;
  } else if (!error && session->logged_error) {
    fl_log(FL_LOG_INFO, "state file '%s' written again", session->path);
    session->logged_error = 0;
  }
  if (!error && text) {
    free(session->last_text);
    session->last_text = text;
  } else {
    free(text);
  }

  pthread_mutex_lock(&session->lock);
  session->written = target;
  for (uint32_t i = 0U; session->server && i < save_count; ++i) {
    lo_message const message = lo_message_new();
    lo_message_add_string(message, "/save");
    if (error) {
      lo_message_add_string(message, reason);
    }
    fl_osc_post(
      session->server, &peers[i], false, error ? "/fail" : "/done", message);
  }
}

static void*
writer_main(void* data)
{
  FlSession* const session       = (FlSession*)data;
  int64_t          last_start_ms = INT64_MIN / 2;

  pthread_mutex_lock(&session->lock);
  for (;;) {
    const bool pending =
      session->changes != session->written || session->save_count > 0U;
    if (!pending) {
      if (session->stopping) {
        break;
      }
      pthread_cond_wait(&session->wake, &session->lock);
      continue;
    }

    /* Coalesce: changes that come within the interval of the last write
       go into one. /save and the last write at exit do not wait. */
    const int64_t due_ms = last_start_ms + FL_SESSION_WRITE_INTERVAL_MS;
    if (!session->stopping && session->save_count == 0U && now_ms() < due_ms) {
      struct timespec until = { (time_t)(due_ms / 1000),
                                (long)(due_ms % 1000) * 1000000L };
      pthread_cond_timedwait(&session->wake, &session->lock, &until);
      continue;
    }
    write_once(session, &last_start_ms);
  }
  pthread_mutex_unlock(&session->lock);
  return NULL;
}

static void
changed(FlSession* session)
{
  ++session->changes;
  pthread_cond_signal(&session->wake);
}

/* The public functions */

static char*
directory_of(const char* path)
{
  const char* const slash = strrchr(path, '/');
  if (!slash) {
    return strdup(".");
  }
  if (slash == path) {
    return strdup("/");
  }
  return strndup(path, (size_t)(slash - path));
}

FlSession*
fl_session_new(const FlSessionConfig* config)
{
  FlSession* const session = (FlSession*)calloc(1, sizeof(FlSession));
  if (!session) {
    return NULL;
  }

  const uint32_t slots = fl_bank_slot_count(config->bank);
  session->bank        = config->bank;
  session->slot_count  = slots;
  session->max_voices  = config->max_voices;
  session->bus_count   = config->bus_count;
  session->path        = strdup(config->path);
  session->dir_path    = directory_of(config->path);
  session->tmp_path    = (char*)malloc(strlen(config->path) + 5U);
  session->settings    = (FlSlotSettings*)calloc(slots, sizeof(FlSlotSettings));
  session->snapshot_settings =
    (FlSlotSettings*)calloc(slots, sizeof(FlSlotSettings));
  session->pending_paths  = (char**)calloc(slots, sizeof(char*));
  session->requested      = (bool*)calloc(slots, sizeof(bool));
  session->snapshot_paths = (char**)calloc(slots, sizeof(char*));
  session->info           = (FlSlotInfo*)malloc(sizeof(FlSlotInfo));
  session->kept           = json_array();
  if (!session->path || !session->dir_path || !session->tmp_path ||
      !session->settings || !session->snapshot_settings ||
      !session->pending_paths || !session->requested ||
      !session->snapshot_paths || !session->info || !session->kept) {
    fl_session_free(session);
    return NULL;
  }
  snprintf(
    session->tmp_path, strlen(config->path) + 5U, "%s.tmp", config->path);
  for (uint32_t slot = 0U; slot < slots; ++slot) {
    fl_settings_reset(&session->settings[slot]);
  }
  fl_global_settings_reset(&session->globals);

  pthread_condattr_t attributes;
  pthread_condattr_init(&attributes);
  pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
  pthread_cond_init(&session->wake, &attributes);
  pthread_condattr_destroy(&attributes);
  pthread_mutex_init(&session->lock, NULL);
  session->initialized = true;

  read_file(session);

  /* What FILE holds, as this flitzid writes it: restoring it changes
     nothing that needs a write. */
  if (session->restored) {
    session->last_text = state_text(
      session, &session->globals, session->settings, session->pending_paths);
  }
  return session;
}

FlStatus
fl_session_restore(FlSession*        session,
                   FlEngine*         engine,
                   FlSlotSettings*   settings,
                   FlGlobalSettings* globals)
{
  if (!session) {
    return FL_SUCCESS;
  }

  FlStatus status = FL_SUCCESS;
  uint32_t count  = 0U;
  for (uint32_t slot = 0U; slot < session->slot_count; ++slot) {
    settings[slot] = session->settings[slot];
    if (!settings_are_default(&settings[slot])) {
      const FlSlotParams params = fl_settings_params(&settings[slot]);
      if (fl_engine_set_slot(engine, slot, &params)) {
        status = FL_ERR_QUEUE_FULL;
      }
      ++count;
    }
  }

  *globals    = session->globals;
  double grid = 0.0;
  if (strcmp(globals->quantize, "off")) {
    fl_transport_parse_grid(globals->quantize, &grid);
  }
  if (fl_engine_set_tempo(engine, globals->tempo_bpm) ||
      fl_engine_set_signature(engine, globals->beats_per_bar) ||
      fl_engine_set_quantize(engine, grid) ||
      fl_engine_set_speed(engine, globals->speed) ||
      fl_engine_set_bpmlock(engine, globals->bpmlock) ||
      fl_engine_set_master_gain(
        engine, fl_settings_db_to_gain(globals->master_gain_db))) {
    status = FL_ERR_QUEUE_FULL;
  }
  if (status) {
    fl_log(FL_LOG_ERROR,
           "state file '%s': the engine's queue is full; some settings are "
           "not restored",
           session->path);
  }
  if (!session->restored) {
    return status;
  }
  fl_log(FL_LOG_INFO,
         "state file '%s': %g BPM, %u beats per bar, quantize %s, speed %g, "
         "bpmlock %s, master %g dB, settings of %u slots",
         session->path,
         globals->tempo_bpm,
         globals->beats_per_bar,
         globals->quantize,
         globals->speed,
         globals->bpmlock ? "on" : "off",
         globals->master_gain_db,
         count);
  return status;
}

void
fl_session_load_files(FlSession* session, FlLoader* loader)
{
  if (!session) {
    return;
  }

  /* No requester: the result goes to the log and to subscribers. */
  const FlOscPeer nobody = { .address_size = 0U, .connection = -1 };
  uint32_t        queued = 0U;
  for (uint32_t slot = 0U; slot < session->slot_count; ++slot) {
    pthread_mutex_lock(&session->lock);
    char* const path = session->pending_paths[slot] && !session->requested[slot]
                         ? strdup(session->pending_paths[slot])
                         : NULL;
    pthread_mutex_unlock(&session->lock);
    if (!path) {
      continue;
    }

    FlStatus      status   = FL_SUCCESS;
    const int64_t deadline = now_ms() + LOAD_QUEUE_WAIT_MS;
    while (
      (status = fl_loader_load(loader, slot, path, &nobody, sizeof(nobody))) ==
        FL_ERR_QUEUE_FULL &&
      now_ms() < deadline) {
      const struct timespec pause = { 0, 1000000L };
      nanosleep(&pause, NULL);
    }
    if (status) {
      fl_log(FL_LOG_ERROR,
             "state file '%s': cannot queue the load of slot %u ('%s'): %s",
             session->path,
             slot,
             path,
             fl_strerror(status));
    } else {
      ++queued;
    }
    free(path);
  }
  if (queued) {
    fl_log(
      FL_LOG_INFO, "state file '%s': loading %u files", session->path, queued);
  }
}

FlStatus
fl_session_start(FlSession* session, FlOscServer* server)
{
  if (!session) {
    return FL_SUCCESS;
  }
  pthread_mutex_lock(&session->lock);
  session->server = server;
  pthread_mutex_unlock(&session->lock);
  if (pthread_create(&session->thread, NULL, writer_main, session)) {
    return FL_ERR_NO_MEMORY;
  }
  pthread_setname_np(session->thread, "flitzi-session");
  session->started = true;
  return FL_SUCCESS;
}

void
fl_session_detach(FlSession* session)
{
  if (session) {
    pthread_mutex_lock(&session->lock);
    session->server = NULL;
    pthread_mutex_unlock(&session->lock);
  }
}

void
fl_session_free(FlSession* session)
{
  if (!session) {
    return;
  }
  if (session->started) {
    pthread_mutex_lock(&session->lock);
    session->stopping = true;
    session->server   = NULL;
    pthread_cond_signal(&session->wake);
    pthread_mutex_unlock(&session->lock);
    pthread_join(session->thread, NULL);
  }
  if (session->initialized) {
    pthread_cond_destroy(&session->wake);
    pthread_mutex_destroy(&session->lock);
  }
  for (uint32_t slot = 0U; session->pending_paths && slot < session->slot_count;
       ++slot) {
    free(session->pending_paths[slot]);
  }
  json_decref(session->kept);
  free(session->last_text);
  free(session->snapshot_paths);
  free(session->pending_paths);
  free(session->requested);
  free(session->snapshot_settings);
  free(session->settings);
  free(session->info);
  free(session->tmp_path);
  free(session->dir_path);
  free(session->path);
  free(session);
}

void
fl_session_set_slot(FlSession*            session,
                    uint32_t              slot,
                    const FlSlotSettings* settings)
{
  if (!session || slot >= session->slot_count) {
    return;
  }
  pthread_mutex_lock(&session->lock);
  session->settings[slot] = *settings;
  changed(session);
  pthread_mutex_unlock(&session->lock);
}

void
fl_session_set_globals(FlSession* session, const FlGlobalSettings* globals)
{
  if (!session) {
    return;
  }
  pthread_mutex_lock(&session->lock);
  session->globals = *globals;
  changed(session);
  pthread_mutex_unlock(&session->lock);
}

void
fl_session_slot_requested(FlSession* session, uint32_t slot)
{
  if (session && slot < session->slot_count) {
    pthread_mutex_lock(&session->lock);
    session->requested[slot] = true;
    pthread_mutex_unlock(&session->lock);
  }
}

void
fl_session_slot_done(FlSession* session, const FlLoadResult* result)
{
  const bool loaded = result->type == FL_REQUEST_LOAD && !result->status;
  if (!session || result->slot >= session->slot_count ||
      !(loaded || result->type == FL_REQUEST_UNLOAD)) {
    return; /* the slot holds what it held */
  }
  /* A load put a file in the slot, or an unload emptied it (or found it
     empty): a file that could not be restored is forgotten either way. */
  pthread_mutex_lock(&session->lock);
  free(session->pending_paths[result->slot]);
  session->pending_paths[result->slot] = NULL;
  changed(session);
  pthread_mutex_unlock(&session->lock);
}

FlStatus
fl_session_save(FlSession* session, const FlOscPeer* peer)
{
  if (!session) {
    return FL_ERR_BAD_ARGUMENT;
  }
  FlStatus status = FL_SUCCESS;
  pthread_mutex_lock(&session->lock);
  if (session->save_count == MAX_SAVE_PEERS) {
    status = FL_ERR_QUEUE_FULL;
  } else {
    session->save_peers[session->save_count++] = *peer;
    pthread_cond_signal(&session->wake);
  }
  pthread_mutex_unlock(&session->lock);
  return status;
}
