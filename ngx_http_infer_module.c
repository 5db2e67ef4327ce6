/*
 * ngx_http_infer_module: serves transformer language models from inside
 * nginx.  This file holds the directives, configuration and the worker
 * life cycle; src/ngx/ has the event bridge and the OpenAI front end.
 *
 *     infer_model NAME DIR [backend=cpu|cuda] [threads=N]
 *                 [max_batch_tokens=N] [max_seqs=N] [kv_cache=SIZE]
 *                 [max_queue=N] [timeout=TIME] [tp=N] [devices=LIST]
 *                 [max_output=SIZE] [dtype=auto|f32|bf16|int8|f16]
 *                 [prefix_cache=on|off]
 *                 [chat_template=auto|FILE]
 *                 [tool_parser=auto|hermes|llama3_json|mistral|none];
 *                                                                (http)
 *     infer_openai NAME ...;                                     (location)
 *     infer_predict NAME ...;                                    (location)
 *     infer_kserve NAME ...;                                     (location)
 *     infer_grpc NAME ...;                                       (location)
 *     infer_health;                                              (location)
 *     infer_stats;                                               (location)
 *     infer_metrics;                                             (location)
 *     infer_reject_log_level info|notice|warn|error;   (http, server, location)
 *     infer_unsent_limit SIZE;                         (http, server, location)
 *     infer_max_n N;                                   (http, server, location)
 *     infer_api_keys FILE|off;                         (http, server, location)
 *     infer_allowed_models VALUE;                      (http, server, location)
 *     infer_priority VALUE;                            (http, server, location)
 *     infer_proxy_stream_errors on|off;                (http, server, location)
 */
#include "ngx_http_infer.h"

#define NGX_HTTP_INFER_DEFAULT_TIMEOUT  300000
/* A worker whose engine failed to start tries again, this long apart at
 * first, doubling up to the most. */
#define NGX_HTTP_INFER_RETRY_FIRST      1000
#define NGX_HTTP_INFER_RETRY_MOST       60000

#define ngx_http_infer_str(x)           #x
#define ngx_http_infer_stringify(x)     ngx_http_infer_str(x)

