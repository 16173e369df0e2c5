/* dst.h: the public API of libdst, the runtime linked into every program that
 * dstc emits. One section per source file.
 *
 * Invariants that hold across the runtime:
 *  - Every exported symbol starts with dst_ (macros with DST_); typedefs are
 *    CamelCase with a Dst prefix.
 *  - Every heap allocation goes through dst_malloc and friends, so the bytes
 *    the program really holds per category can be compared with the plan.
 *  - Errors caused by the user's input (a bad file, a wrong shape) reach the
 *    user as one "error: ..." line and exit status 1; bugs in the runtime or
 *    in generated code exit with status 70 and name the file:line.
 *  - Readers (safetensors, data) never abort on bad input: they return
 *    NULL/false and write one message into a caller buffer of DST_ERR_LEN.
 *  - State that must survive a checkpoint (RNG, data position) is a plain
 *    struct or field that can be saved and restored byte for byte.
 *  - This is the single-process part. A dst_comm section (MPI/NCCL) will be
 *    added later; the pieces that depend on the process's place in the job
 *    (log prefix, data sharding) already take rank and world explicitly.
 */
#ifndef DST_RUNTIME_H
#define DST_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Size of every caller-provided error buffer (char err[DST_ERR_LEN]). */
#define DST_ERR_LEN 256

/* Exit statuses of a generated program (same contract as dstc): 1 for the
 * user's input, 2 for a bad command line, 70 for internal bugs, and
 * 128 + the signal (130 for SIGINT, 143 for SIGTERM), the shell's
 * convention, when a signal stopped training after a step. */
enum { DST_EXIT_INPUT = 1, DST_EXIT_USAGE = 2, DST_EXIT_INTERNAL = 70, DST_EXIT_SIGNAL = 128 };

/* ------------------------------------------------------------- dst_log.c */

/* Sets the rank printed before every log line as "[rank N] "; a negative
 * rank (the default) prints no prefix. Called once comm knows the rank. */
void dst_log_set_rank(int rank);
int dst_log_rank(void);

/* A user-facing error (bad input file, misconfiguration): prints
 * "error: <msg>" to stderr and exits with status 1. */
_Noreturn void dst_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An internal error (a bug in the runtime or in generated code): prints
 * "internal error: <file>:<line>: <msg>" to stderr and exits with status 70.
 * Use through dst_die(...), which fills in the location. */
_Noreturn void dst_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define dst_die(...) dst_die_at(__FILE__, __LINE__, __VA_ARGS__)

/* Invariant check: when cond is false, dies (status 70) with the location,
 * the condition's text and the formatted message. Always on (not assert). */
#define DST_CHECK(cond, ...)                                              \
  do {                                                                    \
    if (!(cond)) dst_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)
_Noreturn void dst_check_failed(const char *file, int line, const char *cond, const char *fmt,
                                ...) __attribute__((format(printf, 4, 5)));

/* Informational and warning lines on stderr ("warning: " for the latter),
 * so stdout stays free for the program's own output. A newline is added. */
void dst_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dst_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An "error: " line that does not exit: for a failure reported at the end
 * of work that went on (the caller chooses the exit status). */
void dst_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A progress line is a line on a terminal that the program rewrites in
 * place ("\r\033[K..." without a newline). dst_log_progress(true) says one
 * is showing on stdout; dst_log_end_progress() clears it (if one shows)
 * so that what is printed next starts on its own line. Every message of
 * this section, and the job-ending messages of dst_comm, call it first. */
void dst_log_progress(bool showing);
void dst_log_end_progress(void);

/* ----------------------------------------------------------- dst_alloc.c */

/* What an allocation holds; the plan reports its peak per category too. */
typedef enum {
  DST_MEM_PARAMS,     /* model parameters (and fp32 master copies) */
  DST_MEM_GRADS,      /* parameter gradients */
  DST_MEM_OPTIM,      /* optimizer state (moments) */
  DST_MEM_ACTS,       /* activations kept for backward */
  DST_MEM_WORKSPACE,  /* scratch of kernels and communication */
  DST_MEM_DATA,       /* input batches, token buffers */
  DST_MEM_OTHER,      /* everything else (readers, tables) */
  DST_MEM_NCAT
} DstMemCat;

/* Every block returned is aligned to DST_ALIGN bytes. */
#define DST_ALIGN 64

/* Allocates bytes (0 is allowed and gives a unique pointer), aligned to
 * DST_ALIGN, accounted to cat. tag names the allocation in messages
 * (e.g. "params.wte"). Out of memory, or above the limit set with
 * dst_mem_set_limit, is fatal: "error: out of memory: <tag> ...". */
