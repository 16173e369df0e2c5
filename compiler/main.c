/* main.c: the dstc command line. Parses arguments, runs the pipeline
 * (driver.c) on each input, prints diagnostics, and maps the outcome onto
 * the exit-code contract: 0 ok, 1 error in the input, 2 usage, 70 internal. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"

static const char usage_text[] =
    "usage: dstc <command> [options] FILE...\n"
    "\n"
    "commands:\n"
    "  check FILE...        parse and check; print diagnostics only\n"
    "  plan FILE            print the plan: parameters, layout, memory per rank by category\n"
    "  build FILE -o DIR    write DIR/<model>.c (.cu) and build the program DIR/<model>\n"
    "  run FILE [-np N] [-- ARGS]  build into a cache directory and run with ARGS\n"
    "                       (through mpirun with one process per rank when the layout has several)\n"
    "\n"
    "options:\n"
    "  -I DIR               add DIR to the import search path (before the stdlib)\n"
    "  -D NAME=VALUE        override the config constant NAME\n"
    "  -f<KEY>=<VALUE>      set a parallel key (overrides the file), e.g. -fdp=8 -fzero=2\n"
    "  -v, --verbose        print a summary of each checked model\n"
    "  --dump-ast           print the syntax tree of every loaded file\n"
    "  --dump-ir=PASS       print the IR after PASS (lower, simplify, precision, autodiff, fuse)\n"
    "  -Werror              treat warnings as errors\n"
    "  -o DIR               output directory of 'build'\n"
    "  --backend cpu|cuda   what the program of 'build' and 'run' runs on (default cpu);\n"
    "                       cuda writes CUDA C++ (<model>.cu) built with nvcc\n"
    "  --mem-limit SIZE     memory one rank may use (e.g. 80GiB, 512M); plan, build and run\n"
    "                       fail when the plan needs more (default for CPU programs: warn\n"
    "                       when it exceeds this machine's memory)\n"
    "  --verbose-build      print the C compiler command\n"
    "  --color=WHEN         color diagnostics: auto, always, never\n"
    "  --help, --version\n"
    "\n"
    "exit status: 0 ok, 1 error in the input, 2 usage error, 70 internal error\n"
    "The stdlib is searched in $DST_STDLIB, else in the directory built in.\n";

/* A byte count: digits with an optional fraction and unit: K, M, G, T
 * (and KiB, MiB, GiB, TiB) are powers of 1024, KB, MB, GB, TB powers of
 * 1000, B or nothing bytes. "80GiB", "1.5T", "512M". -1 when malformed or
 * not positive or beyond 2^62. */
static int64_t parse_size(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !(v > 0)) return -1;
  static const struct {
    const char *unit;
    double mul;
  } units[] = {{"", 1},           {"B", 1},
               {"K", 1024.0},     {"KiB", 1024.0},     {"KB", 1e3},
               {"M", 1048576.0},  {"MiB", 1048576.0},  {"MB", 1e6},
               {"G", 1073741824.0}, {"GiB", 1073741824.0}, {"GB", 1e9},
               {"T", 1099511627776.0}, {"TiB", 1099511627776.0}, {"TB", 1e12}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (!strcmp(end, units[i].unit)) {
      double b = v * units[i].mul;
      return b >= 1 && b < 4.6e18 ? (int64_t)b : -1;
    }
  return -1;
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "dstc: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(run 'dstc --help' for usage)\n");
  return EXIT_USAGE;
}

/* Splits NAME=VALUE; NULL when malformed. */
static CliSetting split_setting(const char *s) {
  CliSetting r = {0};
  const char *eq = strchr(s, '=');
  if (!eq || eq == s || !eq[1]) return r;
  r.key = strndup(s, (size_t)(eq - s));
  r.value = eq + 1;
  return r;
}

