/* dst_train.c: the training driver of a generated program.
 *
 * dst_train_main parses the program's command line, allocates exactly the
 * slabs the compiler planned (through the accounting allocator, so the
 * measured peak can be compared with the plan), initializes or loads the
 * parameters, and runs the steps: data, forward, backward, gradient
 * clipping, learning-rate schedule, optimizer update, logging, evaluation.
 * It stops with a located message on a non-finite loss or bad data, and can
 * save the parameters, check gradients by finite differences, and sample.
 * Before the first step it checks every path it will write and every token
 * of the data against the model's vocabulary; SIGTERM and SIGINT stop it
 * after a step, the same on every rank, with a checkpoint when
 * checkpointing is on and status 128 + the signal (docs/running.md).
 *
 * Data: the model's first input receives windows of T tokens (B, T); the
 * second receives their next-token targets, either (B, T) or, for a (B)
 * input, the token that follows each window.
 * Determinism: for a given binary, seed and data, every run computes the
 * same bits (kernels are thread-count independent; data order is fixed). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dst.h"
#include "dst_comm.h"
#include "dst_device.h"
#include "dst_internal.h"
#include "dst_model.h"
#include "k_cpu.h"

/* ------------------------------------------------------------ the CPU device */

static void *cpu_alloc(size_t bytes, DstMemCat cat, const char *tag) { return dst_calloc(1, bytes, cat, tag); }
static void cpu_free(void *p, size_t bytes, DstMemCat cat) {
  (void)bytes;
  (void)cat;
  dst_free(p);
}
static void cpu_copy(DstRun *r, void *to, const void *from, size_t n) {
  (void)r;
  if (n) memcpy(to, from, n);
}
static void cpu_adamw(DstRun *r, float *param, const float *grad, float *m, float *v, int64_t n, float lr, float b1,
                      float b2, float eps, float wd, int64_t step) {
  (void)r;
  k_adamw_update(param, grad, m, v, n, lr, b1, b2, eps, wd, step);
}
static void cpu_sgd(DstRun *r, float *param, const float *grad, float *mom, int64_t n, float lr, float momentum,
                    float wd, bool nesterov) {
  (void)r;
  k_sgd_update(param, grad, mom, n, lr, momentum, wd, nesterov);
}
static double cpu_norm_sq(DstRun *r, const float *x, int64_t n) {
  (void)r;
  return k_global_norm_sq(x, n);
}
static void cpu_scale(DstRun *r, float *x, float s, int64_t n) {
  (void)r;
  k_scale(x, x, s, n);
}
static void cpu_add(DstRun *r, float *y, const float *x, int64_t n) {
  (void)r;
  k_add(y, y, x, n);
}

static const DstDevice cpu_device = {
    .name = "cpu", .host = true, .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_copy, .download = cpu_copy,
    .copy = cpu_copy, .adamw = cpu_adamw, .sgd = cpu_sgd, .norm_sq = cpu_norm_sq, .scale = cpu_scale,
    .add = cpu_add,
};

/* The CPU device as the driver sees a GPU (DST_DEVICE=cpu-staged): the
 * same memory and kernels, but host = false, so every value the driver
 * reads or writes (batches, the loss, parameter initialization,
 * checkpoints, ZeRO staging) goes through upload, download and copy into
 * buffers of its own. The tests run the device code paths of this file
 * with it on machines without a GPU; results must be bit-identical to the
 * CPU device's. */
static const DstDevice cpu_staged_device = {
    .name = "cpu-staged", .host = false, .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_copy,
    .download = cpu_copy, .copy = cpu_copy, .adamw = cpu_adamw, .sgd = cpu_sgd, .norm_sq = cpu_norm_sq,
    .scale = cpu_scale, .add = cpu_add,
};
static const DstDevice *dev = &cpu_device;

void dst_set_device(const DstDevice *d) { dev = d ? d : &cpu_device; }
const DstDevice *dst_device(void) { return dev; }

typedef struct {
  const char *data, *val_data, *init, *save, *loss_log, *dump, *ckpt_dir, *resume;
  int64_t steps, seed, log_every, eval_every, sample, threads, save_every, keep;
  double temperature; /* of --sample: the logits are divided by it */
  bool check_grads, quiet, profile;
  bool ckpt_dir_given; /* --checkpoint-dir on the command line */
} Options;

/* Room for a message that names a path or two and a reason. */
enum { MSG_LEN = 1024 };

/* snprintf for messages: a message longer than its buffer is cut, which
 * is acceptable for a message (and keeps the compiler's truncation
 * analysis, meant for data, out of diagnostics). */
static void fmt_cut(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fmt_cut(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, n, fmt, ap);
  va_end(ap);
}

/* A line of the lead rank on stdout, never glued onto a progress line. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  dst_log_end_progress();
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
}

/* The most --threads accepts: beyond any machine's cores, below what
 * OpenMP and OpenBLAS can start without failing in odd ways. */
enum { MAX_THREADS = 4096 };
/* The most --steps (and the other step counts) accept: no run gets near
 * it, and step arithmetic (step * grad_accum * dp, ...) stays far from
 * overflowing int64. */
#define MAX_STEPS 1000000000000000LL

static void usage(const DstModel *m, FILE *f) {
  fprintf(f,
          "usage: %s --data FILE [options]\n"
          "Trains the model %s (compiled from %s).\n"
          "  --data FILE            training tokens: a text file (bytes) or an llm.c token shard\n"
          "  --val-data FILE        validation tokens (default: none)\n"
          "  --steps N              optimizer steps (default from the .dst file: %lld)\n"
          "  --seed S               initialization seed, 0 .. 2^63-1 (default %lld)\n"
          "  --init FILE            start from the parameters in a safetensors file\n"
          "  --save FILE            write the trained parameters as safetensors\n"
          "  --log-every N          print a line every N steps (default %lld)\n"
          "  --eval-every N         validation loss every N steps (default %lld)\n"
          "  --sample N             generate N tokens after training (language models)\n"
          "  --temperature T        sample from softmax(logits / T) (default 1; below 1 is more\n"
          "                         conservative, above 1 more varied)\n"
          "  --threads N            CPU threads, 1 .. %d (default: all cores)\n"
          "  --loss-log FILE        write each step's loss, full precision, one per line\n"
          "  --dump FILE            after the first forward/backward, write the inputs, the\n"
          "                         loss, the logits and every gradient (grad.NAME) as safetensors\n"
          "  --check-grads          compare gradients with finite differences and exit\n"
          "  --checkpoint-dir DIR   where checkpoints go (default: checkpoints); given without\n"
          "                         --save-every, a checkpoint is written only when a signal\n"
          "                         stops the run. A new run (no --resume) refuses a directory\n"
          "                         that holds checkpoints already\n"
          "  --save-every N         a checkpoint every N steps and at the end (default from the\n"
          "                         .dst file: %lld; 0 = none)\n"
          "  --keep K               checkpoints kept (default 3; older ones are removed)\n"
          "  --resume PATH          continue from a checkpoint (a step-N directory, or the\n"
          "                         checkpoint directory for its latest)\n"
          "  --quiet                no per-step lines\n"
          "  --profile              time every operation; print where a step's time goes\n"
          "Signals: SIGTERM or SIGINT (what schedulers send before preempting a job) stop\n"
          "training after the current step, on every rank at the same step; a checkpoint is\n"
          "written when checkpointing is on. A second signal exits at once.\n"
          "Environment: DST_COMM_TIMEOUT=SECONDS how long a rank waits in a collective\n"
          "before the watchdog ends the job (default 300; 0 waits forever).\n"
          "Exit status: 0 done, 1 error in the input (data, files, checkpoints), 2 bad\n"
          "command line, 70 internal error, 130 stopped by SIGINT, 143 stopped by SIGTERM.\n",
          "PROGRAM", m->name, m->source, (long long)m->steps, (long long)m->seed, (long long)m->log_every,
          (long long)m->eval_every, MAX_THREADS, (long long)m->save_every);
}

/* An integer option in [lo, hi]; anything else (not a number, trailing
 * characters, out of range or overflowing int64) is a usage error. */
static int64_t parse_count(const char *flag, const char *v, int64_t lo, int64_t hi) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || errno == ERANGE || x < lo || x > hi) {
    fprintf(stderr, "error: %s needs an integer from %lld to %lld, not '%s'\n", flag, (long long)lo, (long long)hi,
            v);
    exit(DST_EXIT_USAGE);
  }
  return x;
}

static Options parse_args(const DstModel *m, int argc, char **argv) {
  Options o = {.temperature = 1.0, .steps = m->steps, .seed = m->seed, .log_every = m->log_every, .eval_every = m->eval_every,
               .save_every = m->save_every, .keep = 3, .ckpt_dir = "checkpoints"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VALUE()                                                      \
  do {                                                               \
    if (!v) {                                                        \
      fprintf(stderr, "error: %s needs a value\n", a);               \
      exit(DST_EXIT_USAGE);                                          \
    }                                                                \
    i++;                                                             \
  } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(m, stdout);
      exit(0);
    } else if (!strcmp(a, "--data")) { VALUE(); o.data = v; }
    else if (!strcmp(a, "--val-data")) { VALUE(); o.val_data = v; }
    else if (!strcmp(a, "--init")) { VALUE(); o.init = v; }
    else if (!strcmp(a, "--save")) { VALUE(); o.save = v; }
    else if (!strcmp(a, "--loss-log")) { VALUE(); o.loss_log = v; }
    else if (!strcmp(a, "--dump")) { VALUE(); o.dump = v; }
    else if (!strcmp(a, "--checkpoint-dir")) { VALUE(); o.ckpt_dir = v; o.ckpt_dir_given = true; }
    else if (!strcmp(a, "--resume")) { VALUE(); o.resume = v; }
    else if (!strcmp(a, "--save-every")) { VALUE(); o.save_every = parse_count(a, v, 0, MAX_STEPS); }
    else if (!strcmp(a, "--keep")) { VALUE(); o.keep = parse_count(a, v, 1, 1000000); }
    else if (!strcmp(a, "--steps")) { VALUE(); o.steps = parse_count(a, v, 0, MAX_STEPS); }
    else if (!strcmp(a, "--seed")) { VALUE(); o.seed = parse_count(a, v, 0, INT64_MAX); }
    else if (!strcmp(a, "--log-every")) { VALUE(); o.log_every = parse_count(a, v, 1, MAX_STEPS); }
    else if (!strcmp(a, "--eval-every")) { VALUE(); o.eval_every = parse_count(a, v, 0, MAX_STEPS); }
    else if (!strcmp(a, "--sample")) { VALUE(); o.sample = parse_count(a, v, 0, MAX_STEPS); }
    else if (!strcmp(a, "--temperature")) {
      VALUE();
      char *end;
      errno = 0;
      double x = strtod(v, &end);
      if (!*v || *end || errno == ERANGE || !(x >= 0.01 && x <= 100)) {
        fprintf(stderr, "error: --temperature needs a number from 0.01 to 100, not '%s'\n", v);
        exit(DST_EXIT_USAGE);
      }
      o.temperature = x;
    }
    else if (!strcmp(a, "--threads")) {
      VALUE();
      char *end;
      errno = 0;
      long long n = strtoll(v, &end, 10);
      if (!*v || *end || errno == ERANGE || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "error: --threads needs an integer from 1 to %d, not '%s' (this machine has %ld cores)\n",
                MAX_THREADS, v, sysconf(_SC_NPROCESSORS_ONLN));
        exit(DST_EXIT_USAGE);
      }
      o.threads = n;
    }
    else if (!strcmp(a, "--check-grads")) o.check_grads = true;
    else if (!strcmp(a, "--quiet")) o.quiet = true;
    else if (!strcmp(a, "--profile")) o.profile = true;
    else {
      fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
      exit(DST_EXIT_USAGE);
    }
#undef VALUE
  }
  if (!o.data) {
    fprintf(stderr, "error: no training data: give --data FILE (see --help)\n");
    exit(DST_EXIT_USAGE);
  }
  return o;
}

/* ------------------------------------------------------------ stopping on a signal
 *
 * SIGTERM and SIGINT (what Slurm and Kubernetes send before they preempt a
 * job, and Ctrl-C) only set stop_signal; the step loop looks at it once
 * per step, after the ranks have agreed on it (step_mean), so every rank
 * stops after the same step, writes the same checkpoint and exits with the
 * same status. A second signal means the user will not wait: the default
 * action (death by that signal) at once. */

static volatile sig_atomic_t stop_signal; /* the first SIGTERM or SIGINT received; 0: none */

static void on_stop_signal(int sig) {
  if (stop_signal) {
    static const char msg[] = "\nsecond signal: exiting at once, without finishing the step\n";
    ssize_t k = write(2, msg, sizeof msg - 1);
    (void)k;
    signal(sig, SIG_DFL);
    raise(sig); /* delivered when this handler returns */
    return;
  }
  stop_signal = sig;
}

/* A signal ignored when the program started stays ignored (nohup, the
 * background jobs of a shell without job control): the usual contract. */
static void install_stop_handlers(void) {
  static const int sigs[] = {SIGTERM, SIGINT};
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; /* reads and writes carry on; only the flag changes */
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sigs[i], &sa, NULL);
}

static const char *signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal"; }

