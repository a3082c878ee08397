/* tokenizer.c: see tokenizer.h. A linear scan of the vocabulary is enough for the few hundred
 * words a model of the synthetic world knows. */
#include "tokenizer.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int lookup(const vd_text_config *t, const char *word)
{
    for (int i = 2; i < t->vocab_size; i++)
        if (strcmp(t->vocab[i], word) == 0) return i;
    return 1;
}

int vd_tokenize(const vd_text_config *t, const char *prompt, int32_t *ids, char *unknown,
                size_t unknown_len)
{
    int n = 0, unknown_count = 0;
    size_t used = 0;
    if (unknown && unknown_len) unknown[0] = 0;
    for (int i = 0; i < t->max_tokens; i++) ids[i] = 0;
    const char *p = prompt;
    while (*p) {
        if (!isalpha((unsigned char)*p) || (unsigned char)*p > 127) { p++; continue; }
        char word[64];
        size_t len = 0;
        while (isalpha((unsigned char)*p) && (unsigned char)*p <= 127) {
            if (len + 1 < sizeof word) word[len++] = (char)tolower((unsigned char)*p);
            p++;
        }
        word[len] = 0;
        int id = len + 1 < sizeof word ? lookup(t, word) : 1;
        if (id == 1) {
            unknown_count++;
            if (unknown && used + len + 2 < unknown_len) {
                used += (size_t)snprintf(unknown + used, unknown_len - used, "%s%s", used ? " " : "", word);
            }
        }
        if (n < t->max_tokens) ids[n++] = id;
    }
    return unknown_count;
}
