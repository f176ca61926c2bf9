#include <flitzi/status.h>

const char*
fl_strerror(FlStatus status)
{
  switch (status) {
    case FL_SUCCESS:
      return "Success";
    case FL_ERR_NO_MEMORY:
      return "Out of memory";
    case FL_ERR_BAD_SLOT:
      return "Slot number out of range";
    case FL_ERR_EMPTY_SLOT:
      return "Slot is empty";
    case FL_ERR_BAD_VELOCITY:
      return "Velocity is not a number in [0, 1]";
    case FL_ERR_QUEUE_FULL:
      return "Queue full";
    case FL_ERR_OPEN:
      return "Cannot open file";
    case FL_ERR_FORMAT:
      return "Unknown or unsupported file format";
    case FL_ERR_CHANNELS:
      return "Unsupported channel layout (mono and stereo are supported)";
    case FL_ERR_TOO_LONG:
      return "File is longer than the allowed sample length";
    case FL_ERR_EMPTY_FILE:
      return "File holds no audio frames";
    case FL_ERR_READ:
      return "Error while reading or decoding file";
    case FL_ERR_RESAMPLE:
      return "Resampling failed";
    case FL_ERR_NOT_ALLOWED:
      return "Path is outside the sample root";
    case FL_ERR_BAD_ARGUMENT:
      return "Argument out of range";
  }
  return "Unknown error";
}
