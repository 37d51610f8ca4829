/* plan/arena.h - the memory of a plan: reserved while planning, allocated once, then bound.
 *
 * The contract is ggml's graph allocator's: planning only reserves (a size and the steps over
 * which the buffer lives), placement turns the reservations into offsets and a total size,
 * and only then is memory allocated, once, or borrowed from another arena at least as large.
 *
 *   dd_arena a;
 *   dd_arena_init(&a);
 *   int id = dd_arena_reserve(&a, bytes, first_step, last_step);  // any number of buffers
 *   size_t size = dd_arena_place(&a, DD_ARENA_SHARE);             // SIZE_MAX: out of memory
 *   size_t off = dd_arena_offset(&a, id);
 *   if (dd_arena_alloc(&a)) ...                                    // or dd_arena_borrow(&a, host)
 *   float *x = dd_arena_at(&a, off);
 *   dd_arena_free(&a);
 *
 * Limitations: sizes are taken as given (the caller rounds them to its alignment; the memory
 * itself is aligned to 64 bytes, and to 2 MiB when it is large); placement is greedy (largest
 * first, each at the lowest gap), not optimal.
 */
#ifndef DREAM_PLAN_ARENA_H
#define DREAM_PLAN_ARENA_H

#include <stddef.h>

/* Alignment of the memory, and of the offsets the planner asks for. */
#define DD_ARENA_ALIGN 64

/* A buffer reserved in an arena: live from step `first` to step `last` (inclusive). */
typedef struct dd_arena_buf {
  size_t size, off;
  int first, last;
} dd_arena_buf;

typedef struct dd_arena {
  dd_arena_buf *bufs; /* the reservations (planning only: freed by dd_arena_alloc/borrow) */
  int n_bufs, cap_bufs;
  size_t size;  /* bytes, once placed */
  void *base;   /* the memory, once allocated or borrowed; NULL before */
  int borrowed; /* base belongs to another arena: not freed here */
} dd_arena;

typedef enum dd_arena_policy {
  DD_ARENA_STACK, /* end to end in the order reserved: every buffer keeps its bytes */
  DD_ARENA_SHARE  /* buffers whose lifetimes do not meet may share bytes */
} dd_arena_policy;

/* An empty arena. */
void dd_arena_init(dd_arena *a);
/* Reserves `size` bytes live over steps [first, last]; returns the buffer's id, or -1 when out
 * of memory. */
int dd_arena_reserve(dd_arena *a, size_t size, int first, int last);
/* Places every reservation (offsets such that, with DD_ARENA_SHARE, buffers live at the same
 * step never overlap) and returns the arena's size, or SIZE_MAX when out of memory. */
size_t dd_arena_place(dd_arena *a, dd_arena_policy policy);
/* The offset of reservation `id`, once placed. */
size_t dd_arena_offset(const dd_arena *a, int id);
/* Allocates the placed size (at least one byte, so that base is never NULL); 0, or -1 when
 * out of memory. */
int dd_arena_alloc(dd_arena *a);
/* Uses host's memory (host->size >= a->size): a is freed without freeing it. */
void dd_arena_borrow(dd_arena *a, const dd_arena *host);
/* The address of byte `off` of the allocated arena. */
static inline void *dd_arena_at(const dd_arena *a, size_t off) { return (char *)a->base + off; }
/* Frees the reservations and, unless borrowed, the memory.  Accepts an arena never used. */
void dd_arena_free(dd_arena *a);

#endif
