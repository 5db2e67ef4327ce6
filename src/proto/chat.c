/*
 * Chat templates rendered in C.  Each format follows the Jinja template its
 * model family publishes in tokenizer_config.json; the unit tests compare
 * with what jinja2 renders from those templates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;
} chat_buf_t;

static const char *chat_format_names[] = {
    "auto", "plain", "llama2", "llama3", "chatml"
};

static void
chat_append(chat_buf_t *b, const char *s, size_t n)
{
    char    *p;
    size_t   cap;

    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void
chat_puts(chat_buf_t *b, const char *s)
{
    if (s != NULL) {
        chat_append(b, s, strlen(s));
    }
}

/* Python's str.strip() / Jinja's trim for the ASCII whitespace set. */
static int
chat_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}

static void
chat_put_stripped(chat_buf_t *b, const char *s, size_t n)
{
    while (n > 0 && chat_is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && chat_is_space(s[n - 1])) {
        n--;
    }
    chat_append(b, s, n);
}

int
infer_chat_format_parse(const char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < sizeof(chat_format_names) / sizeof(char *); i++) {
        if (strlen(chat_format_names[i]) == len
            && strncasecmp(chat_format_names[i], name, len) == 0)
        {
            return (int) i;
        }
    }
    return -1;
}

const char *
infer_chat_format_name(infer_chat_format_t f)
{
    return chat_format_names[f];
}

infer_chat_format_t
infer_chat_detect(const char *tmpl)
{
    if (tmpl == NULL) {
        return INFER_CHAT_PLAIN;
    }
    if (strstr(tmpl, "<|start_header_id|>") != NULL) {
        return INFER_CHAT_LLAMA3;
    }
    if (strstr(tmpl, "<|im_start|>") != NULL) {
        return INFER_CHAT_CHATML;
    }
    if (strstr(tmpl, "[INST]") != NULL) {
        return INFER_CHAT_LLAMA2;
    }
    return INFER_CHAT_PLAIN;
}

const char *
infer_chat_end_token(infer_chat_format_t f)
{
    switch (f) {
    case INFER_CHAT_LLAMA3:
        return "<|eot_id|>";
    case INFER_CHAT_CHATML:
        return "<|im_end|>";
    default:
        return NULL;
    }
}

/*
 * Llama-2 chat: an optional leading system message is folded into the first
 * user turn inside <<SYS>> markers; user and assistant turns must alternate
 * starting with user; each user turn opens with bos, each assistant turn
 * closes with eos.  Whole turn contents are stripped (the system text inside
 * is not).
 */
static int
chat_render_llama2(chat_buf_t *b, const infer_chat_message_t *msg, int n,
    const char *bos, const char *eos, char *err, size_t errlen)
{
    const char  *sys, *want;
    chat_buf_t   turn;
    int          i, user, first;

    sys = NULL;
    first = 0;
    if (n > 0 && strcmp(msg[0].role, "system") == 0) {
        sys = msg[0].content;
        msg++;
        n--;
        first = 1;
    }
    if (n == 0) {
        /* The template renders an empty prompt: nothing to answer. */
        snprintf(err, errlen, "the llama2 chat template needs a user "
                 "message after the system message");
        return -1;
    }

    for (i = 0; i < n; i++) {
        /* Hugging Face's template raises on a misplaced user and silently
         * renders nothing for any other role in an assistant's place: a
         * message would be lost, so both are refused */
        want = i % 2 == 0 ? "user" : "assistant";
        if (strcmp(msg[i].role, want) != 0) {
            snprintf(err, errlen, "the llama2 chat template needs roles "
                     "that alternate user/assistant/user/... after an "
                     "optional system message (messages[%d] is \"%.32s\")",
                     i + first, msg[i].role);
            return -1;
        }
        user = i % 2 == 0;

        memset(&turn, 0, sizeof(turn));
        if (i == 0 && sys != NULL) {
            chat_puts(&turn, "<<SYS>>\n");
            chat_puts(&turn, sys);
            chat_puts(&turn, "\n<</SYS>>\n\n");
        }
        chat_puts(&turn, msg[i].content);
        if (turn.failed) {
            free(turn.data);
            snprintf(err, errlen, "out of memory rendering the chat template");
            return -1;
        }

        if (user) {
            chat_puts(b, bos);
            chat_puts(b, "[INST] ");
            chat_put_stripped(b, turn.data, turn.len);
            chat_puts(b, " [/INST]");
        } else {
            chat_puts(b, " ");
            chat_put_stripped(b, turn.data, turn.len);
            chat_puts(b, " ");
            chat_puts(b, eos);
        }
        free(turn.data);
    }
    return 0;
}

static void
chat_render_llama3(chat_buf_t *b, const infer_chat_message_t *msg, int n,
    const char *bos)
{
    int  i;

    chat_puts(b, bos);
    for (i = 0; i < n; i++) {
        chat_puts(b, "<|start_header_id|>");
        chat_puts(b, msg[i].role);
        chat_puts(b, "<|end_header_id|>\n\n");
        chat_put_stripped(b, msg[i].content, strlen(msg[i].content));
        chat_puts(b, "<|eot_id|>");
    }
    chat_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void
chat_render_chatml(chat_buf_t *b, const infer_chat_message_t *msg, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        chat_puts(b, "<|im_start|>");
        chat_puts(b, msg[i].role);
        chat_puts(b, "\n");
        chat_puts(b, msg[i].content);
        chat_puts(b, "<|im_end|>\n");
    }
    chat_puts(b, "<|im_start|>assistant\n");
}

static void
chat_render_plain(chat_buf_t *b, const infer_chat_message_t *msg, int n,
    const char *bos)
{
    int  i;

    chat_puts(b, bos);
    for (i = 0; i < n; i++) {
        chat_puts(b, msg[i].role);
        chat_puts(b, ": ");
        chat_puts(b, msg[i].content);
        chat_puts(b, "\n");
    }
    chat_puts(b, "assistant:");
}

char *
infer_chat_render(infer_chat_format_t f, const infer_chat_message_t *msg,
    int n, const char *bos, const char *eos, size_t *len, char *err,
    size_t errlen)
{
    chat_buf_t  b;

    memset(&b, 0, sizeof(b));
    bos = bos ? bos : "";
    eos = eos ? eos : "";

    switch (f) {
    case INFER_CHAT_LLAMA2:
        if (chat_render_llama2(&b, msg, n, bos, eos, err, errlen) != 0) {
            free(b.data);
            return NULL;
        }
        break;
    case INFER_CHAT_LLAMA3:
        chat_render_llama3(&b, msg, n, bos);
        break;
    case INFER_CHAT_CHATML:
        chat_render_chatml(&b, msg, n);
        break;
    default:
        chat_render_plain(&b, msg, n, bos);
        break;
    }

    if (b.failed || b.data == NULL) {
        free(b.data);
        snprintf(err, errlen, "out of memory rendering the chat template");
        return NULL;
    }
    *len = b.len;
    return b.data;
}
