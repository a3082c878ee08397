/* vdmini_core.c: vdmini-core, the vdmini command line without video. It links only the engine
 * library (no FFmpeg), so it bundles small for a GPU machine that trains or evaluates models:
 *
 *   vdmini-core init --preset tiny|large [--seed N] --out PATH
 *   vdmini-core info PATH|PRESET
 *   vdmini-core eval --model PATH [--prompts 16] [--seed S] [--steps 25] [--guidance 4] [--i2v]
 *                    [--batch 8] [--device auto|cpu|cuda] [--bf16] [--ae PATH] [--json FILE]
 *   vdmini-core train ae|denoiser --config FILE.json [--resume DIR] [--device auto|cpu|cuda] [--bf16]
 *                                 [--gpus N] [--time-limit SECONDS] [--stop-at STEP]
 *   vdmini-core convert --model PATH|CHECKPOINT_DIR --dtype bf16|f32 [--max-file-mb N] --out PATH
 *   vdmini-core prune --teacher PATH --plan FILE.json [--seed N] --out PATH
 *   vdmini-core analyze --teacher PATH [--prompts 8] [--steps 25] ... --out FILE.json
 *   vdmini-core plan --analysis FILE.json --params F|--flops F|--latency F [--rule shallow|deep|random|cost] --out PLAN.json
 *   vdmini-core distill --teacher PATH --student PATH --config FILE.json [--resume DIR] [--device ...] [--bf16]
 *
 * The commands are vdmini's own (cli_engine.c), with the same options, output and exit statuses.
 * generate and world (they write MP4 and PNG) are unknown commands here, and eval --videos (it
 * decodes MP4) is refused: both need vdmini. */
#include "cli_engine.h"

#include <stddef.h>
#include <stdio.h>

static void usage(FILE *out)
{
    cli_usage_head(out, "vdmini-core");
    cli_usage_eval_model(out, "vdmini-core");
    cli_usage_tail(out, "vdmini-core");
    fprintf(out, "vdmini-core is vdmini without video, for training and evaluation hosts; generate, world and\n"
                 "eval --videos need vdmini.\n");
}

int main(int argc, char **argv)
{
    const cli_program core = {.name = "vdmini-core", .usage = usage, .commands = NULL, .eval_videos = NULL};
    return cli_main(&core, argc, argv);
}
