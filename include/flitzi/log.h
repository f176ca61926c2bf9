/*
  Log lines on stderr, for non-RT threads only.

  The RT thread never logs: it counts, and a non-RT thread reports the counts.
*/
#ifndef FLITZI_LOG_H
#define FLITZI_LOG_H

typedef enum {
  FL_LOG_ERROR = 0,
  FL_LOG_WARNING,
  FL_LOG_INFO,
  FL_LOG_DEBUG,
} FlLogLevel;

/** Set the most detailed level that is printed (FL_LOG_INFO by default). */
void fl_log_set_level(FlLogLevel level);

/** Print one line: "flitzid: warning: <message>". Any non-RT thread. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void
fl_log(FlLogLevel level, const char* format, ...);

#endif /* FLITZI_LOG_H */