static ngx_int_t ngx_http_infer_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_infer_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_infer_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_infer_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_infer_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_infer_model(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_infer_serve(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_infer_stats(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_infer_health(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_infer_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_infer_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_infer_init_process(ngx_cycle_t *cycle);
static void ngx_http_infer_exit_process(ngx_cycle_t *cycle);

/* As limit_req_log_level: an overloaded server must not flood its log. */
static ngx_conf_enum_t  ngx_http_infer_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};

/* infer_max_n: OpenAI's n.  Each choice is a sequence of its own in the
 * engine, so the bound is what one request may take of a worker. */
#define NGX_HTTP_INFER_MAX_N  128

static char *ngx_http_infer_check_max_n(ngx_conf_t *cf, void *post,
    void *data);
static ngx_conf_post_t  ngx_http_infer_max_n_post = {
    ngx_http_infer_check_max_n
};

static ngx_command_t  ngx_http_infer_commands[] = {

    { ngx_string("infer_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_infer_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("infer_openai"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_infer_serve,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_infer_openai_handler },

    { ngx_string("infer_predict"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_infer_serve,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_infer_predict_handler },

    { ngx_string("infer_kserve"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_infer_serve,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_infer_kserve_handler },

    { ngx_string("infer_grpc"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_infer_serve,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_infer_grpc_handler },

    { ngx_string("infer_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_infer_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("infer_stats"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_infer_stats,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("infer_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_infer_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("infer_unsent_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_infer_loc_conf_t, unsent_limit),
      NULL },

    { ngx_string("infer_reject_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_infer_loc_conf_t, reject_log_level),
      &ngx_http_infer_log_levels },

    { ngx_string("infer_proxy_stream_errors"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_infer_loc_conf_t, proxy_stream_errors),
      NULL },

    { ngx_string("infer_max_n"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_infer_loc_conf_t, max_n),
      &ngx_http_infer_max_n_post },

    { ngx_string("infer_priority"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_infer_loc_conf_t, priority),
      NULL },

    { ngx_string("infer_api_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_infer_api_keys,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("infer_allowed_models"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_infer_loc_conf_t, allowed_models),
      NULL },

      ngx_null_command
};

static ngx_http_module_t  ngx_http_infer_module_ctx = {
    ngx_http_infer_preconfiguration,       /* preconfiguration */
    ngx_http_infer_postconfiguration,      /* postconfiguration */

    ngx_http_infer_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_infer_create_loc_conf,        /* create location configuration */
    ngx_http_infer_merge_loc_conf          /* merge location configuration */
};

ngx_module_t  ngx_http_infer_module = {
    NGX_MODULE_V1,
    &ngx_http_infer_module_ctx,            /* module context */
    ngx_http_infer_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_infer_init_module,            /* init module */
    ngx_http_infer_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_infer_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};

/* $infer_* variables (ngx_http_infer_vars.c) */
static ngx_int_t
ngx_http_infer_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_infer_add_variables(cf);
}

/* traceparent in the preaccess phase, infer_api_keys in the access one,
 * infer_proxy_stream_errors' body filter */
static ngx_int_t
ngx_http_infer_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_infer_trace_init(cf) != NGX_OK
        || ngx_http_infer_proxy_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }
    return ngx_http_infer_keys_init(cf);
}

static void *
ngx_http_infer_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_infer_main_conf_t));
    if (imcf == NULL) {
        return NULL;
    }
    if (ngx_array_init(&imcf->models, cf->pool, 2,
                       sizeof(ngx_http_infer_model_t *))
        != NGX_OK)
    {
        return NULL;
    }
    return imcf;
}

static void *
ngx_http_infer_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_infer_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_infer_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->models = NULL;
     *     conf->allowed_models = NULL;
     */

    conf->reject_log_level = NGX_CONF_UNSET_UINT;
    conf->unsent_limit = NGX_CONF_UNSET_SIZE;
    conf->max_n = NGX_CONF_UNSET;
    conf->api_keys = NGX_CONF_UNSET_PTR;
    conf->priority = NGX_CONF_UNSET_PTR;
    conf->proxy_stream_errors = NGX_CONF_UNSET;

    return conf;
}

static char *
ngx_http_infer_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_infer_loc_conf_t  *prev = parent;
    ngx_http_infer_loc_conf_t  *conf = child;

    ngx_conf_merge_uint_value(conf->reject_log_level,
                              prev->reject_log_level, NGX_LOG_WARN);
    ngx_conf_merge_size_value(conf->unsent_limit, prev->unsent_limit,
                              64 * 1024);
    ngx_conf_merge_value(conf->max_n, prev->max_n, 8);
    ngx_conf_merge_ptr_value(conf->api_keys, prev->api_keys, NULL);
    if (conf->allowed_models == NULL) {
        conf->allowed_models = prev->allowed_models;
    }
    ngx_conf_merge_ptr_value(conf->priority, prev->priority, NULL);
    ngx_conf_merge_value(conf->proxy_stream_errors,
                         prev->proxy_stream_errors, 0);

    return NGX_CONF_OK;
}

static char *
ngx_http_infer_check_max_n(ngx_conf_t *cf, void *post, void *data)
{
    ngx_int_t  *np = data;

    if (*np < 1 || *np > NGX_HTTP_INFER_MAX_N) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%i\" of \"infer_max_n\", "
                           "expected 1 to %d", *np, NGX_HTTP_INFER_MAX_N);
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

/* A positive int parameter value. */
static ngx_int_t
ngx_http_infer_int(ngx_str_t *v, int *out)
{
    ngx_int_t  n;

    n = ngx_atoi(v->data, v->len);
    if (n <= 0 || n > 0x7fffffff) {
        return NGX_ERROR;
    }
    *out = (int) n;
    return NGX_OK;
}

static ngx_int_t
ngx_http_infer_devices(ngx_str_t *v, ngx_http_infer_model_t *m)
{
    u_char     *p, *last, *comma;
    ngx_int_t   n;

    p = v->data;
    last = v->data + v->len;
    m->ecfg.n_devices = 0;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }
        n = ngx_atoi(p, comma - p);
        if (n == NGX_ERROR || m->ecfg.n_devices == NGX_HTTP_INFER_MAX_DEVICES)
        {
            return NGX_ERROR;
        }
        m->devices[m->ecfg.n_devices++] = (int) n;
        p = comma + 1;
    }

    m->ecfg.devices = m->devices;
    return m->ecfg.n_devices > 0 ? NGX_OK : NGX_ERROR;
}

/* One key=value parameter of infer_model; returns the expected form of the
 * value when it is bad, NULL when it is fine, "" for an unknown key. */
static const char *
ngx_http_infer_model_param(ngx_http_infer_model_t *m, ngx_str_t *key,
    ngx_str_t *v)
{
    int        n;
    off_t      size;
    ngx_int_t  t;

#define ngx_http_infer_key(s)                                                \
    (key->len == sizeof(s) - 1 && ngx_strncmp(key->data, s, key->len) == 0)

    if (ngx_http_infer_key("backend")) {
        if (!(v->len == 3 && ngx_strncmp(v->data, "cpu", 3) == 0)
            && !(v->len == 4 && ngx_strncmp(v->data, "cuda", 4) == 0))
        {
            return "cpu or cuda";
        }
        m->ecfg.backend = (const char *) v->data;
        return NULL;
    }

    if (ngx_http_infer_key("dtype")) {
        if (!(v->len == 4 && ngx_strncmp(v->data, "auto", 4) == 0)
            && !(v->len == 3 && ngx_strncmp(v->data, "f32", 3) == 0)
            && !(v->len == 4 && ngx_strncmp(v->data, "bf16", 4) == 0)
            && !(v->len == 4 && ngx_strncmp(v->data, "int8", 4) == 0)
            && !(v->len == 3 && ngx_strncmp(v->data, "f16", 3) == 0))
        {
            return "auto, f32, bf16 (cpu), int8 or f16 (cuda)";
        }
        m->ecfg.dtype = (const char *) v->data;
        return NULL;
    }

    if (ngx_http_infer_key("threads") || ngx_http_infer_key("max_seqs")
        || ngx_http_infer_key("max_batch_tokens")
        || ngx_http_infer_key("max_queue") || ngx_http_infer_key("tp"))
    {
        if (ngx_http_infer_int(v, &n) != NGX_OK) {
            return "a positive integer";
        }
        if (ngx_http_infer_key("threads") && n > INFER_MAX_THREADS) {
            return "a positive integer up to "
                   ngx_http_infer_stringify(INFER_MAX_THREADS);
        }
        if (ngx_http_infer_key("threads")) {
            m->ecfg.threads = n;
        } else if (ngx_http_infer_key("max_seqs")) {
            m->ecfg.max_seqs = n;
        } else if (ngx_http_infer_key("max_batch_tokens")) {
            m->ecfg.max_batch_tokens = n;
        } else if (ngx_http_infer_key("max_queue")) {
            m->ecfg.max_queue = n;
        } else {
            m->ecfg.tp = n;
        }
        return NULL;
    }

    if (ngx_http_infer_key("kv_cache") || ngx_http_infer_key("max_output")) {
        /* ngx_parse_offset: sizes in g too, which KV caches need. */
        size = ngx_parse_offset(v);
        if (size <= 0) {
            return "a size such as 64m or 2g";
        }
        if (ngx_http_infer_key("kv_cache")) {
            m->ecfg.kv_cache_bytes = (size_t) size;
        } else {
            m->ecfg.max_output_bytes = (size_t) size;
        }
        return NULL;
    }

    if (ngx_http_infer_key("prefix_cache")) {
        if (v->len == 2 && ngx_strncmp(v->data, "on", 2) == 0) {
            m->ecfg.no_prefix_cache = 0;
        } else if (v->len == 3 && ngx_strncmp(v->data, "off", 3) == 0) {
            m->ecfg.no_prefix_cache = 1;
        } else {
            return "on or off";
        }
        return NULL;
    }

    if (ngx_http_infer_key("timeout")) {
        t = ngx_parse_time(v, 0);
        if (t == NGX_ERROR || t == 0) {
            return "a time such as 30s";
        }
        m->timeout = (ngx_msec_t) t;
        return NULL;
    }

    if (ngx_http_infer_key("devices")) {
        if (ngx_http_infer_devices(v, m) != NGX_OK) {
            return "a list of device numbers such as 0,1";
        }
        return NULL;
    }

    if (ngx_http_infer_key("tool_parser")) {
        if (v->len == 4 && ngx_strncmp(v->data, "auto", 4) == 0) {
            return NULL;
        }
        n = infer_tool_fmt_parse((const char *) v->data, v->len);
        if (n < 0) {
            return "auto, hermes, llama3_json, mistral or none";
        }
        m->tool_fmt = (infer_tool_fmt_t) n;
        m->tool_fmt_set = 1;
        return NULL;
    }

    if (ngx_http_infer_key("chat_template")) {
        if (v->len == 0) {
            return "auto or the path of a template file";
        }
        /* "auto": the tokenizer's, as when it is not given */
        if (!(v->len == 4 && ngx_strncmp(v->data, "auto", 4) == 0)) {
            m->chat_template = *v;
        }
        return NULL;
    }

    return "";

#undef ngx_http_infer_key
}

/* The text of a chat_template= file, NUL-terminated, in cf->pool. */
static char *
ngx_http_infer_read_template(ngx_conf_t *cf, ngx_http_infer_model_t *m,
    size_t *len)
{
    char             *text;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    fd = ngx_open_file(m->chat_template.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "infer_model \"%V\": cannot open the chat "
                           "template \"%V\"", &m->name, &m->chat_template);
        return NULL;
    }

    text = NULL;
    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "infer_model \"%V\": cannot stat the chat "
                           "template \"%V\"", &m->name, &m->chat_template);
        goto done;
    }
    if (ngx_file_size(&fi) > INFER_JINJA_TEMPLATE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "infer_model \"%V\": the chat template \"%V\" "
                           "has %O bytes, more than %uz", &m->name,
                           &m->chat_template, ngx_file_size(&fi),
                           (size_t) INFER_JINJA_TEMPLATE);
        goto done;
    }

    *len = (size_t) ngx_file_size(&fi);
    text = ngx_pnalloc(cf->pool, *len + 1);
    if (text == NULL) {
        goto done;
    }
    n = ngx_read_fd(fd, text, *len);
    if (n != (ssize_t) *len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, n == -1 ? ngx_errno : 0,
                           "infer_model \"%V\": cannot read the chat "
                           "template \"%V\"", &m->name, &m->chat_template);
        text = NULL;
        goto done;
    }
    text[*len] = '\0';

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed",
                           &m->chat_template);
    }
    return text;
}

