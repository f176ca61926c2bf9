#include <flitzi/settings.h>

#include <flitzi/transport.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char* const mode_choices[] = { "oneshot", "loop", NULL };

/* global and off, then the grid values of the contract (§3). */
static const char* const quantize_choices[] = { "global", "off", "1/64", "1/32",
                                                "1/16",   "1/8", "1/4",  "1/2",
                                                "1",      "2",   "4",    NULL };

/* The order is /slot/get's: the contract's table (OSC API v2, §1). */
static const FlSettingInfo table[FL_KEY_COUNT] = {
  { "mode", FL_VALUE_ENUM, 0.0, 1.0, 0.0, "", mode_choices },
  { "start", FL_VALUE_NUMBER, 0.0, 86400.0, 0.0, "s", NULL },
  { "end", FL_VALUE_NUMBER, 0.0, 86400.0, 0.0, "s", NULL },
  { "xfade", FL_VALUE_NUMBER, 0.0, FL_MAX_XFADE_MS, 0.0, "ms", NULL },
  { "gain", FL_VALUE_NUMBER, -60.0, 12.0, 0.0, "dB", NULL },
  { "pan", FL_VALUE_NUMBER, -1.0, 1.0, 0.0, "", NULL },
  { "rate", FL_VALUE_NUMBER, 0.25, 4.0, 1.0, "", NULL },
  { "bpm", FL_VALUE_NUMBER, 20.0, 300.0, 0.0, "BPM", NULL },
  { "keylock", FL_VALUE_INTEGER, 0.0, 1.0, 0.0, "", NULL },
  { "voices", FL_VALUE_INTEGER, 0.0, FL_MAX_VOICES, 0.0, "", NULL },
  { "group", FL_VALUE_INTEGER, 0.0, 64.0, 0.0, "", NULL },
  { "quantize", FL_VALUE_ENUM, 0.0, 10.0, 0.0, "", quantize_choices },
  { "hold", FL_VALUE_INTEGER, 0.0, 1.0, 0.0, "", NULL },
  { "eq_low", FL_VALUE_NUMBER, -60.0, 6.0, 0.0, "dB", NULL },
  { "eq_mid", FL_VALUE_NUMBER, -60.0, 6.0, 0.0, "dB", NULL },
  { "eq_high", FL_VALUE_NUMBER, -60.0, 6.0, 0.0, "dB", NULL },
  { "bus", FL_VALUE_INTEGER, 0.0, FL_MAX_BUSES - 1U, 0.0, "", NULL },
};

const FlSettingInfo*
fl_settings_table(void)
{
  return table;
}

void
fl_settings_choices(FlSettingKey key, char* text, size_t text_size)
{
  const char* const* const choices = table[key].choices;
  size_t                   used    = 0U;
  text[0]                          = '\0';
  for (size_t i = 0U; choices && choices[i] && used < text_size; ++i) {
    const char* const separator = i == 0U           ? ""
                                  : choices[i + 1U] ? ", "
                                                    : " or ";
    used += (size_t)snprintf(
      text + used, text_size - used, "%s%s", separator, choices[i]);
  }
}

FlSettingKey
fl_settings_find(const char* name)
{
  for (int key = 0; key < FL_KEY_COUNT; ++key) {
    if (!strcmp(table[key].name, name)) {
      return (FlSettingKey)key;
    }
  }
  return FL_KEY_COUNT;
}

void
fl_settings_reset(FlSlotSettings* settings)
{
  for (int key = 0; key < FL_KEY_COUNT; ++key) {
    settings->value[key] = table[key].initial;
  }
}

