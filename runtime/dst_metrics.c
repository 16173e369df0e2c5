/* dst_metrics.c: wall-clock timing of training steps.
 *
 * Times come from CLOCK_MONOTONIC, which never jumps with NTP or manual
 * clock changes. Averages leave out the first `warmup` steps, whose page
 * faults and cold caches say nothing about steady-state speed.
 */
#include <time.h>

#include "dst.h"

double dst_now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void dst_timer_init(DstStepTimer *t, uint64_t tokens_per_step, uint64_t warmup) {
  *t = (DstStepTimer){.tokens_per_step = tokens_per_step, .warmup = warmup};
}

void dst_timer_start(DstStepTimer *t) { t->t_start = dst_now_sec(); }

double dst_timer_stop(DstStepTimer *t) {
  dst_timer_record(t, dst_now_sec() - t->t_start);
  return dst_timer_last_ms(t);
}

void dst_timer_record(DstStepTimer *t, double sec) {
  if (t->steps >= t->warmup) t->sum_sec += sec;
  t->steps++;
  t->last_sec = sec;
}

double dst_timer_last_ms(const DstStepTimer *t) { return t->last_sec * 1e3; }

double dst_timer_last_tok_per_sec(const DstStepTimer *t) {
  return t->last_sec > 0 ? (double)t->tokens_per_step / t->last_sec : 0.0;
}

/* Steps that count towards the averages. */
static uint64_t timed_steps(const DstStepTimer *t) {
  return t->steps > t->warmup ? t->steps - t->warmup : 0;
}

double dst_timer_avg_ms(const DstStepTimer *t) {
  uint64_t n = timed_steps(t);
  return n ? t->sum_sec * 1e3 / (double)n : 0.0;
}

double dst_timer_avg_tok_per_sec(const DstStepTimer *t) {
  uint64_t n = timed_steps(t);
  return n && t->sum_sec > 0 ? (double)t->tokens_per_step * (double)n / t->sum_sec : 0.0;
}
