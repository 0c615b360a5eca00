/* Teams of threads for the kernels, and the persistent pool that supplies
 * them.
 *
 * A call runs fn(arg, team, tid, nthreads) on a team: the calling thread is
 * tid 0, the others are workers. The team size is final before anyone
 * starts (nthreads may come out lower than asked when a thread cannot
 * start; the library then works with fewer and never fails for it), and
 * attn_team_barrier is a reusable barrier across the team. Work is split by
 * the callers in ways that never depend on the team size for the order of
 * any reduction, so results are bitwise identical for every thread count.
 *
 * The pool. Every attn_context owns one (the default context's serves
 * ctx == NULL). Its workers are started lazily, by the first call that
 * wants more threads than the pool has (up to ATTN_MAX_THREADS - 1), and
 * live until attn_context_free; they start with the asynchronous signals
 * blocked, so those go to the program's own threads. Worker i (tid i) has its
 * own condition variable and a "go" word (a count of the jobs posted to it): a
 * call publishes its job in the pool, bumps the go words of workers 1..n-1 only
 * (workers beyond the team stay asleep) and signals those that sleep. A worker
 * that finishes a job spins on its go word for about ATTN_IDLE_SPIN_NS (50
 * microseconds) before it sleeps on its condition variable, so back-to-back
 * calls hand over without a futex wake-up and idle workers burn no CPU
 * beyond that. The caller, done with its share, waits the same way (spin,
 * then sleep) for the last worker; barriers spin, then sleep, too.
 *
 * Concurrent calls on one context: the pool serves one call at a time. A
 * call that finds it busy (another thread's call is running on it) does not
 * wait: it runs with a temporary team of its own, started with
 * pthread_create and joined at the end (the pre-pool behaviour: correct,
 * only slower to start). So concurrent calls never deadlock or share a
 * team, and each gets the threads it asked for.
 *
 * fork: a child process does not inherit the workers. A pool used in a
 * child of the process that started its workers is never dispatched to
 * again (calls use temporary teams), and freeing it there releases its
 * memory without joining.
 *
 * Nothing here allocates after a pool's first growth: a call with a caller
 * workspace allocates nothing once the pool has its workers. */
#include "core/internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a spinning thread busy-waits (pause) before each further round
 * of its spin yields the core, in nanoseconds. */
#ifndef ATTN_SPIN_NS
#define ATTN_SPIN_NS 4000
#endif
/* How long an idle worker busy-waits for the next call before it sleeps.
 * A Python caller's gap between back-to-back calls (ctypes, its loop) is
 * itself a few microseconds, longer on a core that has just idled, and on
 * the project's VMs each sleep costs a wake-up of tens of microseconds:
 * with 4 µs here, one head of 128 queries called from Python right after
 * an idle pause took 0.12-0.31 ms a call instead of 0.06; yielding the
 * core past 4 µs did not help (docs/decisions.md, 2026-12-03). */
#ifndef ATTN_IDLE_SPIN_NS
#define ATTN_IDLE_SPIN_NS 50000
#endif
/* How long a thread waiting inside a call (a barrier, the caller waiting
 * for the last worker) spins before it sleeps: its partners are working
 * on the same call and arrive within its phases' imbalance, while a sleep
 * costs a futex wake-up (30-100 µs in the VMs measured; docs/decisions.md,
 * "barriers spin longer"). */
#ifndef ATTN_BARRIER_SPIN_NS
#define ATTN_BARRIER_SPIN_NS 200000
#endif