void *dst_malloc(size_t bytes, DstMemCat cat, const char *tag);
/* As dst_malloc for n*size bytes, zeroed; n*size overflowing is fatal. */
void *dst_calloc(size_t n, size_t size, DstMemCat cat, const char *tag);
/* As dst_malloc but returns NULL instead of exiting; for readers that must
 * report failure to their caller. */
void *dst_try_malloc(size_t bytes, DstMemCat cat, const char *tag);
/* Resizes a block from this funnel (NULL acts as dst_malloc); the new
 * block is accounted to cat and keeps the contents up to the smaller size.
 * Fatal on out of memory, like dst_malloc. */
void *dst_realloc(void *ptr, size_t bytes, DstMemCat cat, const char *tag);
/* Frees a block from this funnel; NULL is a no-op. A pointer that did not
 * come from dst_malloc (or was already freed) is detected and is fatal
 * (status 70) in the common cases. */
void dst_free(void *ptr);

/* Bytes currently live / the high-water mark, for one category. */
size_t dst_mem_live(DstMemCat cat);
size_t dst_mem_peak(DstMemCat cat);
/* Accounts memory allocated elsewhere (a GPU's): false, with nothing
 * accounted, when it would pass the limit. */
bool dst_mem_account(DstMemCat cat, size_t bytes);
void dst_mem_unaccount(DstMemCat cat, size_t bytes);
/* The high-water mark of the sum over categories (not the sum of peaks). */
size_t dst_mem_live_total(void);
size_t dst_mem_peak_total(void);
/* Resets every peak to the current live bytes, to measure one phase. */
void dst_mem_reset_peak(void);
/* Caps the total live bytes (0 = no cap, the default): an allocation that
 * would exceed it fails as if the machine were out of memory. Lets a CPU
 * run check that the plan's per-rank budget really holds. */
void dst_mem_set_limit(size_t bytes);
/* "params", "grads", "optim", "acts", "workspace", "data", "other". */
const char *dst_mem_cat_name(DstMemCat cat);
/* Prints one line per category (live, peak) and the total peak to f. */
void dst_mem_report(FILE *f);

/* ------------------------------------------------------------- dst_rng.c */

/* xoshiro256** state, seeded through splitmix64. A plain struct: saving
 * and restoring its bytes resumes the exact stream (checkpoints). The
 * state is never all zero once seeded. */
typedef struct {
  uint64_t s[4];
} DstRng;

/* Seeds rng from one 64-bit seed; equal seeds give equal streams. */
void dst_rng_seed(DstRng *rng, uint64_t seed);
/* Seeds an independent stream number `stream` of `seed` (e.g. one per
 * rank); (seed, stream) pairs give unrelated streams. */
void dst_rng_seed_stream(DstRng *rng, uint64_t seed, uint64_t stream);
/* Next 64 uniformly random bits. */
uint64_t dst_rng_u64(DstRng *rng);
/* Uniform float in [0, 1), a multiple of 2^-24. */
float dst_rng_uniform(DstRng *rng);
/* Standard normal (mean 0, std 1) by Box-Muller; consumes two u64 per
 * call (the second Box-Muller value is discarded to keep state plain). */
float dst_rng_normal(DstRng *rng);
/* x[i] = mean + std * N(0,1) for i < n. Uses both Box-Muller values, so
 * the sequence differs from n calls of dst_rng_normal; it is a function of
 * the state and n only. */
void dst_init_normal(float *x, size_t n, float mean, float std, DstRng *rng);
/* x[i] = uniform in [lo, hi) for i < n. */
void dst_init_uniform(float *x, size_t n, float lo, float hi, DstRng *rng);
/* x[i] = value for i < n. */
void dst_init_const(float *x, size_t n, float value);

/* ----------------------------------------------------- dst_safetensors.c */

/* Element types of the safetensors format (names as in the file). */
typedef enum {
  DST_DT_F64,
  DST_DT_F32,
  DST_DT_F16,
  DST_DT_BF16,
  DST_DT_F8_E4M3,
  DST_DT_F8_E5M2,
  DST_DT_I64,
  DST_DT_I32,
  DST_DT_I16,
  DST_DT_I8,
  DST_DT_U64,
  DST_DT_U32,
  DST_DT_U16,
  DST_DT_U8,
  DST_DT_BOOL,
  DST_DT_COUNT
} DstDtype;

/* Most dimensions a tensor may have. */
#define DST_TENSOR_MAX_DIMS 8
/* Largest JSON header dst_st_open accepts. */
#define DST_ST_MAX_HEADER (100u << 20)

/* "F32", "BF16", ...; "?" for an invalid value. */
const char *dst_dtype_name(DstDtype dt);
/* Bytes per element (1 for BOOL and the F8 types); 0 for invalid. */
size_t dst_dtype_size(DstDtype dt);
/* Parses a dtype name as written in safetensors; false if unknown. */
bool dst_dtype_parse(const char *name, DstDtype *out);