typedef struct {
  const DstModel *m;
  DstRun r;
  DstMesh *mesh;
  DstComm *dp;    /* the data-parallel group */
  int rank, world; /* this rank's place in it */
  double comm_bytes; /* sent per rank by the driver's collectives (ring volume) */
  double comm_sec;   /* time spent waiting in them */
  DstCommReq *reqs;  /* bucket reductions in flight */
  int nreqs;
  bool reducing;     /* this micro-step's buckets are reduced as they complete */
  bool sharded;    /* ZeRO with dp > 1: optimizer state covers this rank's shard */
  bool z2, z3;     /* ZeRO-2/3 with dp > 1: partitioned by units (below) */
  /* The shard. ZeRO-1: the floats [lo, lo + n) of the flat slab. ZeRO-2/3:
   * n floats, the concatenation over units u of this rank's chunk of
   * uchunk[u] floats (unit u's floats [rank * uchunk[u], ...) clipped to the
   * unit), held at ushard[u]. segs lists where the shard's floats are in
   * the slab (without ZeRO: the whole slab). */
  int64_t lo, n;
  int64_t *ushard, *uchunk;
  size_t max_unit_bytes; /* the largest unit buffer (staging of whole-unit gathers) */
  struct Seg {
    int64_t full, shard, n; /* floats */
  } *segs;
  int nsegs;
  float *pshard, *gshard, *gstage; /* ZeRO-2/3: master parameters, reduced
                                      gradients, later micro-steps' receive buffer */
  DstCommReq *preq, *greq;         /* per unit: its gather, its reduce-scatter */
  bool *pheld;                     /* per unit: gathered or being gathered */
  int cursor;                      /* position in m->fetch */
  int *inflight, ninflight;        /* reduce-scatters in flight, oldest first */
  int micro;                       /* the micro-step of gradient accumulation */
  float *mom1, *mom2;
  DstDataLoader *train, *val;
  int B, T;
  int32_t *tok, *tgt; /* (B, T) staging buffers */
  int stop;           /* the signal every rank agreed to stop on after this step; 0: none */
  int failed_saves;   /* checkpoints in a row that could not be written */
} Trainer;

static const DstInputInfo *input(const DstModel *m, int i) { return i < m->ninputs ? &m->inputs[i] : NULL; }

/* Opens a data file and checks every token against the model's
 * vocabulary now, not hours in when a batch reaches the bad one: the
 * inputs are fed from the tokens and the next-token targets, so the
 * limit is the smaller id limit of inputs 0 and 1. */
static DstDataLoader *open_data(Trainer *t, const char *path) {
  char err[DST_ERR_LEN];
  DstDataLoader *dl = dst_data_open(path, t->B, t->T, t->rank, t->world, err);
  if (!dl) dst_fatal("%s", err);
  int64_t limit = 0;
  const char *who = NULL;
  for (int i = 0; i < 2; i++) {
    const DstInputInfo *in = input(t->m, i);
    if (in && in->id_limit > 0 && (limit == 0 || in->id_limit < limit)) {
      limit = in->id_limit;
      who = in->name;
    }
  }
  if (limit > 0 && limit <= (int64_t)UINT32_MAX) {
    char reader[160];
    snprintf(reader, sizeof reader, "input '%s'", who);
    if (!dst_data_check_ids(dl, (uint32_t)limit, reader, err)) dst_fatal("%s", err);
  }
  return dl;
}

/* Fills the model's inputs with the next batch of dl. */
static void load_batch(Trainer *t, DstDataLoader *dl) {
  char err[DST_ERR_LEN];
  if (!dst_data_next(dl, t->tok, t->tgt, err)) dst_fatal("%s", err);
  const DstInputInfo *in0 = input(t->m, 0), *in1 = input(t->m, 1);
  size_t bt = sizeof(int32_t) * (size_t)t->B * (size_t)t->T;
  dev->upload(&t->r, t->r.data + in0->offset, t->tok, bt);
  if (!in1) return;
  if (in1->ndim != 2) /* the token after each window */
    for (int b = 0; b < t->B; b++) t->tgt[b] = t->tgt[(size_t)b * t->T + (t->T - 1)];
  dev->upload(&t->r, t->r.data + in1->offset, t->tgt, in1->ndim == 2 ? bt : sizeof(int32_t) * (size_t)t->B);
}

static float loss_value(Trainer *t) {
  float x;
  dev->download(&t->r, &x, t->r.arena + t->m->loss_offset, sizeof x);
  return x;
}

/* A host copy of n bytes of device memory (the memory itself on the CPU);
 * host_release frees it, host_commit first writes it back. */
static void *host_view(Trainer *t, const void *p, size_t n) {
  if (dev->host || !p) return (void *)p;
  void *h = dst_malloc(n ? n : 1, DST_MEM_OTHER, "host staging");
  dev->download(&t->r, h, p, n);
  return h;
}

static void host_release(const void *p, void *h) {
  if (h != p) dst_free(h);
}

static void host_commit(Trainer *t, void *p, void *h, size_t n) {
  if (h == p) return;
  dev->upload(&t->r, p, h, n);
  dst_free(h);
}

/* The mean over the data-parallel ranks of a per-rank value (each rank's
 * loss is the mean over its equal share of the global batch). */
static double dp_mean(Trainer *t, double x) {
  if (t->world == 1) return x;
  dst_comm_allreduce(t->dp, &x, &x, 1, DST_COMM_F64, DST_COMM_SUM);
  return x / t->world;
}

/* The end of a step's computation: the mean loss over the data-parallel
 * ranks and whether any rank was asked to stop, in one all-reduce (the
 * loss's, which every step makes anyway), so a signal that reached only
 * some ranks stops all of them after the same step. */
static double step_mean(Trainer *t, double loss) {
  int sig = stop_signal;
  double v[3] = {loss, sig == SIGTERM, sig == SIGINT};
  if (t->world > 1) dst_comm_allreduce(t->dp, v, v, 3, DST_COMM_F64, DST_COMM_SUM);
  /* SIGTERM wins: it is the one a scheduler sends */
  t->stop = v[1] > 0 ? SIGTERM : v[2] > 0 ? SIGINT : 0;
  return t->world == 1 ? v[0] : v[0] / t->world;
}

/* ------------------------------------------------------------ ZeRO-2/3
 *
 * The compiler partitions the parameter slab into units (DstModel.buckets):
 * a layer's parameters, roughly, in the order the backward pass finishes
 * their gradients. Each rank owns ceil(floats / dp) floats of every unit
 * (the last rank's chunk is padded): their fp32 master values, optimizer
 * moments and reduced gradients. The generated code addresses gradients
 * (and at stage 3 parameters) through per-unit buffers and raises
 * zero_hook events; the policy below is the one the compiler simulated to
 * plan the peak of those buffers, so the run allocates what the plan says. */

static int64_t unit_floats(const Trainer *t, int u) { return t->m->buckets[u].bytes / 4; }
static size_t unit_buf_bytes(const Trainer *t, int u) { return (size_t)t->uchunk[u] * (size_t)t->world * 4; }

/* The slab floats rank r holds, and where in its shard: its chunk of every
 * unit (ZeRO-2/3), its flat shard (ZeRO-1), or without sharding the whole
 * slab (every rank holds it; rank 0 stands for them in checkpoints). out
 * has room for max(units, 1) segments; returns how many. */
static int rank_segs(const Trainer *t, int r, struct Seg *out) {
  if (!t->sharded) {
    out[0] = (struct Seg){0, 0, t->m->params_bytes / 4};
    return 1;
  }
  if (!t->z2) {
    out[0] = (struct Seg){(int64_t)r * t->n, 0, t->n};
    return 1;
  }
  int n = 0;
  for (int u = 0; u < t->m->nbuckets; u++) {
    int64_t first = (int64_t)r * t->uchunk[u], left = unit_floats(t, u) - first;
    int64_t cnt = left < t->uchunk[u] ? left : t->uchunk[u];
    if (cnt > 0) out[n++] = (struct Seg){t->m->buckets[u].offset / 4 + first, t->ushard[u], cnt};
  }
  return n;
}

/* Lays out this rank's shard: its chunk of every unit, in unit order. */
static void setup_shards(Trainer *t) {
  const DstModel *m = t->m;
  int U = m->nbuckets > 0 ? m->nbuckets : 1;
  t->segs = dst_calloc((size_t)U, sizeof *t->segs, DST_MEM_OTHER, "shard map");
  if (!t->z2) {
    t->nsegs = rank_segs(t, t->rank, t->segs);
    return;
  }
  t->ushard = dst_calloc((size_t)U, sizeof(int64_t), DST_MEM_OTHER, "shard map");
  t->uchunk = dst_calloc((size_t)U, sizeof(int64_t), DST_MEM_OTHER, "shard map");
  int64_t at = 0;
  for (int u = 0; u < U; u++) {
    t->uchunk[u] = (unit_floats(t, u) + t->world - 1) / t->world;
    t->ushard[u] = at;
    if (unit_buf_bytes(t, u) > t->max_unit_bytes) t->max_unit_bytes = unit_buf_bytes(t, u);
    at += t->uchunk[u];
  }
  t->lo = 0;
  t->n = at;
  t->nsegs = rank_segs(t, t->rank, t->segs);
  if (at * 4 != m->shard_bytes)
    dst_fatal("internal error: the shard is %lld bytes, the plan says %lld", (long long)at * 4,
              (long long)m->shard_bytes);
  t->preq = dst_calloc((size_t)U, sizeof(DstCommReq), DST_MEM_OTHER, "unit requests");
  t->greq = dst_calloc((size_t)U, sizeof(DstCommReq), DST_MEM_OTHER, "unit requests");
  t->pheld = dst_calloc((size_t)U, sizeof(bool), DST_MEM_OTHER, "unit requests");
  t->inflight = dst_calloc((size_t)U + 1, sizeof(int), DST_MEM_OTHER, "unit requests");
  t->r.punit = dst_calloc((size_t)U, sizeof(char *), DST_MEM_OTHER, "unit pointers");
  t->r.gunit = dst_calloc((size_t)U, sizeof(char *), DST_MEM_OTHER, "unit pointers");
}

/* Before a collective reads or writes memory that device work wrote. */
static void comm_fence(Trainer *t) {
  if (dev->comm_fence) dev->comm_fence(&t->r);
}

/* n bytes of device staging into full (device or host memory). */
static void staged_to(Trainer *t, float *full, const float *buf, size_t n, bool full_on_device) {
  if (full_on_device) dev->copy(&t->r, full, buf, n);
  else dev->download(&t->r, full, buf, n);
}

/* full (the slab layout, every rank's floats) from shard (this rank's: its
 * flat part at ZeRO-1, its chunk of every unit at ZeRO-2/3), through device
 * staging; collective. full may be NULL on ranks that do not need it. */
static void full_from_shard(Trainer *t, const float *shard, float *full, bool full_on_device) {
  size_t bytes = t->z2 ? t->max_unit_bytes + 4 : (size_t)t->m->params_bytes;
  float *buf = dev->alloc(bytes, DST_MEM_OTHER, "gather staging");
  comm_fence(t); /* the shard's writes, the buffer's zeroing */
  dst_comm_set_label("shard gather");
  if (!t->z2) {
    dst_comm_allgather(t->dp, shard, buf, (size_t)t->n, DST_COMM_F32);
    if (full) staged_to(t, full, buf, bytes, full_on_device);
  }
  for (int u = 0; t->z2 && u < t->m->nbuckets; u++) {
    dst_comm_allgather(t->dp, shard + t->ushard[u], buf, (size_t)t->uchunk[u], DST_COMM_F32);
    if (full)
      staged_to(t, full + t->m->buckets[u].offset / 4, buf, (size_t)unit_floats(t, u) * 4, full_on_device);
  }
  dev->free(buf, bytes, DST_MEM_OTHER);
}

/* This rank's shard (device memory) of a slab-layout host buffer. */
static void shard_from_full(Trainer *t, const float *full, float *shard) {
  for (int i = 0; i < t->nsegs; i++)
    dev->upload(&t->r, shard + t->segs[i].shard, full + t->segs[i].full, (size_t)t->segs[i].n * 4);
}

static void wait_timed(Trainer *t, DstCommReq *q) {
  double c0 = dst_now_sec();
  dst_comm_wait(q);
  t->comm_sec += dst_now_sec() - c0;
}

static void gather_unit(Trainer *t, int u) {
  t->r.punit[u] = dev->alloc(unit_buf_bytes(t, u), DST_MEM_PARAMS, "gathered parameters");
  t->pheld[u] = true;
  comm_fence(t); /* the buffer's zeroing, the shard's last update */
  dst_comm_set_label("parameter unit");
  t->preq[u] = dst_comm_iallgather(t->dp, t->pshard + t->ushard[u], t->r.punit[u], (size_t)t->uchunk[u],
                                   DST_COMM_F32);
  t->comm_bytes += (double)(t->world - 1) * (double)t->uchunk[u] * 4;
}

/* The oldest reduce-scatter in flight has finished: its buffer goes, and on
 * later micro-steps its result adds to the gradient shard. */
static void finish_oldest(Trainer *t) {
  int u = t->inflight[0];
  wait_timed(t, &t->greq[u]);
  dev->free(t->r.gunit[u], unit_buf_bytes(t, u), DST_MEM_GRADS);
  t->r.gunit[u] = NULL;
  if (t->micro > 0) dev->add(&t->r, t->gshard + t->ushard[u], t->gstage + t->ushard[u], t->uchunk[u]);
  memmove(t->inflight, t->inflight + 1, sizeof(int) * (size_t)--t->ninflight);
}