bool
fl_settings_check(FlSettingKey key,
                  double       value,
                  uint32_t     max_voices,
                  uint32_t     bus_count,
                  char*        reason,
                  size_t       reason_size)
{
  const FlSettingInfo* const info = &table[key];
  const double               max  = key == FL_KEY_VOICES ? (double)max_voices
                                    : key == FL_KEY_BUS ? (double)bus_count - 1.0
                                                        : info->max;
  if (isfinite(value) && value >= info->min && value <= max) {
    return true;
  }
  if (key == FL_KEY_BPM && value == 0.0) {
    return true; /* 0: the slot has no tempo of its own */
  }
  if (key == FL_KEY_BPM) {
    snprintf(reason,
             reason_size,
             "bpm must be 0 (none) or a number from 20 to 300 BPM (got %g)",
             value);
    return false;
  }

  if (info->type == FL_VALUE_ENUM) {
    char choices[160];
    fl_settings_choices(key, choices, sizeof(choices));
    snprintf(reason, reason_size, "%s must be %s", info->name, choices);
  } else if (info->type == FL_VALUE_INTEGER) {
    snprintf(reason,
             reason_size,
             "%s must be a whole number from %g to %g (got %g)",
             info->name,
             info->min,
             max,
             value);
  } else {
    snprintf(reason,
             reason_size,
             "%s must be a number from %g to %g%s%s (got %g)",
             info->name,
             info->min,
             max,
             info->unit[0] ? " " : "",
             info->unit,
             value);
  }
  return false;
}

bool
fl_settings_check_region(const FlSlotSettings* settings,
                         double                length_seconds,
                         char*                 reason,
                         size_t                reason_size)
{
  const double start = settings->value[FL_KEY_START];
  const double end   = settings->value[FL_KEY_END];
  if (end > 0.0 && start >= end) {
    snprintf(reason,
             reason_size,
             "start (%g s) must be before end (%g s)",
             start,
             end);
    return false;
  }
  if (length_seconds > 0.0 && start >= length_seconds) {
    snprintf(reason,
             reason_size,
             "start (%g s) must be before the end of the sample (%g s)",
             start,
             length_seconds);
    return false;
  }
  /* A float32 seconds value of the exact length may round up a little. */
  if (length_seconds > 0.0 && end > length_seconds * (1.0 + 1e-7)) {
    snprintf(reason,
             reason_size,
             "end (%g s) is beyond the end of the sample (%g s)",
             end,
             length_seconds);
    return false;
  }
  return true;
}

float
fl_settings_db_to_gain(double decibels)
{
  return decibels <= -60.0 ? 0.0f : (float)pow(10.0, decibels / 20.0);
}

FlSlotParams
fl_settings_params(const FlSlotSettings* settings)
{
  const double* const value = settings->value;
  const float         gain  = fl_settings_db_to_gain(value[FL_KEY_GAIN]);
  const double        pan   = value[FL_KEY_PAN];
  FlSlotParams        params;
  params.mode = value[FL_KEY_MODE] > 0.5 ? FL_MODE_LOOP : FL_MODE_ONESHOT;
  params.voice_limit   = (uint32_t)value[FL_KEY_VOICES];
  params.group         = (uint32_t)value[FL_KEY_GROUP];
  params.xfade_ms      = (float)value[FL_KEY_XFADE];
  params.start_seconds = value[FL_KEY_START];
  params.end_seconds   = value[FL_KEY_END];
  /* Balance: the side panned away from is turned down, the other stays. */
  params.gain_left  = gain * (float)(pan > 0.0 ? 1.0 - pan : 1.0);
  params.gain_right = gain * (float)(pan < 0.0 ? 1.0 + pan : 1.0);

  const int quantize   = (int)value[FL_KEY_QUANTIZE];
  params.reserved      = 0U;
  params.quantize_grid = 0.0;
  params.quantize      = quantize == 0   ? FL_QUANTIZE_GLOBAL
                         : quantize == 1 ? FL_QUANTIZE_OFF
                                         : FL_QUANTIZE_GRID;
  if (quantize >= 2) {
    fl_transport_parse_grid(quantize_choices[quantize], &params.quantize_grid);
  }
  params.rate    = (float)value[FL_KEY_RATE];
  params.bpm     = (float)value[FL_KEY_BPM];
  params.keylock = value[FL_KEY_KEYLOCK] > 0.5 ? 1U : 0U;
  params.eq_low  = fl_settings_db_to_gain(value[FL_KEY_EQ_LOW]);
  params.eq_mid  = fl_settings_db_to_gain(value[FL_KEY_EQ_MID]);
  params.eq_high = fl_settings_db_to_gain(value[FL_KEY_EQ_HIGH]);
  params.bus     = (uint32_t)value[FL_KEY_BUS];
  params.hold    = value[FL_KEY_HOLD] > 0.5 ? 1U : 0U;
  return params;
}