static void print_summary(Compilation *c) {
  Program *p = c->prog;
  printf("%s:", c->path);
  if (!p->model) {
    printf(" library, %d block%s\n", p->nblocks, p->nblocks == 1 ? "" : "s");
    return;
  }
  IrGraph *g = c->graph;
  int64_t params = 0;
  for (int i = 0; i < g->nparams; i++) params += ir_numel(&g->nodes[g->params[i]]);
  printf(" model %s\n", p->model->name);
  printf("  parameters   %lld in %d tensors (%.2f MiB fp32)\n", (long long)params, g->nparams,
         (double)params * 4 / (1 << 20));
  for (int i = 0; i < g->ninputs; i++) {
    IrNode *n = &g->nodes[g->inputs[i]];
    char sh[128];
    shape_format(sh, sizeof sh, n->shape, n->ndim);
    if (p->par.dp.i > 1 || p->par.grad_accum.i > 1)
      printf("  input        %s: %s%s per rank and micro-step (global batch %lld, dp = %lld, grad_accum = %lld)\n",
             n->name, dtype_name(n->dtype), sh, (long long)n->iattr[0], (long long)p->par.dp.i,
             (long long)p->par.grad_accum.i);
    else
      printf("  input        %s: %s%s\n", n->name, dtype_name(n->dtype), sh);
  }
  printf("  forward      %d operations (%d with backward)\n", g->nforward - g->nparams - g->ninputs, g->n - 1 - g->nparams - g->ninputs);
  ParallelCfg *pc = &p->par;
  printf("  layout       dp=%lld tp=%lld pp=%lld ep=%lld (world %lld), zero=%lld, precision=%s\n",
         (long long)pc->dp.i, (long long)pc->tp.i, (long long)pc->pp.i, (long long)pc->ep.i,
         (long long)(pc->dp.i * pc->tp.i * pc->pp.i * pc->ep.i), (long long)pc->zero.i, pc->precision.s);
  TrainCfg *t = &p->train_cfg;
  printf("  training     %s lr=%g, %s schedule, %lld steps\n", t->opt == OPT_ADAMW ? "adamw" : "sgd", t->lr,
         t->sched == SCHED_CONSTANT ? "constant" : t->sched == SCHED_LINEAR ? "linear" : "cosine",
         (long long)t->steps);
}

/* Model state and communication per rank, next to the ZeRO paper's figures
 * for the same stage, so the difference is visible and explained. */
static void print_zero(Compilation *c, MemPlan *m) {
  ParallelCfg *pc = &c->prog->par;
  int64_t N = pc->dp.i, z = pc->zero.i;
  IrGraph *g = c->graph;
  double psi = 0;
  for (int i = 0; i < g->nparams; i++) psi += (double)ir_numel(&g->nodes[g->params[i]]);
  double mib = 1 << 20;
  double ours = (double)(m->bytes[MEM_PARAMS] + m->bytes[MEM_GRADS] + m->bytes[MEM_OPTSTATE]) / psi;
  static const char *const paper_f[] = {"16", "4 + 12/N", "2 + 14/N", "16/N"};
  double paper[] = {16, 4 + 12.0 / N, 2 + 14.0 / N, 16.0 / N};
  bool sharded = z >= 1 && N > 1;
  printf("model state per rank (%.0f parameters, dp = N = %lld, zero = %lld):\n", psi, (long long)N, (long long)z);
  if (z >= 2 && N > 1) {
    printf("  this plan        %6.2f bytes/param  (%s + gradient shard 4/N + AdamW moments 8/N\n", ours,
           z >= 3 ? "parameter shard 4/N" : "parameters 4 + fp32 master shard 4/N");
    printf("                                      + %s %.2f MiB + unreduced gradient units %.2f MiB at peak)\n",
           z >= 3 ? "gathered parameter units" : "gather staging", (double)m->zero_pbuf / mib,
           (double)m->zero_gbuf / mib);
    printf("                   %d partition units; each rank owns 1/%lld of every unit (%.2f MiB in all)\n",
           m->zero_units, (long long)N, (double)m->zero_shard / mib);
  } else {
    printf("  this plan        %6.2f bytes/param  (fp32 parameters 4 + gradients 4 + AdamW moments %s)\n", ours,
           sharded ? "8/N" : "8");
  }
  printf("  ZeRO paper       %6.2f bytes/param  (%s, mixed-precision Adam; 16 at stage 0)\n", paper[z], paper_f[z]);
  if (z >= 2 && N > 1)
    printf("  the difference:  this plan trains in fp32 (4-byte parameters and gradients where the paper has 2),\n"
           "                   and counts the buffers of the units being gathered and reduced\n");
  else
    printf("  the difference:  this plan trains in fp32: 4-byte parameters and gradients where the paper has 2,\n"
           "                   and no separate fp32 master copy (4 of the paper's 12 bytes of optimizer state)\n");
  double ring = N > 1 ? 2.0 * (double)(N - 1) / (double)N : 0;
  double vol = z >= 2 && N > 1 ? m->zero_comm : ring * psi * 4;
  const char *how = z >= 3 && N > 1 ? "all-gathers in forward and backward + reduce-scatter, per unit"
                    : z >= 2 && N > 1 ? "reduce-scatter + all-gather, per unit"
                    : sharded ? "reduce-scatter + all-gather" : "all-reduce";
  printf("communication per rank per step: %.2f MiB = %.2f x parameters x 4 bytes (%s)\n", vol / mib,
         vol / (psi * 4), how);
  printf("  ZeRO paper: %.2f x (%s)\n", (z >= 3 ? 1.5 : 1.0) * ring,
         z >= 3 ? "3 x parameters x (N-1)/N at stage 3" : "2 x parameters x (N-1)/N, the same at stages 0-2");
  if (pc->grad_accum.i > 1 && z >= 2 && N > 1)
    printf("  (grad_accum = %lld: the gradients are reduce-scattered%s every micro-step)\n",
           (long long)pc->grad_accum.i, z >= 3 ? " and the parameters gathered" : "");
}

