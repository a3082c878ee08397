/* make_small_model.c: writes the very small model of tests/engine/small_model.h (32x32 frames,
 * 4 frames, a two-level UNet) with seeded random weights, for the black-box admin tests: its
 * block-importance analysis takes seconds on two CPU cores where the tiny preset's takes minutes.
 *
 *   make_small_model SEED OUT.safetensors */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"
#include "../engine/small_model.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_small_model SEED OUT.safetensors\n");
        return 2;
    }
    vd_model_config mc;
    vd_model m;
    char err[512];
    if (small_model_config(&mc) || vd_model_build(&m, &mc, err, sizeof err)) {
        fprintf(stderr, "make_small_model: cannot build the model\n");
        return 1;
    }
    vd_model_init_random(&m, strtoull(argv[1], NULL, 10));
    int rc = vd_model_save(&m, argv[2], VD_ST_F32, err, sizeof err);
    if (rc) fprintf(stderr, "make_small_model: %s\n", err);
    vd_model_free(&m);
    vd_config_free(&mc);
    return rc ? 1 : 0;
}