/* One tensor of an open file. All fields are valid while the file is. */
typedef struct {
  const char *name;                     /* NUL-terminated, decoded UTF-8 */
  DstDtype dtype;
  int ndim;                             /* 0 for a scalar */
  int64_t shape[DST_TENSOR_MAX_DIMS];   /* each >= 0 */
  uint64_t begin, end;                  /* byte range in the data section */
  const void *data;                     /* begin of the bytes; may be unaligned */
} DstStTensor;

typedef struct DstSafetensors DstSafetensors;

/* Opens and validates a safetensors file: header length within the file
 * and DST_ST_MAX_HEADER, well-formed JSON, known dtypes, at most
 * DST_TENSOR_MAX_DIMS dims, data_offsets in bounds and equal to the dtype
 * size times the shape product, tensors neither overlapping nor leaving
 * holes, no duplicate names, metadata values strings. Returns NULL and a
 * message in err (naming the file) on any failure; never exits. */
DstSafetensors *dst_st_open(const char *path, char err[DST_ERR_LEN]);
/* Unmaps and frees; NULL is a no-op. */
void dst_st_close(DstSafetensors *st);
/* Number of tensors, and the i-th in the order of the file's header. */
size_t dst_st_count(const DstSafetensors *st);
const DstStTensor *dst_st_tensor(const DstSafetensors *st, size_t i);
/* The tensor with this name, or NULL. */
const DstStTensor *dst_st_find(const DstSafetensors *st, const char *name);
/* The value of key in __metadata__, or NULL. */
const char *dst_st_metadata(const DstSafetensors *st, const char *key);
/* Copies tensor `name` into dst after checking that it exists and has
 * exactly this dtype and shape. On mismatch returns false with a message
 * naming the tensor and what differs, e.g.
 *   tensor 'h.0.w': shape [768,3072] expected, [768,2304] found */
bool dst_st_load_into(const DstSafetensors *st, const char *name, DstDtype dtype,
                      const int64_t *shape, int ndim, void *dst, char err[DST_ERR_LEN]);

/* Collects tensors, then writes them as one safetensors file. Tensors are
 * written in the order added; their data is referenced, not copied, and
 * must stay valid until dst_st_writer_write returns. */
typedef struct DstStWriter DstStWriter;

DstStWriter *dst_st_writer_new(void);
void dst_st_writer_free(DstStWriter *w);
/* Adds a tensor of ndim dims (<= DST_TENSOR_MAX_DIMS, each >= 0). Returns
 * false with a message on a duplicate or invalid name (empty, not UTF-8,
 * "__metadata__"), bad dtype or bad shape. */
bool dst_st_writer_add(DstStWriter *w, const char *name, DstDtype dtype, const int64_t *shape,
                       int ndim, const void *data, char err[DST_ERR_LEN]);
/* Sets a __metadata__ entry (string to string); a repeated key replaces. */
bool dst_st_writer_set_metadata(DstStWriter *w, const char *key, const char *value,
                                char err[DST_ERR_LEN]);
/* Writes path atomically: path.tmp is written, flushed, fsynced and
 * renamed over path, so a crash leaves the old file or the new one. The
 * header is padded with spaces so the data section starts 8-aligned.
 * Returns false with a message (and no path.tmp left) on I/O failure. */
bool dst_st_writer_write(DstStWriter *w, const char *path, char err[DST_ERR_LEN]);

/* ------------------------------------------------------------ dst_data.c */

/* Magic and version of an llm.c token shard: a header of 256 int32
 * (little-endian) [magic, version, ntokens, 0...] then ntokens uint16. */
#define DST_SHARD_MAGIC 20240520
#define DST_SHARD_VERSION 1
#define DST_SHARD_HEADER_BYTES 1024

typedef enum {
  DST_DATA_TEXT,   /* any file: token = byte value, vocab 256 */
  DST_DATA_SHARD,  /* llm.c token shard, uint16 tokens */
} DstDataFormat;

/* A token loader over one file (training or validation: open one of each).
 *
 * Batches: a sequence is a window of T+1 consecutive tokens (inputs are
 * the first T, targets the last T, i.e. shifted by one). The global batch
 * of a step is B*world consecutive windows starting at pos, window k at
 * pos + k*T; a window that would run past the end of the data wraps to the
 * start (it begins at token 0 and the following windows continue from
 * there). Rank r receives windows r*B .. r*B+B-1 of the global batch, so
 * ranks are disjoint and together cover the global batch, and the data a
 * rank sees does not depend on anything but (pos, B, T, rank, world).
 *
 * The file is read, never mapped: dst_data_next reads this rank's windows
 * with pread, so the loader holds one window of memory whatever the file's
 * size, and a file truncated while training is a located error rather
 * than a SIGBUS. Opening makes one streaming pass over the file (format,
 * largest token, token frequencies) through a bounded buffer.
 *
 * Only pos is state: save it with a checkpoint and assign it back to
 * resume. Every other field is read-only after dst_data_open. */