static void
ngx_http_infer_template_cleanup(void *data)
{
    ngx_http_infer_model_t  *m = data;

    infer_jinja_free(m->tmpl);
    json_decref(m->special);
    m->tmpl = NULL;
    m->special = NULL;
}

/*
 * The chat template: a chat_template= file, else the one of the
 * tokenizer's tokenizer_config.json, else the default.  Parsed once here
 * (the workers share the tree) and tried on a one-line chat, so that
 * "nginx -t" refuses a template that cannot serve with its line and
 * column.  The special tokens it is given and the tokens that end a turn
 * come from the tokenizer.
 */
static char *
ngx_http_infer_model_template(ngx_conf_t *cf, ngx_http_infer_model_t *m)
{
    int32_t               id;
    size_t                len;
    const char           *src;
    char                  err[NGX_HTTP_INFER_ERRLEN];
    infer_tokenizer_t    *tok;
    ngx_pool_cleanup_t   *cln;
    infer_jinja_error_t   jerr;

    if (infer_tokenizer_load(m->ecfg.model_dir, &tok, err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "infer_model \"%V\": %s",
                           &m->name, err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        goto failed;
    }
    cln->handler = ngx_http_infer_template_cleanup;
    cln->data = m;

    if (m->chat_template.len > 0) {
        if (ngx_conf_full_name(cf->cycle, &m->chat_template, 1) != NGX_OK) {
            goto failed;
        }
        src = ngx_http_infer_read_template(cf, m, &len);
        if (src == NULL) {
            goto failed;
        }
        m->tmpl_from = (const char *) m->chat_template.data;

    } else if (infer_tokenizer_chat_template(tok) != NULL) {
        src = infer_tokenizer_chat_template(tok);
        len = ngx_strlen(src);
        m->tmpl_from = "tokenizer_config.json";

    } else {
        src = infer_oai_default_template;
        len = ngx_strlen(src);
        m->tmpl_from = "the default (\"role: content\" lines)";
    }

    m->special = json_object();
    if (m->special == NULL) {
        goto failed;
    }
    id = infer_tokenizer_bos_id(tok);
    if (id >= 0
        && json_object_set_new(m->special, "bos_token",
               json_string(infer_tokenizer_token_str(tok, id))) != 0)
    {
        goto failed;
    }
    id = infer_tokenizer_eos_id(tok);
    if (id >= 0
        && json_object_set_new(m->special, "eos_token",
               json_string(infer_tokenizer_token_str(tok, id))) != 0)
    {
        goto failed;
    }

    m->tmpl = infer_jinja_parse(src, len, &jerr);
    if (m->tmpl == NULL
        || infer_oai_template_check(m->tmpl, m->special, &jerr) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "infer_model \"%V\": the chat template of %s "
                           "%s: %s (line %d, column %d)", &m->name,
                           m->tmpl_from,
                           m->tmpl == NULL ? "does not parse"
                                           : "cannot render a chat",
                           infer_jinja_strerror(&jerr, err, sizeof(err)),
                           jerr.line, jerr.column);
        goto failed;
    }

    if (!m->tool_fmt_set) {
        m->tool_fmt = infer_tool_fmt_detect(src);
    }
    m->n_end_ids = infer_oai_template_stops(src, tok, m->end_ids,
                                            (int) (sizeof(m->end_ids)
                                                   / sizeof(int32_t)));
    infer_tokenizer_free(tok);

    if (ngx_test_config) {
        /* "nginx -t" exits without destroying the cycle's pool: what it
         * will not serve with is freed now */
        ngx_http_infer_template_cleanup(m);
    }
    return NGX_CONF_OK;

failed:

    infer_tokenizer_free(tok);
    return NGX_CONF_ERROR;
}

