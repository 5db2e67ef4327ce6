/*
 * Chat templates: turn a list of chat messages into the prompt text a model
 * was trained on.  The common families are recognised from the Jinja
 * chat_template string in tokenizer_config.json and rendered here in C, the
 * way Hugging Face's apply_chat_template(add_generation_prompt=True) renders
 * them.  A model without a known template gets the plain format:
 *
 *     <bos>role: content\n ... assistant:
 *
 * Pure C, no nginx types.
 */
#ifndef INFER_CHAT_H
#define INFER_CHAT_H

#include <stddef.h>

typedef enum {
    INFER_CHAT_AUTO = 0,        /* detect from the tokenizer's template */
    INFER_CHAT_PLAIN,
    INFER_CHAT_LLAMA2,          /* <s>[INST] <<SYS>> ... [/INST] */
    INFER_CHAT_LLAMA3,          /* <|start_header_id|>role<|end_header_id|> */
    INFER_CHAT_CHATML           /* <|im_start|>role ... <|im_end|> */
} infer_chat_format_t;

typedef struct {
    char   *role;
    char   *content;
} infer_chat_message_t;

/* "auto", "plain", "llama2", "llama3", "chatml" -> format; -1 if unknown. */
int infer_chat_format_parse(const char *name, size_t len);
const char *infer_chat_format_name(infer_chat_format_t f);

/* Format of a Jinja chat_template string; PLAIN for NULL or unknown. */
infer_chat_format_t infer_chat_detect(const char *tmpl);

/*
 * Renders the conversation followed by the assistant generation prompt.
 * bos and eos are the tokenizer's special token strings (NULL: none); the
 * result holds them as text, so it is encoded without adding specials.
 * Returns a malloc'd string (length in *len), or NULL with a message in err
 * (e.g. Llama-2 roles that do not alternate).
 */
char *infer_chat_render(infer_chat_format_t f,
    const infer_chat_message_t *msg, int n, const char *bos,
    const char *eos, size_t *len, char *err, size_t errlen);

/* Token that ends an assistant turn in this format (NULL: eos only). */
const char *infer_chat_end_token(infer_chat_format_t f);

#endif
