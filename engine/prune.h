/* prune.h: VDMini's pruning step — a student made from the teacher by removing UNet units
 * (docs/architecture.md): blocks (a removed block has no weights and pushes or pops no skip), the
 * temporal layers of a level ("temporal.l": its blocks' temporal convs and temporal
 * self-attentions) and the attention part of a block ("<block>.attn": its AttnBlock3D; the
 * ResBlock3D stays), the last two changing no other shape, with the teacher's weights in
 * everything it keeps. The text encoder, the autoencoder if the teacher file has one, and the diffusion schedule
 * come along unchanged.
 *
 * A kept block's input can change. When a down block goes, the up blocks of its level pop the
 * remaining skips in a new order: one may pop none, or a wider or narrower one. The concatenation
 * puts the running features first and the skip after them, so the weights for the running
 * features are exactly the leading part of the teacher's tensor. A tensor whose shape changed
 * therefore takes the block the two shapes share (the minimum extent in every dimension) and keeps
 * the student's seeded random initialisation elsewhere. When a block that changes the channel
 * count goes, the next block reads a narrower tensor from another layer: the shared block is a
 * starting point only there, and a parameter the teacher has no counterpart for (a new skip
 * projection) stays random. Distillation trains all of them.
 * A plan is a JSON file {"remove": ["down.0.1", "mid", "temporal.0", "up.1.2.attn", ...]}. */
#ifndef VD_PRUNE_H
#define VD_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    int copied;  /* student parameters copied whole */
    int sliced;  /* parameters of a new shape: the block shared with the teacher's copied */
    int fresh;   /* student parameters the teacher has nothing for: random initialisation */
    int dropped; /* teacher parameters the student has no place for */
} vd_prune_report;

/* The most units a UNet may offer for removal (vd_unet_removable_units). */
#define VD_PRUNE_MAX_UNITS 256

/* Builds student from teacher (host weights) without the named units; seed drives the random
 * initialisation of fresh parameters. Names must be units the teacher's UNet can still remove
 * (vd_unet_removable_units: not already removed), not repeated, not a block and its attention
 * part both, and leave at least one block.
 * 0, or -1 with a message. */
int vd_prune(const vd_model *teacher, char *const *remove, int count, uint64_t seed, vd_model *student,
             vd_prune_report *report, char *err, size_t errlen);

/* Reads a plan file: *names (count of them) to free with vd_prune_plan_free. 0, or -1 with a
 * message naming the field. */
int vd_prune_plan_load(const char *path, char ***names, int *count, char *err, size_t errlen);
void vd_prune_plan_free(char **names, int count);

#endif