/* Checks the model against its parameters once at configuration time, so
 * that "nginx -t" and start-up report what the engine would refuse (a bad
 * model directory or tokenizer, tp, kv_cache, threads) with the engine's
 * own message instead of workers failing later. */
static char *
ngx_http_infer_model_check(ngx_conf_t *cf, ngx_http_infer_model_t *m)
{
    int   tp;
    char  err[512];

    /* "nginx -s reload" parses the configuration only to find the pid
     * file: the master checks the models when it reloads */
    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_CONF_OK;
    }

    if (infer_engine_check(&m->ecfg, err, sizeof(err)) != INFER_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "infer_model \"%V\": %s", &m->name, err);
        return NGX_CONF_ERROR;
    }

    tp = m->ecfg.tp > 0 ? m->ecfg.tp : 1;
    if (m->ecfg.n_devices > 0) {
        if (m->ecfg.backend == NULL
            || ngx_strcmp(m->ecfg.backend, "cuda") != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "infer_model \"%V\": devices= needs "
                               "backend=cuda", &m->name);
            return NGX_CONF_ERROR;
        }
        if (m->ecfg.n_devices % tp != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "infer_model \"%V\": %d devices do not form "
                               "groups of tp=%d", &m->name,
                               m->ecfg.n_devices, tp);
            return NGX_CONF_ERROR;
        }
    }

    return ngx_http_infer_model_template(cf, m);
}