/* The value of parallel key k as the user writes it (enum values bare). */
static void key_value(Program *p, int k, char *buf, size_t sz) {
  ConstVal cv = *((ConstVal *)&p->par + k);
  if (cv.kind == CV_STR) snprintf(buf, sz, "%s", cv.s);
  else const_format(buf, sz, cv);
}

/* The settings of the layout that the plan and the generated programs do
 * not carry out yet (checked by sema, but not planned): build and run
 * refuse them, and the plan says that its figures leave them out. One
 * list, so the two can never disagree. Returns how many are set; *text
 * gets them as "tp = 2, pp = 2" (NULL when none). */
static int unplanned_settings(Compilation *c, int *keys, const char **text) {
  ParallelCfg *pc = &c->prog->par;
  struct {
    const char *key;
    bool set;
  } rules[] = {
      {"tp", pc->tp.i != 1}, {"pp", pc->pp.i != 1}, {"ep", pc->ep.i != 1},
      {"micro_batches", pc->micro_batches.i != 1},
      {"precision", !strcmp(pc->precision.s, "fp16")}, /* needs dynamic loss scaling */
      {"loss_scale", strcmp(pc->loss_scale.s, "auto") && strcmp(pc->loss_scale.s, "none")},
      {"offload_optimizer", strcmp(pc->offload_optimizer.s, "none") != 0},
      {"offload_params", strcmp(pc->offload_params.s, "none") != 0},
      {"checkpoint", strcmp(pc->checkpoint.s, "none") != 0},
      {"sequence_parallel", pc->sequence_parallel.i != 0},
  };
  int n = 0;
  char buf[1024];
  size_t len = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    if (!rules[i].set) continue;
    int k = sema_parallel_index(rules[i].key);
    char v[64];
    key_value(c->prog, k, v, sizeof v);
    if (keys) keys[n] = k;
    n++;
    int w = snprintf(buf + len, sizeof buf - len, "%s%s = %s", len ? ", " : "", rules[i].key, v);
    if (w > 0 && (size_t)w < sizeof buf - len) len += (size_t)w;
  }
  if (text) *text = n ? arena_strdup(&c->arena, buf) : NULL;
  return n;
}