static void zero_hook(DstRun *r, int kind, int u) {
  Trainer *t = r->ctx;
  const DstModel *m = t->m;
  switch (kind) {
  case DST_ZERO_NEED: {
    int end = t->cursor < m->nfetch_fwd ? m->nfetch_fwd : m->nfetch;
    int next = t->cursor + 1 < end ? m->fetch[t->cursor + 1] : -1;
    t->cursor++;
    if (!t->pheld[u]) gather_unit(t, u);
    if (next >= 0 && !t->pheld[next]) gather_unit(t, next); /* prefetch */
    if (dev->comm_join) dev->comm_join(&t->r, &t->preq[u]); /* the device waits, not the host */
    else wait_timed(t, &t->preq[u]);
    break;
  }
  case DST_ZERO_DONE:
    wait_timed(t, &t->preq[u]);
    dev->free(t->r.punit[u], unit_buf_bytes(t, u), DST_MEM_PARAMS);
    t->r.punit[u] = NULL;
    t->pheld[u] = false;
    break;
  case DST_ZERO_GRAD_BEGIN:
    /* zeroed: the padding and the gaps between parameters reduce to 0 */
    t->r.gunit[u] = dev->alloc(unit_buf_bytes(t, u), DST_MEM_GRADS, "unreduced gradients");
    break;
  default: { /* DST_ZERO_GRAD_READY */
    float *recv = (t->micro ? t->gstage : t->gshard) + t->ushard[u];
    comm_fence(t);
    dst_comm_set_label("gradient unit");
    t->greq[u] = dst_comm_ireduce_scatter(t->dp, t->r.gunit[u], recv, (size_t)t->uchunk[u], DST_COMM_F32,
                                          DST_COMM_SUM);
    t->comm_bytes += (double)(t->world - 1) * (double)t->uchunk[u] * 4;
    t->inflight[t->ninflight++] = u;
    if (t->ninflight > m->zero_inflight) finish_oldest(t);
    break;
  }
  }
  /* let the others progress */
  for (int i = 0; i < t->ninflight; i++) dst_comm_test(&t->greq[t->inflight[i]]);
}

/* The generated passes, with the stage-3 fetch order restarted. */
static void run_forward(Trainer *t) {
  t->cursor = 0;
  t->m->forward(&t->r);
}

static void run_backward(Trainer *t) {
  t->cursor = t->m->nfetch_fwd;
  t->m->backward(&t->r);
  while (t->ninflight) finish_oldest(t);
}

static void check_run(Trainer *t, int64_t step) {
  if (dev->poll_error) dev->poll_error(&t->r);
  if (!t->r.error) return;
  dst_fatal("step %lld: %s (at flat position %lld of the batch)", (long long)step, t->r.error,
            (long long)t->r.error_pos);
}

static void init_params(Trainer *t, char *base, uint64_t seed) {
  const DstModel *m = t->m;
  for (int i = 0; i < m->nparams; i++) {
    const DstParamInfo *p = &m->params[i];
    float *x = (float *)(base + p->offset);
    /* Each parameter draws from its own counter range, so adding a layer
     * does not change the others' initial values. */
    uint64_t stream = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
    switch (p->init) {
    case DST_INIT_NORMAL: k_fill_normal(x, p->numel, 0.0f, p->init_arg, stream, 0); break;
    case DST_INIT_UNIFORM: k_fill_uniform(x, p->numel, -p->init_arg, p->init_arg, stream, 0); break;
    case DST_INIT_ONES: k_fill(x, 1.0f, p->numel); break;
    case DST_INIT_CONST: k_fill(x, p->init_arg, p->numel); break;
    default: k_fill(x, 0.0f, p->numel);
    }
  }
}

static void load_init(Trainer *t, char *base, const char *path) {
  char err[DST_ERR_LEN];
  DstSafetensors *st = dst_st_open(path, err);
  if (!st) dst_fatal("--init %s: %s", path, err);
  for (int i = 0; i < t->m->nparams; i++) {
    const DstParamInfo *p = &t->m->params[i];
    if (!dst_st_load_into(st, p->name, DST_DT_F32, p->shape, p->ndim, base + p->offset, err))
      dst_fatal("--init %s: %s", path, err);
  }
  if (dst_st_count(st) != (size_t)t->m->nparams)
    dst_log_warn("--init %s holds %zu tensors; the model has %d parameters (extra tensors ignored)", path,
                 dst_st_count(st), t->m->nparams);
  dst_st_close(st);
}

static void save_params(Trainer *t, const char *path, int64_t step, const char *base) {
  char err[DST_ERR_LEN];
  DstStWriter *w = dst_st_writer_new();
  for (int i = 0; i < t->m->nparams; i++) {
    const DstParamInfo *p = &t->m->params[i];
    if (!dst_st_writer_add(w, p->name, DST_DT_F32, p->shape, p->ndim, base + p->offset, err))
      dst_fatal("--save %s: %s", path, err);
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)step);
  dst_st_writer_set_metadata(w, "step", buf, err);
  dst_st_writer_set_metadata(w, "model", t->m->name, err);
  if (!dst_st_writer_write(w, path, err)) dst_fatal("--save %s: %s", path, err);
  dst_st_writer_free(w);
}

/* The state after one forward/backward, for comparison with a reference
 * implementation: inputs, loss, logits and the gradient of every parameter. */
static void dump_step(Trainer *t, const char *path, const char *dgrads) {
  const DstModel *m = t->m;
  char err[DST_ERR_LEN];
  const char *data = host_view(t, t->r.data, (size_t)m->data_bytes);
  const char *arena = host_view(t, t->r.arena, (size_t)m->arena_bytes);
  const char *grads = dgrads == t->r.grads ? host_view(t, dgrads, (size_t)m->params_bytes) : dgrads;
  DstStWriter *w = dst_st_writer_new();
  char **names = dst_calloc((size_t)m->nparams + 1, sizeof(char *), DST_MEM_OTHER, "dump names");
  bool ok = true;
  for (int i = 0; i < m->ninputs && ok; i++)
    ok = dst_st_writer_add(w, m->inputs[i].name, DST_DT_I32, m->inputs[i].shape, m->inputs[i].ndim,
                           data + m->inputs[i].offset, err);
  int64_t scalar[1] = {1};
  if (ok) ok = dst_st_writer_add(w, "loss", DST_DT_F32, scalar, 0, arena + m->loss_offset, err);
  if (ok && m->logits_offset >= 0)
    ok = dst_st_writer_add(w, "logits", DST_DT_F32, m->logits_shape, m->logits_ndim, arena + m->logits_offset,
                           err);
  for (int i = 0; i < m->nparams && ok; i++) {
    const DstParamInfo *p = &m->params[i];
    size_t n = strlen(p->name) + 6;
    names[i] = dst_malloc(n, DST_MEM_OTHER, "dump names");
    snprintf(names[i], n, "grad.%s", p->name);
    ok = dst_st_writer_add(w, names[i], DST_DT_F32, p->shape, p->ndim, grads + p->offset, err);
  }
  if (!ok || !dst_st_writer_write(w, path, err)) dst_fatal("--dump %s: %s", path, err);
  dst_st_writer_free(w);
  host_release(t->r.data, (void *)data);
  host_release(t->r.arena, (void *)arena);
  if (dgrads == t->r.grads) host_release(dgrads, (void *)grads);
  for (int i = 0; i < m->nparams; i++) dst_free(names[i]);
  dst_free(names);
}

/* ------------------------------------------------------------ checkpoints
 *
 * A checkpoint is a directory DIR/step-NNNNNNNN: every rank that holds a
 * part of the model state writes rank-RRRRR.safetensors (its slice of each
 * parameter and of its optimizer moments, 1-D, as "NAME", "m.NAME",
 * "v.NAME"), and rank 0 writes manifest.json: the model, the step, the data
 * position, the layout it was saved under, every tensor's global name,
 * dtype and shape, which rank file holds which slice (start and count in
 * the flattened tensor), and each file's checksum. Without sharding rank 0
 * alone writes (the others hold the same bytes).
 * Loading reads the manifest and, on each rank, only the files holding
 * slices of what that rank needs, so a checkpoint resumes under any dp and
 * ZeRO stage, and no rank ever holds more than its own state plus one file.
 * Writing is atomic: everything goes to DIR/.tmp-step-N, is fsynced, and
 * the directory is renamed into place; a crash leaves either the old set of
 * checkpoints or the new one, never a half-written checkpoint. A save that
 * fails (a full disk, a directory that went away) is not fatal: the ranks
 * agree it failed, the temporary directory goes, no checkpoint is pruned,
 * and training goes on with a warning.
 * The manifest ends with manifest_checksum, the checksum of every byte
 * before its line, so an edited or damaged step or data_pos is caught at
 * resume like a damaged tensor file. A checkpoint that does not verify is
 * never skipped silently: resume stops and names the newest earlier one
 * that does. */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static void fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(dir);
}

/* The step-N directories of dir, sorted by step (ascending). */
static int list_checkpoints(const char *dir, int64_t *steps, int max) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    long long s;
    char tail;
    if (sscanf(e->d_name, "step-%lld%c", &s, &tail) == 1) steps[n++] = s;
  }
  closedir(d);
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
      int64_t t = steps[j];
      steps[j] = steps[j - 1];
      steps[j - 1] = t;
    }
  return n;
}

/* The parameters in the slab layout: the slab itself, or at stage 3 a
 * gathered copy (collective: every rank calls it; only ranks with `need`
 * get the copy), which release_full frees. */
static float *params_full(Trainer *t, bool need) {
  if (!t->z3) return need ? host_view(t, t->r.params, (size_t)t->m->params_bytes) : NULL;
  float *full = need ? dst_calloc(1, (size_t)t->m->params_bytes, DST_MEM_OTHER, "parameter gather") : NULL;
  full_from_shard(t, t->pshard, full, false);
  return full;
}

static void release_full(Trainer *t, float *full) {
  if (full && full != (float *)t->r.params) dst_free(full);
}

/* Bytes of the buffer that holds state s (see state_buf). */
static size_t state_bytes(const Trainer *t, int s) {
  return s == 0 && !t->z2 ? (size_t)t->m->params_bytes : (size_t)t->n * 4;
}

/* Where parameters are written in the slab layout (initialization, --init,
 * resume); params_written then takes the ZeRO-2/3 master shard from it. */
static char *params_target(Trainer *t) {
  if (t->z3 || !dev->host) return dst_calloc(1, (size_t)t->m->params_bytes, DST_MEM_OTHER, "parameter staging");
  return t->r.params;
}

static void params_written(Trainer *t, char *full) {
  if (t->z2) shard_from_full(t, (const float *)full, t->pshard);
  if (!t->z3 && !dev->host) dev->upload(&t->r, t->r.params, full, (size_t)t->m->params_bytes);
  release_full(t, (float *)full);
}

enum { NSTATES = 3 };
static const char *const state_prefix[NSTATES] = {"", "m.", "v."};

/* State s (parameters, first and second moment) of this rank: its buffer,
 * and the segments of the slab it holds there (indexed by seg.shard, or
 * by slab position when *full_index). NULL when the optimizer has no such
 * state. */
static float *state_buf(Trainer *t, int s, bool *full_index) {
  if (s == 0) {
    *full_index = !t->z2;
    return t->z2 ? t->pshard : (float *)t->r.params;
  }
  *full_index = !t->sharded;
  return s == 1 ? t->mom1 : t->mom2;
}

/* The part of parameter p inside segment g: elements [*start, *start + n) of
 * the flattened tensor; returns n (0: none). */
static int64_t slice_of(const DstParamInfo *p, const struct Seg *g, int64_t *start) {
  int64_t b = p->offset / 4, e = b + p->numel;
  if (b < g->full) b = g->full;
  if (e > g->full + g->n) e = g->full + g->n;
  *start = b - p->offset / 4;
  return e > b ? e - b : 0;
}

static float *seg_ptr(float *base, bool full_index, const struct Seg *g, int64_t slab_pos) {
  return base + (full_index ? slab_pos : g->shard + (slab_pos - g->full));
}

/* A growing text buffer (dst_realloc), for the manifest. */
typedef struct {
  char *p;
  size_t n, cap;
} Buf;

static void bput(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bput(Buf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    b->cap = 2 * (b->cap + (size_t)k + 1);
    b->p = dst_realloc(b->p, b->cap, DST_MEM_OTHER, "manifest");
  }
}

static void bjson_str(Buf *b, const char *s) {
  bput(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') bput(b, "\\%c", c);
    else if (c < 0x20) bput(b, "\\u%04x", c);
    else bput(b, "%c", c);
  }
  bput(b, "\"");
}

/* The line that ends every manifest: the checksum of all bytes before it
 * (the line's leading newline included). Written last and found as the
 * last occurrence of this text, so step, data_pos and every other field
 * are covered without a canonical re-serialization of the JSON. */
#define MANIFEST_SUM_KEY "\n  \"manifest_checksum\": \""
static const uint64_t fnv_init = 1469598103934665603ull;

