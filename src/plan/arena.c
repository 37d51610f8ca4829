/* The arena of a plan: reservations, placement, one allocation (plan/arena.h). */
#define _DEFAULT_SOURCE /* madvise */
#include "plan/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void dd_arena_init(dd_arena *a) { memset(a, 0, sizeof *a); }

int dd_arena_reserve(dd_arena *a, size_t size, int first, int last) {
  if (a->n_bufs == a->cap_bufs) {
    int cap = a->cap_bufs ? 2 * a->cap_bufs : 64;
    dd_arena_buf *b = realloc(a->bufs, sizeof *b * (size_t)cap);
    if (!b) return -1;
    a->bufs = b;
    a->cap_bufs = cap;
  }
  a->bufs[a->n_bufs] = (dd_arena_buf){size, 0, first, last};
  return a->n_bufs++;
}

static int cmp_buf_size(const void *a, const void *b) {
  const dd_arena_buf *x = *(dd_arena_buf *const *)a, *y = *(dd_arena_buf *const *)b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return (x->first > y->first) - (x->first < y->first);
}

static int cmp_buf_off(const void *a, const void *b) {
  const dd_arena_buf *x = *(dd_arena_buf *const *)a, *y = *(dd_arena_buf *const *)b;
  return (x->off > y->off) - (x->off < y->off);
}

/* Largest first, each at the lowest gap left by the placed buffers whose lifetimes meet its
 * own. */
static size_t place_shared(dd_arena_buf *bufs, int n) {
  dd_arena_buf **order = malloc(sizeof *order * (size_t)(n ? n : 1));
  dd_arena_buf **meet = malloc(sizeof *meet * (size_t)(n ? n : 1));
  if (!order || !meet) {
    free(order);
    free(meet);
    return SIZE_MAX;
  }
  for (int i = 0; i < n; i++) order[i] = &bufs[i];
  qsort(order, (size_t)n, sizeof *order, cmp_buf_size);
  size_t size = 0;
  for (int i = 0; i < n; i++) {
    dd_arena_buf *it = order[i];
    int k = 0;
    for (int j = 0; j < i; j++)
      if (order[j]->first <= it->last && it->first <= order[j]->last) meet[k++] = order[j];
    qsort(meet, (size_t)k, sizeof *meet, cmp_buf_off);
    size_t at = 0;
    for (int j = 0; j < k && meet[j]->off < at + it->size; j++)
      if (meet[j]->off + meet[j]->size > at) at = meet[j]->off + meet[j]->size;
    it->off = at;
    if (at + it->size > size) size = at + it->size;
  }
  free(order);
  free(meet);
  return size;
}

size_t dd_arena_place(dd_arena *a, dd_arena_policy policy) {
  size_t size = 0;
  if (policy == DD_ARENA_SHARE) {
    size = place_shared(a->bufs, a->n_bufs);
  } else {
    for (int i = 0; i < a->n_bufs; i++) {
      a->bufs[i].off = size;
      size += a->bufs[i].size;
    }
  }
  if (size != SIZE_MAX) a->size = size;
  return size;
}

size_t dd_arena_offset(const dd_arena *a, int id) { return a->bufs[id].off; }

/* Memory of at least this size is aligned to it and asked to be backed by huge pages: a
 * kernel walking a column of a wide image touches a new 4 KiB page at every row. */
#define HUGE_PAGE ((size_t)2 << 20)

static void *alloc_memory(size_t bytes) {
  if (bytes < 2 * HUGE_PAGE) {
    size_t n = bytes ? bytes : 1;
    return aligned_alloc(DD_ARENA_ALIGN, (n + DD_ARENA_ALIGN - 1) / DD_ARENA_ALIGN * DD_ARENA_ALIGN);
  }
  size_t n = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  void *b = aligned_alloc(HUGE_PAGE, n);
#ifdef MADV_HUGEPAGE
  if (b) madvise(b, n, MADV_HUGEPAGE); /* advice only: no huge pages is no error */
#endif
  return b;
}

static void drop_reservations(dd_arena *a) {
  free(a->bufs);
  a->bufs = NULL;
  a->n_bufs = a->cap_bufs = 0;
}

int dd_arena_alloc(dd_arena *a) {
  a->base = alloc_memory(a->size);
  a->borrowed = 0;
  drop_reservations(a);
  return a->base ? 0 : -1;
}

void dd_arena_borrow(dd_arena *a, const dd_arena *host) {
  a->base = host->base;
  a->borrowed = 1;
  drop_reservations(a);
}

void dd_arena_free(dd_arena *a) {
  drop_reservations(a);
  if (!a->borrowed) free(a->base);
  a->base = NULL;
}
