/* build.c: turning emitted C (or CUDA) into a program.
 *
 * The generated source is compiled with the system C compiler and linked
 * against libdst (runtime) and the CPU kernels, whose paths are fixed when
 * dstc itself is built. A CUDA source (.cu) is compiled by nvcc (found, with
 * the GPU architectures, when dst is configured) into an object that the C
 * compiler links as above, plus the CUDA kernels, the CUDA runtime side
 * (dst_runtime_cuda, where it was built), cudart and cuBLAS(Lt).
 * Environment overrides: DST_CC (C compiler and linker), DST_CFLAGS (extra
 * flags), DST_NVCC and DST_NVCCFLAGS (the same for nvcc). Tools run
 * without a shell, so paths with spaces or quotes are safe, except in the
 * '|'-separated lists of CUDA link items. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
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
/* Without DST_NVCC (no CUDA compiler at configure time) the CUDA backend is
 * off; the rest are set with it by compiler/CMakeLists.txt. */
#ifndef DST_NVCC
#define DST_NVCC ""
#define DST_NVCC_FLAGS ""
#define DST_CUDA_INCLUDE ""
#define DST_RUNTIME_CUDA_LIB ""
#define DST_KERNELS_CUDA_LIB ""
#define DST_CUDA_LIBS ""
#define DST_CUDA_LDFLAGS ""
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

/* Splits a '|'-separated list of link items into argv. */
static int split_items(char *s, const char **argv, int max) {
  int n = 0;
  for (char *t = strtok(s, "|"); t && n < max; t = strtok(NULL, "|")) argv[n++] = t;
  return n;
}

/* Runs argv[0] with argv (printed first when verbose): BUILD_OK when it
 * exits 0, BUILD_NO_TOOL when it cannot be started (the child says why),
 * BUILD_FAILED otherwise. */
static BuildStatus run_tool(const char **argv, bool verbose) {
  if (verbose) {
    for (int i = 0; argv[i]; i++) fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
    fputc('\n', stderr);
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "dstc: cannot start '%s': %s\n", argv[0], strerror(errno));
    return BUILD_NO_TOOL;
  }
  if (pid == 0) {
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "dstc: cannot run '%s': %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return BUILD_FAILED;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return BUILD_OK;
  return WIFEXITED(st) && WEXITSTATUS(st) == 127 ? BUILD_NO_TOOL : BUILD_FAILED;
}

bool build_have_cuda(void) { return *DST_NVCC != 0; }

/* DST_GENERATED_WERROR=1 (the test suite sets it): generated code is
 * compiled with warnings on, as errors, so a warning in what dstc emits
 * fails the tests instead of hiding behind -w. */
static bool generated_werror(void) {
  const char *v = getenv("DST_GENERATED_WERROR");
  return v && *v && strcmp(v, "0") != 0;
}
bool build_have_cuda_runtime(void) { return *DST_RUNTIME_CUDA_LIB != 0; }

/* nvcc -c: the .cu into an object beside the program. */
static BuildStatus compile_cuda(const char *src, const char *obj, bool verbose) {
  const char *nvcc = getenv("DST_NVCC");
  if (!nvcc || !*nvcc) nvcc = DST_NVCC;
  const char *argv[96];
  int n = 0;
  argv[n++] = nvcc;
  argv[n++] = "-std=c++17";
  argv[n++] = "-O2";
  /* generated code: warnings are ours to fix, not the user's; the test
   * suite turns them on, as errors (DST_GENERATED_WERROR) */
  if (generated_werror()) {
    argv[n++] = "-Werror=all-warnings";
    argv[n++] = "-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter,-Werror";
  } else {
    argv[n++] = "-w";
  }
  char arch[1024], user[1024];
  snprintf(arch, sizeof arch, "%s", DST_NVCC_FLAGS);
  n += split_flags(arch, argv + n, 32);
  const char *uf = getenv("DST_NVCCFLAGS");
  snprintf(user, sizeof user, "%s", uf ? uf : "");
  n += split_flags(user, argv + n, 16);
  argv[n++] = "-I" DST_RUNTIME_INCLUDE;
  argv[n++] = "-I" DST_CUDA_INCLUDE;
  argv[n++] = "-c";
  argv[n++] = src;
  argv[n++] = "-o";
  argv[n++] = obj;
  argv[n] = NULL;
  return run_tool(argv, verbose);
}

