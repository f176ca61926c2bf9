#include <flitzi/log.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static atomic_int log_level = FL_LOG_INFO;

void
fl_log_set_level(FlLogLevel level)
{
  atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

void
fl_log(FlLogLevel level, const char* format, ...)
{
  if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed)) {
    return;
  }

  static const char* const prefixes[] = {
    "error: ", "warning: ", "", "debug: "
  };

  /* One fprintf of a formatted line, so lines of two threads do not mix. */
  char    line[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  fprintf(stderr, "flitzid: %s%s\n", prefixes[level], line);
}
