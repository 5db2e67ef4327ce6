/*
 * Chat templates rendered in C.  Each format follows the Jinja template its
 * model family publishes in tokenizer_config.json; the unit tests compare
 * with what jinja2 renders from those templates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "chat.h"

static const char *chat_format_names[] = {
    "auto", "plain", "llama2", "llama3", "chatml"
};

/* Python's str.strip() / Jinja's trim for the ASCII whitespace set. */
static int
chat_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}

static void
chat_put_stripped(infer_buf_t *b, const char *s, size_t n)
{
    while (n > 0 && chat_is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && chat_is_space(s[n - 1])) {
        n--;
    }
    infer_buf_add(b, s, n);
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
chat_render_llama2(infer_buf_t *b, const infer_chat_message_t *msg, int n,
    const char *bos, const char *eos, char *err, size_t errlen)
{
    const char  *sys, *want;
    infer_buf_t   turn;
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
            infer_buf_puts(&turn, "<<SYS>>\n");
            infer_buf_puts(&turn, sys);
            infer_buf_puts(&turn, "\n<</SYS>>\n\n");
        }
        infer_buf_puts(&turn, msg[i].content);
        if (turn.failed) {
            free(turn.p);
            snprintf(err, errlen, "out of memory rendering the chat template");
            return -1;
        }

        if (user) {
            infer_buf_puts(b, bos);
            infer_buf_puts(b, "[INST] ");
            chat_put_stripped(b, turn.p, turn.len);
            infer_buf_puts(b, " [/INST]");
        } else {
            infer_buf_puts(b, " ");
            chat_put_stripped(b, turn.p, turn.len);
            infer_buf_puts(b, " ");
            infer_buf_puts(b, eos);
        }
        free(turn.p);
    }
    return 0;
}

static void
chat_render_llama3(infer_buf_t *b, const infer_chat_message_t *msg, int n,
    const char *bos)
{
    int  i;

    infer_buf_puts(b, bos);
    for (i = 0; i < n; i++) {
        infer_buf_puts(b, "<|start_header_id|>");
        infer_buf_puts(b, msg[i].role);
        infer_buf_puts(b, "<|end_header_id|>\n\n");
        chat_put_stripped(b, msg[i].content, strlen(msg[i].content));
        infer_buf_puts(b, "<|eot_id|>");
    }
    infer_buf_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void
chat_render_chatml(infer_buf_t *b, const infer_chat_message_t *msg, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        infer_buf_puts(b, "<|im_start|>");
        infer_buf_puts(b, msg[i].role);
        infer_buf_puts(b, "\n");
        infer_buf_puts(b, msg[i].content);
        infer_buf_puts(b, "<|im_end|>\n");
    }
    infer_buf_puts(b, "<|im_start|>assistant\n");
}

static void
chat_render_plain(infer_buf_t *b, const infer_chat_message_t *msg, int n,
    const char *bos)
{
    int  i;

    infer_buf_puts(b, bos);
    for (i = 0; i < n; i++) {
        infer_buf_puts(b, msg[i].role);
        infer_buf_puts(b, ": ");
        infer_buf_puts(b, msg[i].content);
        infer_buf_puts(b, "\n");
    }
    infer_buf_puts(b, "assistant:");
}

char *
infer_chat_render(infer_chat_format_t f, const infer_chat_message_t *msg,
    int n, const char *bos, const char *eos, size_t *len, char *err,
    size_t errlen)
{
    infer_buf_t  b;

    memset(&b, 0, sizeof(b));
    bos = bos ? bos : "";
    eos = eos ? eos : "";

    switch (f) {
    case INFER_CHAT_LLAMA2:
        if (chat_render_llama2(&b, msg, n, bos, eos, err, errlen) != 0) {
            free(b.p);
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

    if (b.failed || b.p == NULL) {
        free(b.p);
        snprintf(err, errlen, "out of memory rendering the chat template");
        return NULL;
    }
    *len = b.len;
    return b.p;
}
