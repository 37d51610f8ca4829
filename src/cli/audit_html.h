/* The parts of `dream audit`'s REPORT_DIR beside report.json: thumbnails and Grad-CAM panels
 * (thumbs/, panels/) and the offline page index.html.  Each sets the keys that reference its
 * files in the report's image records, so report.json says which file shows what. */
#ifndef DREAM_CLI_AUDIT_HTML_H
#define DREAM_CLI_AUDIT_HTML_H

#include <jansson.h>

#include "cli/cli.h"

/* For every image of the report: out/thumbs/<id>.jpg (the framed photo, 112 pixels), and
 * for every misclassified one (labelled, rank > 1) out/panels/<id>-predicted.jpg and
 * <id>-true.jpg: the framed photo, Grad-CAM of that class and the saliency map.  Sets the
 * records' `thumb` and `panels` {predicted, true} and options.panels.  <id> is a hash of the
 * image's relative path, so shards name their files as the whole run does. */
int audit_panels(json_t *report, const cli_model *cm, const char *dir, dd_framing framing,
                 int size, int with_panels, const char *out, dd_err *err);
/* The merge's: each file the merged report references, copied from the part that has it. */
int audit_panels_copy(const json_t *report, const char *const *parts, int n, const char *out,
                      dd_err *err);
/* out/index.html, atomically: tables sortable by a click on their header, the panels; no
 * file outside REPORT_DIR and no network. */
int audit_html_write(const json_t *report, const char *out, dd_err *err);
/* Removes a REPORT_DIR this run created (its known files, then the folder). */
void audit_dir_remove(const char *out);

#endif
