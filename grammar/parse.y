/* parse.y: the dst grammar (Bison, pure, with locations).
 *
 * Actions only build AST nodes (ast.c); all meaning is given by sema.c and
 * lower.c. Error recovery resynchronizes at ';' and '}' so one run reports
 * several syntax errors. Each production mirrors the EBNF in
 * docs/language.md. */
%require "3.8"
%define api.pure full
%define api.prefix {dstyy}
%define api.location.type {Loc}
%define parse.error detailed
%locations
%expect 0
%param {ParseCtx *ctx}

%code requires {
#include "dstc.h"
typedef struct ParseCtx {
  Arena *arena;
  DiagSink *diag;
  Lexer lx;
  Node *root;
  NodeList partial; /* declarations so far, kept if recovery never completes */
  bool too_deep;   /* an expression exceeded DST_MAX_NESTING levels */
} ParseCtx;
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                         \
  do {                                                                      \
    if (N) {                                                                \
      (Cur).file = YYRHSLOC(Rhs, 1).file;                                   \
      (Cur).begin = YYRHSLOC(Rhs, 1).begin;                                 \
      (Cur).end = YYRHSLOC(Rhs, N).end;                                     \
    } else {                                                                \
      (Cur).file = YYRHSLOC(Rhs, 0).file;                                   \
      (Cur).begin = (Cur).end = YYRHSLOC(Rhs, 0).end;                       \
    }                                                                       \
  } while (0)
}

%code provides {
int dstyylex(DSTYYSTYPE *val, Loc *loc, ParseCtx *ctx);
void dstyyerror(Loc *loc, ParseCtx *ctx, const char *msg);
}

%code {
#include <string.h>

/* Expression depth is bounded so that every recursive pass over the tree is
 * bounded too; a deeper expression is replaced by a placeholder. */
static int depth_of(const Node *n) { return n ? (int)n->depth : 0; }

static Node *mk(ParseCtx *ctx, NodeKind k, Loc loc) { return ast_new(ctx->arena, k, loc); }

static Node *guard(ParseCtx *ctx, Node *n, int d) {
  n->depth = d + 1;
  if (n->depth > DST_MAX_NESTING) {
    if (!ctx->too_deep)
      diag_error(ctx->diag, n->loc, "expression nested more than %d levels deep", DST_MAX_NESTING);
    ctx->too_deep = true;
    Node *z = mk(ctx, N_INT, n->loc);
    return z;
  }
  return n;
}

static Node *binary(ParseCtx *ctx, int op, Node *a, Node *b, Loc loc) {
  Node *n = mk(ctx, N_BINARY, loc);
  n->op = op;
  n->a = a;
  n->b = b;
  int d = depth_of(a) > depth_of(b) ? depth_of(a) : depth_of(b);
  return guard(ctx, n, d);
}

static Node *unary(ParseCtx *ctx, int op, Node *a, Loc loc) {
  Node *n = mk(ctx, N_UNARY, loc);
  n->op = op;
  n->a = a;
  return guard(ctx, n, depth_of(a));
}

static int list_depth(const NodeList *l) {
  int d = 0;
  for (int i = 0; i < l->n; i++) if (depth_of(l->v[i]) > d) d = depth_of(l->v[i]);
  return d;
}

static Node *named(ParseCtx *ctx, NodeKind k, const char *name, Loc nloc, Loc loc) {
  Node *n = mk(ctx, k, loc);
  n->name = name;
  n->nloc = nloc;
  return n;
}
}

%union {
  int64_t ival;
  double fval;
  const char *str;
  Node *node;
  NodeList list;
}

