/*
 * infer_api_keys FILE: "Authorization: Bearer KEY" checked in the access
 * phase against the keys of FILE, read when the configuration is (so a
 * reload rereads it).  A line is a key, or its SHA-256 as 64 hex digits;
 * blank lines and lines starting with '#' are skipped.  Keys are kept as
 * their SHA-256 only, and the digest of what a client sends is compared
 * with every one of them in full (no early exit).  A missing or wrong key
 * is a 401 in the error shape of the location's protocol: OpenAI's JSON
 * (code invalid_api_key), KServe's and /predict's {"error": ...}, gRPC's
 * UNAUTHENTICATED.
 */
#include "ngx_http_infer.h"

#include <openssl/evp.h>

#include "kserve.h"

#define NGX_HTTP_INFER_DIGEST  32

static ngx_int_t ngx_http_infer_keys_handler(ngx_http_request_t *r);

static void
ngx_http_infer_sha256(u_char *data, size_t len, u_char *md)
{
    unsigned int  n;

    (void) EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
}

/* A line of the file as a digest. */
static ngx_int_t
ngx_http_infer_key_digest(u_char *p, size_t len, u_char *md)
{
    size_t     i;
    ngx_int_t  hi, lo;

    if (len == 2 * NGX_HTTP_INFER_DIGEST) {
        for (i = 0; i < NGX_HTTP_INFER_DIGEST; i++) {
            hi = ngx_hextoi(p + 2 * i, 1);
            lo = ngx_hextoi(p + 2 * i + 1, 1);
            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                break;
            }
            md[i] = (u_char) (hi << 4 | lo);
        }
        if (i == NGX_HTTP_INFER_DIGEST) {
            return NGX_OK;
        }
    }

    ngx_http_infer_sha256(p, len, md);
    return NGX_OK;
}

char *
ngx_http_infer_api_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_infer_loc_conf_t  *ilcf = conf;

    u_char           *p, *last, *eol, *s, *e, *md;
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ilcf->api_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        ilcf->api_keys = NULL;
        return NGX_CONF_OK;
    }

    name = value[1];
    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;
    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "infer_api_keys: cannot open \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    p = NULL;
    n = NGX_ERROR;
    if (ngx_fd_info(file.fd, &fi) != NGX_FILE_ERROR
        && ngx_file_size(&fi) <= 16 * 1024 * 1024)
    {
        p = ngx_pnalloc(cf->temp_pool, (size_t) ngx_file_size(&fi) + 1);
        if (p != NULL) {
            n = ngx_read_file(&file, p, (size_t) ngx_file_size(&fi), 0);
        }
    }
    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &name);
    }
    if (n == NGX_ERROR || p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "infer_api_keys: cannot read \"%V\" (up to "
                           "16 MB)", &name);
        return NGX_CONF_ERROR;
    }

    ilcf->api_keys = ngx_array_create(cf->pool, 4, NGX_HTTP_INFER_DIGEST);
    if (ilcf->api_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    last = p + n;
    while (p < last) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }
        s = p;
        e = eol;
        p = eol + 1;

        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
            e--;
        }
        if (s == e || *s == '#') {
            continue;
        }

        md = ngx_array_push(ilcf->api_keys);
        if (md == NULL) {
            return NGX_CONF_ERROR;
        }
        (void) ngx_http_infer_key_digest(s, e - s, md);
    }

    if (ilcf->api_keys->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "infer_api_keys: \"%V\" has no keys", &name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}

ngx_int_t
ngx_http_infer_keys_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_infer_keys_handler;

    return NGX_OK;
}

/* The bearer token of the request, or NULL. */
static ngx_int_t
ngx_http_infer_bearer(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char  *p, *last;

    if (r->headers_in.authorization == NULL) {
        return NGX_DECLINED;
    }

    p = r->headers_in.authorization->value.data;
    last = p + r->headers_in.authorization->value.len;

    if (last - p < 7 || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0) {
        return NGX_DECLINED;
    }
    p += 7;
    while (p < last && *p == ' ') {
        p++;
    }
    while (last > p && last[-1] == ' ') {
        last--;
    }
    if (p == last) {
        return NGX_DECLINED;
    }

    token->data = p;
    token->len = last - p;
    return NGX_OK;
}

static ngx_int_t
ngx_http_infer_unauthorized(ngx_http_request_t *r, const char *message)
{
    char                       *body;
    size_t                      len;
    ngx_int_t                   rc;
    infer_ks_error_t            kerr;
    infer_oai_error_t           oerr;
    ngx_http_core_loc_conf_t   *clcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->handler == ngx_http_infer_grpc_handler) {
        return ngx_http_infer_grpc_unauthenticated(r, message);
    }

    if (ngx_http_infer_add_header(r, "WWW-Authenticate", "Bearer")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = 0;
    if (clcf->handler == ngx_http_infer_openai_handler) {
        infer_oai_set_error(&oerr, NGX_HTTP_UNAUTHORIZED,
                            NGX_HTTP_INFER_INVALID, NULL, "invalid_api_key",
                            "%s", message);
        body = infer_oai_error_body(&oerr, &len);

    } else {
        infer_ks_set_error(&kerr, NGX_HTTP_UNAUTHORIZED, "%s", message);
        body = infer_ks_error_body(&kerr, &len);
    }

    return ngx_http_infer_send_error(r, NGX_HTTP_UNAUTHORIZED, message,
                                     "application/json", body, len);
}

static ngx_int_t
ngx_http_infer_keys_handler(ngx_http_request_t *r)
{
    u_char                      md[NGX_HTTP_INFER_DIGEST], *key, d;
    ngx_int_t                   rc;
    ngx_str_t                   token;
    ngx_uint_t                  i, k, match;
    const char                 *message;
    ngx_table_elt_t            *h;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_infer_loc_conf_t  *ilcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    if (ilcf->api_keys == NULL) {
        return NGX_DECLINED;
    }

    match = 0;
    if (ngx_http_infer_bearer(r, &token) == NGX_OK) {
        ngx_http_infer_sha256(token.data, token.len, md);

        /* every key, every byte: the time does not say which matched */
        key = ilcf->api_keys->elts;
        for (k = 0; k < ilcf->api_keys->nelts; k++) {
            d = 0;
            for (i = 0; i < NGX_HTTP_INFER_DIGEST; i++) {
                d |= key[i] ^ md[i];
            }
            match |= (d == 0);
            key += NGX_HTTP_INFER_DIGEST;
        }
        message = "Incorrect API key provided";

    } else {
        message = "Missing bearer authentication in header "
                  "(Authorization: Bearer KEY)";
    }

    if (match) {
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    if (clcf->satisfy == NGX_HTTP_SATISFY_ANY) {
        /* another access module may still let the request in; if none
         * does, nginx answers the 401 itself (its own page, which
         * error_page can replace) */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "infer_api_keys: %s", message);
        /* as auth_basic sets it: nginx drops it if access is granted */
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer");
        r->headers_out.www_authenticate = h;
        return NGX_HTTP_UNAUTHORIZED;
    }

    rc = ngx_http_infer_unauthorized(r, message);
    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
}
