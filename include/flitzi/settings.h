/*
  Slot settings (OSC API v2, §1): the one table of keys that /slot/set
  validates against, /slot/get reports in order, `flitzid --list-osc`
  prints and the schema test compares with osc-schema/.

  A slot's settings are kept as the user gave them (dB, balance, seconds)
  by the control thread; fl_settings_params() turns them into what the
  engine uses. Every function here is pure: no thread owns the table.
*/
#ifndef FLITZI_SETTINGS_H
#define FLITZI_SETTINGS_H

#include <flitzi/engine.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  FL_KEY_MODE = 0,
  FL_KEY_START,
  FL_KEY_END,
  FL_KEY_XFADE,
  FL_KEY_GAIN,
  FL_KEY_PAN,
  FL_KEY_RATE,
  FL_KEY_BPM,
  FL_KEY_KEYLOCK,
  FL_KEY_VOICES,
  FL_KEY_GROUP,
  FL_KEY_QUANTIZE,
  FL_KEY_HOLD,
  FL_KEY_EQ_LOW,
  FL_KEY_EQ_MID,
  FL_KEY_EQ_HIGH,
  FL_KEY_BUS,
  FL_KEY_COUNT
} FlSettingKey;

/** How a key's value is written on the wire. */
typedef enum {
  FL_VALUE_ENUM,    /**< A string, one of `choices` ('s') */
  FL_VALUE_NUMBER,  /**< A number: float32, float64 or int32 ('f') */
  FL_VALUE_INTEGER, /**< An int32 ('i') */
} FlValueType;

typedef struct {
  const char*        name;
  FlValueType        type;
  double             min;     /**< Range, inclusive, for numbers */
  double             max;     /**< For FL_KEY_VOICES: the daemon's --voices */
  double             initial; /**< Default; an enum's index */
  const char*        unit;    /**< For error texts and docs: "s", "dB", "" */
  const char* const* choices; /**< FL_VALUE_ENUM: NULL-terminated */
} FlSettingInfo;

/** A slot's settings, indexed by FlSettingKey (fl_settings_reset() sets the
    defaults). */
typedef struct {
  double value[FL_KEY_COUNT];
} FlSlotSettings;

/** Return the table, FL_KEY_COUNT entries in /slot/get order. */
const FlSettingInfo* fl_settings_table(void);

/** Write an enum key's choices as "a, b or c" into `text`. */
void fl_settings_choices(FlSettingKey key, char* text, size_t text_size);

/** Return the key called `name`, or FL_KEY_COUNT. */
FlSettingKey fl_settings_find(const char* name);

/** Set every value to its default. */
void fl_settings_reset(FlSlotSettings* settings);

/**
   Check `value` for `key` (already read from the wire: a number, or for an
   enum the index of its string), with `max_voices` as the top of the voices
   range and `bus_count` - 1 as the top of the bus range (the daemon's
   --voices and --buses);
   range. On failure writes a reason that names the key and its range into
   `reason` and returns false.
*/
bool fl_settings_check(FlSettingKey key,
                       double       value,
                       uint32_t     max_voices,
                       uint32_t     bus_count,
                       char*        reason,
                       size_t       reason_size);

/**
   Check what only the whole set can tell: start < end, and with a sample
   loaded (`length_seconds` > 0) start < length and end <= length. Writes a
   reason and returns false on failure.
*/
bool fl_settings_check_region(const FlSlotSettings* settings,
                              double                length_seconds,
                              char*                 reason,
                              size_t                reason_size);

/** The engine's form of `settings`: linear gains, balance applied. */
FlSlotParams fl_settings_params(const FlSlotSettings* settings);

/** A gain in dB as a linear factor; -60 dB (the bottom) is silence. */
float fl_settings_db_to_gain(double decibels);

#endif /* FLITZI_SETTINGS_H */