/* Writes the manifest to path; false with the reason in why. *bytes: its size. */
static bool write_manifest(Trainer *t, const char *path, int64_t step, const uint64_t *sums, int nstates,
                           uint64_t *bytes, char why[MSG_LEN]) {
  const DstModel *m = t->m;
  int writers = t->sharded ? t->world : 1;
  int maxsegs = m->nbuckets > 0 ? m->nbuckets : 1;
  struct Seg *segs = dst_calloc((size_t)writers * (size_t)maxsegs, sizeof *segs, DST_MEM_OTHER, "manifest");
  int *nsegs = dst_calloc((size_t)writers, sizeof(int), DST_MEM_OTHER, "manifest");
  for (int r = 0; r < writers; r++) nsegs[r] = rank_segs(t, r, segs + (size_t)r * (size_t)maxsegs);
  Buf b = {dst_malloc(1 << 16, DST_MEM_OTHER, "manifest"), 0, 1 << 16};
  bput(&b, "{\n  \"format\": \"dst-checkpoint-1\",\n  \"model\": ");
  bjson_str(&b, m->name);
  bput(&b, ",\n  \"step\": %lld,\n  \"data_pos\": %llu,\n  \"dp\": %d,\n  \"zero\": %lld,\n", (long long)step,
       (unsigned long long)t->train->pos, t->world, (long long)m->zero);
  bput(&b, "  \"states\": [\"params\"");
  for (int s = 1; s < nstates; s++) bput(&b, ", \"%s\"", s == 1 ? "m" : "v");
  bput(&b, "],\n  \"files\": [\n");
  for (int r = 0; r < writers; r++)
    bput(&b, "    {\"rank\": %d, \"file\": \"rank-%05d.safetensors\", \"checksum\": \"%016llx\"}%s\n", r, r,
         (unsigned long long)sums[r], r + 1 < writers ? "," : "");
  bput(&b, "  ],\n  \"tensors\": [\n");
  for (int i = 0; i < m->nparams; i++) {
    const DstParamInfo *p = &m->params[i];
    bput(&b, "    {\"name\": ");
    bjson_str(&b, p->name);
    bput(&b, ", \"dtype\": \"F32\", \"shape\": [");
    for (int k = 0; k < p->ndim; k++) bput(&b, "%s%lld", k ? ", " : "", (long long)p->shape[k]);
    bput(&b, "], \"slices\": [");
    bool first = true;
    for (int r = 0; r < writers; r++)
      for (int g = 0; g < nsegs[r]; g++) {
        int64_t start, n = slice_of(p, &segs[(size_t)r * (size_t)maxsegs + (size_t)g], &start);
        if (!n) continue;
        bput(&b, "%s{\"rank\": %d, \"start\": %lld, \"count\": %lld}", first ? "" : ", ", r, (long long)start,
             (long long)n);
        first = false;
      }
    bput(&b, "]}%s\n", i + 1 < m->nparams ? "," : "");
  }
  bput(&b, "  ],\n");
  uint64_t sum = fnv(fnv_init, b.p, b.n);
  bput(&b, "%s%016llx\"\n}\n", MANIFEST_SUM_KEY + 1, (unsigned long long)sum);
  dst_free(segs);
  dst_free(nsegs);
  FILE *f = fopen(path, "w");
  bool ok = f && fwrite(b.p, 1, b.n, f) == b.n && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int e = errno;
  if (f && fclose(f) != 0 && ok) {
    ok = false;
    e = errno;
  }
  if (!ok) fmt_cut(why, MSG_LEN, "cannot write %s: %s", path, strerror(e));
  *bytes = b.n;
  dst_free(b.p);
  return ok;
}

/* Agreement on a step any rank may fail (collective; msg[0] == 0 on a
 * rank that succeeded). True when every rank succeeded; otherwise every
 * rank receives the message and code of the lowest failing rank, so one
 * rank speaks for the job and all take the same path (nobody waits in a
 * collective for a rank that has left). */
static bool all_ok(Trainer *t, char msg[MSG_LEN], int *code, const char *what) {
  if (t->world == 1) return !msg[0];
  int32_t first = msg[0] ? t->rank : t->world;
  dst_comm_set_label(what);
  dst_comm_allreduce(t->dp, &first, &first, 1, DST_COMM_I32, DST_COMM_MIN);
  if (first == t->world) return true;
  struct {
    int32_t code;
    char msg[MSG_LEN];
  } m;
  memset(&m, 0, sizeof m);
  if (t->rank == first) {
    m.code = code ? *code : 0;
    memcpy(m.msg, msg, MSG_LEN);
  }
  dst_comm_set_label(what);
  dst_comm_broadcast(t->dp, &m, sizeof m, DST_COMM_U8, first);
  memcpy(msg, m.msg, MSG_LEN);
  msg[MSG_LEN - 1] = '\0';
  if (code) *code = m.code;
  return false;
}

/* Every rank calls it: each writer writes its file into DIR/.tmp-step-N,
 * rank 0 the manifest; rank 0 moves the finished directory into place and
 * removes the oldest beyond `keep`. Any failure (a full disk, a directory
 * that went away) leaves the checkpoints as they were: the ranks agree
 * that the save failed, the temporary directory goes, nothing is pruned
 * (so the newest good checkpoint stays), and false returns with the reason
 * in why on every rank. On success *bytes is the checkpoint's size. */
static bool save_checkpoint(Trainer *t, const char *dir, int64_t step, int64_t keep, char why[MSG_LEN],
                            uint64_t *bytes) {
  const DstModel *m = t->m;
  char tmp[4096], final[4096], path[4200], err[DST_ERR_LEN];
  bool lead = t->rank == 0;
  why[0] = '\0';
  *bytes = 0;
  snprintf(tmp, sizeof tmp, "%s/.tmp-step-%08lld", dir, (long long)step);
  snprintf(final, sizeof final, "%s/step-%08lld", dir, (long long)step);
  if (lead) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
      fmt_cut(why, MSG_LEN, "cannot create the checkpoint directory %s: %s", dir, strerror(errno));
    } else {
      remove_dir(tmp); /* left by a run killed while saving */
      if (mkdir(tmp, 0777) != 0) fmt_cut(why, MSG_LEN, "cannot create %s: %s", tmp, strerror(errno));
    }
  }
  /* nobody writes before the directory is there */
  if (!all_ok(t, why, NULL, "checkpoint")) {
    if (lead) remove_dir(tmp);
    return false;
  }
  int nstates = 1 + (t->mom1 != NULL) + (t->mom2 != NULL);
  struct {
    uint64_t sum, bytes;
  } mine = {fnv_init, 0};
  if (t->sharded || lead) {
    DstStWriter *w = dst_st_writer_new();
    char **names = dst_calloc((size_t)m->nparams * NSTATES + 1, sizeof(char *), DST_MEM_OTHER, "checkpoint names");
    float *views[NSTATES] = {0}, *bases[NSTATES] = {0};
    for (int s = 0; s < nstates; s++) {
      bool fi;
      bases[s] = state_buf(t, s, &fi);
      float *base = views[s] = host_view(t, bases[s], state_bytes(t, s));
      for (int i = 0; i < m->nparams; i++) {
        const DstParamInfo *p = &m->params[i];
        for (int g = 0; g < t->nsegs; g++) {
          int64_t start, n = slice_of(p, &t->segs[g], &start);
          if (!n) continue;
          const float *x = seg_ptr(base, fi, &t->segs[g], p->offset / 4 + start);
          size_t len = strlen(p->name) + 3;
          char *name = names[(size_t)s * (size_t)m->nparams + (size_t)i] = dst_malloc(len, DST_MEM_OTHER, "checkpoint names");
          snprintf(name, len, "%s%s", state_prefix[s], p->name);
          if (!dst_st_writer_add(w, name, DST_DT_F32, &n, 1, x, err)) dst_die("checkpoint: %s", err);
          mine.sum = fnv(mine.sum, x, (size_t)n * 4);
        }
      }
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)mine.sum);
    dst_st_writer_set_metadata(w, "checksum", buf, err);
    dst_st_writer_set_metadata(w, "model", m->name, err);
    snprintf(buf, sizeof buf, "%lld", (long long)step);
    dst_st_writer_set_metadata(w, "step", buf, err);
    snprintf(path, sizeof path, "%s/rank-%05d.safetensors", tmp, t->rank);
    struct stat sb;
    if (!dst_st_writer_write(w, path, err)) fmt_cut(why, MSG_LEN, "%s", err);
    else if (stat(path, &sb) == 0) mine.bytes = (uint64_t)sb.st_size;
    dst_st_writer_free(w);
    for (int s = 0; s < nstates; s++) host_release(bases[s], views[s]);
    for (size_t i = 0; i < (size_t)m->nparams * NSTATES; i++) dst_free(names[i]);
    dst_free(names);
  }
  uint64_t(*all)[2] = dst_calloc((size_t)t->world, sizeof *all, DST_MEM_OTHER, "checkpoint sums");
  if (t->world > 1) {
    dst_comm_set_label("checkpoint");
    dst_comm_allgather(t->dp, &mine, all, sizeof mine, DST_COMM_U8);
  } else {
    all[0][0] = mine.sum;
    all[0][1] = mine.bytes;
  }
  bool ok = all_ok(t, why, NULL, "checkpoint");
  if (ok && lead) {
    uint64_t *sums = dst_calloc((size_t)t->world, sizeof(uint64_t), DST_MEM_OTHER, "checkpoint sums");
    for (int r = 0; r < t->world; r++) {
      sums[r] = all[r][0];
      *bytes += all[r][1];
    }
    uint64_t mbytes = 0;
    snprintf(path, sizeof path, "%s/manifest.json", tmp);
    ok = write_manifest(t, path, step, sums, nstates, &mbytes, why);
    *bytes += mbytes;
    dst_free(sums);
    if (ok) {
      fsync_path(tmp);
      remove_dir(final); /* a run resumed from an earlier step writes this step again */
      if (rename(tmp, final) != 0) {
        ok = false;
        fmt_cut(why, MSG_LEN, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
      }
    }
    if (ok) {
      fsync_path(dir);
      int64_t steps[4096];
      int n = list_checkpoints(dir, steps, 4096);
      for (int i = 0; i + keep < n; i++) {
        snprintf(final, sizeof final, "%s/step-%08lld", dir, (long long)steps[i]);
        remove_dir(final);
      }
    }
  }
  if (!ok && lead) remove_dir(tmp);
  dst_free(all);
  /* nobody runs ahead of a checkpoint that is not in place yet, and every
   * rank knows whether it is */
  return all_ok(t, why, NULL, "checkpoint");
}

/* The newest checkpoint in dir as "DIR/step-N", or a phrase saying there is none. */
static void newest_checkpoint(const char *dir, char *out, size_t n) {
  int64_t steps[4096];
  int k = list_checkpoints(dir, steps, 4096);
  if (k) fmt_cut(out, n, "the newest checkpoint is %s/step-%08lld", dir, (long long)steps[k - 1]);
  else fmt_cut(out, n, "there is no checkpoint yet");
}

/* A checkpoint of this step (every rank calls it), reported in one line:
 * "checkpoint: step N saved to ..." or a warning that says why it was not
 * written and what happens now (`then`: "training goes on", ...).
 * Returns whether it was written. */
static bool checkpoint_step(Trainer *t, const Options *o, int64_t step, const char *then) {
  char why[MSG_LEN];
  uint64_t bytes;
  double t0 = dst_now_sec();
  bool ok = save_checkpoint(t, o->ckpt_dir, step, o->keep, why, &bytes);
  t->failed_saves = ok ? 0 : t->failed_saves + 1;
  if (t->rank != 0) return ok;
  if (ok) {
    say("checkpoint: step %lld saved to %s/step-%08lld (%.1f MiB, %.2f s)\n", (long long)step, o->ckpt_dir,
        (long long)step, (double)bytes / (1 << 20), dst_now_sec() - t0);
    return true;
  }
  char newest[4200], again[64] = "";
  newest_checkpoint(o->ckpt_dir, newest, sizeof newest);
  if (t->failed_saves > 1) snprintf(again, sizeof again, "; %d saves in a row have failed", t->failed_saves);
  dst_log_warn("checkpoint of step %lld not written: %s; %s (%s%s)", (long long)step, why, then, newest, again);
  return false;
}

/* ---- loading */

/* What is wrong with a checkpoint: broken (unreadable, corrupt, edited:
 * an earlier checkpoint may be fine) or incompatible (another model, or
 * one this program cannot read: so are its neighbours). */
typedef enum { CK_OK, CK_BROKEN, CK_INCOMPATIBLE } CkStatus;

/* An open manifest and the first problem found in the checkpoint. The
 * field readers record a problem and return a harmless value, so the
 * code reads straight through and looks at st where it matters. */
typedef struct {
  char dir[4096], path[4200]; /* the checkpoint and its manifest.json */
  DstMap map;
  DstJson j;
  const DstJsonNode *root;
  CkStatus st;
  char msg[MSG_LEN];
} Manifest;

