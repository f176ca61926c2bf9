/*
  Status codes returned by flitzi functions.
*/
#ifndef FLITZI_STATUS_H
#define FLITZI_STATUS_H

typedef enum {
  FL_SUCCESS = 0,      /**< Success */
  FL_ERR_NO_MEMORY,    /**< An allocation failed */
  FL_ERR_BAD_SLOT,     /**< Slot number out of range */
  FL_ERR_EMPTY_SLOT,   /**< The slot holds no sample */
  FL_ERR_BAD_VELOCITY, /**< Velocity is not a number in [0, 1] */
  FL_ERR_QUEUE_FULL,   /**< A message queue was full; the message was dropped */
  FL_ERR_OPEN,         /**< A file could not be opened */
  FL_ERR_FORMAT,       /**< A file is not in a format that can be decoded */
  FL_ERR_CHANNELS,     /**< A file has a channel count that is not supported */
  FL_ERR_TOO_LONG,     /**< A file is longer than the configured limit */
  FL_ERR_EMPTY_FILE,   /**< A file holds no audio frames */
  FL_ERR_READ,         /**< Reading or decoding a file failed */
  FL_ERR_RESAMPLE,     /**< Resampling failed */
  FL_ERR_NOT_ALLOWED,  /**< A path is outside the sample root */
  FL_ERR_BAD_ARGUMENT, /**< An argument is out of range */
} FlStatus;

/**
   Return a one-sentence description of `status`.

   The string is static. Any thread may call this.
*/
const char* fl_strerror(FlStatus status);

#endif /* FLITZI_STATUS_H */