BuildStatus build_compile(const char *src, const char *exe, Backend backend, bool verbose) {
  bool cuda = backend == BACKEND_CUDA;
  char obj[4200];
  if (cuda) {
    snprintf(obj, sizeof obj, "%s.o", exe);
    BuildStatus st = compile_cuda(src, obj, verbose);
    if (st != BUILD_OK) return st;
  }
  const char *cc = getenv("DST_CC");
  if (!cc || !*cc) cc = "cc";
  const char *argv[128];
  int n = 0;
  argv[n++] = cc;
  if (!cuda) {
    argv[n++] = "-std=c11";
    argv[n++] = "-O3";
    argv[n++] = "-march=native";
  }
  argv[n++] = "-fopenmp";
  if (!cuda) argv[n++] = "-fno-math-errno";
  if (generated_werror() && !cuda) {
    argv[n++] = "-Wall";
    argv[n++] = "-Wextra";
    argv[n++] = "-Wno-unused-parameter";
    argv[n++] = "-Werror";
  } else {
    argv[n++] = "-w"; /* generated code: warnings are ours to fix, not the user's */
  }
  char extra[1024], user[1024], ldflags[2048], cudalibs[2048];
  snprintf(extra, sizeof extra, "%s", DST_EXTRA_CFLAGS);
  n += split_flags(extra, argv + n, 16);
  const char *uf = getenv("DST_CFLAGS");
  snprintf(user, sizeof user, "%s", uf ? uf : "");
  n += split_flags(user, argv + n, 16);
  if (!cuda) {
    argv[n++] = "-I" DST_RUNTIME_INCLUDE;
    argv[n++] = "-I" DST_KERNELS_INCLUDE;
  }
  argv[n++] = cuda ? obj : src;
  argv[n++] = "-o";
  argv[n++] = exe;
  if (cuda) {
    /* the static libraries in a group, so that their order does not
     * matter (the CUDA runtime side and the runtime may call each other) */
    snprintf(ldflags, sizeof ldflags, "%s", DST_CUDA_LDFLAGS);
    n += split_items(ldflags, argv + n, 16);
    argv[n++] = "-Wl,--start-group";
    if (*DST_RUNTIME_CUDA_LIB) argv[n++] = DST_RUNTIME_CUDA_LIB;
  }
  argv[n++] = DST_RUNTIME_LIB;
  if (cuda) argv[n++] = DST_KERNELS_CUDA_LIB;
  argv[n++] = DST_KERNELS_LIB;
  if (cuda) argv[n++] = "-Wl,--end-group";
  argv[n++] = DST_BLAS_LIB;
  if (*DST_MPI_LIBS) argv[n++] = DST_MPI_LIBS; /* the runtime's collective layer */
  if (cuda) { /* cudart, cuBLASLt, cuBLAS (NCCL), and C++ for nvcc's host code */
    snprintf(cudalibs, sizeof cudalibs, "%s", DST_CUDA_LIBS);
    n += split_items(cudalibs, argv + n, 16);
    argv[n++] = "-lstdc++";
  }
  argv[n++] = "-lm";
  argv[n] = NULL;
  BuildStatus st = run_tool(argv, verbose);
  if (cuda) unlink(obj);
  return st;
}

/* Mixes into h what else determines a built program: the libraries' sizes
 * and modification times, the compiler and the extra flags. */
/* FNV-1a of s, then of the file's size and times when it is a file. */
static uint64_t mix(uint64_t h, const char *s, bool file) {
  for (const char *t = s ? s : ""; *t; t++) h = (h ^ (unsigned char)*t) * 1099511628211ull;
  struct stat st;
  if (file && s && *s && stat(s, &st) == 0) {
    uint64_t v[3] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
    for (int k = 0; k < 3; k++) h = (h ^ v[k]) * 1099511628211ull;
  }
  return h;
}

uint64_t build_hash_inputs(uint64_t h, Backend backend) {
  h = mix(h, DST_RUNTIME_LIB, true);
  h = mix(h, DST_KERNELS_LIB, true);
  h = mix(h, DST_EXTRA_CFLAGS, false);
  h = mix(h, getenv("DST_CC"), false);
  h = mix(h, getenv("DST_CFLAGS"), false);
  if (backend == BACKEND_CUDA) {
    h = mix(h, DST_RUNTIME_CUDA_LIB, true);
    h = mix(h, DST_KERNELS_CUDA_LIB, true);
    h = mix(h, DST_NVCC_FLAGS, false);
    h = mix(h, getenv("DST_NVCC"), false);
    h = mix(h, getenv("DST_NVCCFLAGS"), false);
  }
  return h;
}

bool build_probe_writable(const char *dir, char *why, size_t whysz) {
  char path[4200];
  snprintf(path, sizeof path, "%s/.dstc-probe-%d", dir, (int)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    snprintf(why, whysz, "%s", strerror(errno));
    return false;
  }
  static char zeros[1 << 16];
  bool ok = true;
  /* a short write is retried, so the failure comes with its errno */
  for (size_t left = BUILD_PROBE_BYTES; ok && left > 0;) {
    ssize_t w = write(fd, zeros, left < sizeof zeros ? left : sizeof zeros);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      snprintf(why, whysz, "%s", w < 0 ? strerror(errno) : "nothing could be written");
      ok = false;
    } else {
      left -= (size_t)w;
    }
  }
  if (ok && fsync(fd) != 0) {
    snprintf(why, whysz, "%s", strerror(errno));
    ok = false;
  }
  close(fd);
  unlink(path);
  return ok;
}

int64_t build_machine_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  int64_t mem = pages > 0 && page > 0 ? (int64_t)pages * page : 0;
  /* a container's limit (cgroup v2, then v1) is what this process gets */
  static const char *const limits[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
    FILE *f = fopen(limits[i], "r");
    if (!f) continue;
    long long v;
    if (fscanf(f, "%lld", &v) == 1 && v > 0 && (mem == 0 || v < mem)) mem = v;
    fclose(f);
  }
  return mem;
}
