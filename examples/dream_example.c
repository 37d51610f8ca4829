/* The smallest program that dreams with libdream: load a preset, dream a photo, write it.
 *
 *   cc dream_example.c $(pkg-config --cflags --libs dream) -o dream_example
 *   ./dream_example googlenet in.jpg out.jpg
 */
#include <stdio.h>

#include <dream/dream.h>
#include <dream/image.h>
#include <dream/preset.h>
#include <dream/version.h>

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PRESET|MODEL.onnx IN OUT\n", argv[0]);
    return 2;
  }
  dd_err err;
  dd_preset preset = {0};
  dd_model *model = NULL;
  dd_image *img = NULL;
  int status = 1;
  if (dd_preset_resolve(argv[1], &preset, &err) || dd_model_load(preset.model_path, &model, &err) ||
      dd_image_load(argv[2], 0, &img, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    goto done;
  }
  dd_dream_params p;
  dd_dream_params_init(&p);
  p.octaves = 2;
  p.iters = 3;
  p.n_layers = 1;
  if (dd_dream_layer_resolve(model, preset.layer, &p.layers[0], &err) ||
      dd_dream_run(model, &preset.pre, &p, img, NULL, NULL, &err) ||
      dd_image_save(argv[3], img, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    goto done;
  }
  printf("libdream %s: dreamed %s (%dx%d) on %s's %s into %s\n", DD_VERSION_STRING, argv[2],
         img->w, img->h, preset.name, preset.layer, argv[3]);
  status = 0;
done:
  dd_image_free(img);
  dd_model_free(model);
  dd_preset_clear(&preset);
  return status;
}
