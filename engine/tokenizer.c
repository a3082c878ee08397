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

/* Words are runs of ASCII letters and non-ASCII bytes (so "été" stays one, unknown, word);
 * everything else in ASCII separates them. */
static int is_word_byte(unsigned char c) { return c > 127 || isalpha(c); }

/* Whether word is already one of the space-separated words of list. */
static int listed(const char *list, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += len)
        if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0)) return 1;
    return 0;
}

int vd_tokenize(const vd_text_config *t, const char *prompt, int32_t *ids, char *unknown,
                size_t unknown_len)
{
    int n = 0, unknown_count = 0;
    size_t used = 0;
    if (unknown && unknown_len) unknown[0] = 0;
    for (int i = 0; i < t->max_tokens; i++) ids[i] = 0;
    const unsigned char *p = (const unsigned char *)prompt;
    while (*p) {
        if (!is_word_byte(*p)) { p++; continue; }
        char word[64];
        size_t len = 0;
        int ascii = 1;
        while (is_word_byte(*p)) {
            if (*p > 127) ascii = 0;
            if (len + 1 < sizeof word) word[len++] = (char)tolower(*p);
            p++;
        }
        word[len] = 0;
        int id = ascii && len + 1 < sizeof word ? lookup(t, word) : 1;
        if (id == 1 && !(unknown && listed(unknown, word))) {
            unknown_count++;
            if (unknown && used + len + 2 < unknown_len)
                used += (size_t)snprintf(unknown + used, unknown_len - used, "%s%s", used ? " " : "", word);
        }
        if (n < t->max_tokens) ids[n++] = id;
    }
    return unknown_count;
}
