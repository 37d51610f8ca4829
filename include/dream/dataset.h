/* dream/dataset.h - a folder of images as a dataset: the listing, the shards, the per-file
 * seeds that `dream audit` and `dream batch` share.
 *
 *   dd_dataset ds;
 *   if (dd_dataset_list("photos", 100000, &ds, &err)) ...   // every image under photos/
 *   for (int i = 0; i < ds.n; i++)
 *     if (dd_dataset_in_shard(i, 2, 4))                     // shard 2 of 4
 *       work(ds.root, ds.rel[i], dd_dataset_seed(seed, ds.rel[i]));
 *   dd_dataset_free(&ds);
 *
 * The listing is the same on every machine that sees the same folder: relative paths, '/'
 * between components, sorted by their bytes.  A shard is every N-th file of that listing
 * (balanced to one file), so the shards of one listing are disjoint and cover it; every
 * shard must see the same folder, and dd_dataset_digest lets a merge check that they did.
 * A file's seed depends on the run's seed and its relative path alone, so splitting a job
 * into shards, or resuming it, never changes a result.
 *
 * What counts as an image: a regular file (or a link to one) whose name ends in one of the
 * extensions of DD_IMAGE_FORMATS (case-insensitive).  Names beginning with '.' are skipped,
 * links to folders are not followed (no loops), and folders deeper than DD_DATASET_MAX_DEPTH
 * are refused.
 */
#ifndef DREAM_DATASET_H
#define DREAM_DATASET_H

#include "dream/api.h"

#include <stdint.h>

#include "dream/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DD_DATASET_MAX_DEPTH 32

typedef struct dd_dataset {
  char *root; /* the folder as given, without trailing '/' */
  int n;      /* number of images */
  char **rel; /* their paths relative to root, sorted bytewise */
} dd_dataset;

/* Lists every image under `dir` (recursively).  More than `max_files` images fail with
 * DD_ELIMIT (0: no limit).  Errors name the folder: not a folder (DD_EARG), unreadable
 * (DD_EIO), too deep (DD_ELIMIT).  An empty folder is not an error here: ds->n is 0. */
DD_API int dd_dataset_list(const char *dir, int max_files, dd_dataset *ds, dd_err *err);
DD_API void dd_dataset_free(dd_dataset *ds);
/* 1 when the file at position `i` of a listing belongs to shard `index` of `count`
 * (1 <= index <= count): i % count == index - 1. */
DD_API int dd_dataset_in_shard(int i, int index, int count);
/* The seed of one file: the run's seed mixed with a hash of the relative path. */
DD_API uint64_t dd_dataset_seed(uint64_t seed, const char *rel);
/* A 64-bit digest of the whole listing (its relative paths in order), written into reports
 * so that parts made from different folders are refused when merged; 16 hex digits. */
DD_API void dd_dataset_digest(const dd_dataset *ds, char hex[17]);
/* 1 when `name` ends in an image extension dd_image_load decodes. */
DD_API int dd_dataset_is_image_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif
