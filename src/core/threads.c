/* A team of threads for one call: the caller plus n-1 pthreads, a start
 * gate (so the team size is final before anyone works) and a reusable
 * barrier. Work is split by the callers in ways that never depend on the
 * team size for the order of any reduction, so results are bitwise
 * identical for every thread count. */
#include "core/internal.h"

#include <pthread.h>

struct attn_team {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;          /* final team size                     */
  int started;    /* gate: 1 once n is final             */
  int waiting;    /* threads inside the current barrier  */
  unsigned phase; /* barrier generation                  */
  attn_team_fn fn;
  void *arg;
};

typedef struct member {
  attn_team *team;
  int tid;
} member;

static void *member_main(void *vp) {
  member *m = (member *)vp;
  attn_team *t = m->team;
  pthread_mutex_lock(&t->mu);
  while (!t->started)
    pthread_cond_wait(&t->cv, &t->mu);
  const int n = t->n;
  pthread_mutex_unlock(&t->mu);
  if (m->tid < n)
    t->fn(t->arg, t, m->tid, n);
  return NULL;
}

void attn_team_barrier(attn_team *t) {
  if (t->n <= 1)
    return;
  pthread_mutex_lock(&t->mu);
  const unsigned phase = t->phase;
  if (++t->waiting == t->n) {
    t->waiting = 0;
    t->phase++;
    pthread_cond_broadcast(&t->cv);
  } else {
    while (t->phase == phase)
      pthread_cond_wait(&t->cv, &t->mu);
  }
  pthread_mutex_unlock(&t->mu);
}

attn_status attn_team_run(int n, attn_team_fn fn, void *arg) {
  if (n < 1)
    n = 1;
  attn_team team;
  team.n = 1;
  team.started = 0;
  team.waiting = 0;
  team.phase = 0;
  team.fn = fn;
  team.arg = arg;
  if (n == 1) {
    fn(arg, &team, 0, 1);
    return ATTN_OK;
  }
  /* No heap: a caller who passes a workspace gets no allocation. */
  if (n > ATTN_MAX_THREADS)
    n = ATTN_MAX_THREADS;
  pthread_t ids[ATTN_MAX_THREADS];
  member mem[ATTN_MAX_THREADS];
  if (pthread_mutex_init(&team.mu, NULL) != 0)
    return ATTN_ERR_THREAD;
  if (pthread_cond_init(&team.cv, NULL) != 0) {
    pthread_mutex_destroy(&team.mu);
    return ATTN_ERR_THREAD;
  }
  int made = 1; /* the caller is member 0 */
  for (int i = 1; i < n; i++) {
    mem[i].team = &team;
    mem[i].tid = i;
    if (pthread_create(&ids[i], NULL, member_main, &mem[i]) != 0)
      break;
    made++;
  }
  pthread_mutex_lock(&team.mu);
  team.n = made;
  team.started = 1;
  pthread_cond_broadcast(&team.cv);
  pthread_mutex_unlock(&team.mu);
  fn(arg, &team, 0, made);
  for (int i = 1; i < made; i++)
    pthread_join(ids[i], NULL);
  pthread_cond_destroy(&team.cv);
  pthread_mutex_destroy(&team.mu);
  return ATTN_OK;
}
