/* dst_unit: runs the Check suites named on the command line (all when none).
 * CTest registers one entry per suite so failures are reported per module.
 * Exit status is non-zero when any test fails or a suite name is unknown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"

typedef struct {
  const char *name;
  Suite *(*make)(void);
} SuiteEntry;

#define DST_SUITE_ENTRY(name) {#name, name##_suite},
static const SuiteEntry suites[] = {DST_SUITES(DST_SUITE_ENTRY)};
#undef DST_SUITE_ENTRY

int main(int argc, char **argv) {
  SRunner *sr = NULL;
  size_t n = sizeof suites / sizeof suites[0];
  for (size_t i = 0; i < n; i++) {
    int wanted = argc < 2;
    for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], suites[i].name) == 0;
    if (!wanted) continue;
    if (!sr) sr = srunner_create(suites[i].make());
    else srunner_add_suite(sr, suites[i].make());
  }
  for (int a = 1; a < argc; a++) {
    int known = 0;
    for (size_t i = 0; i < n; i++) known |= strcmp(argv[a], suites[i].name) == 0;
    if (!known) {
      fprintf(stderr, "dst_unit: unknown suite '%s'\n", argv[a]);
      return 2;
    }
  }
  if (!sr) return 0;
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