struct attn_team {
  int n;           /* final team size                              */
  attn_team_fn fn; /* the job                                      */
  void *arg;
  atomic_uint arrived; /* threads inside the current barrier       */
  atomic_uint phase;   /* barrier generation: changes under mu     */
  atomic_int started;  /* temporary teams: start gate, under mu    */
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

/* ---------------------------------------------------------------------- */
/* Spinning                                                                */
/* ---------------------------------------------------------------------- */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A bounded spin: while (!ready && spin_more(&s)) ...; gives up after
 * about budget nanoseconds (the clock is read every 32 rounds only). */
typedef struct spinner {
  unsigned rounds;
  int yielding;
  uint64_t deadline, budget, yield_at;
  uint64_t busy; /* ns before the rounds yield the core */
} spinner;

static int spin_more(spinner *s) {
  if ((++s->rounds & 31) == 0) {
    const uint64_t t = now_ns();
    if (s->deadline == 0)
      s->deadline = t + s->budget, s->yield_at = t + s->busy;
    else if (t >= s->deadline)
      return 0;
    else if (t >= s->yield_at)
      s->yielding = 1;
  }
  /* Past the first s->busy ns, a long spin yields the core each round:
   * with more threads than cores the partner it waits for may need it. */
  if (s->yielding)
    sched_yield();
  else
    cpu_relax();
  return 1;
}

/* Spins for about budget ns while *w == old; returns the last value. */
static unsigned spin_while_equal(atomic_uint *w, unsigned old, uint64_t budget,
                                 uint64_t busy) {
  spinner s = {0, 0, 0, budget, 0, busy};
  unsigned v;
  while ((v = atomic_load_explicit(w, memory_order_acquire)) == old &&
         spin_more(&s))
    ;
  return v;
}

/* ---------------------------------------------------------------------- */
/* Barrier                                                                 */
/* ---------------------------------------------------------------------- */
void attn_team_barrier(attn_team *t) {
  const unsigned n = (unsigned)t->n;
  if (n <= 1)
    return;
  /* The phase cannot move before this thread arrives. */
  const unsigned phase = atomic_load_explicit(&t->phase, memory_order_acquire);
  if (atomic_fetch_add_explicit(&t->arrived, 1, memory_order_acq_rel) + 1 ==
      n) {
    atomic_store_explicit(&t->arrived, 0, memory_order_relaxed);
    pthread_mutex_lock(&t->mu);
    atomic_store_explicit(&t->phase, phase + 1, memory_order_release);
    pthread_mutex_unlock(&t->mu);
    pthread_cond_broadcast(&t->cv);
    return;
  }
  if (spin_while_equal(&t->phase, phase, ATTN_BARRIER_SPIN_NS, ATTN_SPIN_NS) !=
      phase)
    return;
  pthread_mutex_lock(&t->mu);
  while (atomic_load_explicit(&t->phase, memory_order_acquire) == phase)
    pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

static int team_init(attn_team *t) {
  t->n = 1;
  t->fn = NULL;
  t->arg = NULL;
  atomic_init(&t->arrived, 0);
  atomic_init(&t->phase, 0);
  atomic_init(&t->started, 0);
  if (pthread_mutex_init(&t->mu, NULL) != 0)
    return 0;
  if (pthread_cond_init(&t->cv, NULL) != 0) {
    pthread_mutex_destroy(&t->mu);
    return 0;
  }
  return 1;
}

static void team_destroy(attn_team *t) {
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
}

/* One thread, no synchronisation at all. */
static attn_status run_alone(attn_team_fn fn, void *arg) {
  attn_team team;
  memset(&team, 0, sizeof team);
  team.n = 1;
  team.fn = fn;
  team.arg = arg;
  fn(arg, &team, 0, 1);
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* Temporary teams: pthread_create and join per call (the pool is busy,    */
/* or could not be set up)                                                 */
/* ---------------------------------------------------------------------- */
typedef struct member {
  attn_team *team;
  int tid;
} member;

static void *member_main(void *vp) {
  member *m = (member *)vp;
  attn_team *t = m->team;
  pthread_mutex_lock(&t->mu);
  while (!atomic_load_explicit(&t->started, memory_order_relaxed))
    pthread_cond_wait(&t->cv, &t->mu);
  const int n = t->n;
  pthread_mutex_unlock(&t->mu);
  if (m->tid < n)
    t->fn(t->arg, t, m->tid, n);
  return NULL;
}

static attn_status run_temporary(int n, attn_team_fn fn, void *arg) {
  /* No heap: a caller who passes a workspace gets no allocation. */
  attn_team team;
  pthread_t ids[ATTN_MAX_THREADS];
  member mem[ATTN_MAX_THREADS];
  if (!team_init(&team))
    return run_alone(fn, arg);
  team.fn = fn;
  team.arg = arg;
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
  atomic_store_explicit(&team.started, 1, memory_order_relaxed);
  pthread_mutex_unlock(&team.mu);
  pthread_cond_broadcast(&team.cv);
  fn(arg, &team, 0, made);
  for (int i = 1; i < made; i++)
    pthread_join(ids[i], NULL);
  team_destroy(&team);
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* The pool                                                                */
/* ---------------------------------------------------------------------- */
typedef struct worker {
  attn_pool *pool;
  int tid;
  int sleeping;   /* in pthread_cond_wait on cv; under pool->mu */
  atomic_uint go; /* jobs posted to this worker (it has run them
                     all but perhaps the last); under pool->mu */
  pthread_cond_t cv;
  pthread_t id;
} worker;

struct attn_pool {
  pthread_mutex_t mu;  /* go words, sleeping flags, shutdown, done */
  pthread_cond_t done; /* the caller sleeps here for the last worker */
  atomic_int busy;     /* 1 while a call owns the pool              */
  atomic_int pending;  /* workers still running the current job     */
  int shutdown;        /* under mu                                  */
  int nworkers;        /* started: tids 1..nworkers (owner only)    */
  pid_t pid;           /* process that started the workers          */
  worker *w;           /* [ATTN_MAX_THREADS], index = tid; lazily   */
  attn_team team;      /* the current job's team (reused)           */
};

attn_pool *attn_pool_create(void) {
  attn_pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p);
    return NULL;
  }
  if (pthread_cond_init(&p->done, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
  }
  if (!team_init(&p->team)) {
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
  }
  atomic_init(&p->busy, 0);
  atomic_init(&p->pending, 0);
  p->shutdown = 0;
  p->nworkers = 0;
  p->pid = 0;
  p->w = NULL;
  return p;
}

static void *worker_main(void *vp) {
  worker *self = (worker *)vp;
  attn_pool *pool = self->pool;
  unsigned seen = 0; /* jobs of this worker taken so far */
  for (;;) {
    unsigned g =
        spin_while_equal(&self->go, seen, ATTN_IDLE_SPIN_NS, ATTN_IDLE_SPIN_NS);
    if (g == seen) {
      pthread_mutex_lock(&pool->mu);
      while ((g = atomic_load_explicit(&self->go, memory_order_acquire)) ==
                 seen &&
             !pool->shutdown) {
        self->sleeping = 1;
        pthread_cond_wait(&self->cv, &pool->mu);
        self->sleeping = 0;
      }
      const int stop = g == seen; /* shutdown, no job pending for us */
      pthread_mutex_unlock(&pool->mu);
      if (stop)
        return NULL;
    }
    seen = g;
    attn_team *t = &pool->team;
    t->fn(t->arg, t, self->tid, t->n);
    if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) ==
        1) {
      /* The lock orders this against a caller between its check of
       * pending and its wait. The pool outlives this: it is freed only
       * after joining every worker. */
      pthread_mutex_lock(&pool->mu);
      pthread_mutex_unlock(&pool->mu);
      pthread_cond_signal(&pool->done);
    }
  }
}

/* Starts workers until the pool has want of them (owner only); returns
 * how many it has. Workers start with the asynchronous signals blocked
 * (the synchronous ones stay deliverable, so that a fault is reported). */
static int pool_grow(attn_pool *pool, int want) {
  if (want <= pool->nworkers)
    return pool->nworkers;
  if (!pool->w) {
    pool->w = calloc(ATTN_MAX_THREADS, sizeof *pool->w);
    if (!pool->w)
      return 0;
  }
  sigset_t all, old;
  sigfillset(&all);
  static const int sync_signals[] = {SIGSEGV, SIGBUS,  SIGFPE,
                                     SIGILL,  SIGTRAP, SIGABRT};
  for (size_t i = 0; i < sizeof sync_signals / sizeof sync_signals[0]; i++)
    sigdelset(&all, sync_signals[i]);
  const int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
  while (pool->nworkers < want) {
    const int tid = pool->nworkers + 1;
    worker *w = &pool->w[tid];
    w->pool = pool;
    w->tid = tid;
    w->sleeping = 0;
    atomic_init(&w->go, 0);
    if (pthread_cond_init(&w->cv, NULL) != 0)
      break;
    if (pthread_create(&w->id, NULL, worker_main, w) != 0) {
      pthread_cond_destroy(&w->cv);
      break;
    }
    pool->nworkers++;
  }
  if (masked)
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  return pool->nworkers;
}

/* Runs the job on the pool, which the caller owns; n >= 2. */
static void pool_run(attn_pool *pool, int n, attn_team_fn fn, void *arg) {
  const int have = pool_grow(pool, n - 1);
  if (have < 1) {
    run_alone(fn, arg);
    return;
  }
  if (n > have + 1)
    n = have + 1;
  attn_team *t = &pool->team;
  t->n = n;
  t->fn = fn;
  t->arg = arg;
  atomic_store_explicit(&pool->pending, n - 1, memory_order_relaxed);
  int wake[ATTN_MAX_THREADS];
  int nwake = 0;
  pthread_mutex_lock(&pool->mu);
  for (int i = 1; i < n; i++) {
    /* Each worker counts its own jobs: one posted is taken before the
     * next (pending reaches 0 first), so the count cannot wrap onto a
     * value the worker still holds. */
    const unsigned g =
        atomic_load_explicit(&pool->w[i].go, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool->w[i].go, g, memory_order_release);
    if (pool->w[i].sleeping)
      wake[nwake++] = i;
  }
  pthread_mutex_unlock(&pool->mu);
  /* A worker marked sleeping is inside pthread_cond_wait (it set the flag
   * and waited under mu), so a signal after the unlock reaches it. */
  for (int i = 0; i < nwake; i++)
    pthread_cond_signal(&pool->w[wake[i]].cv);

  fn(arg, t, 0, n);

  /* Wait for the last worker: spin, then sleep. */
  spinner s = {0, 0, 0, ATTN_BARRIER_SPIN_NS, 0, ATTN_SPIN_NS};
  while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0 &&
         spin_more(&s))
    ;
  pthread_mutex_lock(&pool->mu);
  while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0)
    pthread_cond_wait(&pool->done, &pool->mu);
  pthread_mutex_unlock(&pool->mu);
}

