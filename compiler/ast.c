/* ast.c: AST node construction and the deterministic --dump-ast printer.
 * Nodes live in the arena; lists are arena arrays (see ARENA_PUSH). */
#include <string.h>

#include "dstc.h"
#include "parse.h"

static const char *const kind_names[N__COUNT] = {
    [N_INT] = "int", [N_FLOAT] = "float", [N_STR] = "string", [N_BOOL] = "bool",
    [N_NAME] = "name", [N_MEMBER] = "member", [N_CALL] = "call", [N_NAMEDARG] = "namedarg",
    [N_BINARY] = "binary", [N_UNARY] = "unary", [N_LIST] = "list", [N_TUPLE] = "tuple",
    [N_ASSIGN] = "assign", [N_RETURN] = "return", [N_MINIMIZE] = "minimize", [N_IF] = "if",
    [N_PARAM] = "param", [N_LAYER] = "layer", [N_INPUT] = "input", [N_FORWARD] = "forward",
    [N_TENSORTY] = "tensortype", [N_IMPORT] = "import", [N_CONFIG] = "config",
    [N_CONST] = "const", [N_FORMAL] = "formal", [N_BLOCK] = "block", [N_MODEL] = "model",
    [N_TRAIN] = "train", [N_PARALLEL] = "parallel", [N_KEYVAL] = "keyval", [N_ANNOT] = "annot",
    [N_FILE] = "file",
};

const char *node_kind_name(NodeKind k) { return k < N__COUNT ? kind_names[k] : "?"; }

const char *op_token_str(int op) {
  switch (op) {
  case OR: return "||";
  case AND: return "&&";
  case EQ: return "==";
  case NE: return "!=";
  case LE: return "<=";
  case GE: return ">=";
  case POW: return "**";
  case '<': return "<";
  case '>': return ">";
  case '+': return "+";
  case '-': return "-";
  case '*': return "*";
  case '/': return "/";
  case '%': return "%";
  case '@': return "@";
  case '!': return "!";
  default: return "?";
  }
}

Node *ast_new(Arena *a, NodeKind k, Loc loc) {
  Node *n = arena_alloc(a, sizeof *n);
  n->kind = k;
  n->loc = loc;
  return n;
}

void ast_push(Arena *a, NodeList *l, Node *n) { ARENA_PUSH(a, l->v, l->n, l->cap, n); }

static void dump_list(FILE *out, const char *label, const NodeList *l, int indent) {
  if (!l->n) return;
  fprintf(out, "%*s%s:\n", indent, "", label);
  for (int i = 0; i < l->n; i++) ast_dump(out, l->v[i], indent + 2);
}

static void dump_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
    else if (c == '\n') fputs("\\n", out);
    else if (c == '\t') fputs("\\t", out);
    else if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
    else fputc(c, out);
  }
  fputc('"', out);
}

/* One node per line: kind, then its scalar payload, then children indented.
 * Byte offsets are printed instead of pointers, so output is stable. */
void ast_dump(FILE *out, const Node *n, int indent) {
  if (!n) {
    fprintf(out, "%*s(null)\n", indent, "");
    return;
  }
  fprintf(out, "%*s%s", indent, "", node_kind_name(n->kind));
  if (n->name) fprintf(out, " %s", n->name);
  switch (n->kind) {
  case N_INT: case N_BOOL: fprintf(out, " %lld", (long long)n->ival); break;
  case N_FLOAT: fprintf(out, " %.17g", n->fval); break;
  case N_BINARY: case N_UNARY: fprintf(out, " %s", op_token_str(n->op)); break;
  default: break;
  }
  if (n->str) {
    fputc(' ', out);
    dump_str(out, n->str);
  }
  fprintf(out, " @%u:%u\n", n->loc.begin, n->loc.end);
  if (n->a) ast_dump(out, n->a, indent + 2);
  if (n->b) ast_dump(out, n->b, indent + 2);
  dump_list(out, "list", &n->list, indent + 2);
  dump_list(out, "list2", &n->list2, indent + 2);
  dump_list(out, "annots", &n->annots, indent + 2);
}