%token END 0 "end of file"
%token <str> IDENT "identifier"
%token <str> STRING "string"
%token <ival> INT "integer"
%token <fval> FLOAT "number"
%token KW_IMPORT "import" KW_CONFIG "config" KW_BLOCK "block" KW_MODEL "model"
%token KW_PARAM "param" KW_LAYER "layer" KW_INPUT "input" KW_FORWARD "forward"
%token KW_RETURN "return" KW_MINIMIZE "minimize" KW_IF "if" KW_ELSE "else"
%token KW_TRAIN "train" KW_PARALLEL "parallel" KW_REPEAT "repeat"
%token <ival> KW_TRUE "true" KW_FALSE "false"
%token POW "**" EQ "==" NE "!=" LE "<=" GE ">=" AND "&&" OR "||"

%left OR
%left AND
%left EQ NE
%left '<' LE '>' GE
%left '+' '-'
%left '*' '/' '%' '@'
%precedence UNARY
%right POW

%type <node> decl import config_block const_def block model train parallel keyval
%type <node> formal member param_member layer_member input_member forward_member if_member
%type <node> tensor_type init_spec annot stmt if_stmt expr postfix primary arg instantiation
%type <list> decls consts formals formals_opt members annots stmts keyvals args args_opt
%type <list> expr_list idents idents_opt targets stmts_block

%%

file
  : decls { Node *f = mk(ctx, N_FILE, @$); f->list = $1; ctx->root = f; }
  ;

decls
  : %empty { memset(&$$, 0, sizeof $$); }
  | decls decl { $$ = $1; if ($2) ast_push(ctx->arena, &$$, $2); ctx->partial = $$; }
  ;

/* decl = import | config | block | model | train | parallel */
decl
  : import | config_block | block | model | train | parallel
  | error ';' { $$ = NULL; }
  | error '}' { $$ = NULL; }
  ;

/* import = "import" STRING ";" */
import
  : KW_IMPORT STRING ';' { $$ = mk(ctx, N_IMPORT, @$); $$->str = $2; $$->nloc = @2; }
  ;

/* config = "config" "{" { IDENT "=" expr ";" } "}" */
config_block
  : KW_CONFIG '{' consts '}' { $$ = mk(ctx, N_CONFIG, @$); $$->list = $3; }
  ;

consts
  : %empty { memset(&$$, 0, sizeof $$); }
  | consts const_def { $$ = $1; if ($2) ast_push(ctx->arena, &$$, $2); }
  | consts error ';' { $$ = $1; }
  ;

const_def
  : IDENT '=' expr ';' { $$ = named(ctx, N_CONST, $1, @1, @$); $$->a = $3; }
  ;

/* block = "block" IDENT "(" [ formal { "," formal } ] ")" { annot } "{" { member } "}" */
block
  : KW_BLOCK IDENT '(' formals_opt ')' annots '{' members '}' {
      $$ = named(ctx, N_BLOCK, $2, @2, @$);
      $$->list = $4; $$->annots = $6; $$->list2 = $8;
    }
  ;

formals_opt
  : %empty { memset(&$$, 0, sizeof $$); }
  | formals
  ;

formals
  : formal { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, $1); }
  | formals ',' formal { $$ = $1; ast_push(ctx->arena, &$$, $3); }
  ;

/* formal = IDENT ":" IDENT [ "=" expr ] */
formal
  : IDENT ':' IDENT { $$ = named(ctx, N_FORMAL, $1, @1, @$); $$->str = $3; }
  | IDENT ':' IDENT '=' expr { $$ = named(ctx, N_FORMAL, $1, @1, @$); $$->str = $3; $$->a = $5; }
  ;

/* model = "model" IDENT "{" { member } "}" */
model
  : KW_MODEL IDENT '{' members '}' { $$ = named(ctx, N_MODEL, $2, @2, @$); $$->list2 = $4; }
  ;

members
  : %empty { memset(&$$, 0, sizeof $$); }
  | members member { $$ = $1; if ($2) ast_push(ctx->arena, &$$, $2); }
  | members error ';' { $$ = $1; }
  | members error '}' { $$ = $1; }
  ;

member
  : param_member | layer_member | input_member | forward_member | if_member
  ;

