/*
 * Hugging Face tokenizer.json: BPE with the SentencePiece-style normalizer
 * and byte_fallback (Llama-2 family), and byte-level BPE with a regex
 * pre-tokenizer (GPT-2, Llama-3, Qwen2); added/special tokens; add_bos_token
 * from tokenizer_config.json.
 */
#ifndef INFER_TOKENIZER_H
#define INFER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct infer_tokenizer infer_tokenizer_t;

/* Reads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json. */
int infer_tokenizer_load(const char *dir, infer_tokenizer_t **out,
    char *err, size_t errlen);
void infer_tokenizer_free(infer_tokenizer_t *t);

/* Encodes text.  add_special: prepend bos (and append eos) as
 * tokenizer_config.json says.  Added tokens in the text are always
 * recognised.  *ids is malloc'd.  Returns 0 or -1. */
int infer_tokenizer_encode(const infer_tokenizer_t *t, const char *text,
    size_t len, int add_special, int32_t **ids, int *n);

int infer_tokenizer_vocab_size(const infer_tokenizer_t *t);
int infer_tokenizer_bos_id(const infer_tokenizer_t *t);   /* -1 if none */
int infer_tokenizer_eos_id(const infer_tokenizer_t *t);   /* -1 if none */
int infer_tokenizer_add_bos(const infer_tokenizer_t *t);
int infer_tokenizer_is_special(const infer_tokenizer_t *t, int32_t id);
/* Id of an exact token string (e.g. "<|im_end|>"), -1 if absent. */
int32_t infer_tokenizer_token_id(const infer_tokenizer_t *t, const char *s);
/* Content string of a token as stored in the vocab (not decoded). */
const char *infer_tokenizer_token_str(const infer_tokenizer_t *t, int32_t id);
/* The bytes one token decodes to on its own, as the decoder chain makes
 * them (maybe part of a UTF-8 character), NULL if id is not a token. */
const char *infer_tokenizer_token_bytes(const infer_tokenizer_t *t,
    int32_t id, size_t *len);
/* chat_template string from tokenizer_config.json, or NULL. */
const char *infer_tokenizer_chat_template(const infer_tokenizer_t *t);
/* What one infer_detok_push() or flush writes is at most this plus 8 (for
 * sizing buffers): the longest decoded token, with room for U+FFFD in
 * place of its bytes and of a held-back run's. */
size_t infer_tokenizer_max_token_bytes(const infer_tokenizer_t *t);
/* A lower bound on the ids infer_tokenizer_encode() makes of len bytes of
 * text (0 where the tokenizer allows no bound): a prompt whose bound
 * exceeds a context can be refused without encoding it. */
size_t infer_tokenizer_min_ids(const infer_tokenizer_t *t, size_t len);

/*
 * Streaming detokenizer: feeds tokens one at a time and emits only whole
 * UTF-8 characters; the bytes of an unfinished character are held back.
 * Special tokens decode to nothing, or with keep_special set (HF's
 * decode(skip_special_tokens=False)) to their text, which ends a run of
 * byte tokens.  The decoder's leading-space strip
 * (SentencePiece "Strip" decoder) applies only to the start of the text
 * when at_start is set (i.e. generation begins right after <s> or from
 * nothing).  With a ByteFallback decoder a run of byte tokens (<0xNN>) is
 * held back until it ends, as HF turns every byte token of a run that is
 * not valid UTF-8 as a whole into U+FFFD, up to INFER_DETOK_RUN bytes.
 */
#define INFER_DETOK_RUN  32

typedef struct {
    const infer_tokenizer_t *tok;
    unsigned char            pending[8];
    int                      n_pending;
    int                      at_start;
    unsigned char            run[INFER_DETOK_RUN];  /* byte tokens held */
    int                      n_run;
    int                      run_broken;    /* the run is U+FFFD to its end */
    int                      strip;         /* leading spaces still to drop */
    int                      keep_special;  /* set after init: special
                                               tokens' text is output */
} infer_detok_t;

void infer_detok_init(infer_detok_t *d, const infer_tokenizer_t *t,
    int at_start);
/* Appends to out (cap >= max_token_bytes + 8); returns bytes written. */
size_t infer_detok_push(infer_detok_t *d, int32_t id, char *out, size_t cap);
/* Emits held-back bytes of a broken character as U+FFFD. */
size_t infer_detok_flush(infer_detok_t *d, char *out, size_t cap);

#endif
