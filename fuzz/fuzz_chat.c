/*
 * The chat renderer over every format.  The input is a list of messages
 * separated by NUL bytes; each message's first byte picks its role
 * (system, user, assistant, or the text up to the first newline as a role
 * of its own) and the rest is its content.  Properties: the render fails
 * only where the format refuses the roles (Llama-2's alternation), the
 * result is NUL-terminated text of the length returned, and every
 * message's content is in it.
 */
#include "fuzz.h"
#include "chat.h"

#define FUZZ_MAX_MSG  64

static const char *fuzz_roles[] = { "system", "user", "assistant" };

/* Python's str.strip() set, as the templates' trim. */
static int
fuzz_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}

static int
fuzz_contains(const char *out, size_t len, const char *s, int strip)
{
    size_t  n = strlen(s);

    if (strip) {
        while (n > 0 && fuzz_space(*s)) {
            s++;
            n--;
        }
        while (n > 0 && fuzz_space(s[n - 1])) {
            n--;
        }
    }
    return n == 0 || memmem(out, len, s, n) != NULL;
}

/* Llama-2 wants user/assistant/user/... after an optional system, and
 * something after it: a lone system message renders an empty prompt. */
static int
fuzz_llama2_ok(const infer_chat_message_t *m, int n)
{
    int  i, first = n > 0 && strcmp(m[0].role, "system") == 0;

    if (n == first) {
        return 0;
    }
    for (i = first; i < n; i++) {
        if (strcmp(m[i].role, (i - first) % 2 ? "assistant" : "user") != 0)
        {
            return 0;
        }
    }
    return 1;
}

static void
fuzz_render(infer_chat_format_t f, const infer_chat_message_t *m, int n,
    const char *bos, const char *eos)
{
    char    *out, err[256];
    size_t   len = 0;
    int      i, raw, ok = f != INFER_CHAT_LLAMA2 || fuzz_llama2_ok(m, n);

    err[0] = '\0';
    out = infer_chat_render(f, m, n, bos, eos, &len, err, sizeof(err));
    if (out == NULL) {
        FUZZ_CHECK(!ok, "%s refused %d valid messages: %s",
                   infer_chat_format_name(f), n, err);
        FUZZ_CHECK(err[0] != '\0', "a refusal without a message");
        return;
    }
    FUZZ_CHECK(ok, "%s rendered roles it must refuse",
               infer_chat_format_name(f));
    FUZZ_CHECK(out[len] == '\0' && strlen(out) == len,
               "%s: length %zu but strlen %zu", infer_chat_format_name(f),
               len, strlen(out));

    for (i = 0; i < n; i++) {
        /* Llama-2 strips each turn and Llama-3 each content; the system
         * text sits inside the first turn, whole. */
        raw = f == INFER_CHAT_CHATML || f == INFER_CHAT_PLAIN
              || f == INFER_CHAT_AUTO
              || (f == INFER_CHAT_LLAMA2 && i == 0
                  && strcmp(m[0].role, "system") == 0);
        FUZZ_CHECK(fuzz_contains(out, len, m[i].content, !raw),
                   "%s lost the content of message %d",
                   infer_chat_format_name(f), i);
        if (f != INFER_CHAT_LLAMA2) {
            FUZZ_CHECK(fuzz_contains(out, len, m[i].role, 0),
                       "%s lost the role of message %d",
                       infer_chat_format_name(f), i);
        }
    }
    free(out);
}

/* One message from one NUL-free record (changed in place). */
static void
fuzz_message(char *p, infer_chat_message_t *m)
{
    unsigned char  r = (unsigned char) *p;
    char          *nl;

    if (r == 0) {
        m->role = (char *) fuzz_roles[1];
        m->content = p;
    } else if (r % 4 < 3) {
        m->role = (char *) fuzz_roles[r % 4];
        m->content = p + 1;
    } else if ((nl = strchr(p + 1, '\n')) != NULL && nl > p + 1) {
        *nl = '\0';                 /* a role of the client's own */
        m->role = p + 1;
        m->content = nl + 1;
    } else {
        m->role = (char *) fuzz_roles[1];
        m->content = p + 1;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    infer_chat_message_t  m[FUZZ_MAX_MSG];
    char                 *buf, *p, *next;
    int                   n, f;

    if (size == 0) {
        return 0;       /* the parser never passes an empty conversation */
    }
    buf = malloc(size + 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    buf[size] = '\0';

    n = 0;
    for (p = buf; p <= buf + size && n < FUZZ_MAX_MSG; p = next) {
        next = p + strlen(p) + 1;
        fuzz_message(p, &m[n++]);
    }

    for (f = INFER_CHAT_AUTO; f <= INFER_CHAT_CHATML; f++) {
        fuzz_render(f, m, n, "<s>", "</s>");
        fuzz_render(f, m, n, NULL, NULL);
    }
    free(buf);
    return 0;
}
