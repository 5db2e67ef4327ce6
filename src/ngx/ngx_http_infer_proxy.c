/*
 * infer_proxy_stream_errors on: where nginx proxies an instance's
 * server-sent events (a fleet's front, conf/fleet/front.conf), a stream
 * its upstream cuts ends with an OpenAI error event and a clean end
 * instead of a connection closed mid-stream, so that a client's SDK
 * raises an error it can read rather than a transport one.
 *
 * How the cut is seen: once the response header has gone out, nginx's
 * upstream module ends a failed response (the instance reset or closed
 * the connection, or proxy_read_timeout passed) by closing the upstream
 * connection, clearing keepalive and sending a flush alone, where a
 * response that ended well gets a last buffer instead
 * (ngx_http_upstream_finalize_request).  This body filter turns that
 * flush into the error event and the response's last buffer.  A chunked
 * response so ended is complete, and its client may send its next request
 * on the connection, as the response's header allowed: keepalive is
 * given back (were the connection closed after it, that next request
 * would meet a closed connection).
 */
#include "ngx_http_infer.h"
#include "openai.h"

static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;

static const char  ngx_http_infer_event_stream[] = "text/event-stream";

/* The upstream's own ending of a response it could not complete. */
static ngx_uint_t
ngx_http_infer_proxy_cut(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_infer_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);

    return ilcf->proxy_stream_errors
           && r == r->main
           && r->upstream != NULL
           && r->upstream->header_sent
           && r->upstream->peer.connection == NULL
           && !r->keepalive
           && r->headers_out.status == NGX_HTTP_OK
           && r->headers_out.content_type.len
              >= sizeof(ngx_http_infer_event_stream) - 1
           && ngx_strncasecmp(r->headers_out.content_type.data,
                              (u_char *) ngx_http_infer_event_stream,
                              sizeof(ngx_http_infer_event_stream) - 1) == 0
           && in != NULL && in->next == NULL
           && in->buf->flush && !in->buf->last_buf
           && ngx_buf_size(in->buf) == 0;
}

static ngx_int_t
ngx_http_infer_proxy_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    char               *event;
    size_t              len;
    ngx_buf_t          *b;
    ngx_chain_t        *out;
    infer_oai_error_t   err;

    if (!ngx_http_infer_proxy_cut(r, in)) {
        return ngx_http_next_body_filter(r, in);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "infer: the upstream cut a stream; ending it with an "
                  "error event");
    infer_oai_set_error(&err, NGX_HTTP_BAD_GATEWAY, "server_error", NULL,
                        "upstream_failed", "the instance serving this "
                        "stream failed before it ended");
    event = infer_oai_error_chunk(&err, &len);
    if (event == NULL) {
        return ngx_http_next_body_filter(r, in);
    }
    b = ngx_create_temp_buf(r->pool, len);
    out = ngx_alloc_chain_link(r->pool);
    if (b == NULL || out == NULL) {
        free(event);
        return NGX_ERROR;
    }
    b->last = ngx_cpymem(b->pos, event, len);
    free(event);
    b->flush = 1;
    b->last_buf = 1;
    if (r->chunked) {
        r->keepalive = 1;
    }
    out->buf = b;
    out->next = NULL;
    return ngx_http_next_body_filter(r, out);
}

ngx_int_t
ngx_http_infer_proxy_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_infer_proxy_body_filter;
    return NGX_OK;
}
