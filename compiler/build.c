/* build.c: turning emitted C into a program.
 *
 * The generated source is compiled with the system C compiler and linked
 * against libdst (runtime) and the CPU kernels, whose paths are fixed when
 * dstc itself is built. Environment overrides: DST_CC (compiler),
 * DST_CFLAGS (extra flags). The compiler runs without a shell, so paths with
 * spaces or quotes are safe. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dstc.h"

#ifndef DST_RUNTIME_INCLUDE
#define DST_RUNTIME_INCLUDE "runtime"
#define DST_KERNELS_INCLUDE "kernels/cpu"
#define DST_RUNTIME_LIB "libdst_runtime.a"
#define DST_KERNELS_LIB "libdst_kernels_cpu.a"
#define DST_BLAS_LIB "-lopenblas"
#define DST_EXTRA_CFLAGS ""
#define DST_MPI_LIBS ""
#endif

int build_mkdirs(const char *dir) {
  char buf[4096];
  size_t n = strlen(dir);
  if (n >= sizeof buf) return -1;
  memcpy(buf, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0) continue;
    char c = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    buf[i] = c;
  }
  return 0;
}

/* Splits a flag string on spaces into argv (no quoting: these are flags). */
static int split_flags(char *s, const char **argv, int max) {
  int n = 0;
  for (char *t = strtok(s, " \t"); t && n < max; t = strtok(NULL, " \t")) argv[n++] = t;
  return n;
}

bool build_compile(const char *src, const char *exe, bool verbose) {
  const char *cc = getenv("DST_CC");
  if (!cc || !*cc) cc = "cc";
  const char *argv[96];
  int n = 0;
  argv[n++] = cc;
  argv[n++] = "-std=c11";
  argv[n++] = "-O3";
  argv[n++] = "-march=native";
  argv[n++] = "-fopenmp";
  argv[n++] = "-fno-math-errno";
  argv[n++] = "-w"; /* generated code: warnings are ours to fix, not the user's */
  char extra[1024], user[1024];
  snprintf(extra, sizeof extra, "%s", DST_EXTRA_CFLAGS);
  n += split_flags(extra, argv + n, 16);
  const char *uf = getenv("DST_CFLAGS");
  snprintf(user, sizeof user, "%s", uf ? uf : "");
  n += split_flags(user, argv + n, 16);
  argv[n++] = "-I" DST_RUNTIME_INCLUDE;
  argv[n++] = "-I" DST_KERNELS_INCLUDE;
  argv[n++] = src;
  argv[n++] = "-o";
  argv[n++] = exe;
  argv[n++] = DST_RUNTIME_LIB;
  argv[n++] = DST_KERNELS_LIB;
  argv[n++] = DST_BLAS_LIB;
  if (*DST_MPI_LIBS) argv[n++] = DST_MPI_LIBS; /* the runtime's collective layer */
  argv[n++] = "-lm";
  argv[n] = NULL;
  if (verbose) {
    for (int i = 0; i < n; i++) fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
    fputc('\n', stderr);
  }
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execvp(cc, (char *const *)argv);
    fprintf(stderr, "dstc: cannot run the C compiler '%s': %s\n", cc, strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Mixes into h what else determines a built program: the libraries' sizes
 * and modification times, the compiler and the extra flags. */
uint64_t build_hash_inputs(uint64_t h) {
  const char *parts[] = {DST_RUNTIME_LIB, DST_KERNELS_LIB, DST_EXTRA_CFLAGS, getenv("DST_CC"), getenv("DST_CFLAGS")};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    const char *s = parts[i] ? parts[i] : "";
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    struct stat st;
    if (i < 2 && stat(parts[i], &st) == 0) {
      uint64_t v[3] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
      for (int k = 0; k < 3; k++) h = (h ^ v[k]) * 1099511628211ull;
    }
  }
  return h;
}
