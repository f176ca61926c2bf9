/*
  Definitions shared by every flitzi module.
*/
#ifndef FLITZI_COMMON_H
#define FLITZI_COMMON_H

/**
   Marks a function that runs in the JACK process thread.

   Such a function never allocates, frees, locks, logs, does I/O or waits.
   The marker expands to nothing; it is there for readers and for the
   `rt-symbols` test, which checks the objects that hold these functions for
   calls into the allocator, stdio, locks and sleeps.
*/
#define FL_REALTIME

/** Default and largest number of sample slots. */
#define FL_DEFAULT_SLOTS 32U
#define FL_MAX_SLOTS 1024U

/** Default and largest number of voices that sound at once. */
#define FL_DEFAULT_VOICES 32U
#define FL_MAX_VOICES 1024U

/** Channels of one output bus (mono or stereo), buses, and output ports. */
#define FL_MAX_CHANNELS 2U
#define FL_MAX_BUSES 8U
#define FL_MAX_OUTPUTS (FL_MAX_CHANNELS * FL_MAX_BUSES)

/** Fade applied to a stolen voice, and to voices that are stopped. */
#define FL_STEAL_FADE_MS 2.0
#define FL_STOP_FADE_MS 5.0

/** Ramp of a slot's or the master's gain when it changes while sounding. */
#define FL_GAIN_RAMP_MS 10.0

/** Fade of a pause, a resume, and each side of a seek's crossfade. */
#define FL_PAUSE_FADE_MS 5.0

/** Largest seam crossfade of a loop. */
#define FL_MAX_XFADE_MS 50.0

/** Fastest meter rate, snapshots a second. */
#define FL_MAX_METER_HZ 60U

/** Frames the RT thread renders at a time; longer periods are split. */
#define FL_BLOCK_FRAMES 1024U

#endif /* FLITZI_COMMON_H */
