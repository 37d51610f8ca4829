/* dream/preset.h - model presets: weights/<name>.preset text files saying which ONNX file a
 * model is, where it is found, how its input is preprocessed, its default dream layer and
 * its labels.
 *
 * Model files are searched in: each directory of $DREAM_MODEL_PATH (colon-separated), then
 * weights/models/ of the source tree (weights/setup.sh links or downloads them there).
 */
#ifndef DREAM_PRESET_H
#define DREAM_PRESET_H

#include "dream/api.h"

#include "dream/error.h"
#include "dream/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A resolved preset.  Its strings belong to it: dd_preset_clear frees them. */
typedef struct dd_preset {
  char *name;
  char *model_path;  /* resolved path of the .onnx file */
  char *labels_path; /* resolved labels file, "" if none */
  dd_preproc pre;
  char *layer;       /* default dream layer, "" if none */
  int size;          /* classification input size (square), e.g. 224 */
  char *url;         /* where the model comes from when it is not found, "" if unknown */
} dd_preset;

/* `spec` is one of:
 *  - a preset name ("googlenet", "squeezenet"): <name>.preset is looked for in each directory
 *    of $DREAM_PRESET_PATH, then in the source tree's weights/;
 *  - a path to a .preset file;
 *  - a path to any ONNX file (a name ending in .onnx or holding a '/', or an existing file no
 *    preset claims): the preprocessing defaults to RGB, scale 1, ImageNet mean/std, size 224,
 *    no labels, no default layer.
 * A preset's model and labels files are searched in $DREAM_MODEL_PATH, weights/models/, then
 * the preset's own directory.  Fails with DD_ENOTFOUND naming where it looked and how to get
 * the file, DD_EFORMAT for a malformed preset (with its line number). */
DD_API int dd_preset_resolve(const char *spec, dd_preset *out, dd_err *err);
/* Frees a resolved preset's strings and zeroes it; a zeroed dd_preset is accepted. */
DD_API void dd_preset_clear(dd_preset *p);

/* Labels: one per line ("n02110185 Siberian husky" -> "Siberian husky").  *labels is an
 * array of *n malloc'ed strings; free with dd_labels_free. */
DD_API int dd_labels_load(const char *path, char ***labels, int *n, dd_err *err);
DD_API void dd_labels_free(char **labels, int n);
/* Class index from a number, or a label matched whole (case-insensitive): never by prefix.
 * DD_ENOTFOUND names the closest labels; DD_EARG for an index out of range or a label that
 * names several classes (listed with their indices). */
DD_API int dd_labels_find(char *const *labels, int n, const char *query, int *index, dd_err *err);

#ifdef __cplusplus
}
#endif

#endif