static void print_plan(Compilation *c, MemPlan *m) {
  const char *ignored;
  print_summary(c);
  if (unplanned_settings(c, NULL, &ignored))
    printf("note: %s %s checked but not planned yet: the figures below leave %s out, and 'build' and "
           "'run' refuse this layout\n",
           ignored, strchr(ignored, ',') ? "are" : "is", strchr(ignored, ',') ? "them" : "it");
  memplan_print(stdout, c->graph, m, ignored);
  if (m->device_work)
    printf("  (the workspace holds the CUDA runtime's cuBLASLt workspace and norm scratch: %.2f MiB)\n",
           (double)m->device_work / (1 << 20));
  if (c->prog->par.dp.i > 1 || c->prog->par.zero.i > 0) print_zero(c, m);
}

/* A name for generated files: the model's name in lower case. */
static const char *program_name(Compilation *c) {
  char *s = arena_strdup(&c->arena, c->prog->model->name);
  for (char *t = s; *t; t++)
    if (*t >= 'A' && *t <= 'Z') *t = (char)(*t - 'A' + 'a');
  return s;
}

/* Parallel settings the generated programs do not carry out yet are errors
 * for build and run, never silently ignored. Returns true when all is
 * supported. */
static bool check_backend_support(Compilation *c) {
  Program *p = c->prog;
  int keys[16];
  int n = unplanned_settings(c, keys, NULL);
  for (int i = 0; i < n; i++) {
    int k = keys[i];
    char v[64];
    key_value(p, k, v, sizeof v);
    const char *flag = p->par_from_flag[k];
    Diag *g = diag_error(&c->diag, flag ? (Loc){0} : p->par_loc[k],
                         "%s = %s is checked, but this version neither plans nor runs it yet",
                         parallel_key_names[k], v);
    if (flag) diag_note(&c->diag, g, (Loc){0}, "set by %s on the command line", flag);
    diag_note(&c->diag, g, (Loc){0}, "'dstc check' and 'dstc plan' accept it; 'build' and 'run' need the default");
  }
  return n == 0;
}

/* The plan's peak per rank against the memory it must fit in: an explicit
 * --mem-limit (an error when exceeded: the user asked for that bound), else
 * this machine's memory for CPU programs (a warning: the program may run
 * elsewhere). `run` starts every rank here, so there all of them count.
 * Returns false when an error was reported. */
static bool check_fit(Compilation *c, const MemPlan *m, Backend be, int cmd, int64_t mem_limit) {
  int64_t peak = memplan_total(m);
  ParallelCfg *pc = &c->prog->par;
  int64_t world = pc->dp.i * pc->tp.i * pc->pp.i * pc->ep.i;
  char hp[32], hl[32], ht[32];
  memplan_human(hp, sizeof hp, peak);
  const char *ignored;
  bool partial = unplanned_settings(c, NULL, &ignored) > 0;
  if (mem_limit > 0) {
    if (peak <= mem_limit) return true;
    memplan_human(hl, sizeof hl, mem_limit);
    Diag *g = diag_error(&c->diag, (Loc){0}, "the plan needs %s per rank (%lld bytes), more than --mem-limit %s",
                         hp, (long long)peak, hl);
    if (partial)
      diag_note(&c->diag, g, (Loc){0}, "the plan leaves %s out (not planned yet)", ignored);
    diag_note(&c->diag, g, (Loc){0}, "'dstc plan' shows where the memory goes by category");
    return false;
  }
  if (be != BACKEND_CPU) return true; /* a GPU's memory is not this machine's: give --mem-limit */
  int64_t mem = build_machine_memory();
  if (mem <= 0) return true;
  memplan_human(hl, sizeof hl, mem);
  int64_t here = cmd == 3 ? peak * world : peak;
  if (here <= mem) return true;
  memplan_human(ht, sizeof ht, here);
  Diag *g;
  if (cmd == 3 && world > 1)
    g = diag_warning(&c->diag, (Loc){0},
                     "the plan needs %s per rank, %s for the %lld ranks 'run' starts on this machine, which has %s",
                     hp, ht, (long long)world, hl);
  else
    g = diag_warning(&c->diag, (Loc){0}, "the plan needs %s per rank, more than this machine's %s of memory", hp, hl);
  diag_note(&c->diag, g, (Loc){0}, "the program will run out of memory here; 'dstc plan' shows where it goes");
  return true;
}