static bool mfail(Manifest *mf, CkStatus st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool mfail(Manifest *mf, CkStatus st, const char *fmt, ...) {
  if (mf->st != CK_OK) return false;
  mf->st = st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(mf->msg, sizeof mf->msg, fmt, ap);
  va_end(ap);
  return false;
}

/* What a missing or mistyped member reads as: an empty array. */
static const DstJsonNode no_node = {.kind = DST_JSON_ARRAY};

static const DstJsonNode *jget(const DstJson *j, const DstJsonNode *obj, const char *key) {
  if (!obj || obj->kind != DST_JSON_OBJECT) return NULL;
  for (uint32_t c = obj->first; c; c = j->nodes[c].next)
    if (!strcmp(dst_json_key(j, &j->nodes[c]), key)) return &j->nodes[c];
  return NULL;
}

static int64_t jint(Manifest *mf, const DstJsonNode *obj, const char *key) {
  const DstJsonNode *n = jget(&mf->j, obj, key);
  if (!n || n->kind != DST_JSON_INT || n->num < 0) return mfail(mf, CK_BROKEN, "%s: no valid \"%s\"", mf->path, key), 0;
  return n->num;
}

static const char *jstr(Manifest *mf, const DstJsonNode *obj, const char *key) {
  const DstJsonNode *n = jget(&mf->j, obj, key);
  if (!n || n->kind != DST_JSON_STRING) return mfail(mf, CK_BROKEN, "%s: no valid \"%s\"", mf->path, key), "";
  return dst_json_str(&mf->j, n);
}

static const DstJsonNode *jarr(Manifest *mf, const DstJsonNode *obj, const char *key) {
  const DstJsonNode *n = jget(&mf->j, obj, key);
  if (!n || n->kind != DST_JSON_ARRAY) return mfail(mf, CK_BROKEN, "%s: no valid \"%s\"", mf->path, key), &no_node;
  return n;
}

static void shape_str(char *b, size_t sz, const int64_t *shape, int nd) {
  size_t o = (size_t)snprintf(b, sz, "[");
  for (int k = 0; k < nd && o < sz; k++) o += (size_t)snprintf(b + o, sz - o, "%s%lld", k ? "," : "", (long long)shape[k]);
  if (o < sz) snprintf(b + o, sz - o, "]");
}

/* Opens dir/manifest.json and checks what covers the whole checkpoint: the
 * manifest's own checksum (so an edited step or data_pos is caught), its
 * format and its model. False with the problem in mf. */
static bool manifest_open(Manifest *mf, const char *dir, const char *model) {
  memset(mf, 0, sizeof *mf);
  snprintf(mf->dir, sizeof mf->dir, "%s", dir);
  fmt_cut(mf->path, sizeof mf->path, "%s/manifest.json", dir);
  char err[DST_ERR_LEN];
  if (!dst_map_file(mf->path, &mf->map, err, sizeof err)) return mfail(mf, CK_BROKEN, "%s", err);
  const char *text = (const char *)mf->map.data;
  size_t len = mf->map.len, klen = strlen(MANIFEST_SUM_KEY), at = SIZE_MAX;
  for (size_t i = len >= klen ? len - klen + 1 : 0; i-- > 0;)
    if (!memcmp(text + i, MANIFEST_SUM_KEY, klen)) {
      at = i;
      break;
    }
  if (at == SIZE_MAX)
    return mfail(mf, CK_BROKEN, "%s has no manifest_checksum (it was edited, or written by an older program)",
                 mf->path);
  char want[17] = "", have[17];
  if (len - at - klen >= 16) memcpy(want, text + at + klen, 16);
  snprintf(have, sizeof have, "%016llx", (unsigned long long)fnv(fnv_init, text, at + 1));
  if (strcmp(want, have))
    return mfail(mf, CK_BROKEN,
                 "%s is corrupt (manifest_checksum %s, its contents give %s: it was edited or damaged)", mf->path,
                 want, have);
  char jerr[256];
  if (!dst_json_parse(&mf->j, text, len, 1u << 24, jerr, sizeof jerr))
    return mfail(mf, CK_BROKEN, "%s is not a valid manifest: %s", mf->path, jerr);
  mf->root = &mf->j.nodes[0];
  const char *format = jstr(mf, mf->root, "format"), *name = jstr(mf, mf->root, "model");
  if (mf->st) return false;
  if (strcmp(format, "dst-checkpoint-1"))
    return mfail(mf, CK_INCOMPATIBLE, "%s has format '%s'; this program reads dst-checkpoint-1", mf->path, format);
  if (strcmp(name, model))
    return mfail(mf, CK_INCOMPATIBLE, "%s is a checkpoint of model '%s', not of '%s'", mf->path, name, model);
  return true;
}

static void manifest_close(Manifest *mf) {
  dst_json_free(&mf->j);
  dst_unmap_file(&mf->map);
}

/* The file the manifest's entry fn names, opened and checked against its
 * checksum; NULL with the problem in mf. */
static DstSafetensors *open_checked(Manifest *mf, const DstJsonNode *fn) {
  const char *fname = jstr(mf, fn, "file"), *want = jstr(mf, fn, "checksum");
  if (mf->st) return NULL;
  if (strchr(fname, '/') || fname[0] == '.') return mfail(mf, CK_BROKEN, "%s names the file '%s'", mf->path, fname), NULL;
  char fpath[4400], err[DST_ERR_LEN];
  fmt_cut(fpath, sizeof fpath, "%s/%s", mf->dir, fname);
  DstSafetensors *st = dst_st_open(fpath, err);
  if (!st) return mfail(mf, CK_BROKEN, "%s", err), NULL;
  uint64_t sum = fnv_init;
  for (size_t k = 0; k < dst_st_count(st); k++) {
    const DstStTensor *x = dst_st_tensor(st, k);
    sum = fnv(sum, x->data, (size_t)(x->end - x->begin));
  }
  char have[32];
  snprintf(have, sizeof have, "%016llx", (unsigned long long)sum);
  if (strcmp(have, want)) {
    dst_st_close(st);
    return mfail(mf, CK_BROKEN, "%s is corrupt (checksum %s in the manifest, the data gives %s)", fpath, want, have),
           NULL;
  }
  return st;
}

/* Whether the checkpoint in dir is whole: its manifest and every file it
 * lists check out (reads all of it). */
static bool checkpoint_verifies(const char *dir, const char *model) {
  Manifest mf;
  if (manifest_open(&mf, dir, model)) {
    (void)jint(&mf, mf.root, "step");
    (void)jint(&mf, mf.root, "data_pos");
    const DstJsonNode *files = jarr(&mf, mf.root, "files");
    if (!files->count) mfail(&mf, CK_BROKEN, "%s lists no files", mf.path);
    for (uint32_t fc = files->first; fc && !mf.st; fc = mf.j.nodes[fc].next) {
      DstSafetensors *st = open_checked(&mf, &mf.j.nodes[fc]);
      dst_st_close(st);
    }
  }
  manifest_close(&mf);
  return mf.st == CK_OK;
}

/* Restores this rank's parameters and optimizer state from the checkpoint
 * of mf (open), reading only the files that hold slices it needs.
 * Returns false with the problem in mf; *step and *pos are the step it
 * was taken after and the data position. */
static bool load_checkpoint(Trainer *t, Manifest *mf, int64_t *step, uint64_t *pos) {
  const DstModel *m = t->m;
  const DstJson *j = &mf->j;
  const DstJsonNode *root = mf->root;
  *step = jint(mf, root, "step");
  *pos = (uint64_t)jint(mf, root, "data_pos");
  int nstates = 1 + (t->mom1 != NULL) + (t->mom2 != NULL);
  const DstJsonNode *states = jarr(mf, root, "states");
  if (!mf->st && (int)states->count < nstates)
    mfail(mf, CK_INCOMPATIBLE, "%s holds %u state(s) per parameter; this model's optimizer needs %d", mf->path,
          states->count, nstates);
  /* The tensors: every parameter of the model, by name, with its shape. */
  const DstJsonNode *tensors = jarr(mf, root, "tensors");
  if (!mf->st && (int)tensors->count != m->nparams)
    mfail(mf, CK_INCOMPATIBLE, "%s holds %u tensors; the model has %d parameters", mf->path, tensors->count,
          m->nparams);
  if (mf->st) return false;
  const DstJsonNode **tens = dst_calloc((size_t)m->nparams + 1, sizeof *tens, DST_MEM_OTHER, "manifest");
  int64_t *got = dst_calloc(NSTATES, sizeof(int64_t), DST_MEM_OTHER, "manifest");
  float *views[NSTATES] = {0}, *bases[NSTATES] = {0};
  for (int i = 0; i < m->nparams && !mf->st; i++) {
    const DstParamInfo *p = &m->params[i];
    for (uint32_t c = tensors->first; c && !tens[i]; c = j->nodes[c].next)
      if (!strcmp(jstr(mf, &j->nodes[c], "name"), p->name)) tens[i] = &j->nodes[c];
    if (!tens[i]) {
      mfail(mf, CK_INCOMPATIBLE, "%s has no tensor '%s'", mf->path, p->name);
      break;
    }
    const DstJsonNode *sh = jarr(mf, tens[i], "shape");
    int64_t shape[DST_MAX_RANK];
    int nd = 0;
    for (uint32_t c = sh->first; c && nd < DST_MAX_RANK; c = j->nodes[c].next) shape[nd++] = j->nodes[c].num;
    bool same = nd == p->ndim && (int)sh->count == nd;
    for (int k = 0; same && k < nd; k++) same = shape[k] == p->shape[k];
    if (!same && !mf->st) {
      char want[128], found[128];
      shape_str(want, sizeof want, p->shape, p->ndim);
      shape_str(found, sizeof found, shape, nd);
      mfail(mf, CK_INCOMPATIBLE, "%s: tensor '%s': shape %s expected, %s found", mf->path, p->name, want, found);
    }
  }
  if (mf->st) goto done;
  /* Each file holding a slice this rank needs: checked, then copied from. */
  for (int s = 0; s < nstates; s++) {
    bool fi;
    bases[s] = state_buf(t, s, &fi);
    views[s] = host_view(t, bases[s], state_bytes(t, s));
  }
  const DstJsonNode *files = jarr(mf, root, "files");
  for (uint32_t fc = files->first; fc && !mf->st; fc = j->nodes[fc].next) {
    const DstJsonNode *fn = &j->nodes[fc];
    int64_t frank = jint(mf, fn, "rank");
    bool needed = false;
    for (int i = 0; i < m->nparams && !needed; i++) {
      const DstJsonNode *sl = jarr(mf, tens[i], "slices");
      for (uint32_t c = sl->first; c && !needed; c = j->nodes[c].next) {
        if (jint(mf, &j->nodes[c], "rank") != frank) continue;
        int64_t st = jint(mf, &j->nodes[c], "start"), cnt = jint(mf, &j->nodes[c], "count");
        struct Seg whole = {m->params[i].offset / 4 + st, 0, cnt};
        for (int g = 0; g < t->nsegs && !needed; g++) {
          int64_t s0;
          needed = slice_of(&m->params[i], &t->segs[g], &s0) > 0 &&
                   t->segs[g].full < whole.full + whole.n && whole.full < t->segs[g].full + t->segs[g].n;
        }
        /* without ZeRO-2/3 every rank holds all parameters */
        needed |= !t->z2;
      }
    }
    if (!needed || mf->st) continue;
    DstSafetensors *st = open_checked(mf, fn);
    if (!st) break;
    char fpath[4400];
    fmt_cut(fpath, sizeof fpath, "%s/%s", mf->dir, jstr(mf, fn, "file"));
    for (int i = 0; i < m->nparams && !mf->st; i++) {
      const DstParamInfo *p = &m->params[i];
      const DstJsonNode *sl = jarr(mf, tens[i], "slices");
      for (uint32_t c = sl->first; c && !mf->st; c = j->nodes[c].next) {
        if (jint(mf, &j->nodes[c], "rank") != frank) continue;
        int64_t start = jint(mf, &j->nodes[c], "start"), cnt = jint(mf, &j->nodes[c], "count");
        if (start + cnt > p->numel) {
          mfail(mf, CK_BROKEN, "%s: a slice of '%s' lies outside it", mf->path, p->name);
          break;
        }
        for (int s = 0; s < nstates; s++) {
          char name[1024];
          snprintf(name, sizeof name, "%s%s", state_prefix[s], p->name);
          const DstStTensor *x = dst_st_find(st, name);
          if (!x || x->dtype != DST_DT_F32 || x->ndim != 1 || x->shape[0] != cnt) {
            mfail(mf, CK_BROKEN, "%s: tensor '%s' missing or not the %lld floats the manifest says", fpath, name,
                  (long long)cnt);
            break;
          }
          bool fi;
          state_buf(t, s, &fi);
          float *base = views[s];
          /* this rank's parts of the slice: its segments (all of the slab
           * for parameters without ZeRO-2/3, and for unsharded moments) */
          struct Seg whole = {0, 0, m->params_bytes / 4};
          bool all = s == 0 ? !t->z2 : !t->sharded;
          int ns = all ? 1 : t->nsegs;
          for (int g = 0; g < ns; g++) {
            const struct Seg *sg = all ? &whole : &t->segs[g];
            int64_t b = p->offset / 4 + start, e = b + cnt;
            if (b < sg->full) b = sg->full;
            if (e > sg->full + sg->n) e = sg->full + sg->n;
            if (b >= e) continue;
            memcpy(seg_ptr(base, all || fi, sg, b), (const char *)x->data + (b - p->offset / 4 - start) * 4,
                   (size_t)(e - b) * 4);
            got[s] += e - b;
          }
        }
      }
    }
    dst_st_close(st);
  }
  /* Everything this rank holds must have come from the files. */
  for (int s = 0; s < nstates && !mf->st; s++) {
    int64_t want = 0;
    bool all = s == 0 ? !t->z2 : !t->sharded;
    for (int i = 0; i < m->nparams; i++) {
      if (all) {
        want += m->params[i].numel;
        continue;
      }
      for (int g = 0; g < t->nsegs; g++) {
        int64_t s0;
        want += slice_of(&m->params[i], &t->segs[g], &s0);
      }
    }
    if (got[s] != want)
      mfail(mf, CK_BROKEN, "%s: the files restore %lld of the %lld %s values this rank holds", mf->path,
            (long long)got[s], (long long)want, s == 0 ? "parameter" : "optimizer-state");
  }
  for (int s = 0; s < nstates; s++) {
    if (!views[s]) continue;
    if (mf->st) host_release(bases[s], views[s]);
    else host_commit(t, bases[s], views[s], state_bytes(t, s));
  }
done:
  dst_free(got);
  dst_free(tens);
  return mf->st == CK_OK;
}

/* Restores parameters, optimizer state and data position from the
 * checkpoint in `where` (a step directory, or a directory of them: the
 * last); returns the step it was taken after. Collective. A checkpoint
 * that does not load ends the job on every rank with one message; when it
 * is broken, the message names the newest earlier checkpoint next to it
 * that verifies (checked, not guessed). */
static int64_t resume(Trainer *t, const char *where) {
  const DstModel *m = t->m;
  char dir[4096], path[4200], parent[4096];
  struct stat sb;
  snprintf(path, sizeof path, "%s/manifest.json", where);
  if (stat(path, &sb) == 0) {
    snprintf(dir, sizeof dir, "%s", where);
    /* a step directory: its earlier siblings are the alternatives */
    snprintf(parent, sizeof parent, "%s", where);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == parent) parent[1] = '\0';
    else *slash = '\0';
  } else {
    int64_t steps[4096];
    int n = list_checkpoints(where, steps, 4096);
    if (!n) dst_fatal("cannot resume: no checkpoint in %s (expected step-N directories or a manifest.json)", where);
    snprintf(dir, sizeof dir, "%s/step-%08lld", where, (long long)steps[n - 1]);
    snprintf(parent, sizeof parent, "%s", where);
  }
  Manifest mf;
  int64_t step = 0;
  uint64_t pos = 0;
  if (manifest_open(&mf, dir, m->name)) load_checkpoint(t, &mf, &step, &pos);
  int code = mf.st;
  char msg[MSG_LEN] = "";
  if (mf.st) snprintf(msg, sizeof msg, "%s", mf.msg);
  manifest_close(&mf);
  if (all_ok(t, msg, &code, "resume")) {
    if (t->z2 && !t->z3) full_from_shard(t, t->pshard, (float *)t->r.params, true);
    t->train->pos = pos;
    return step;
  }
  char line[3 * MSG_LEN];
  if (code != CK_BROKEN) {
    fmt_cut(line, sizeof line, "error: cannot resume from %s: %s", dir, msg);
    dst_comm_exit_all(DST_EXIT_INPUT, line);
  }
  /* The newest earlier checkpoint next to it that verifies: only where the
   * broken one is a step-N directory (the others are ordered by it). */
  char hint[MSG_LEN] = "";
  const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  long long mine;
  char tail;
  if (t->rank == 0 && sscanf(base, "step-%lld%c", &mine, &tail) == 1) {
    int64_t steps[4096];
    int n = list_checkpoints(parent, steps, 4096), earlier = 0;
    for (int i = n - 1; i >= 0 && !hint[0]; i--) {
      if (steps[i] >= mine) continue;
      earlier++;
      char cand[4200];
      fmt_cut(cand, sizeof cand, "%s/step-%08lld", parent, (long long)steps[i]);
      if (checkpoint_verifies(cand, m->name))
        fmt_cut(hint, sizeof hint, "; %s verifies: resume from it with --resume %s", cand, cand);
    }
    if (!hint[0] && earlier) fmt_cut(hint, sizeof hint, "; no earlier checkpoint in %s verifies", parent);
  }
  fmt_cut(line, sizeof line, "error: cannot resume: checkpoint %s is broken: %s%s", dir, msg, hint);
  dst_comm_exit_all(DST_EXIT_INPUT, line);
}