/*
 * OpenBLAS has one thread count per process (openblas_set_num_threads), so
 * CPU models of one nginx cannot have different threads= values: the last
 * one would silently win for all.
 */
static ngx_int_t
ngx_http_infer_same_threads(ngx_conf_t *cf, ngx_http_infer_main_conf_t *imcf,
    ngx_http_infer_model_t *m)
{
    int                       threads, other;
    ngx_uint_t                i;
    ngx_http_infer_model_t  **mp;

    if (ngx_strcmp(m->ecfg.backend, "cpu") != 0) {
        return NGX_OK;
    }
    threads = m->ecfg.threads > 0 ? m->ecfg.threads : 1;

    mp = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        other = mp[i]->ecfg.threads > 0 ? mp[i]->ecfg.threads : 1;
        if (ngx_strcmp(mp[i]->ecfg.backend, "cpu") == 0 && other != threads)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "infer_model \"%V\": threads=%d differs from "
                               "threads=%d of infer_model \"%V\"; CPU models "
                               "share one BLAS thread count per process",
                               &m->name, threads, other, &mp[i]->name);
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}

static char *
ngx_http_infer_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_infer_main_conf_t  *imcf = conf;

    u_char                   *eq;
    ngx_str_t                *value, key, v;
    ngx_uint_t                i;
    const char               *expected;
    ngx_http_infer_model_t   *m, **mp;

    value = cf->args->elts;

    mp = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        if (mp[i]->name.len == value[1].len
            && ngx_strncmp(mp[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate infer_model \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_http_infer_model_t));
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }
    m->name = value[1];
    m->dir = value[2];
    if (ngx_conf_full_name(cf->cycle, &m->dir, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    /* Arguments and full names are NUL-terminated. */
    m->ecfg.model_dir = (const char *) m->dir.data;
    m->ecfg.backend = "cpu";
    m->timeout = NGX_HTTP_INFER_DEFAULT_TIMEOUT;

    for (i = 3; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
        if (eq == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"infer_model\", "
                               "expected key=value", &value[i]);
            return NGX_CONF_ERROR;
        }
        key.data = value[i].data;
        key.len = eq - value[i].data;
        v.data = eq + 1;
        v.len = value[i].data + value[i].len - v.data;

        expected = ngx_http_infer_model_param(m, &key, &v);
        if (expected != NULL && expected[0] == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown parameter \"%V\" in \"infer_model\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
        if (expected != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" of \"%V\" in "
                               "\"infer_model\", expected %s",
                               &v, &key, expected);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_infer_same_threads(cf, imcf, m) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mp = ngx_array_push(&imcf->models);
    if (mp == NULL) {
        return NGX_CONF_ERROR;
    }
    *mp = m;

    return ngx_http_infer_model_check(cf, m);
}

/*
 * infer_openai, infer_predict, infer_kserve: the location serves a
 * protocol (cmd->post is its handler) for the models named, declared
 * earlier with infer_model.
 */
static char *
ngx_http_infer_serve(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_infer_loc_conf_t  *ilcf = conf;

    ngx_str_t                    *value;
    ngx_uint_t                    i, k;
    ngx_http_infer_model_t      **m, **mp;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_infer_main_conf_t   *imcf;

    if (ilcf->models != NULL) {
        return "is duplicate";
    }

    ilcf->models = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ngx_http_infer_model_t *));
    if (ilcf->models == NULL) {
        return NGX_CONF_ERROR;
    }

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_infer_module);
    value = cf->args->elts;
    m = imcf->models.elts;

    for (i = 1; i < cf->args->nelts; i++) {
        for (k = 0; k < imcf->models.nelts; k++) {
            if (m[k]->name.len == value[i].len
                && ngx_strncmp(m[k]->name.data, value[i].data, value[i].len)
                   == 0)
            {
                break;
            }
        }
        if (k == imcf->models.nelts) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown model \"%V\" in \"%V\" "
                               "(declare it with \"infer_model\" earlier in "
                               "the http block)", &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }
        mp = ngx_array_push(ilcf->models);
        if (mp == NULL) {
            return NGX_CONF_ERROR;
        }
        *mp = m[k];
    }

