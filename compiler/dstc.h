/* dstc.h: the compiler's one internal header, sectioned by source file.
 *
 * Invariants that hold across the compiler:
 *  - Every allocation made while compiling comes from an Arena and is freed
 *    wholesale at the end; passes never call free().
 *  - A source position is a Loc (file id + byte range); line and column are
 *    computed only when a diagnostic is printed.
 *  - User errors go to the diagnostic sink (diag.c); internal bugs go to
 *    die(), which exits with status 70 and names the compiler's file:line.
 *  - Output is deterministic: no pointers, timestamps or hash orders leak
 *    into anything printed or emitted.
 */
#ifndef DSTC_H
#define DSTC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DST_VERSION "0.1.0"

/* Exit codes of dstc (a contract: scripts and tests rely on them). */
enum { EXIT_OK = 0, EXIT_INPUT = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 70 };

/* Hard limits that keep hostile input from exhausting time or memory. */
enum {
  DST_MAX_SOURCE_BYTES = 64 << 20, /* per source file */
  DST_MAX_FILES = 4096,            /* distinct imported files */
  DST_MAX_NESTING = 200,           /* brackets, blocks, expressions */
  DST_MAX_ERRORS = 50,             /* then "too many errors" */
  DST_MAX_DIMS = 8,                /* tensor rank */
  DST_MAX_INST_DEPTH = 64,         /* block instantiation depth */
  DST_MAX_REPEAT = 100000,         /* repeat(n) count */
  DST_MAX_INSTANCES = 200000,      /* layers in a whole model */
  DST_MAX_IR_NODES = 20000000,     /* whole graph */
  /* forward operations (lower.c stops there, with a message): the passes
   * after it add at most about 25 nodes per forward node (casts, AUX,
   * GRAD, BACKWARD), which keeps the whole graph under DST_MAX_IR_NODES */
  DST_MAX_FORWARD_OPS = 750000,
};

_Noreturn void die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define die(...) die_at(__FILE__, __LINE__, __VA_ARGS__)
#define DST_ASSERT(c) ((c) ? (void)0 : die("assertion failed: %s", #c))

/* ---------------------------------------------------------------- arena.c */

typedef struct ArenaChunk ArenaChunk;
typedef struct {
  ArenaChunk *head; /* newest chunk first */
  size_t used;      /* bytes handed out, for statistics */
} Arena;

void arena_init(Arena *a);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n);   /* zeroed, 16-byte aligned */
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vprintf(Arena *a, const char *fmt, va_list ap);
/* Grows *v (an arena array of *cap elements of size elem) to hold n+1. */
void arena_grow(Arena *a, void **v, int *cap, int n, size_t elem);
#define ARENA_PUSH(a, vec, n, cap, x)                                    \
  do {                                                                   \
    arena_grow((a), (void **)&(vec), &(cap), (n), sizeof *(vec));        \
    (vec)[(n)++] = (x);                                                  \
  } while (0)

/* ---------------------------------------------------------------- diag.c */

typedef struct {
  uint32_t file; /* index into the source table; 0 = no location */
  uint32_t begin, end; /* byte offsets, end exclusive */
} Loc;

typedef struct {
  const char *path;    /* as the user named it, or as found on the path */
  const char *text;    /* contents plus a NUL sentinel at text[len] */
  uint32_t len;
  uint32_t *lines;     /* byte offset of each line start, computed lazily */
  uint32_t nlines;
} SrcFile;

typedef enum { SEV_ERROR, SEV_WARNING, SEV_NOTE } Severity;

typedef struct DiagNote {
  Loc loc;
  const char *msg;
  struct DiagNote *next;
} DiagNote;

typedef struct Diag {
  Severity sev;
  Loc loc;
  const char *msg;
  DiagNote *notes;
  struct Diag *next;
} Diag;

typedef struct {
  Arena *arena;
  SrcFile *files; /* files[0] is the "no file" entry */
  int nfiles, capfiles;
  Diag *head, *tail;
  int nerrors, nwarnings;
  bool overflowed; /* DST_MAX_ERRORS reached; further errors dropped */
  bool werror;     /* warnings count as errors */
} DiagSink;