/* ------------------------------------------------------------ start-up checks
 *
 * Everything the run will write is checked before the first step, so a
 * typo in a path costs seconds, not the hours of training before the
 * first save. Rank 0 checks (it is the one that writes these files, or
 * creates the directories the others write into) and all ranks agree. */

/* Whether new files can be made in dir: creates and removes a probe file,
 * the only test that tells the truth (permissions, read-only mounts,
 * ACLs, and root, for whom access() always says yes). */
static bool dir_writable(const char *dir, char *why, size_t n) {
  char probe[4200];
  fmt_cut(probe, sizeof probe, "%s/.dst-probe-%ld", dir, (long)getpid());
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(why, n, "%s", strerror(errno));
    return false;
  }
  close(fd);
  unlink(probe);
  return true;
}

/* A file the run will create: not a directory, in a directory that exists
 * and takes new files. */
static void check_output_file(const char *flag, const char *path, char msg[MSG_LEN]) {
  struct stat sb;
  if (msg[0]) return;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    fmt_cut(msg, MSG_LEN, "%s %s: is a directory; give a file name", flag, path);
    return;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  char why[256];
  if (stat(dir, &sb) != 0) fmt_cut(msg, MSG_LEN, "%s %s: cannot write in %s: %s", flag, path, dir, strerror(errno));
  else if (!S_ISDIR(sb.st_mode)) fmt_cut(msg, MSG_LEN, "%s %s: %s is not a directory", flag, path, dir);
  else if (!dir_writable(dir, why, sizeof why))
    fmt_cut(msg, MSG_LEN, "%s %s: cannot write in %s: %s", flag, path, dir, why);
}

/* The checkpoint directory: a directory that takes new files (created when
 * missing) and, for a new run, holds no checkpoints of another run. A new
 * run is refused rather than given a run id of its own: with runs kept
 * apart in one directory, --resume DIR and --keep would have to pick a
 * run, and a rerun that forgot --resume would quietly start over beside
 * the checkpoints it meant to continue from. */
static void check_checkpoint_dir(const Options *o, char msg[MSG_LEN]) {
  const char *dir = o->ckpt_dir;
  struct stat sb;
  char why[256];
  if (msg[0]) return;
  if (stat(dir, &sb) == 0) {
    if (!S_ISDIR(sb.st_mode)) {
      fmt_cut(msg, MSG_LEN, "--checkpoint-dir %s: exists and is not a directory", dir);
      return;
    }
  } else if (errno != ENOENT || mkdir(dir, 0777) != 0) {
    fmt_cut(msg, MSG_LEN, "--checkpoint-dir %s: cannot create it: %s", dir, strerror(errno));
    return;
  }
  if (!dir_writable(dir, why, sizeof why)) {
    fmt_cut(msg, MSG_LEN, "--checkpoint-dir %s: cannot write in it: %s", dir, why);
    return;
  }
  int64_t steps[4096];
  int n = o->resume ? 0 : list_checkpoints(dir, steps, 4096);
  if (n == 1)
    fmt_cut(msg, MSG_LEN,
             "--checkpoint-dir %s already holds a checkpoint of another run (step-%08lld): give --resume %s to "
             "continue that run, or another --checkpoint-dir (or remove %s) to start a new one",
             dir, (long long)steps[0], dir, dir);
  else if (n > 1)
    fmt_cut(msg, MSG_LEN,
             "--checkpoint-dir %s already holds %d checkpoints of another run (step-%08lld .. step-%08lld): give "
             "--resume %s to continue that run, or another --checkpoint-dir (or remove %s) to start a new one",
             dir, n, (long long)steps[0], (long long)steps[n - 1], dir, dir);
}

/* Rank 0's checks of every path the run writes; collective. */
static void check_outputs(Trainer *t, const Options *o, bool ckpt_on) {
  char msg[MSG_LEN] = "";
  if (t->rank == 0) {
    if (o->save) check_output_file("--save", o->save, msg);
    if (o->dump) check_output_file("--dump", o->dump, msg);
    if (o->loss_log) check_output_file("--loss-log", o->loss_log, msg);
    if (ckpt_on) check_checkpoint_dir(o, msg);
  }
  if (all_ok(t, msg, NULL, "start-up checks")) return;
  char line[MSG_LEN + 16];
  fmt_cut(line, sizeof line, "error: %s", msg);
  dst_comm_exit_all(DST_EXIT_INPUT, line);
}

static double lr_at(const DstModel *m, int64_t step, int64_t steps) {
  double lr = m->lr;
  if (m->warmup > 0 && step <= m->warmup) return lr * (double)step / (double)m->warmup;
  if (m->sched == DST_SCHED_CONSTANT || steps <= m->warmup) return lr;
  double progress = (double)(step - m->warmup) / (double)(steps - m->warmup);
  if (progress > 1) progress = 1;
  if (m->sched == DST_SCHED_LINEAR) return lr - (lr - m->min_lr) * progress;
  return m->min_lr + 0.5 * (lr - m->min_lr) * (1.0 + cos(M_PI * progress));
}

/* Starts the reduction of a bucket whose gradients the backward pass has
 * just finished, and lets the earlier ones progress. */
static void on_bucket(DstRun *r, int k) {
  Trainer *t = r->ctx;
  if (!t->reducing) return;
  const DstBucket *b = &t->m->buckets[k];
  float *p = (float *)(t->r.grads + b->offset);
  comm_fence(t);
  dst_comm_set_label("gradient bucket");
  t->reqs[t->nreqs++] = dst_comm_iallreduce(t->dp, p, p, (size_t)b->bytes / 4, DST_COMM_F32, DST_COMM_SUM);
  t->comm_bytes += 2.0 * (double)(t->world - 1) / t->world * (double)b->bytes;
  for (int i = 0; i + 1 < t->nreqs; i++)
    if (t->reqs[i].active) dst_comm_test(&t->reqs[i]);
}

/* One optimizer step's gradients: forward and backward on each of the
 * grad_accum micro-batches (parameter gradients add up over them), then the
 * mean over micro-steps and data-parallel ranks. Returns the loss, the mean
 * over the whole global batch. */
static float compute(Trainer *t, int64_t step) {
  /* no clearing of the gradients: the backward code zeroes or overwrites
   * each one where it is first written */
  int64_t ga = t->m->grad_accum > 0 ? t->m->grad_accum : 1;
  double loss = 0;
  t->r.training = true;
  t->r.step = step;
  /* without ZeRO, buckets are all-reduced as backward finishes them */
  bool overlap = t->world > 1 && !t->sharded && t->m->nbuckets > 0;
  t->nreqs = 0;
  for (int64_t k = 0; k < ga; k++) {
    if (k > 0) load_batch(t, t->train);
    /* ZeRO-2/3 reduce-scatter every micro-step's gradients (the unit
     * buffers are fresh each time) and add them up in the shard */
    t->r.acc = k > 0 && !t->z2;
    t->micro = (int)k;
    t->reducing = overlap && k == ga - 1; /* reduce once, after the last micro-step's gradients */
    /* this micro-batch's place in the step's global batch: its dropout masks */
    t->r.dropout_block = ((uint64_t)(step - 1) * (uint64_t)ga + (uint64_t)k) * (uint64_t)t->world + (uint64_t)t->rank;
    run_forward(t);
    check_run(t, step);
    run_backward(t);
    check_run(t, step);
    loss += loss_value(t);
  }
  t->r.acc = false;
  t->micro = 0;
  size_t n = (size_t)t->m->params_bytes / 4;
  float *g = t->z2 ? t->gshard : (float *)t->r.grads;
  double c0 = dst_now_sec();
  t->reducing = false;
  if (overlap) {
    dst_comm_wait_all(t->reqs, t->nreqs);
  } else if (t->z2) {
    /* reduced unit by unit during the backward passes */
  } else if (t->sharded) {
    /* ZeRO-1: each rank needs only its shard's gradients, reduced: a
     * reduce-scatter in place leaves them at the front of the slab */
    comm_fence(t);
    dst_comm_set_label("gradients");
    dst_comm_reduce_scatter(t->dp, g, g, (size_t)t->n, DST_COMM_F32, DST_COMM_SUM);
    t->comm_bytes += (double)(t->world - 1) * (double)t->n * 4;
  } else if (t->world > 1) {
    /* Gradients of the global mean loss: the mean of the ranks' gradients. */
    comm_fence(t);
    dst_comm_set_label("gradients");
    dst_comm_allreduce(t->dp, g, g, n, DST_COMM_F32, DST_COMM_SUM);
    t->comm_bytes += 2.0 * (double)(t->world - 1) / t->world * (double)n * 4;
  }
  t->comm_sec += dst_now_sec() - c0;
  /* with ZeRO a rank holds only its shard reduced; otherwise all of it */
  int64_t cnt = t->sharded ? t->n : (int64_t)n;
  if (t->world * ga > 1) dev->scale(&t->r, g, 1.0f / (float)(t->world * ga), cnt);
  return (float)step_mean(t, loss / (double)ga);
}

/* Where this rank's reduced gradients are: with ZeRO only its shard (the
 * gradient shard at ZeRO-2/3, the front of the slab at ZeRO-1, both
 * indexed like the moments); otherwise the whole slab. */
static float *reduced_grads(Trainer *t) { return t->z2 ? t->gshard : (float *)t->r.grads; }

/* The global gradient norm: summed over the ranks' shards under ZeRO
 * (each holds only its own reduced shard; padding and gaps are 0);
 * otherwise every rank holds all the reduced gradients. */
static double grad_norm(Trainer *t) {
  if (t->sharded) {
    double sq = dev->norm_sq(&t->r, reduced_grads(t), t->n);
    dst_comm_allreduce(t->dp, &sq, &sq, 1, DST_COMM_F64, DST_COMM_SUM);
    return sqrt(sq);
  }
  return sqrt(dev->norm_sq(&t->r, (const float *)t->r.grads, t->m->params_bytes / 4));
}

static void clip_grads(Trainer *t, float coef) {
  int64_t n = t->sharded ? t->n : t->m->params_bytes / 4;
  dev->scale(&t->r, reduced_grads(t), coef, n);
}

/* The optimizer step on this rank's shard [lo, lo + n) of the flat slab
 * (the whole slab without ZeRO): each parameter's overlap with the shard is
 * updated with that parameter's settings, the moments indexed from lo. With
 * ZeRO the updated shards are then gathered, so every rank holds all the
 * parameters again. */