/* param = "param" IDENT ":" tensor_type [ "=" init ] { annot } ";" */
param_member
  : KW_PARAM IDENT ':' tensor_type init_spec annots ';' {
      $$ = named(ctx, N_PARAM, $2, @2, @$); $$->a = $4; $$->b = $5; $$->annots = $6;
    }
  ;

init_spec
  : %empty { $$ = NULL; }
  | '=' IDENT { $$ = named(ctx, N_NAME, $2, @2, @2); }
  | '=' IDENT '(' args_opt ')' {
      Node *callee = named(ctx, N_NAME, $2, @2, @2);
      $$ = mk(ctx, N_CALL, loc_span(@2, @5)); $$->a = callee; $$->list = $4;
    }
  ;

/* tensor_type = IDENT [ "[" expr { "," expr } "]" ] */
tensor_type
  : IDENT { $$ = named(ctx, N_TENSORTY, $1, @1, @$); }
  | IDENT '[' expr_list ']' { $$ = named(ctx, N_TENSORTY, $1, @1, @$); $$->list = $3; }
  ;

/* layer = "layer" IDENT "=" [ "repeat" "(" expr ")" ] IDENT "(" args ")" { annot } ";" */
layer_member
  : KW_LAYER IDENT '=' instantiation annots ';' {
      $$ = named(ctx, N_LAYER, $2, @2, @$); $$->a = $4; $$->annots = $5;
    }
  | KW_LAYER IDENT '=' KW_REPEAT '(' expr ')' instantiation annots ';' {
      $$ = named(ctx, N_LAYER, $2, @2, @$); $$->b = $6; $$->a = $8; $$->annots = $9;
    }
  ;

instantiation
  : IDENT '(' args_opt ')' {
      Node *callee = named(ctx, N_NAME, $1, @1, @1);
      $$ = mk(ctx, N_CALL, @$); $$->a = callee; $$->list = $3;
    }
  ;

/* input = "input" IDENT ":" tensor_type ";" */
input_member
  : KW_INPUT IDENT ':' tensor_type ';' { $$ = named(ctx, N_INPUT, $2, @2, @$); $$->a = $4; }
  ;

/* forward = "forward" [ "(" [ IDENT { "," IDENT } ] ")" ] "{" { stmt } "}" */
forward_member
  : KW_FORWARD '(' idents_opt ')' stmts_block {
      $$ = mk(ctx, N_FORWARD, @1); $$->list = $3; $$->list2 = $5; $$->ival = 1;
    }
  | KW_FORWARD stmts_block { $$ = mk(ctx, N_FORWARD, @1); $$->list2 = $2; }
  ;

if_member
  : KW_IF expr '{' members '}' { $$ = mk(ctx, N_IF, @1); $$->a = $2; $$->list = $4; }
  | KW_IF expr '{' members '}' KW_ELSE '{' members '}' {
      $$ = mk(ctx, N_IF, @1); $$->a = $2; $$->list = $4; $$->list2 = $8;
    }
  ;

annots
  : %empty { memset(&$$, 0, sizeof $$); }
  | annots annot { $$ = $1; ast_push(ctx->arena, &$$, $2); }
  ;

/* annot = "@" IDENT [ "(" args ")" ] */
annot
  : '@' IDENT { $$ = named(ctx, N_ANNOT, $2, @2, @$); }
  | '@' IDENT '(' args_opt ')' { $$ = named(ctx, N_ANNOT, $2, @2, @$); $$->list = $4; }
  ;

idents_opt
  : %empty { memset(&$$, 0, sizeof $$); }
  | idents
  ;

idents
  : IDENT { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, named(ctx, N_NAME, $1, @1, @1)); }
  | idents ',' IDENT { $$ = $1; ast_push(ctx->arena, &$$, named(ctx, N_NAME, $3, @3, @3)); }
  ;

stmts
  : %empty { memset(&$$, 0, sizeof $$); }
  | stmts stmt { $$ = $1; if ($2) ast_push(ctx->arena, &$$, $2); }
  | stmts error ';' { $$ = $1; }
  ;

