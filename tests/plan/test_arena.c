/* The plan's arena (src/plan/arena.h): reservations placed end to end or shared by lifetime,
 * one allocation, borrowing. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "plan/arena.h"

Test(arena, stack_places_end_to_end_in_order) {
  dd_arena a;
  dd_arena_init(&a);
  int x = dd_arena_reserve(&a, 128, 0, 0), y = dd_arena_reserve(&a, 64, 5, 9);
  int z = dd_arena_reserve(&a, 256, 0, 0);
  cr_assert_eq(dd_arena_place(&a, DD_ARENA_STACK), 448);
  cr_assert_eq(dd_arena_offset(&a, x), 0);
  cr_assert_eq(dd_arena_offset(&a, y), 128);
  cr_assert_eq(dd_arena_offset(&a, z), 192);
  dd_arena_free(&a);
}

/* Buffers whose lifetimes do not meet share bytes; those that meet never overlap. */
Test(arena, share_overlaps_only_disjoint_lifetimes) {
  dd_arena a;
  dd_arena_init(&a);
  int x = dd_arena_reserve(&a, 256, 0, 2);  /* steps 0..2 */
  int y = dd_arena_reserve(&a, 128, 1, 4);  /* meets x */
  int z = dd_arena_reserve(&a, 256, 3, 6);  /* after x: takes its place */
  int w = dd_arena_reserve(&a, 64, 5, 5);   /* meets z only: after y, in its bytes */
  size_t size = dd_arena_place(&a, DD_ARENA_SHARE);
  size_t ox = dd_arena_offset(&a, x), oy = dd_arena_offset(&a, y), oz = dd_arena_offset(&a, z);
  size_t ow = dd_arena_offset(&a, w);
  cr_assert_eq(ox, 0);
  cr_assert_eq(oz, 0, "z reuses x's bytes: at %zu", oz);
  cr_assert(oy >= 256, "y overlaps x: at %zu", oy);
  cr_assert_eq(ow, 256, "w beside z, in y's bytes: at %zu", ow);
  cr_assert_eq(size, 384, "size %zu", size);
  dd_arena_free(&a);
}

Test(arena, allocation_is_aligned_and_borrowable) {
  dd_arena host, a;
  dd_arena_init(&host);
  dd_arena_init(&a);
  dd_arena_reserve(&host, (size_t)5 << 20, 0, 0); /* large: on a huge-page boundary */
  dd_arena_place(&host, DD_ARENA_STACK);
  cr_assert_eq(dd_arena_alloc(&host), 0);
  cr_assert_eq((uintptr_t)host.base % ((size_t)2 << 20), 0);
  memset(dd_arena_at(&host, 0), 1, host.size);
  dd_arena_reserve(&a, 4096, 0, 0);
  dd_arena_place(&a, DD_ARENA_STACK);
  dd_arena_borrow(&a, &host);
  cr_assert_eq(dd_arena_at(&a, 64), dd_arena_at(&host, 64));
  dd_arena_free(&a); /* does not free host's memory */
  cr_assert_eq(((unsigned char *)dd_arena_at(&host, 0))[4095], 1);
  dd_arena_free(&host);

  dd_arena e; /* nothing reserved: still memory, so that base is never NULL */
  dd_arena_init(&e);
  cr_assert_eq(dd_arena_place(&e, DD_ARENA_SHARE), 0);
  cr_assert_eq(dd_arena_alloc(&e), 0);
  cr_assert_not_null(e.base);
  cr_assert_eq((uintptr_t)e.base % DD_ARENA_ALIGN, 0);
  dd_arena_free(&e);
}