typedef struct {
  uint64_t pos;             /* first token of the next global batch; state */
  DstDataFormat format;
  uint64_t ntokens;         /* tokens in the file */
  uint32_t vocab;           /* 256 for text, 65536 for shards */
  uint32_t max_token;       /* largest token id present, checked vs model vocab */
  double entropy;           /* nats per token of the tokens' frequencies: the
                               loss of the best model that ignores context */
  int B, T, rank, world;
  int fd;                   /* the open file */
  uint64_t data_offset;     /* byte offset of token 0 (the shard header's size) */
  uint64_t file_bytes;      /* the file's size when it was opened */
  unsigned token_bytes;     /* 1 for text, 2 for shards */
  unsigned char *window;    /* one window of T+1 tokens as read */
  char path[512];           /* for messages; truncated if longer */
} DstDataLoader;

/* Opens path for batches of B sequences of T tokens on `rank` of `world`.
 * A file whose first int32 is DST_SHARD_MAGIC is a shard and must have
 * version 1 and exactly 1024 + 2*ntokens bytes; any other file is text.
 * Fewer than T+1 tokens is an error. Returns NULL with a message naming
 * the file and the problem in err; never exits. */
DstDataLoader *dst_data_open(const char *path, int B, int T, int rank, int world,
                             char err[DST_ERR_LEN]);
void dst_data_close(DstDataLoader *dl);
/* Fills inputs and targets, each (B,T) row-major, with this rank's part of
 * the next global batch and advances pos past the whole global batch.
 * Returns false with a message naming the file (pos unchanged) when the
 * file cannot be read any more, e.g.
 *   data.txt: the file is now 100 bytes, it had 9000 when training
 *   started: it was truncated or replaced while training */
bool dst_data_next(DstDataLoader *dl, int32_t *inputs, int32_t *targets, char err[DST_ERR_LEN]);
/* True when every token of the file is below limit (a model reads them as
 * ids of a table of `limit` rows). Otherwise false with the first token
 * that is not, its value, its offset in tokens and the limit, e.g.
 *   data.bin: token 50257 at token offset 1234 is outside the model's
 *   vocabulary: input 'idx' takes ids below 50257
 * where `reader` ("input 'idx'") says who imposes the limit. Costs a pass
 * over the file only when max_token >= limit. */
bool dst_data_check_ids(const DstDataLoader *dl, uint32_t limit, const char *reader,
                        char err[DST_ERR_LEN]);
/* Back to the start of the data (pos = 0), e.g. before each validation. */
void dst_data_reset(DstDataLoader *dl);
/* Global batches in one pass over the data before the first wrap (at
 * least 1): the natural number of validation steps. */
uint64_t dst_data_batches_per_epoch(const DstDataLoader *dl);

/* --------------------------------------------------------- dst_metrics.c */

/* Seconds from a monotonic clock (arbitrary origin). */
double dst_now_sec(void);

/* Step timing: steps before `warmup` are measured but left out of the
 * averages (first steps pay for page faults and caches). */
typedef struct {
  uint64_t tokens_per_step; /* global tokens processed per step */
  uint64_t warmup;          /* steps excluded from averages */
  uint64_t steps;           /* steps recorded, warm-up included */
  double t_start;           /* set by dst_timer_start */
  double last_sec;          /* duration of the last step */
  double sum_sec;           /* total over steps after warm-up */
} DstStepTimer;

void dst_timer_init(DstStepTimer *t, uint64_t tokens_per_step, uint64_t warmup);
void dst_timer_start(DstStepTimer *t);
/* Ends the step begun by dst_timer_start; returns its duration in ms. */
double dst_timer_stop(DstStepTimer *t);
/* Records a step of the given duration (for externally timed steps). */
void dst_timer_record(DstStepTimer *t, double sec);
/* Last step: ms and tokens/s. */
double dst_timer_last_ms(const DstStepTimer *t);
double dst_timer_last_tok_per_sec(const DstStepTimer *t);
/* Averages over steps after warm-up (0 if there are none). */
double dst_timer_avg_ms(const DstStepTimer *t);
double dst_timer_avg_tok_per_sec(const DstStepTimer *t);

#ifdef __cplusplus
}
#endif
#endif /* DST_RUNTIME_H */