/* A statement list also resynchronizes at its closing brace, so a missing
 * ';' before '}' does not swallow the declarations that follow. */
stmts_block
  : '{' stmts '}' { $$ = $2; }
  | '{' stmts error '}' { $$ = $2; }
  ;

/* stmt = IDENT { "," IDENT } "=" expr ";" | "return" expr ";" | "minimize" expr ";" | if */
stmt
  : targets '=' expr ';' { $$ = mk(ctx, N_ASSIGN, @$); $$->list = $1; $$->a = $3; }
  | KW_RETURN expr ';' { $$ = mk(ctx, N_RETURN, @$); $$->a = $2; }
  | KW_MINIMIZE expr ';' { $$ = mk(ctx, N_MINIMIZE, @$); $$->a = $2; }
  | if_stmt
  ;

targets
  : IDENT { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, named(ctx, N_NAME, $1, @1, @1)); }
  | targets ',' IDENT { $$ = $1; ast_push(ctx->arena, &$$, named(ctx, N_NAME, $3, @3, @3)); }
  ;

if_stmt
  : KW_IF expr stmts_block { $$ = mk(ctx, N_IF, @1); $$->a = $2; $$->list = $3; }
  | KW_IF expr stmts_block KW_ELSE stmts_block {
      $$ = mk(ctx, N_IF, @1); $$->a = $2; $$->list = $3; $$->list2 = $5;
    }
  ;

/* train = "train" "{" { IDENT "=" expr ";" } "}"   (parallel likewise) */
train
  : KW_TRAIN '{' keyvals '}' { $$ = mk(ctx, N_TRAIN, @1); $$->list = $3; }
  ;

parallel
  : KW_PARALLEL '{' keyvals '}' { $$ = mk(ctx, N_PARALLEL, @1); $$->list = $3; }
  ;

keyvals
  : %empty { memset(&$$, 0, sizeof $$); }
  | keyvals keyval { $$ = $1; ast_push(ctx->arena, &$$, $2); }
  | keyvals error ';' { $$ = $1; }
  ;

keyval
  : IDENT '=' expr ';' { $$ = named(ctx, N_KEYVAL, $1, @1, @$); $$->a = $3; }
  ;

expr
  : postfix
  | expr OR expr { $$ = binary(ctx, OR, $1, $3, @$); }
  | expr AND expr { $$ = binary(ctx, AND, $1, $3, @$); }
  | expr EQ expr { $$ = binary(ctx, EQ, $1, $3, @$); }
  | expr NE expr { $$ = binary(ctx, NE, $1, $3, @$); }
  | expr '<' expr { $$ = binary(ctx, '<', $1, $3, @$); }
  | expr LE expr { $$ = binary(ctx, LE, $1, $3, @$); }
  | expr '>' expr { $$ = binary(ctx, '>', $1, $3, @$); }
  | expr GE expr { $$ = binary(ctx, GE, $1, $3, @$); }
  | expr '+' expr { $$ = binary(ctx, '+', $1, $3, @$); }
  | expr '-' expr { $$ = binary(ctx, '-', $1, $3, @$); }
  | expr '*' expr { $$ = binary(ctx, '*', $1, $3, @$); }
  | expr '/' expr { $$ = binary(ctx, '/', $1, $3, @$); }
  | expr '%' expr { $$ = binary(ctx, '%', $1, $3, @$); }
  | expr '@' expr { $$ = binary(ctx, '@', $1, $3, @$); }
  | expr POW expr { $$ = binary(ctx, POW, $1, $3, @$); }
  | '-' expr %prec UNARY { $$ = unary(ctx, '-', $2, @$); }
  | '!' expr %prec UNARY { $$ = unary(ctx, '!', $2, @$); }
  ;