#if (NGX_THREADS)
    /* nginx's "default" pool (thread_pool default ... sizes it) */
    imcf->thread_pool = ngx_thread_pool_add(cf, NULL);
    if (imcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }
#endif

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = (ngx_http_handler_pt) cmd->post;

    return NGX_CONF_OK;
}

static char *
ngx_http_infer_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_infer_health_handler;

    return NGX_CONF_OK;
}

static char *
ngx_http_infer_stats(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_infer_stats_handler;

    return NGX_CONF_OK;
}

/* infer_metrics: Prometheus text of every worker, from a shared zone. */
static char *
ngx_http_infer_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_infer_module);
    if (ngx_http_infer_metrics_zone(cf, imcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_infer_metrics_handler;

    return NGX_CONF_OK;
}

/* Engines start in workers only: never in the master (threads and CUDA do
 * not survive fork) nor in cache helpers. */
/*
 * Placement: worker k drives devices [k*tp, (k+1)*tp) of a model's list, so
 * one nginx runs worker_processes data-parallel replicas.  Checked here,
 * where worker_processes is final ("nginx -t" runs this too).
 */
static ngx_int_t
ngx_http_infer_init_module(ngx_cycle_t *cycle)
{
    int                          tp;
    ngx_uint_t                   i;
    ngx_core_conf_t             *ccf;
    ngx_http_infer_model_t     **m;
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_infer_module);
    if (imcf == NULL) {
        return NGX_OK;
    }
    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    m = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        tp = m[i]->ecfg.tp > 0 ? m[i]->ecfg.tp : 1;
        if (m[i]->ecfg.n_devices > 0
            && ccf->worker_processes > m[i]->ecfg.n_devices / tp)
        {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "infer_model \"%V\": worker_processes %i need %i "
                          "groups of tp=%d devices, but devices= lists %d "
                          "devices", &m[i]->name, ccf->worker_processes,
                          ccf->worker_processes, tp, m[i]->ecfg.n_devices);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* This worker's share of a model's devices (see init_module). */
static void
ngx_http_infer_place(ngx_http_infer_model_t *m)
{
    int  tp, i, first;

    tp = m->ecfg.tp > 0 ? m->ecfg.tp : 1;
    first = (int) ngx_worker * tp;

    if (m->ecfg.n_devices > 0) {
        m->ecfg.devices = m->devices + first;

    } else if (m->ecfg.backend != NULL
               && ngx_strcmp(m->ecfg.backend, "cuda") == 0
               && tp <= NGX_HTTP_INFER_MAX_DEVICES)
    {
        /* no list: the devices are numbered 0, 1, ... */
        for (i = 0; i < tp; i++) {
            m->devices[i] = first + i;
        }
        m->ecfg.devices = m->devices;
    }
    m->ecfg.n_devices = m->ecfg.devices != NULL ? tp : 0;
}


/* Loads and starts this worker's engine of m; on failure m->error says
 * why and nothing is left behind. */
static ngx_int_t
ngx_http_infer_engine_up(ngx_cycle_t *cycle, ngx_http_infer_model_t *m)
{
    char           err[NGX_HTTP_INFER_ERRLEN], facts[512];
    int64_t        start;
    infer_stats_t  st;

    start = ngx_http_infer_now_us();

    if (infer_engine_create(&m->ecfg, &m->engine, err, sizeof(err))
        != INFER_OK)
    {
        m->engine = NULL;
        goto failed;
    }

    if (infer_engine_start(m->engine, err, sizeof(err)) != INFER_OK) {
        goto failed;
    }

    if (ngx_http_infer_bridge_start(cycle, m) != NGX_OK) {
        ngx_cpystrn((u_char *) err, (u_char *) "cannot watch the engine's "
                    "event fd", sizeof(err));
        goto failed;
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "infer_model \"%V\": chat template from %s, tool calls "
                  "%s", &m->name, m->tmpl_from,
                  infer_tool_fmt_name(m->tool_fmt));
    m->created = ngx_time();
    m->error[0] = '\0';
    m->preemptions_seen = 0;          /* a new engine counts from 0 */
    m->prefix_queries_seen = 0;
    m->prefix_hits_seen = 0;

    infer_engine_describe(m->engine, facts, sizeof(facts));
    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "infer_model \"%V\" loaded from \"%V\": %s, load time "
                  "%.3f s", &m->name, &m->dir, facts,
                  (double) (ngx_http_infer_now_us() - start) / 1e6);
    infer_engine_stats(m->engine, &st);
    if (st.kernels_warning != NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0, "infer_model \"%V\": %s",
                      &m->name, st.kernels_warning);
    }
    if (m->ecfg.n_devices > 0) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "infer_model \"%V\": worker %ui on devices %d..%d",
                      &m->name, ngx_worker, m->ecfg.devices[0],
                      m->ecfg.devices[m->ecfg.n_devices - 1]);
    }
    return NGX_OK;

