/* dream/audit.h - a classifier audited on a folder of labelled images: per image top-5,
 * top-1/top-5 accuracy, per-class accuracy, the most frequent confusions, the images that
 * could not be read; sharded runs and their merge.  The report is a jansson object.
 *
 *   dd_audit_opts o;
 *   dd_audit_opts_init(&o);
 *   o.size = 224;
 *   json_t *report;
 *   if (dd_audit_run(model, "googlenet.onnx", &preset.pre, preset.labels_path, "photos", &o,
 *                    &report, &err)) ...
 *   dd_audit_write(report, "out", &err);                 // out/report.json, atomically
 *   json_decref(report);
 *
 * Labels: the first folder of an image's path below DIR names its class, matched against
 * the labels file as dd_labels_find does (the label text case-insensitively, or the class
 * index), or the class's wnid ("n02110185") when the labels file has them; images directly
 * in DIR are unlabelled.  With o.labels_csv, a CSV of `path,label` (path relative to DIR;
 * an optional header line `path,label`; fields may be "quoted") gives them instead, and
 * images it does not name are unlabelled.  An unknown name fails the whole audit before
 * anything is classified (DD_ENOTFOUND, the closest labels suggested).
 *
 * Classification is every command's (dream/frame.h, dream/infer.h): the photo decoded,
 * framed with o.framing to o.size, run through a dd_infer session, dd_probabilities, the
 * classes ranked by probability with ties to the lower index.  So an image's top5 is what
 * `dream classify --top 5` prints for it.
 *
 * Report keys (JSON, in this order): format, model {name, bytes, fnv1a64}, options
 * {framing, size, top, labels, labels_fnv1a64, preprocessing}, listing {images, digest},
 * shard (null, or {index, count} for a part), images [{path, label, top5 [{class, p}],
 * rank, correct}], errors [{path, message}], accuracy ({labelled, top1, top5, k, topk} or
 * null without labels), classes [{class, name, images, top1, top5}], confusions [{true,
 * predicted, count}] (most frequent first, at most DD_AUDIT_MAX_CONFUSIONS), names {"index":
 * label} for every class the report mentions, and with o.layers, layers [{name, channels,
 * height, width, images, positive, active_images, examples, dead, rare}]: per channel the
 * number of positions where it is > 0 (summed over images), the images where it is > 0
 * somewhere, its o.top best images {path, value, box [x, y, w, h]} (value: its maximum; box:
 * the feature-map cell of that maximum in the framed image's pixels, not the receptive
 * field), and the channels that are never > 0 (dead) or at fewer than DD_AUDIT_RARE of the
 * positions (rare).  With o.perturb, each image has `perturbed` {kind: [top-1 class per
 * level]} and the report `perturbation` [{kind, levels, accuracy (top-1 per level, null
 * without labels), flipped (fraction of images whose top-1 changed), first_flips (the
 * images that flip at the mildest level: {path, level, from, to}, at most 20)}].  `rank`
 * is the true class's 1-based rank (null when unlabelled);
 * `correct` is rank == 1.
 *
 * A merge of the parts of one sharded run is the report an unsharded run gives, byte for
 * byte once written (the summary is computed from the images by the same code).
 */
#ifndef DREAM_AUDIT_H
#define DREAM_AUDIT_H

#include "dream/api.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "dream/error.h"
#include "dream/frame.h"
#include "dream/image.h"
#include "dream/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DD_AUDIT_FORMAT "dream-audit 1"
#define DD_AUDIT_MAX_CONFUSIONS 50
#define DD_AUDIT_MAX_LAYERS 16
/* A unit is rarely active when it is positive at fewer than this fraction of the positions
 * it was evaluated at, over the whole dataset (and more than none: then it is dead). */
#define DD_AUDIT_RARE 0.01