postfix
  : primary
  | postfix '(' args_opt ')' {
      $$ = mk(ctx, N_CALL, @$); $$->a = $1; $$->list = $3;
      int d = list_depth(&$3);
      if (depth_of($1) > d) d = depth_of($1);
      $$ = guard(ctx, $$, d);
    }
  | postfix '.' IDENT {
      $$ = named(ctx, N_MEMBER, $3, @3, @$); $$->a = $1;
      $$ = guard(ctx, $$, depth_of($1));
    }
  ;

primary
  : INT { $$ = mk(ctx, N_INT, @$); $$->ival = $1; }
  | FLOAT { $$ = mk(ctx, N_FLOAT, @$); $$->fval = $1; }
  | STRING { $$ = mk(ctx, N_STR, @$); $$->str = $1; }
  | KW_TRUE { $$ = mk(ctx, N_BOOL, @$); $$->ival = 1; }
  | KW_FALSE { $$ = mk(ctx, N_BOOL, @$); $$->ival = 0; }
  | IDENT { $$ = named(ctx, N_NAME, $1, @1, @$); }
  | '(' expr ')' { $$ = $2; }
  | '(' expr ',' expr_list ')' {
      $$ = mk(ctx, N_TUPLE, @$);
      ast_push(ctx->arena, &$$->list, $2);
      for (int i = 0; i < $4.n; i++) ast_push(ctx->arena, &$$->list, $4.v[i]);
      $$ = guard(ctx, $$, list_depth(&$$->list));
    }
  | '[' ']' { $$ = mk(ctx, N_LIST, @$); }
  | '[' expr_list ']' { $$ = mk(ctx, N_LIST, @$); $$->list = $2; $$ = guard(ctx, $$, list_depth(&$2)); }
  ;

expr_list
  : expr { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, $1); }
  | expr_list ',' expr { $$ = $1; ast_push(ctx->arena, &$$, $3); }
  ;

args_opt
  : %empty { memset(&$$, 0, sizeof $$); }
  | args
  ;

args
  : arg { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, $1); }
  | args ',' arg { $$ = $1; ast_push(ctx->arena, &$$, $3); }
  ;

/* arg = expr | IDENT "=" expr */
arg
  : expr
  | IDENT '=' expr { $$ = named(ctx, N_NAMEDARG, $1, @1, @$); $$->a = $3; $$->depth = depth_of($3) + 1; }
  ;

%%

int dstyylex(DSTYYSTYPE *val, Loc *loc, ParseCtx *ctx) {
  TokVal tv = {0};
  int t = lex_next(&ctx->lx, &tv, loc);
  switch (t) {
  case IDENT: case STRING: val->str = tv.str; break;
  case INT: case KW_TRUE: case KW_FALSE: val->ival = tv.ival; break;
  case FLOAT: val->fval = tv.fval; break;
  default: break;
  }
  return t;
}

void dstyyerror(Loc *loc, ParseCtx *ctx, const char *msg) {
  if (ctx->lx.depth_reported) return; /* the lexer already said why it stopped */
  if (strcmp(msg, "memory exhausted") == 0) {
    diag_error(ctx->diag, *loc, "input is nested too deeply to parse");
    return;
  }
  diag_error(ctx->diag, *loc, "%s", msg);
}

const char *lex_token_name(int tok) {
  return yysymbol_name(YYTRANSLATE(tok));
}

Node *parse_file(Arena *a, DiagSink *d, uint32_t file) {
  ParseCtx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.arena = a;
  ctx.diag = d;
  lex_init(&ctx.lx, a, d, file);
  dstyyparse(&ctx);
  if (!ctx.root || ctx.too_deep || ctx.lx.depth_reported) {
    /* What was recovered before parsing gave up (too deep: nothing, since
     * the tree may hold the over-deep expression). */
    Node *f = ast_new(a, N_FILE, (Loc){file, 0, 0});
    if (!ctx.too_deep && !ctx.lx.depth_reported) f->list = ctx.root ? ctx.root->list : ctx.partial;
    return f;
  }
  return ctx.root;
}
