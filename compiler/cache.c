/* cache.c: the program cache of `dstc run`.
 *
 * A built program is kept as DIR/<name>-<key>, where the key hashes the
 * generated source and everything it is built with (build_hash_inputs), so
 * an unchanged model is not rebuilt. Next to it, <name>-<key>.sum holds the
 * hash of the program's bytes, taken when it was built. Before a cached
 * program runs, its bytes are hashed again: a program without its sum, or
 * that does not match it (cut short by a full disk, an interrupted copy,
 * damaged storage), is rebuilt, never run. An entry is written under a
 * temporary name, synced and renamed into place, the program first and its
 * sum last, so a crash at any point leaves a complete entry or one that
 * fails verification. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dstc.h"

bool cache_hash_file(const char *path, uint64_t *out) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  uint64_t h = *out;
  static unsigned char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      errno = e;
      return false;
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ull;
  }
  close(fd);
  *out = h;
  return true;
}

static bool sync_fd_path(const char *path, int flags) {
  int fd = open(path, flags);
  if (fd < 0) return false;
  bool ok = fsync(fd) == 0;
  close(fd);
  return ok;
}

CacheState cache_check(const char *program, char *why, size_t whysz) {
  if (access(program, F_OK) != 0) return CACHE_MISSING;
  char sumpath[4200];
  snprintf(sumpath, sizeof sumpath, "%s.sum", program);
  FILE *f = fopen(sumpath, "r");
  unsigned long long want = 0;
  bool have = f && fscanf(f, "%16llx", &want) == 1;
  if (f) fclose(f);
  if (!have) {
    snprintf(why, whysz, "its checksum file %s is missing or unreadable", sumpath);
    return CACHE_DAMAGED;
  }
  uint64_t got = CACHE_HASH_INIT;
  if (!cache_hash_file(program, &got)) {
    snprintf(why, whysz, "it cannot be read: %s", strerror(errno));
    return CACHE_DAMAGED;
  }
  if (got != (uint64_t)want) {
    snprintf(why, whysz, "its bytes hash to %016" PRIx64 ", not to the %016llx recorded when it was built", got,
             want);
    return CACHE_DAMAGED;
  }
  return CACHE_OK;
}

bool cache_store(const char *built, const char *program, char *why, size_t whysz) {
  uint64_t h = CACHE_HASH_INIT;
  if (!cache_hash_file(built, &h) || !sync_fd_path(built, O_RDONLY)) {
    snprintf(why, whysz, "%s: %s", built, strerror(errno));
    return false;
  }
  char sumpath[4200], tmp[4300];
  snprintf(sumpath, sizeof sumpath, "%s.sum", program);
  snprintf(tmp, sizeof tmp, "%s.tmp-%d", sumpath, (int)getpid());
  unlink(sumpath); /* an old sum must never vouch for the new program */
  if (rename(built, program) != 0) {
    snprintf(why, whysz, "cannot move %s to %s: %s", built, program, strerror(errno));
    return false;
  }
  FILE *f = fopen(tmp, "w");
  bool ok = f && fprintf(f, "%016" PRIx64 "\n", h) > 0;
  ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
  int e = errno;
  if (f && fclose(f) != 0 && ok) {
    ok = false;
    e = errno;
  }
  if (ok && rename(tmp, sumpath) != 0) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    unlink(tmp);
    snprintf(why, whysz, "cannot write %s: %s", sumpath, strerror(e));
    return false;
  }
  /* the directory entries, so both names survive a crash */
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", program);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = 0;
    sync_fd_path(*dir ? dir : "/", O_RDONLY | O_DIRECTORY);
  }
  return true;
}