typedef struct dd_audit_opts {
  dd_framing framing;       /* crop (default) or squash; fit is refused (one plan, one size) */
  int size;                 /* the network's square input (default 224) */
  int top;                  /* k of accuracy.topk, 1..1000 (default 5) */
  const char *labels_csv;   /* NULL: labels from the folder names */
  int shard_index;          /* shard I of N (dream/dataset.h); 1/1 is the whole folder */
  int shard_count;
  size_t max_memory;        /* the inference plan's budget (0: none) */
  size_t max_pixels;        /* largest photo decoded (0: DD_IMAGE_MAX_PIXELS) */
  int max_files;            /* more images fail with DD_ELIMIT (0: no limit) */
  const int *layers;        /* values whose units are audited (N x C x H x W), or NULL */
  int n_layers;             /* at most DD_AUDIT_MAX_LAYERS */
  unsigned perturb;         /* bits 1 << dd_perturb_kind: the sweep (0: none) */
  uint64_t seed;            /* the noise's, mixed with each file's path (dd_dataset_seed) */
  /* Called after each image of the shard (done of total); NULL: none.  Nothing else. */
  void (*progress)(int done, int total, void *user);
  void *user;
} dd_audit_opts;

/* The perturbation sweep: each kind at DD_PERTURB_LEVELS severities, mildest first, applied
 * to the framed image (framing: the other framing of the photo, one level). */
typedef enum dd_perturb_kind {
  DD_PERTURB_BLUR,       /* Gaussian, sigma 1, 2, 3, 4, 6 pixels */
  DD_PERTURB_NOISE,      /* Gaussian, sigma 8, 16, 32, 48, 64 levels of 255, clamped */
  DD_PERTURB_BRIGHTNESS, /* pixels times 0.8, 0.6, 0.4, 0.25, 0.1 */
  DD_PERTURB_CONTRAST,   /* (p - 128) times 0.8, 0.6, 0.4, 0.25, 0.1, plus 128 */
  DD_PERTURB_ROTATION,   /* 5, 10, 20, 30, 45 degrees about the centre, black outside */
  DD_PERTURB_OCCLUSION,  /* a grey (128) square in the centre, 10 to 50% of the side */
  DD_PERTURB_FRAMING,    /* full frame (squash) instead of the centre crop, or the reverse */
  DD_PERTURB_COUNT
} dd_perturb_kind;

#define DD_PERTURB_LEVELS 5
/* "blur", "noise", "brightness", "contrast", "rotation", "occlusion", "framing"; NULL out
 * of range. */
DD_API const char *dd_perturb_name(int kind);
/* A comma-separated list of those names, or "all", into bits; DD_EARG naming the unknown
 * one. */
DD_API int dd_perturb_parse(const char *list, unsigned *bits, dd_err *err);

/* The defaults above. */
DD_API void dd_audit_opts_init(dd_audit_opts *o);

/* Audits the images under `dir` (only the shard's, with o->shard_count > 1) and returns the
 * report (*report, a new reference).  `model_path` is the model's file: its name, size and
 * FNV-1a hash identify the model in the report.  `labels_path` may be NULL or "" (then
 * labels are class indices).  An image that cannot be read is listed under `errors` and the
 * others are audited.  Errors: DD_EARG for a folder with no image (an empty folder) or a
 * bad option, DD_ENOTFOUND for an unknown label, DD_EFORMAT for a malformed CSV, the
 * model's and the listing's errors. */
DD_API int dd_audit_run(const dd_model *m, const char *model_path, const dd_preproc *pp,
                        const char *labels_path, const char *dir, const dd_audit_opts *o,
                        json_t **report, dd_err *err);

/* Merges the reports of the parts of one sharded run into the report of the whole run.
 * Refused (DD_EARG, saying what differs and which part) when parts come from different
 * models, options or listings, when a shard appears twice or is missing, or a part is not
 * an audit report. */
DD_API int dd_audit_merge(json_t *const *parts, const char *const *names, int n,
                          json_t **report, dd_err *err);

/* Writes `report` to dir/report.json atomically (2-space indent, keys in order). */
DD_API int dd_audit_write(const json_t *report, const char *dir, dd_err *err);
/* Reads dir/report.json (at most 1 GiB).  DD_EFORMAT with jansson's line and column. */
DD_API int dd_audit_read(const char *dir, json_t **report, dd_err *err);

/* The text dd_audit_write puts in report.json, without the final newline (malloc'ed: free
 * it); NULL when out of memory.  For callers that do not link jansson (bindings). */
DD_API char *dd_audit_dumps(const json_t *report);
/* Drops the caller's reference to a report (json_decref), for the same callers. */
DD_API void dd_audit_free(json_t *report);

/* The FNV-1a 64-bit hash of a file, as 16 hex digits. */
DD_API int dd_file_fnv1a64(const char *path, char hex[17], long long *bytes, dd_err *err);

#ifdef __cplusplus
}
#endif

#endif