static void update(Trainer *t, int64_t step, double lr) {
  const DstModel *m = t->m;
  /* ZeRO-2/3 update the master shard from the gradient shard; otherwise
   * parameters and gradients are indexed in the slab */
  float *params = t->z2 ? t->pshard : (float *)t->r.params;
  const float *grads = reduced_grads(t);
  for (int i = 0; i < m->nparams; i++) {
    const DstParamInfo *p = &m->params[i];
    for (int s = 0; s < t->nsegs; s++) {
      const struct Seg *sg = &t->segs[s];
      int64_t b = p->offset / 4, e = b + p->numel;
      if (b < sg->full) b = sg->full;
      if (e > sg->full + sg->n) e = sg->full + sg->n;
      if (b >= e) continue;
      int64_t at = sg->shard + (b - sg->full); /* the moments' index */
      int64_t pp = t->z2 ? at : b, pg = t->sharded ? at : b;
      float wd = p->decay ? m->weight_decay : 0.0f;
      float *m1 = t->mom1 ? t->mom1 + at : NULL, *m2 = t->mom2 ? t->mom2 + at : NULL;
      if (m->opt == DST_OPT_ADAMW)
        dev->adamw(&t->r, params + pp, grads + pg, m1, m2, e - b, (float)lr, m->beta1, m->beta2, m->eps, wd, step);
      else
        dev->sgd(&t->r, params + pp, grads + pg, m1, e - b, (float)lr, m->momentum, wd, m->nesterov);
    }
  }
  if (t->z2 && !t->z3) {
    /* ZeRO-2 keeps every parameter: gather the updated shards unit by unit */
    float *buf = dev->alloc(t->max_unit_bytes, DST_MEM_PARAMS, "parameter gather staging");
    comm_fence(t); /* the updated shard */
    double c0 = dst_now_sec();
    for (int u = 0; u < m->nbuckets; u++) {
      dst_comm_set_label("parameter unit");
      dst_comm_allgather(t->dp, t->pshard + t->ushard[u], buf, (size_t)t->uchunk[u], DST_COMM_F32);
      dev->copy(&t->r, t->r.params + m->buckets[u].offset, buf, (size_t)m->buckets[u].bytes);
      t->comm_bytes += (double)(t->world - 1) * (double)t->uchunk[u] * 4;
    }
    t->comm_sec += dst_now_sec() - c0;
    dev->free(buf, t->max_unit_bytes, DST_MEM_PARAMS);
  } else if (t->sharded && !t->z2) {
    dst_comm_set_label("parameters");
    comm_fence(t); /* the updated shard */
    double c0 = dst_now_sec();
    dst_comm_allgather(t->dp, params + t->lo, params, (size_t)t->n, DST_COMM_F32);
    t->comm_sec += dst_now_sec() - c0;
    t->comm_bytes += (double)(t->world - 1) * (double)t->n * 4;
  }
}

static double evaluate(Trainer *t) {
  dst_data_reset(t->val);
  uint64_t n = dst_data_batches_per_epoch(t->val);
  if (n > 20) n = 20;
  if (n < 1) n = 1;
  double sum = 0;
  t->r.training = false;
  for (uint64_t i = 0; i < n; i++) {
    load_batch(t, t->val);
    run_forward(t);
    check_run(t, 0);
    sum += loss_value(t);
  }
  return dp_mean(t, sum / (double)n);
}

/* Compares analytic gradients with central differences of the loss at a few
 * elements of every parameter. Returns the number of mismatches. */
static int check_grads(Trainer *t) {
  const DstModel *m = t->m;
  load_batch(t, t->train);
  /* Dropout is the identity here (training off) in both passes, so the
   * finite differences see the same function the gradients are of. */
  t->r.training = false;
  t->r.step = 1;
  m->forward(&t->r);
  check_run(t, 1);
  m->backward(&t->r);
  check_run(t, 1);
  float *g0 = malloc((size_t)m->params_bytes);
  if (!g0) dst_fatal("out of memory");
  memcpy(g0, t->r.grads, (size_t)m->params_bytes);
  double l0 = loss_value(t);
  int bad = 0, checked = 0, skipped = 0;
  double worst = 0;
  for (int i = 0; i < m->nparams; i++) {
    const DstParamInfo *p = &m->params[i];
    float *x = (float *)(t->r.params + p->offset);
    const float *g = g0 + p->offset / 4;
    /* The three largest gradients (never trivially zero) and three
     * pseudo-random elements. */
    int64_t pick[6];
    int np = 0;
    for (int r = 0; r < 3 && r < p->numel; r++) {
      int64_t best = -1;
      for (int64_t j = 0; j < p->numel; j++) {
        bool used = false;
        for (int k = 0; k < np; k++) used |= pick[k] == j;
        if (!used && (best < 0 || fabsf(g[j]) > fabsf(g[best]))) best = j;
      }
      pick[np++] = best;
    }
    for (int r = 0; r < 3 && np < p->numel; r++)
      pick[np++] = (int64_t)(((uint64_t)r * 2654435761u + (uint64_t)i * 97u) % (uint64_t)p->numel);
    for (int k = 0; k < np; k++) {
      int64_t j = pick[k];
      float saved = x[j];
      float h = 2e-3f * fmaxf(1.0f, fabsf(saved));
      x[j] = saved + h;
      m->forward(&t->r);
      double lp = loss_value(t);
      x[j] = saved - h;
      m->forward(&t->r);
      double lm = loss_value(t);
      x[j] = saved;
      double num = (lp - lm) / (2.0 * (double)h);
      double ana = g[j];
      double scale = fmax(fabs(num), fabs(ana));
      /* One-sided slopes that disagree mean a kink (ReLU, max) inside the
       * step, where the central difference says nothing about the gradient. */
      double right = (lp - l0) / (double)h, left = (l0 - lm) / (double)h;
      if (fabs(right - left) > 2e-3 + 5e-2 * fmax(fabs(right), fabs(left))) {
        skipped++;
        continue;
      }
      if (fabs(num - ana) > 2e-3 + 5e-2 * scale) {
        bad++;
        printf("MISMATCH %s[%lld]: analytic %.6g, finite difference %.6g\n", p->name, (long long)j, ana, num);
      }
      double err = fabs(num - ana) / (1e-3 + scale);
      if (err > worst) worst = err;
      checked++;
    }
  }
  printf("gradient check: %d elements of %d parameters, %d mismatches, worst relative error %.3g"
         " (%d more skipped at non-smooth points)\n", checked, m->nparams, bad, worst, skipped);
  if (checked < skipped) {
    printf("gradient check: too few smooth points to conclude\n");
    bad++;
  }
  free(g0);
  return bad;
}

/* Generates n tokens; print is false on ranks that only take part (at
 * ZeRO-3 every rank runs the forward passes, which gather parameters). */
static void sample(Trainer *t, int64_t n, double temperature, DstRng *rng, bool print) {
  const DstModel *m = t->m;
  if (m->logits_offset < 0 || m->logits_ndim != 3) {
    dst_log_warn("--sample needs a model value named 'logits' of shape [batch, seq, vocab]; skipping");
    return;
  }
  int64_t V = m->logits_shape[2];
  DstDataLoader *src = t->val ? t->val : t->train;
  dst_data_reset(src);
  char err[DST_ERR_LEN];
  if (!dst_data_next(src, t->tok, t->tgt, err)) dst_fatal("%s", err);
  int32_t *ctx = malloc(sizeof(int32_t) * (size_t)t->T);
  double *p = malloc(sizeof(double) * (size_t)V);
  if (!ctx || !p) dst_fatal("out of memory");
  memcpy(ctx, t->tok, sizeof(int32_t) * (size_t)t->T);
  if (print)
    printf("--- sample (%lld tokens at temperature %g, after the prompt of %d tokens from the data) ---\n",
           (long long)n, temperature, t->T);
  t->r.training = false;
  float *lg = malloc(sizeof(float) * (size_t)V);
  char *data = dst_malloc((size_t)m->data_bytes, DST_MEM_OTHER, "sample inputs");
  int32_t *in0 = (int32_t *)(data + input(m, 0)->offset);
  for (int64_t s = 0; s < n; s++) {
    memset(data, 0, (size_t)m->data_bytes);
    memcpy(in0, ctx, sizeof(int32_t) * (size_t)t->T);
    dev->upload(&t->r, t->r.data, data, (size_t)m->data_bytes);
    run_forward(t);
    check_run(t, 0);
    dev->download(&t->r, lg, t->r.arena + m->logits_offset + sizeof(float) * (size_t)(t->T - 1) * (size_t)V,
                  sizeof(float) * (size_t)V);
    double mx = lg[0], z = 0;
    for (int64_t v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    for (int64_t v = 0; v < V; v++) z += p[v] = exp((lg[v] - mx) / temperature);
    double u = dst_rng_uniform(rng) * z, acc = 0;
    int64_t tok = V - 1;
    for (int64_t v = 0; v < V; v++) {
      acc += p[v];
      if (u < acc) {
        tok = v;
        break;
      }
    }
    memmove(ctx, ctx + 1, sizeof(int32_t) * (size_t)(t->T - 1));
    ctx[t->T - 1] = (int32_t)tok;
    if (!print) {
    } else if (V <= 256) {
      unsigned char c = (unsigned char)tok;
      putchar(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f) || c >= 0x80 ? c : '?');
    } else {
      printf("%lld ", (long long)tok);
    }
  }
  if (print) printf("\n---\n");
  free(lg);
  dst_free(data);
  free(ctx);
  free(p);
}

static void dev_free(void *p, int64_t bytes, DstMemCat cat) {
  if (p) dev->free(p, (size_t)bytes, cat);
}

static void trainer_free(Trainer *t) {
  const DstModel *m = t->m;
  dev_free(t->r.params, m->params_bytes, DST_MEM_PARAMS);
  dev_free(t->r.grads, m->params_bytes, DST_MEM_GRADS);
  dev_free(t->r.arena, m->arena_bytes, DST_MEM_ACTS);
  dev_free(t->r.data, m->data_bytes, DST_MEM_DATA);
  dev_free(t->r.work, m->work_bytes, DST_MEM_WORKSPACE);
  dev_free(t->mom1, m->optstate_bytes, DST_MEM_OPTIM); /* mom2 lives in the same block */
  dev_free(t->pshard, t->n * 4, DST_MEM_PARAMS);
  dev_free(t->gshard, t->n * 4, DST_MEM_GRADS);
  dev_free(t->gstage, t->n * 4, DST_MEM_GRADS);
  if (dev->finish) dev->finish(&t->r);
  dst_free(t->tok);
  dst_free(t->tgt);
  dst_free(t->r.prof);
  dst_free(t->reqs);
  dst_free(t->ushard);
  dst_free(t->uchunk);
  dst_free(t->segs);
  dst_free(t->preq);
  dst_free(t->greq);
  dst_free(t->pheld);
  dst_free(t->inflight);
  dst_free(t->r.punit);
  dst_free(t->r.gunit);
  if (t->train) dst_data_close(t->train);
  if (t->val) dst_data_close(t->val);
}

double dst_prof_now(void) { return dst_now_sec(); }

typedef struct {
  int slot;
  double sec;
} ProfRow;

static int by_time(const void *a, const void *b) {
  const ProfRow *x = a, *y = b;
  return (x->sec < y->sec) - (x->sec > y->sec);
}

/* Where the time of a step went, by operation, largest first. */
static void print_profile(const DstModel *m, const double *prof, int64_t steps, double step_sec) {
  ProfRow *rows = dst_calloc((size_t)m->nprof, sizeof *rows, DST_MEM_OTHER, "profile");
  double total = 0;
  for (int i = 0; i < m->nprof; i++) {
    rows[i] = (ProfRow){i, prof[i]};
    total += prof[i];
  }
  qsort(rows, (size_t)m->nprof, sizeof *rows, by_time);
  printf("profile (%lld steps; ms per step):\n", (long long)steps);
  for (int i = 0; i < m->nprof && rows[i].sec > 0; i++)
    printf("  %-26s %9.3f ms  %5.1f%%\n", m->prof_names[rows[i].slot], 1e3 * rows[i].sec / (double)steps,
           100 * rows[i].sec / total);
  printf("  %-26s %9.3f ms  (the rest of a %.3f ms step: data, optimizer, logging)\n", "operations",
         1e3 * total / (double)steps, 1e3 * step_sec);
  dst_free(rows);
}

static char *slab(int64_t bytes, DstMemCat cat, const char *tag) {
  return bytes > 0 ? dev->alloc((size_t)bytes, cat, tag) : NULL;
}

int dst_train_main(const DstModel *m, int argc, char **argv) {
  /* OpenMP's idle workers spin by default and steal the cores OpenBLAS's
   * threads need (steps then take up to 10x longer at random), and
   * OpenBLAS's own idle threads yield in a loop for a long while (about 10%
   * of a step on 2 cores). Both settings are read when the libraries load,
   * so set what the user has not and start again. */
  if (!getenv("DST_NO_REEXEC") && (!getenv("OMP_WAIT_POLICY") || !getenv("OPENBLAS_THREAD_TIMEOUT"))) {
    setenv("OMP_WAIT_POLICY", "passive", 0);
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
    setenv("DST_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* if that fails, run with the defaults */
  }
  /* Step lines must reach a log even when the process is killed: a file
   * or pipe gets every line as it is printed, not 4 KiB at a time. */
  if (!isatty(1)) setvbuf(stdout, NULL, _IOLBF, 0);
  Options o = parse_args(m, argc, argv);
  dst_comm_init(&argc, &argv);
  install_stop_handlers();
  if (m->ninputs < 1 || input(m, 0)->ndim != 2)
    dst_fatal("model %s: the first input must be a [batch, seq] token tensor to be fed from --data", m->name);
  if (o.threads) k_set_num_threads((int)o.threads);
  else k_set_num_threads((int)sysconf(_SC_NPROCESSORS_ONLN));

  Trainer t = {.m = m};
  /* The launch must match the plan: every rank checks, none hangs. */
  int degree[DST_AXIS_COUNT] = {(int)m->dp, 1, 1, 1};
  t.mesh = dst_mesh_init(degree);
  t.dp = dst_mesh_comm(t.mesh, DST_AXIS_DP);
  t.rank = t.mesh->coord[DST_AXIS_DP];
  t.world = (int)m->dp;
  bool lead = t.mesh->rank == 0;
  /* Saving and sampling gather parameters at ZeRO-3: every rank takes part */
  const char *save_path = o.save, *dump_path = o.dump;
  int64_t nsample = o.sample;
  if (!lead) {
    o.quiet = true;
    o.sample = 0;
    o.save = NULL;
    o.loss_log = NULL;
    o.dump = NULL;
    o.profile = false;
  }
  if (t.world > 1) dst_log_set_rank(t.mesh->rank);
  t.B = (int)input(m, 0)->shape[0];
  t.T = (int)input(m, 0)->shape[1];
  /* Exactly the planned sizes: the measured peak must equal the plan. */
  t.sharded = m->zero >= 1 && t.world > 1;
  t.z2 = t.sharded && m->zero >= 2;
  t.z3 = t.sharded && m->zero >= 3;
  const char *dname = getenv("DST_DEVICE");
  if (dname && *dname && dev == &cpu_device) {
    if (!strcmp(dname, "cpu-staged")) dev = &cpu_staged_device;
    else if (strcmp(dname, "cpu"))
      dst_fatal("DST_DEVICE=%s: this program runs on the CPU; DST_DEVICE may be cpu or cpu-staged", dname);
  } else if (dname && *dname && strcmp(dname, dev->name)) {
    dst_fatal("DST_DEVICE=%s: this program was built for %s (dstc build --backend); unset DST_DEVICE", dname,
              dev->name);
  }
  if (dev->init) {
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    dev->init(&t.r, lr ? atoi(lr) : t.mesh->rank);
  }
  if (!t.z3) t.r.params = slab(m->params_bytes, DST_MEM_PARAMS, "parameters");
  if (!t.z2) t.r.grads = slab(m->params_bytes, DST_MEM_GRADS, "gradients");
  t.r.arena = slab(m->arena_bytes, DST_MEM_ACTS, "activations");
  t.r.data = slab(m->data_bytes, DST_MEM_DATA, "inputs");
  t.r.work = slab(m->work_bytes, DST_MEM_WORKSPACE, "workspace");
  t.r.ctx = &t;
  if (dev->bind) dev->bind(&t.r);
  if (t.world > 1 && !t.sharded && m->nbuckets > 0) {
    t.r.bucket_ready = on_bucket;
    t.reqs = dst_calloc((size_t)m->nbuckets, sizeof(DstCommReq), DST_MEM_OTHER, "bucket requests");
  }
  t.n = m->params_bytes / 4 / (t.sharded ? t.world : 1);
  t.lo = t.sharded ? (int64_t)t.rank * t.n : 0;
  setup_shards(&t);
  if (t.z2) {
    t.r.zero_hook = zero_hook;
    t.pshard = (float *)slab(t.n * 4, DST_MEM_PARAMS, "parameter shard (fp32 master)");
    t.gshard = (float *)slab(t.n * 4, DST_MEM_GRADS, "gradient shard");
    if (m->grad_accum > 1) t.gstage = (float *)slab(t.n * 4, DST_MEM_GRADS, "gradient receive buffer");
  }
  if (m->optstate_bytes) {
    size_t half = (size_t)t.n * 4;
    char *st = slab(m->optstate_bytes, DST_MEM_OPTIM, "optimizer state");
    t.mom1 = (float *)st;
    t.mom2 = m->optstate_bytes >= 2 * (int64_t)half ? (float *)(st + half) : NULL;
  }
  bool ckpt_on = o.save_every > 0 || o.ckpt_dir_given;
  if (!o.check_grads) check_outputs(&t, &o, ckpt_on);
  t.r.seed = (uint64_t)o.seed;
  t.tok = dst_malloc(sizeof(int32_t) * (size_t)t.B * (size_t)t.T, DST_MEM_OTHER, "batch staging");
  t.tgt = dst_malloc(sizeof(int32_t) * (size_t)t.B * (size_t)t.T, DST_MEM_OTHER, "batch staging");
  t.train = open_data(&t, o.data);
  if (o.val_data) t.val = open_data(&t, o.val_data);

  if (o.profile) t.r.prof = dst_calloc((size_t)m->nprof, sizeof(double), DST_MEM_OTHER, "profile");
  char *pinit = params_target(&t);
  init_params(&t, pinit, (uint64_t)o.seed);
  if (o.init) load_init(&t, pinit, o.init);
  params_written(&t, pinit);

  if (o.check_grads) {
    if (t.world > 1) dst_fatal("--check-grads runs on one rank; build the model with dp = 1");
    if (!dev->host) dst_fatal("--check-grads runs on the CPU backend; build the model without --backend cuda");
    if (m->precision && strcmp(m->precision, "fp32"))
      dst_fatal("--check-grads needs fp32: this program rounds its matmul operands to %s, which hides the small "
                "changes finite differences measure; build the model with -fprecision=fp32",
                m->precision);
    int bad = check_grads(&t);
    trainer_free(&t);
    dst_mesh_free(t.mesh);
    dst_comm_finalize();
    return bad ? 1 : 0;
  }

  FILE *losslog = NULL;
  if (o.loss_log) {
    if (!(losslog = fopen(o.loss_log, "w"))) dst_fatal("--loss-log %s: cannot write: %s", o.loss_log, strerror(errno));
    setvbuf(losslog, NULL, _IOLBF, 0); /* every step's line is on disk, as far as the process got */
  }
  int64_t tokens = (int64_t)t.B * t.T;
  if (lead)
    printf("model %s: %lld parameters, %lld x %d tokens per step%s, %lld steps%s%s\n", m->name,
           (long long)m->param_count, (long long)t.B * t.world * (m->grad_accum > 0 ? m->grad_accum : 1), t.T,
           t.world > 1 || m->grad_accum > 1 ? " (over ranks and micro-steps)" : "", (long long)o.steps,
           m->precision && strcmp(m->precision, "fp32") ? ", matmuls in " : "",
           m->precision && strcmp(m->precision, "fp32") ? m->precision : "");
  if (!o.quiet)
    printf("data %s: %llu tokens, unigram entropy %.4f nats/token\n", o.data, (unsigned long long)t.train->ntokens,
           t.train->entropy);
  DstStepTimer timer;
  dst_timer_init(&timer, (uint64_t)tokens * (uint64_t)t.world * (uint64_t)(m->grad_accum > 0 ? m->grad_accum : 1), 1);
  /* A progress line rewritten in place ("\r\033[K") only on a terminal
   * of a process started on its own: a launcher such as mpirun may give
   * the ranks a pseudo-terminal while its own output goes to a file,
   * where the fragments would be noise. */
  bool tty = isatty(1) && !o.quiet && dst_comm_backend() == DST_COMM_BACKEND_LOCAL;
  double first_loss = NAN, last_loss = NAN;
  bool last_save_failed = false;
  int64_t first = 1;
  if (o.resume) {
    first = resume(&t, o.resume) + 1;
    if (lead) printf("resumed from %s after step %lld\n", o.resume, (long long)(first - 1));
  }
  for (int64_t step = first; step <= o.steps; step++) {
    dst_timer_start(&timer);
    load_batch(&t, t.train);
    float loss = compute(&t, step);
    if (step == 1 && dump_path) {
      float *g = t.sharded ? dst_calloc(1, (size_t)m->params_bytes, DST_MEM_OTHER, "gradient gather")
                           : (float *)t.r.grads;
      if (t.sharded) full_from_shard(&t, reduced_grads(&t), g, false);
      if (lead) dump_step(&t, dump_path, (const char *)g);
      if (t.sharded) dst_free(g);
    }
    if (!isfinite(loss))
      dst_fatal("step %lld: the loss is %s; stopping (try a lower learning rate or gradient clipping)",
                (long long)step, isnan(loss) ? "NaN" : "infinite");
    double norm = grad_norm(&t);
    if (m->clip > 0 && norm > m->clip) clip_grads(&t, (float)(m->clip / norm));
    double lr = lr_at(m, step, o.steps);
    update(&t, step, lr);
    dst_timer_stop(&timer);
    if (step == first) first_loss = loss;
    last_loss = loss;
    if (losslog) fprintf(losslog, "%.9g\n", loss);
    bool log = !o.quiet && (step % o.log_every == 0 || step == 1 || step == o.steps);
    if (log) {
      printf("%sstep %5lld/%lld | loss %.6f | norm %.4f | lr %.3e | %7.1f ms | %8.0f tok/s\n", tty ? "\r\033[K" : "",
             (long long)step, (long long)o.steps, loss, norm, lr, dst_timer_last_ms(&timer),
             dst_timer_last_tok_per_sec(&timer));
      dst_log_progress(false);
    } else if (tty) {
      printf("\r\033[Kstep %5lld/%lld | loss %.6f", (long long)step, (long long)o.steps, loss);
      fflush(stdout);
      dst_log_progress(true);
    }
    bool saved = false, save_ok = false;
    if (o.save_every && (step % o.save_every == 0 || step == o.steps)) {
      saved = true;
      save_ok = checkpoint_step(&t, &o, step,
                                t.stop ? "stopping without it" : step == o.steps ? "training is over" : "training goes on");
      if (!save_ok && step == o.steps && !t.stop) last_save_failed = true;
    }
    if (t.stop) {
      /* every rank agreed on this step (step_mean); the checkpoint, if any,
       * is of it, so a resumed run continues with the next step */
      if (ckpt_on && !saved) save_ok = checkpoint_step(&t, &o, step, "stopping without it");
      char what[4200] = "";
      if (!ckpt_on)
        fmt_cut(what, sizeof what, "no checkpoint (checkpointing is off: give --save-every N or --checkpoint-dir DIR)");
      else if (save_ok)
        fmt_cut(what, sizeof what, "checkpoint written to %s/step-%08lld", o.ckpt_dir, (long long)step);
      else if (lead) {
        char newest[4200];
        newest_checkpoint(o.ckpt_dir, newest, sizeof newest);
        fmt_cut(what, sizeof what, "its checkpoint could not be written (see the warning); %s", newest);
      }
      if (lead) say("stopped by %s after step %lld; %s\n", signal_name(t.stop), (long long)step, what);
      break;
    }
    if (t.val && o.eval_every && step % o.eval_every == 0) {
      double vl = evaluate(&t);
      if (lead) say("step %5lld | val loss %.6f\n", (long long)step, vl);
    }
  }
  if (t.stop) {
    if (losslog) fclose(losslog);
    fflush(stdout);
    trainer_free(&t);
    dst_mesh_free(t.mesh);
    dst_comm_finalize();
    return DST_EXIT_SIGNAL + t.stop;
  }
  dst_log_end_progress();
  if (losslog) fclose(losslog);
  if (t.r.prof && o.steps > 0) print_profile(m, t.r.prof, o.steps, dst_timer_avg_ms(&timer) / 1e3);
  if (t.world > 1 && o.steps >= first && lead)
    printf("communication: %.2f MiB per rank per step in gradient and parameter collectives (ring volume); "
           "%.1f ms per step waiting in them\n",
           t.comm_bytes / (double)(o.steps - first + 1) / (1 << 20), 1e3 * t.comm_sec / (double)(o.steps - first + 1));
  if (o.steps > 0 && lead) {
    double tps = dst_timer_avg_tok_per_sec(&timer);
    printf("done: loss %.4f -> %.4f | %.1f ms/step | %.0f tok/s | %.2f GFLOP/s\n", first_loss, last_loss,
           dst_timer_avg_ms(&timer), tps, tps * m->flops_per_token / 1e9);
  }
  if (t.val) {
    double vl = evaluate(&t);
    if (lead) printf("val loss %.6f\n", vl);
  }
  size_t planned = (size_t)m->planned_bytes;
  size_t measured = 0;
  for (int c = DST_MEM_PARAMS; c <= DST_MEM_DATA; c++) measured += dst_mem_peak((DstMemCat)c);
  if (lead)
    printf("memory: planned %zu bytes%s; allocated %zu bytes at peak in the planned categories\n", planned,
           t.world > 1 ? " per rank" : "", measured);
  if (save_path) {
    float *pf = params_full(&t, lead);
    if (lead) {
      save_params(&t, o.save, o.steps, (const char *)pf);
      printf("saved %s\n", o.save);
    }
    release_full(&t, pf);
  }
  if (o.sample || (t.z3 && nsample)) {
    DstRng rng;
    dst_rng_seed(&rng, (uint64_t)o.seed + 1);
    sample(&t, nsample, o.temperature, &rng, lead);
  }
  if (last_save_failed && lead) {
    char newest[4200];
    newest_checkpoint(o.ckpt_dir, newest, sizeof newest);
    dst_log_error("the checkpoint of the last step (%lld) could not be written (see the warning); %s",
                  (long long)o.steps, newest);
  }
  trainer_free(&t);
  dst_mesh_free(t.mesh);
  dst_comm_finalize();
  return last_save_failed ? DST_EXIT_INPUT : 0;
}
