/* The Check suites linked into the dst_unit runner, one per module.
 * Add a module: write tests/unit/test_<name>.c defining <name>_suite(),
 * then list it once in DST_SUITES below. */
#ifndef DST_TEST_SUITES_H
#define DST_TEST_SUITES_H
#include <check.h>

#define DST_SUITES(X) \
  X(lexer)            \
  X(parser)           \
  X(sema)             \
  X(lower)            \
  X(kernels_cpu)      \
  X(runtime)

#define DST_DECLARE_SUITE(name) Suite *name##_suite(void);
DST_SUITES(DST_DECLARE_SUITE)
#undef DST_DECLARE_SUITE

#endif
