/* tokenizer.h: prompt text to token ids, by the rules of docs/architecture.md: words are runs
 * of ASCII letters and non-ASCII bytes, lower-cased; unknown words (any with a non-ASCII byte
 * among them) map to <unk> (id 1) and are reported; positions past the prompt are <pad> (id 0). */
#ifndef VD_TOKENIZER_H
#define VD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Writes max_tokens ids. The unknown words of the whole prompt, each once in order of first
 * appearance and space separated, go to unknown (may be NULL; then repeats are counted).
 * Returns the number of unknown words. */
int vd_tokenize(const vd_text_config *t, const char *prompt, int32_t *ids, char *unknown,
                size_t unknown_len);

#endif
