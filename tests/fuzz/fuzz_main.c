/*
  Runs the fuzz target over files, without libFuzzer: the kept inputs in
  tests/fuzz/corpus/ (seeds, and every input that ever crashed it) become a
  unit test that any compiler builds.

  Usage: fuzz_main FILE_OR_DIRECTORY...
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static int
run_file(const char* path)
{
  FILE* const file = fopen(path, "rb");
  if (!file) {
    perror(path);
    return 1;
  }
  uint8_t* const data = (uint8_t*)malloc(1U << 20U);
  const size_t   size = fread(data, 1U, 1U << 20U, file);
  fclose(file);
  LLVMFuzzerTestOneInput(data, size);
  free(data);
  return 0;
}

int
main(int argc, char** argv)
{
  int failures = 0;
  int count    = 0;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (stat(argv[i], &st)) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      failures += run_file(argv[i]);
      ++count;
      continue;
    }
    DIR* const dir = opendir(argv[i]);
    for (struct dirent* entry; dir && (entry = readdir(dir));) {
      if (entry->d_name[0] != '.') {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[i], entry->d_name);
        failures += run_file(path);
        ++count;
      }
    }
    if (dir) {
      closedir(dir);
    }
  }
  printf("%d inputs run, %d unreadable\n", count, failures);
  return failures ? 1 : 0;
}