/* After the C (or CUDA) compiler failed on the source dstc wrote: a
 * missing tool, or a directory that cannot take the program (a full disk,
 * a file-size limit), is the environment's doing (exit 1, with the reason);
 * anything else is a bug of dstc's (exit 70), and the source stays for the
 * report. */
static int build_failed(Compilation *c, BuildStatus st, const char *dir, const char *src, Backend be) {
  const char *tool = be == BACKEND_CUDA ? "nvcc and the C compiler" : "the C compiler";
  if (st == BUILD_NO_TOOL) {
    diag_error(&c->diag, (Loc){0}, "cannot build %s: %s could not be run (see the message above)", src, tool);
    return EXIT_INPUT;
  }
  char why[256];
  const char *tmpdir = getenv("TMPDIR");
  if (!build_probe_writable(dir, why, sizeof why)) {
    diag_error(&c->diag, (Loc){0}, "cannot build the program in %s: %s", dir, why);
    return EXIT_INPUT;
  }
  if (!build_probe_writable(tmpdir && *tmpdir ? tmpdir : "/tmp", why, sizeof why)) {
    diag_error(&c->diag, (Loc){0}, "cannot build the program: the compiler's temporary directory %s: %s",
               tmpdir && *tmpdir ? tmpdir : "/tmp", why);
    return EXIT_INPUT;
  }
  die("%s failed on generated code %s (a bug in dstc: please report it with that file)", tool, src);
}

/* Writes the program's source to src; false (with the file and the
 * reason) when it cannot be written completely. */
static bool write_source(Compilation *c, MemPlan *m, const char *src, Backend be, bool *emitted) {
  *emitted = false;
  FILE *f = fopen(src, "w");
  if (!f) {
    diag_error(&c->diag, (Loc){0}, "cannot write %s: %s", src, strerror(errno));
    return false;
  }
  *emitted = emit_c(f, c->prog, c->graph, m, c->path, be);
  int e = 0;
  if (fflush(f) != 0 || ferror(f)) e = errno ? errno : EIO;
  if (fclose(f) != 0 && !e) e = errno;
  if (e) {
    diag_error(&c->diag, (Loc){0}, "cannot write %s: %s", src, strerror(e));
    unlink(src);
    return false;
  }
  return *emitted;
}

/* The cache directory of `run`: $XDG_CACHE_HOME/dst or ~/.cache/dst. */
static void cache_dir(char *buf, size_t sz) {
  const char *cache = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  snprintf(buf, sz, "%s%s/dst", cache && *cache ? cache : home ? home : "/tmp", cache && *cache ? "" : "/.cache");
}