void diag_init(DiagSink *d, Arena *a);
/* Registers a source buffer (text must have a NUL at text[len]). */
uint32_t diag_add_file(DiagSink *d, const char *path, const char *text, uint32_t len);
Diag *diag_error(DiagSink *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
Diag *diag_warning(DiagSink *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Attaches a note (a related location) to a diagnostic; g may be NULL. */
void diag_note(DiagSink *d, Diag *g, Loc loc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void diag_print(DiagSink *d, FILE *out, bool color);
/* 1-based line and column of a byte offset. */
void diag_linecol(DiagSink *d, uint32_t file, uint32_t off, int *line, int *col);
bool diag_failed(const DiagSink *d);
/* The source text of loc (clipped to 80 bytes), for quoting in messages. */
const char *diag_source_text(DiagSink *d, Loc loc);
static inline Loc loc_span(Loc a, Loc b) {
  Loc l = a;
  if (b.file == a.file && b.end > l.end) l.end = b.end;
  return l;
}

/* Length (1-4) of the valid UTF-8 sequence at p, 0 if it is invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
int utf8_seq_len(const unsigned char *p);

/* Edit distance, for did-you-mean suggestions. */
int edit_distance(const char *a, const char *b);
/* The candidate closest to name, or NULL when none is close enough. */
const char *closest_name(const char *name, const char *const *cands, int n);

/* ---------------------------------------------------------------- ast.c */

typedef enum {
  /* expressions */
  N_INT,       /* ival */
  N_FLOAT,     /* fval */
  N_STR,       /* str */
  N_BOOL,      /* ival 0/1 */
  N_NAME,      /* name */
  N_MEMBER,    /* a = object, name = member */
  N_CALL,      /* a = callee (N_NAME/N_MEMBER), list = args */
  N_NAMEDARG,  /* name = value a (only inside call argument lists) */
  N_BINARY,    /* op, a, b */
  N_UNARY,     /* op, a */
  N_LIST,      /* list: [a, b, ...] */
  N_TUPLE,     /* list: (a, b, ...) */
  /* forward statements */
  N_ASSIGN,    /* list = targets (N_NAME), a = value */
  N_RETURN,    /* a */
  N_MINIMIZE,  /* a */
  N_IF,        /* a = condition, list = then, list2 = else (members or stmts) */
  /* block members */
  N_PARAM,     /* name, a = tensor type, b = initializer (N_CALL/N_NAME) or NULL, annots */
  N_LAYER,     /* name, a = instantiation (N_CALL), b = repeat count or NULL, annots */
  N_INPUT,     /* name, a = tensor type */
  N_FORWARD,   /* list = formals (N_NAME), list2 = body */
  N_TENSORTY,  /* name = dtype name, list = shape exprs */
  /* declarations */
  N_IMPORT,    /* str = path */
  N_CONFIG,    /* list = N_CONST */
  N_CONST,     /* name, a = value expr */
  N_FORMAL,    /* name, str = type name, a = default or NULL */
  N_BLOCK,     /* name, list = formals, list2 = members, annots */
  N_MODEL,     /* name, list2 = members */
  N_TRAIN,     /* list = N_KEYVAL */
  N_PARALLEL,  /* list = N_KEYVAL */
  N_KEYVAL,    /* name = value a */
  N_ANNOT,     /* name, list = args */
  N_FILE,      /* list = declarations */
  N__COUNT
} NodeKind;

typedef struct Node Node;
typedef struct {
  Node **v;
  int n, cap;
} NodeList;

struct Node {
  NodeKind kind;
  int op;           /* token of a binary/unary operator */
  Loc loc;          /* the whole construct */
  Loc nloc;         /* the name, where there is one */
  const char *name;
  const char *str;
  int64_t ival;
  double fval;
  int depth;        /* parser: expression depth, bounded by DST_MAX_NESTING */
  Node *a, *b;
  NodeList list, list2, annots;
};

const char *node_kind_name(NodeKind k);
const char *op_token_str(int op);
Node *ast_new(Arena *a, NodeKind k, Loc loc);
void ast_push(Arena *a, NodeList *l, Node *n);
void ast_dump(FILE *out, const Node *n, int indent);

/* ---------------------------------------------------------------- lex.re */

/* Token kinds come from the Bison-generated parser header (parse.h). */
typedef struct {
  Arena *arena;
  DiagSink *diag;
  uint32_t file;
  const char *start;  /* buffer (NUL-terminated at start[len]) */
  uint32_t len;
  const char *cur;    /* next byte to scan */
  int depth;          /* open brackets; bounded by DST_MAX_NESTING */
  bool depth_reported;
} Lexer;

typedef union {
  int64_t ival;
  double fval;
  const char *str;
} TokVal;

void lex_init(Lexer *lx, Arena *a, DiagSink *d, uint32_t file);
/* Returns the next token kind; fills *val and *loc. 0 at end of input. */
int lex_next(Lexer *lx, TokVal *val, Loc *loc);
const char *lex_token_name(int tok);

/* ---------------------------------------------------------------- parse.y */

/* Parses one registered source file; returns an N_FILE node (never NULL;
 * syntax errors go to the sink and the tree holds what was recovered). */
Node *parse_file(Arena *a, DiagSink *d, uint32_t file);

/* ---------------------------------------------------------------- source.c */

typedef struct {
  const char **incdirs; /* -I, in order */
  int nincdirs;
  const char *stdlib_dir;
} SearchPath;

/* Reads a file into the sink's table (checks size, NUL bytes are left to the
 * lexer). Returns the file id, or 0 with *why set. */
uint32_t source_load(DiagSink *d, const char *path, const char **why);
const char *source_stdlib_dir(void);

/* ---------------------------------------------------------------- sema.c */

typedef enum { CV_NONE, CV_INT, CV_FLOAT, CV_BOOL, CV_STR } ConstKind;
typedef struct {
  ConstKind kind;
  int64_t i;
  double f;
  const char *s;
} ConstVal;

typedef enum { PK_INT, PK_FLOAT, PK_BOOL, PK_ENUM, PK_STR, PK_SIZE } ParamKeyType;

/* The validated parallel settings; every key has a value (file, flag or
 * default) and the location that set it. */
typedef struct {
#define PARALLEL_KEY(name, type, def, lo, hi, enums, doc) ConstVal name;
#include "keys.def"
#undef PARALLEL_KEY
} ParallelCfg;

typedef enum { OPT_ADAMW, OPT_SGD } OptKind;
typedef enum { SCHED_CONSTANT, SCHED_LINEAR, SCHED_COSINE } SchedKind;

typedef struct {
  OptKind opt;
  double lr, beta1, beta2, eps, weight_decay, momentum;
  bool nesterov;
  SchedKind sched;
  int64_t warmup;
  double min_lr;       /* floor of linear/cosine decay */
  double clip_grad_norm; /* 0 = no clipping */
  int64_t steps, batch, seed, log_every, eval_every, save_every;
} TrainCfg;

typedef struct Program Program;

/* A name given on the command line with -D or -f. */
typedef struct {
  const char *key;
  const char *value;
  bool used;
} CliSetting;

typedef struct {
  SearchPath search;
  CliSetting *defines; int ndefines;  /* -D name=value */
  CliSetting *flags; int nflags;      /* -f<key>=<value> */
  const char *main_text;              /* if set, the main file's contents */
  size_t main_len;                    /* (used by tests and the fuzzer) */
} CompileOptions;

/* Loads the main file and its imports, parses and checks them. Returns
 * NULL only when the main file cannot be read. */
Program *sema_program(Arena *a, DiagSink *d, const char *path, const CompileOptions *opts);

/* ---------------------------------------------------------------- ir.c */

typedef enum { DT_F32, DT_BF16, DT_F16, DT_I32, DT__COUNT } DType;
const char *dtype_name(DType t);
bool dtype_from_name(const char *s, DType *out);
size_t dtype_size(DType t);

typedef enum {
#define OP(id, name, arity, group) OP_##id,
#include "ops.def"
#undef OP
  OP__COUNT
} OpKind;

enum { GRP_SOURCE = 1, GRP_ELEMWISE = 2, GRP_UNARY = 4, GRP_BINARY = 8, GRP_REDUCE = 16,
       GRP_SHAPE = 32, GRP_NN = 64, GRP_LOSS = 128 };

typedef struct {
  const char *name;
  int arity; /* -1 = variadic */
  unsigned groups;
} OpInfo;
extern const OpInfo op_info[OP__COUNT];

typedef uint32_t ValId; /* index into IrGraph.nodes; 0 is "none" */

typedef enum { INIT_NONE, INIT_NORMAL, INIT_ZEROS, INIT_ONES, INIT_UNIFORM, INIT_CONST } InitKind;
typedef enum { SHARD_NONE, SHARD_COLUMN, SHARD_ROW, SHARD_VOCAB, SHARD_HEADS, SHARD_EXPERTS,
               SHARD_REPLICATED } ShardKind;

typedef struct {
  uint16_t op;
  uint8_t dtype;
  uint8_t ndim;
  int64_t shape[DST_MAX_DIMS];
  ValId *in;          /* operands */
  uint32_t nin;
  ValId *out;         /* further values this node writes (AUX of a forward
                         op; GRADs a BACKWARD accumulates into) */
  uint32_t nout;
  int64_t iattr[4];   /* op-specific: dims, counts, flags (see ops.def);
                         PARAM: [0] split dim, [1] no weight decay */
  double fattr[2];    /* op-specific: eps, p, theta, init std */
  const char *name;   /* parameter/input name ("blocks.3.attn.qkv.w") */
  const char *path;   /* layer path of the op ("blocks.3.attn") */
  Loc loc;
  uint8_t init;       /* InitKind, for OP_PARAM */
  uint8_t shard;      /* ShardKind annotation, for OP_PARAM */
  int64_t shard_units; /* units along the split dim (heads, experts) */
  Loc shard_loc;      /* the @shard annotation that set shard */
  Loc shard_units_loc; /* its unit-count expression, if any */
  int32_t stage;      /* @stage(n), -1 = unspecified */
  Loc stage_loc;      /* the @stage annotation */
  bool checkpoint;    /* @checkpoint on the enclosing layer */
  bool dead;          /* removed by simplify: computed and stored by no one */
  bool fused;         /* computed inline by its only reader (fuse.c) */
} IrNode;

typedef struct {
  Arena *arena;
  IrNode *nodes; /* nodes[0] unused */
  int n, cap;
  ValId loss;
  int nforward;       /* nodes[1..nforward] are the forward graph */
  ValId *grad_of;     /* after autodiff: grad_of[v] = GRAD node of v, or 0 */
  struct IrNamed { const char *name; ValId v; } *named; int nnamed, capnamed; /* model forward's named values */
  ValId *params; int nparams, capparams;
  ValId *inputs; int ninputs, capinputs;
} IrGraph;

void ir_init(IrGraph *g, Arena *a);
ValId ir_add(IrGraph *g, const IrNode *proto);
int64_t ir_numel(const IrNode *n);
void ir_dump(FILE *out, const IrGraph *g);
/* readers[v] += the number of operand slots of live nodes that read v;
 * reader[v] = the last such node (arrays of g->n, zeroed by the caller). */
void ir_readers(const IrGraph *g, int *readers, ValId *reader);
/* Checks structural invariants; returns false (and prints) on a violation. */
bool ir_verify(const IrGraph *g, FILE *err);

/* ---------------------------------------------------------------- shape.c */

/* Infers the output dtype and shape of n (op, inputs and attrs set) from its
 * operands. On a mismatch returns false and writes a message to msg. */
bool shape_infer(const IrGraph *g, IrNode *n, char *msg, size_t msgsz);
int shape_format(char *buf, size_t sz, const int64_t *shape, int ndim);

/* ---------------------------------------------------------------- simplify.c */

/* Folds transposes and bias adds into matmuls; marks dead values. */
void pass_simplify(IrGraph *g);

/* ---------------------------------------------------------------- precision.c */

/* "fp32", "bf16", "fp16" -> the compute dtype; false for anything else. */
bool precision_from_name(const char *s, DType *out);
/* With a 16-bit dt, gives every forward matmul 16-bit operands: CAST nodes
 * inserted before it (renumbering the graph). Runs before autodiff. */
void pass_precision(IrGraph *g, DType dt);
/* Appends a CAST of x to dt (sharing x's location and layer path). */
ValId precision_cast(IrGraph *g, ValId x, DType dt);

/* ---------------------------------------------------------------- autodiff.c */

/* Appends the backward graph: AUX values for what forward ops save, GRAD
 * buffers, and one BACKWARD node per differentiable forward node, in reverse
 * order. Parameters used twice (tied weights) get one gradient. */
void pass_autodiff(IrGraph *g);
/* Whether forward op k's operand i receives a gradient. */
bool autodiff_operand_differentiable(const IrNode *n, int i);

/* ---------------------------------------------------------------- fuse.c */

/* Marks elementwise values that their only reader computes inline. */
void pass_fuse(IrGraph *g);
bool fuse_is_loop_op(OpKind op);

/* ---------------------------------------------------------------- memplan.c */

typedef enum { MEM_NONE, MEM_PARAMS, MEM_GRADS, MEM_OPTSTATE, MEM_ACTIVATIONS, MEM_WORKSPACE,
               MEM_DATA, MEM__COUNT } MemCat;

typedef struct {
  int n;
  uint8_t *cat;       /* MemCat of each value */
  int64_t *offset;    /* byte offset within its category's slab; -1 none */
  int64_t bytes[MEM__COUNT];
  int64_t *start, *end; /* lifetimes of arena values (schedule positions) */
  int64_t slab_params;  /* bytes of the whole parameter slab (the layout
                           every offset refers to; set by the emitter) */
  /* ZeRO-2/3 with dp > 1 (set by the emitter, which partitions the slab
   * into units): one rank's shard, the peak of gathered parameter units
   * (stage 3) or the gather staging buffer (stage 2), and the peak of
   * unreduced gradient units. bytes[] then hold the per-rank figures. */
  int64_t zero_shard, zero_pbuf, zero_gbuf;
  int zero_units;
  double zero_comm; /* bytes each rank sends per step (ring collectives) */
  int64_t device_work; /* CUDA: the runtime's buffers inside the workspace
                          (cuBLASLt's, the norm's); set by the emitter */
} MemPlan;

MemPlan *memplan_build(IrGraph *g, const Program *prog);
void memplan_free(MemPlan *m);
int64_t memplan_bytes(const IrNode *n);
int64_t memplan_total(const MemPlan *m);
const char *memplan_cat_name(MemCat c);
/* Prints the plan by category. ignored: NULL when the plan covers every
 * setting of the layout, else the settings it leaves out ("tp = 2, pp =
 * 2"), which the header then names instead of calling the plan exact. */
void memplan_print(FILE *out, const IrGraph *g, const MemPlan *m, const char *ignored);
/* "1.50 GiB", "12.00 KiB", "512 B". */
void memplan_human(char *buf, size_t sz, int64_t b);

/* ---------------------------------------------------------------- emit_c.c */

/* What a generated program runs on: C with the CPU kernels, or CUDA C++
 * with the CUDA kernels (a .cu file). */
typedef enum { BACKEND_CPU, BACKEND_CUDA } Backend;

/* Writes the C (or CUDA) program of the model; false (with diagnostics)
 * when the graph uses something the backend cannot express. Reserves the
 * workspace the generated code uses in m. */
bool emit_c(FILE *f, Program *p, IrGraph *g, MemPlan *m, const char *source_name, Backend backend);

/* ---------------------------------------------------------------- build.c */

int build_mkdirs(const char *dir);
typedef enum {
  BUILD_OK,
  BUILD_NO_TOOL, /* the compiler or linker could not be started */
  BUILD_FAILED,  /* it ran and failed (its messages went to stderr) */
} BuildStatus;
/* Compiles a generated C (or, for BACKEND_CUDA, .cu) file into an
 * executable. */
BuildStatus build_compile(const char *src, const char *exe, Backend backend, bool verbose);
/* Whether BUILD_PROBE_BYTES can be written (and synced) in dir; else why
 * (strerror). Tells a full disk or a file-size limit from a compiler bug
 * after a failed build. */
enum { BUILD_PROBE_BYTES = 8 << 20 };
bool build_probe_writable(const char *dir, char *why, size_t whysz);
/* The memory this process can use on this machine: physical memory, or a
 * container's limit when lower; 0 when unknown. */
int64_t build_machine_memory(void);
/* Whether this dstc can build CUDA programs (nvcc was found when dst was
 * configured). */
bool build_have_cuda(void);
/* The CUDA runtime library (the CUDA device and NCCL backend) was built. */
bool build_have_cuda_runtime(void);
/* Mixes the libraries and flags a program is built with into a hash. */
uint64_t build_hash_inputs(uint64_t h, Backend backend);

/* ---------------------------------------------------------------- cache.c */

/* FNV-1a over a file's bytes, continuing from *h (CACHE_HASH_INIT to
 * start); false (errno set) when it cannot be read. */
#define CACHE_HASH_INIT 1469598103934665603ull
bool cache_hash_file(const char *path, uint64_t *h);
typedef enum { CACHE_OK, CACHE_MISSING, CACHE_DAMAGED } CacheState;
/* Whether the cached program exists and its bytes match the hash recorded
 * when it was built (CACHE_DAMAGED: why says what is wrong). */
CacheState cache_check(const char *program, char *why, size_t whysz);
/* Moves the freshly built program `built` to `program` and records its
 * hash, both synced; false with why on failure. */
bool cache_store(const char *built, const char *program, char *why, size_t whysz);

/* ---------------------------------------------------------------- lower.c */

/* Instantiates the model: blocks, repeats, parameters with per-layer names,
 * and the forward computation as an IR graph with every shape checked. */
IrGraph *lower_model(Program *p, Arena *a, DiagSink *d);

/* ---------------------------------------------------------------- program */

typedef struct ConstDecl {
  const char *name;
  Node *decl;       /* N_CONST */
  ConstVal val;
  int state;        /* 0 unevaluated, 1 evaluating, 2 done */
  const char *override; /* -D value, if any */
} ConstDecl;

struct Program {
  Arena *arena;
  DiagSink *diag;
  CompileOptions opts;
  Node **files; int nfiles, capfiles;   /* parsed files, main first */
  ConstDecl *consts; int nconsts, capconsts;
  ConstDecl *eval_stack[64]; int eval_depth; /* config constants being evaluated */
  Node **blocks; int nblocks, capblocks; /* N_BLOCK declarations */
  Node *model, *train, *parallel;
  ParallelCfg par;
  Loc par_loc[64];        /* where each parallel key was set (0 = default) */
  const char *par_from_flag[64]; /* the -f text when a flag set it */
  bool par_given[64];     /* a valid value was given (file or flag), not the default */
  TrainCfg train_cfg;
  IrGraph *graph;
};

bool sema_const_lookup(Program *p, const char *name, ConstVal *out);
ConstDecl *sema_find_const(Program *p, const char *name);
Node *sema_find_block(Program *p, const char *name);
/* Evaluates a compile-time expression in the scope of the config constants
 * plus the given local bindings; reports errors at the expression. */
typedef struct ConstScope {
  const char **names;
  ConstVal *vals;
  int n;
  const struct ConstScope *parent;
} ConstScope;
bool sema_eval_const(Program *p, const Node *e, const ConstScope *scope, ConstVal *out);
const char *const_kind_name(ConstKind k);
const char *const_kind_noun(ConstKind k); /* with its article: "an int" */
void const_format(char *buf, size_t sz, ConstVal v);
/* Parses the text of a -D or -f value as a literal or identifier. */
bool const_parse_text(const char *text, ConstVal *out);
int sema_parallel_index(const char *key);
typedef struct {
  const char *name;
  bool required;
} ArgSpec;
/* Maps a call's positional and named arguments onto spec slots (NULL where
 * not given); reports unknown, duplicate, surplus and missing arguments. */
bool sema_bind_args(Program *p, const Node *call, const char *fname, const ArgSpec *spec, int n,
                    Node **slots);
bool sema_is_builtin(const char *name);
/* Applies a compile-time function (min, max, sqrt, exp, log, int, float,
 * abs) to the evaluated arguments of call e. */
bool sema_const_call(Program *p, const Node *e, const ConstVal *argv, ConstVal *out);
bool sema_eval_binary(Program *p, const Node *e, ConstVal a, ConstVal b, ConstVal *out);
extern const char *const parallel_key_names[];
extern const int parallel_key_count;

#endif