failed:

    if (m->engine != NULL) {
        infer_engine_destroy(m->engine);
        m->engine = NULL;
    }
    ngx_cpystrn(m->error, (u_char *) err, sizeof(m->error));
    return NGX_ERROR;
}

/*
 * A worker whose engine did not start stays up and answers 503 with the
 * reason (health too), so clients are told instead of waiting on a master
 * with no workers; it tries again, since the cause may pass (the old
 * workers of a reload still holding the GPU's memory).  The reason is
 * logged once, at the first failure.
 */
static void
ngx_http_infer_retry(ngx_event_t *ev)
{
    ngx_http_infer_model_t  *m = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }
    if (ngx_http_infer_engine_up((ngx_cycle_t *) ngx_cycle, m) == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "infer_model \"%V\": serving again", &m->name);
        return;
    }
    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "infer_model \"%V\": still cannot start: %s",
                  &m->name, m->error);
    m->retry_delay = ngx_min(2 * m->retry_delay, NGX_HTTP_INFER_RETRY_MOST);
    ngx_add_timer(&m->retry, m->retry_delay);
}

static ngx_int_t
ngx_http_infer_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_infer_model_t     **m;
    ngx_http_infer_main_conf_t  *imcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_infer_module);
    if (imcf == NULL) {
        return NGX_OK;
    }

    if (ngx_http_infer_metrics_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    m = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        ngx_queue_init(&m[i]->ctxs);
        ngx_http_infer_place(m[i]);

        m[i]->retry.handler = ngx_http_infer_retry;
        m[i]->retry.data = m[i];
        m[i]->retry.log = cycle->log;
        /* a retry must not keep an old worker from exiting on reload */
        m[i]->retry.cancelable = 1;

        if (ngx_http_infer_engine_up(cycle, m[i]) != NGX_OK) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "infer_model \"%V\": %s; this worker answers 503 "
                          "and tries again", &m[i]->name, m[i]->error);
            m[i]->retry_delay = NGX_HTTP_INFER_RETRY_FIRST;
            ngx_add_timer(&m[i]->retry, m[i]->retry_delay);
        }
    }

    return NGX_OK;
}

/* Why this worker cannot serve m, or NULL when it can. */
const char *
ngx_http_infer_model_unavailable(ngx_http_infer_model_t *m)
{
    const char  *why;

    if (m->engine == NULL) {
        return m->error[0] ? (const char *) m->error
                           : "the engine is not running";
    }
    if (!infer_engine_alive(m->engine)) {
        why = infer_engine_error(m->engine);
        return why ? why : "the engine is shutting down";
    }
    return NULL;
}

static void
ngx_http_infer_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_infer_model_t     **m;
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_infer_module);
    if (imcf == NULL) {
        return;
    }

    ngx_http_infer_metrics_exit_process(cycle);

    m = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        if (m[i]->retry.timer_set) {
            ngx_del_timer(&m[i]->retry);
        }
        if (m[i]->engine == NULL) {
            continue;
        }
        /* Unhook the fd first: destroy closes it. */
        ngx_http_infer_bridge_stop(m[i]);
        infer_engine_destroy(m[i]->engine);
        m[i]->engine = NULL;
    }
}