/* plan, build, run: after the front end succeeded. */
static int backend(Compilation *c, int cmd, Backend be, const char *outdir, bool verbose_build, char **args,
                   int nargs, int np, int64_t mem_limit, bool color) {
  MemPlan *m = memplan_build(c->graph, c->prog);
  if (cmd == 1) {
    /* emit into /dev/null so the workspace the emitter reserves is counted */
    FILE *devnull = fopen("/dev/null", "w");
    bool ok = devnull && emit_c(devnull, c->prog, c->graph, m, c->path, be);
    if (devnull) fclose(devnull);
    if (ok) print_plan(c, m);
    ok = ok && check_fit(c, m, be, cmd, mem_limit);
    memplan_free(m);
    return ok ? EXIT_OK : EXIT_INPUT;
  }
  if (!check_backend_support(c)) {
    memplan_free(m);
    return EXIT_INPUT;
  }
  int64_t world = c->prog->par.dp.i * c->prog->par.tp.i * c->prog->par.pp.i * c->prog->par.ep.i;
  if (cmd == 3 && np && np != world) {
    diag_error(&c->diag, (Loc){0}, "the plan needs %lld ranks (dp=%lld x tp=%lld x pp=%lld x ep=%lld) but -np %d was given",
               (long long)world, (long long)c->prog->par.dp.i, (long long)c->prog->par.tp.i,
               (long long)c->prog->par.pp.i, (long long)c->prog->par.ep.i, np);
    memplan_free(m);
    return EXIT_INPUT;
  }
  const char *name = program_name(c);
  char dir[4200], base[4096];
  cache_dir(base, sizeof base);
  if (cmd == 2) snprintf(dir, sizeof dir, "%s", outdir);
  else snprintf(dir, sizeof dir, "%s/tmp-%d", base, (int)getpid());
  if (build_mkdirs(dir) != 0) {
    diag_error(&c->diag, (Loc){0}, "cannot create directory %s: %s", dir, strerror(errno));
    memplan_free(m);
    return EXIT_INPUT;
  }
  char src[4400], exe[4400];
  snprintf(src, sizeof src, "%s/%s.%s", dir, name, be == BACKEND_CUDA ? "cu" : "c");
  snprintf(exe, sizeof exe, "%s/%s", dir, name);
  bool emitted;
  bool ok = write_source(c, m, src, be, &emitted);
  /* the emitter reserves its workspace in the plan: check the fit after */
  if (ok) ok = check_fit(c, m, be, cmd, mem_limit);
  memplan_free(m);
  if (!ok) {
    if (cmd == 3) {
      unlink(src);
      rmdir(dir);
    }
    return EXIT_INPUT;
  }
  if (cmd == 2) {
    BuildStatus st = build_compile(src, exe, be, verbose_build);
    if (st != BUILD_OK) return build_failed(c, st, dir, src, be);
    printf("built %s\n", exe);
    return EXIT_OK;
  }
  /* run: the cache is keyed by the generated source and what it is built
   * with, so an unchanged model is not rebuilt; a cached program is run
   * only when its bytes are the ones built (cache.c) */
  uint64_t h = CACHE_HASH_INIT;
  if (!cache_hash_file(src, &h)) {
    diag_error(&c->diag, (Loc){0}, "cannot read %s: %s", src, strerror(errno));
    return EXIT_INPUT;
  }
  h = build_hash_inputs(h, be);
  char keyed[4400], why[512];
  snprintf(keyed, sizeof keyed, "%s/%s-%016llx", base, name, (unsigned long long)h);
  CacheState cs = cache_check(keyed, why, sizeof why);
  if (cs == CACHE_DAMAGED)
    fprintf(stderr, "dstc: note: the cached program %s is damaged (%s); building it again\n", keyed, why);
  if (cs != CACHE_OK) {
    BuildStatus st = build_compile(src, exe, be, verbose_build);
    if (st != BUILD_OK) return build_failed(c, st, dir, src, be);
    if (!cache_store(exe, keyed, why, sizeof why)) {
      diag_error(&c->diag, (Loc){0}, "cannot store the built program in the cache: %s", why);
      unlink(exe);
      unlink(src);
      rmdir(dir);
      return EXIT_INPUT;
    }
  }
  unlink(src);
  rmdir(dir);
  char **argv = calloc((size_t)nargs + 10, sizeof *argv);
  if (!argv) die("out of memory");
  int a = 0;
  char npbuf[32];
  if (world > 1) { /* one process per rank, through MPI's launcher */
    snprintf(npbuf, sizeof npbuf, "%lld", (long long)world);
    argv[a++] = "mpirun";
    argv[a++] = "-np";
    argv[a++] = npbuf;
    argv[a++] = "--oversubscribe";
    if (geteuid() == 0) argv[a++] = "--allow-run-as-root";
  }
  argv[a++] = keyed;
  for (int i = 0; i < nargs; i++) argv[a++] = args[i];
  /* what dstc printed (warnings) goes out before the program's output */
  diag_print(&c->diag, stderr, color);
  c->diag.head = c->diag.tail = NULL;
  fflush(stdout);
  fflush(stderr);
  execvp(argv[0], argv);
  diag_error(&c->diag, (Loc){0}, "cannot run %s: %s", argv[0], strerror(errno));
  return EXIT_INPUT;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage_error("no command given%s", "");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage_text, stdout);
    return EXIT_OK;
  }
  if (!strcmp(cmd, "--version")) {
    printf("dstc %s\n", DST_VERSION);
    return EXIT_OK;
  }
  static const char *const commands[] = {"check", "plan", "build", "run", "tune"};
  int known = -1;
  for (int i = 0; i < 5; i++)
    if (!strcmp(cmd, commands[i])) known = i;
  if (known < 0) {
    const char *s = closest_name(cmd, commands, 5);
    fprintf(stderr, "dstc: error: unknown command '%s'%s%s%s\n(run 'dstc --help' for usage)\n", cmd,
            s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
    return EXIT_USAGE;
  }
  if (known == 4) {
    fprintf(stderr, "dstc: error: 'tune' is not available in this version of dstc\n");
    return EXIT_USAGE;
  }

  /* Held in statics: they live as long as the process, on every path. */
  static const char **files, **incdirs;
  static CliSetting *defines, *flags;
  files = calloc((size_t)argc, sizeof *files);
  incdirs = calloc((size_t)argc, sizeof *incdirs);
  defines = calloc((size_t)argc, sizeof *defines);
  flags = calloc((size_t)argc, sizeof *flags);
  if (!files || !incdirs || !defines || !flags) die("out of memory");
  int nfiles = 0, nincdirs = 0, ndefines = 0, nflags = 0;
  bool verbose = false, dump_ast = false, werror = false, verbose_build = false;
  const char *dump_ir = NULL, *outdir = NULL;
  int np = 0;
  int64_t mem_limit = 0;
  Backend be = BACKEND_CPU;
  char **prog_args = NULL;
  int nprog_args = 0;
  int color = isatty(2) && !getenv("NO_COLOR") && getenv("TERM") && strcmp(getenv("TERM"), "dumb");

  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) {
      if (known == 3) { /* run: the rest goes to the program */
        prog_args = argv + i + 1;
        nprog_args = argc - i - 1;
      } else {
        for (i++; i < argc; i++) files[nfiles++] = argv[i];
      }
      break;
    }
    if (!strcmp(a, "-o")) {
      if (i + 1 >= argc) return usage_error("-o needs a directory%s", "");
      outdir = argv[++i];
      continue;
    }
    if (!strcmp(a, "--backend") || !strncmp(a, "--backend=", 10)) {
      const char *v = a[9] ? a + 10 : i + 1 < argc ? argv[++i] : NULL;
      if (!v) return usage_error("--backend needs cpu or cuda%s", "");
      if (!strcmp(v, "cpu")) be = BACKEND_CPU;
      else if (!strcmp(v, "cuda")) be = BACKEND_CUDA;
      else return usage_error("--backend must be cpu or cuda, not '%s'", v);
      continue;
    }
    if (!strcmp(a, "--mem-limit") || !strncmp(a, "--mem-limit=", 12)) {
      const char *v = a[11] ? a + 12 : i + 1 < argc ? argv[++i] : NULL;
      if (!v) return usage_error("--mem-limit needs a size, e.g. --mem-limit 80GiB%s", "");
      mem_limit = parse_size(v);
      if (mem_limit < 0)
        return usage_error("--mem-limit: '%s' is not a size (bytes, or a number with K, M, G, T, KiB.., KB..)", v);
      continue;
    }
    if (!strcmp(a, "--verbose-build")) {
      verbose_build = true;
      continue;
    }
    if (!strcmp(a, "-np")) {
      char *end;
      long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
      if (i + 1 >= argc || *end || v < 1 || v > 1 << 20) return usage_error("-np needs a positive rank count%s", "");
      np = (int)v;
      i++;
      continue;
    }
    if (a[0] != '-' || !a[1]) {
      files[nfiles++] = a;
    } else if (!strncmp(a, "-I", 2)) {
      const char *d = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!d) return usage_error("-I needs a directory%s", "");
      incdirs[nincdirs++] = d;
    } else if (!strncmp(a, "-D", 2)) {
      const char *d = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!d) return usage_error("-D needs NAME=VALUE%s", "");
      CliSetting s = split_setting(d);
      if (!s.key) return usage_error("-D %s: expected NAME=VALUE", d);
      defines[ndefines++] = s;
    } else if (!strncmp(a, "-f", 2) && a[2]) {
      CliSetting s = split_setting(a + 2);
      if (!s.key) return usage_error("%s: expected -f<key>=<value>, e.g. -fdp=2", a);
      flags[nflags] = s; /* reachable from a static until exit */
      if (sema_parallel_index(s.key) < 0) {
        const char *sug = closest_name(s.key, parallel_key_names, parallel_key_count);
        fprintf(stderr, "dstc: error: %s: unknown parallel key '%s'", a, s.key);
        if (sug) fprintf(stderr, "; did you mean '%s'?", sug);
        fprintf(stderr, "\n(run 'dstc --help' for usage)\n");
        return EXIT_USAGE;
      }
      for (int k = 0; k < nflags; k++)
        if (!strcmp(flags[k].key, s.key)) return usage_error("-f%s is given twice", s.key);
      flags[nflags++] = s;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      verbose = true;
    } else if (!strcmp(a, "--dump-ast")) {
      dump_ast = true;
    } else if (!strncmp(a, "--dump-ir=", 10)) {
      dump_ir = a + 10;
      if (!driver_pass_exists(dump_ir))
        return usage_error("--dump-ir: unknown pass '%s' (passes: lower, simplify, precision, autodiff, fuse)", dump_ir);
    } else if (!strcmp(a, "-Werror")) {
      werror = true;
    } else if (!strncmp(a, "--color=", 8)) {
      const char *w = a + 8;
      if (!strcmp(w, "always")) color = 1;
      else if (!strcmp(w, "never")) color = 0;
      else if (strcmp(w, "auto")) return usage_error("--color must be auto, always or never, not '%s'", w);
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (nfiles == 0) return usage_error("%s needs at least one input file", cmd);
  if (known > 0 && nfiles != 1) return usage_error("%s takes exactly one input file", cmd);
  if (known == 2 && !outdir) return usage_error("build needs -o DIR%s", "");
  if (known != 2 && outdir) return usage_error("-o is only for 'build'%s", "");
  if (be == BACKEND_CUDA && known >= 2 && !build_have_cuda())
    return usage_error("--backend cuda: this dstc was built without CUDA (no nvcc was found when dst was "
                       "configured)%s", "");
  if (be == BACKEND_CUDA && known >= 2 && !build_have_cuda_runtime())
    return usage_error("--backend cuda: this dstc was built without its CUDA runtime library, which needs NCCL "
                       ">= 2.14 (nccl.h and libnccl were not found when dst was configured; install NCCL and "
                       "configure again)%s", "");
  for (int i = 0; i < ndefines; i++)
    for (int k = 0; k < i; k++)
      if (!strcmp(defines[i].key, defines[k].key)) return usage_error("-D %s is given twice", defines[i].key);

  CompileOptions opts = {
      .search = {.incdirs = incdirs, .nincdirs = nincdirs, .stdlib_dir = source_stdlib_dir()},
      .defines = defines, .ndefines = ndefines, .flags = flags, .nflags = nflags};
  int status = EXIT_OK;
  for (int i = 0; i < nfiles; i++) {
    Compilation c;
    compilation_init(&c, files[i], &opts);
    c.dump_ast = dump_ast;
    c.dump_ir = dump_ir;
    c.diag.werror = werror;
    int rc = compile_file(&c);
    if (!c.prog) {
      diag_error(&c.diag, (Loc){0}, "cannot read %s", files[i]);
    }
    if (rc == EXIT_OK && known > 0 && !c.graph) {
      diag_error(&c.diag, (Loc){0}, "%s declares no model to %s", files[i], cmd);
      rc = EXIT_INPUT;
    }
    if (rc == EXIT_OK && known > 0) {
      /* warnings first: `run` replaces this process with the program */
      diag_print(&c.diag, stderr, color);
      c.diag.head = c.diag.tail = NULL;
      rc = backend(&c, known, be, outdir, verbose_build, prog_args, nprog_args, np, mem_limit, color);
    }
    fflush(stdout); /* what was printed comes before what it is warned about */
    diag_print(&c.diag, stderr, color);
    if (rc == EXIT_OK && diag_failed(&c.diag)) rc = EXIT_INPUT;
    if (rc == EXIT_OK && verbose) print_summary(&c);
    if (rc != EXIT_OK) status = rc;
    compilation_free(&c);
  }
  return status;
}
