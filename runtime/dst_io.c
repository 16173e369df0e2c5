/* dst_io.c: read-only file mapping shared by the file readers.
 *
 * Readers map whole files rather than reading them so that opening a
 * multi-gigabyte checkpoint costs no copy and no memory beyond the page
 * cache; the bytes are then validated in place. Only regular files are
 * accepted, so a directory or FIFO gives a clear message rather than a
 * confusing read error later. Mapped files are read once, at load; the
 * training data, read for the whole run (and so exposed to being
 * truncated by another process, which turns a touch of the mapping into
 * SIGBUS), is read with pread instead (dst_data.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dst_internal.h"

bool dst_map_file(const char *path, DstMap *m, char *err, size_t errlen) {
  m->data = NULL;
  m->len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: not a regular file", path);
    close(fd);
    return false;
  }
  if ((uint64_t)st.st_size > SIZE_MAX) {
    snprintf(err, errlen, "%s: file too large to map", path);
    close(fd);
    return false;
  }
  size_t len = (size_t)st.st_size;
  if (len > 0) {
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      snprintf(err, errlen, "%s: cannot map: %s", path, strerror(errno));
      close(fd);
      return false;
    }
    m->data = p;
  }
  m->len = len;
  close(fd); /* the mapping stays valid without the descriptor */
  return true;
}

void dst_unmap_file(DstMap *m) {
  if (m->data) munmap((void *)m->data, m->len);
  m->data = NULL;
  m->len = 0;
}