void attn_pool_free(attn_pool *pool) {
  if (!pool)
    return;
  if (pool->nworkers > 0 && pool->pid != getpid()) {
    /* A forked child: the workers (and perhaps the state of the locks)
     * belong to the parent. Release the memory only. */
    free(pool->w);
    free(pool);
    return;
  }
  if (pool->nworkers > 0) {
    pthread_mutex_lock(&pool->mu);
    pool->shutdown = 1;
    for (int i = 1; i <= pool->nworkers; i++)
      pthread_cond_signal(&pool->w[i].cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i <= pool->nworkers; i++) {
      pthread_join(pool->w[i].id, NULL);
      pthread_cond_destroy(&pool->w[i].cv);
    }
  }
  free(pool->w);
  team_destroy(&pool->team);
  pthread_cond_destroy(&pool->done);
  pthread_mutex_destroy(&pool->mu);
  free(pool);
}

/* ---------------------------------------------------------------------- */
/* Entry points                                                            */
/* ---------------------------------------------------------------------- */
/* Runs the job on ctx's pool if it is free, else on a temporary team. */
static void run_team(attn_context *ctx, int n, attn_team_fn fn, void *arg) {
  attn_pool *pool = attn_context_pool(ctx);
  int expected = 0;
  if (!pool || !atomic_compare_exchange_strong_explicit(&pool->busy, &expected,
                                                        1, memory_order_acquire,
                                                        memory_order_relaxed)) {
    run_temporary(n, fn, arg); /* no pool, or busy with another call */
    return;
  }
  if (pool->nworkers == 0) {
    pool->pid = getpid();
  } else if (pool->pid != getpid()) {
    /* A forked child: the workers stayed in the parent. Keep the pool
     * marked busy forever, so that nobody here dispatches to it. */
    run_temporary(n, fn, arg);
    return;
  }
  pool_run(pool, n, fn, arg);
  atomic_store_explicit(&pool->busy, 0, memory_order_release);
}

attn_status attn_team_run_ctx(attn_context *ctx, int n, attn_team_fn fn,
                              void *arg) {
  if (n > ATTN_MAX_THREADS)
    n = ATTN_MAX_THREADS;
  if (n <= 1)
    return run_alone(fn, arg);
  /* Waiting on the team must not be a cancellation point: a cancelled
   * caller would leave the pool busy and its lock held. */
  int cancel_state;
  const int set =
      pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state) == 0;
  run_team(ctx, n, fn, arg);
  if (set)
    pthread_setcancelstate(cancel_state, NULL);
  return ATTN_OK;
}

attn_status attn_team_run(int n, attn_team_fn fn, void *arg) {
  return attn_team_run_ctx(NULL, n, fn, arg);
}
