/*
 * gRPC's own bytes: message framing, grpc-timeout, grpc-message and status
 * codes, from the specification ("gRPC over HTTP2", doc/PROTOCOL-HTTP2.md,
 * and doc/statuscodes.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"

#define GRPC_SERVICE  "/inference.GRPCInferenceService/"

infer_grpc_status_t
infer_grpc_status_of_http(int status)
{
    switch (status) {
    case 200: return INFER_GRPC_OK;
    case 400: return INFER_GRPC_INVALID_ARGUMENT;
    case 401: return INFER_GRPC_UNAUTHENTICATED;
    case 403: return INFER_GRPC_PERMISSION_DENIED;
    case 404: return INFER_GRPC_NOT_FOUND;
    case 413:
    case 429: return INFER_GRPC_RESOURCE_EXHAUSTED;
    case 503: return INFER_GRPC_UNAVAILABLE;
    case 504: return INFER_GRPC_DEADLINE_EXCEEDED;
    case 405:
    case 415:
    case 501: return INFER_GRPC_UNIMPLEMENTED;
    default:  return INFER_GRPC_INTERNAL;
    }
}

static const struct {
    const char           *name;
    infer_grpc_method_t   method;
} grpc_methods[] = {
    { "ServerLive", INFER_GRPC_SERVER_LIVE },
    { "ServerReady", INFER_GRPC_SERVER_READY },
    { "ModelReady", INFER_GRPC_MODEL_READY },
    { "ServerMetadata", INFER_GRPC_SERVER_METADATA },
    { "ModelMetadata", INFER_GRPC_MODEL_METADATA },
    { "ModelInfer", INFER_GRPC_MODEL_INFER },
    { "ModelStreamInfer", INFER_GRPC_MODEL_STREAM_INFER }
};

infer_grpc_method_t
infer_grpc_method(const char *path, size_t len)
{
    size_t  i, n;

    n = sizeof(GRPC_SERVICE) - 1;
    if (len <= n || memcmp(path, GRPC_SERVICE, n) != 0
        || memchr(path + n, '/', len - n) != NULL)
    {
        return INFER_GRPC_NONE;
    }
    for (i = 0; i < sizeof(grpc_methods) / sizeof(grpc_methods[0]); i++) {
        if (strlen(grpc_methods[i].name) == len - n
            && memcmp(grpc_methods[i].name, path + n, len - n) == 0)
        {
            return grpc_methods[i].method;
        }
    }
    return INFER_GRPC_OTHER;
}

int
infer_grpc_timeout(const char *value, size_t len, uint64_t *ms)
{
    size_t    i;
    uint64_t  v, div, mul;

    /* TimeoutValue: at most 8 ASCII digits, then a TimeoutUnit */
    if (len < 2 || len > 9) {
        return -1;
    }
    v = 0;
    for (i = 0; i + 1 < len; i++) {
        if (value[i] < '0' || value[i] > '9') {
            return -1;
        }
        v = v * 10 + (uint64_t) (value[i] - '0');
    }

    div = 1;
    mul = 1;
    switch (value[len - 1]) {
    case 'H': mul = 3600000; break;
    case 'M': mul = 60000; break;
    case 'S': mul = 1000; break;
    case 'm': break;
    case 'u': div = 1000; break;
    case 'n': div = 1000000; break;
    default:  return -1;
    }
    /* 99999999 hours fit 64 bits easily; a partial millisecond counts
     * as one, so that a deadline of 1u is not none */
    v = (v * mul + div - 1) / div;
    *ms = v > INT32_MAX ? INT32_MAX : v;
    return 0;
}

char *
infer_grpc_percent(const char *s, size_t len)
{
    char                 *out, *p;
    size_t                i;
    const unsigned char  *u = (const unsigned char *) s;

    out = malloc(len * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    p = out;
    for (i = 0; i < len; i++) {
        if (u[i] >= 0x20 && u[i] <= 0x7e && u[i] != '%') {
            *p++ = (char) u[i];
        } else {
            p += sprintf(p, "%%%02X", u[i]);
        }
    }
    *p = '\0';
    return out;
}

int
infer_grpc_feed(infer_grpc_reader_t *rd, const void *data, size_t len)
{
    size_t          cap;
    unsigned char  *p;

    if (len == 0) {
        return 0;
    }
    if (rd->pos > 0) {
        /* what was handed out goes: the buffer holds one message at most
         * plus what arrived after it */
        memmove(rd->buf, rd->buf + rd->pos, rd->len - rd->pos);
        rd->len -= rd->pos;
        rd->pos = 0;
    }
    if (rd->cap - rd->len < len) {
        cap = rd->cap ? rd->cap : 4096;
        while (cap - rd->len < len) {
            cap *= 2;
        }
        p = realloc(rd->buf, cap);
        if (p == NULL) {
            return -1;
        }
        rd->buf = p;
        rd->cap = cap;
    }
    memcpy(rd->buf + rd->len, data, len);
    rd->len += len;
    return 0;
}

int
infer_grpc_next(infer_grpc_reader_t *rd, size_t max,
    const unsigned char **msg, size_t *len, char *err, size_t errlen)
{
    size_t                n;
    const unsigned char  *p;

    if (rd->len - rd->pos < INFER_GRPC_PREFIX) {
        return 0;
    }
    p = rd->buf + rd->pos;
    n = (size_t) p[1] << 24 | (size_t) p[2] << 16 | (size_t) p[3] << 8
        | (size_t) p[4];
    if (p[0] != 0) {
        snprintf(err, errlen, "a message is %s, and this server takes "
                 "none compressed (grpc-encoding identity)",
                 p[0] == 1 ? "compressed" : "flagged with an unknown bit");
        return INFER_GRPC_ECOMPRESSED;
    }
    if (n > max) {
        snprintf(err, errlen, "a message of %zu bytes is longer than the "
                 "%zu client_max_body_size allows", n, max);
        return INFER_GRPC_ETOO_LONG;
    }
    if (rd->len - rd->pos - INFER_GRPC_PREFIX < n) {
        return 0;
    }
    *msg = p + INFER_GRPC_PREFIX;
    *len = n;
    rd->pos += INFER_GRPC_PREFIX + n;
    return 1;
}

size_t
infer_grpc_pending(const infer_grpc_reader_t *rd)
{
    return rd->len - rd->pos;
}

void
infer_grpc_reader_free(infer_grpc_reader_t *rd)
{
    free(rd->buf);
    memset(rd, 0, sizeof(*rd));
}

unsigned char *
infer_grpc_pack(const ProtobufCMessage *msg, size_t *len)
{
    size_t          n;
    unsigned char  *p;

    n = protobuf_c_message_get_packed_size(msg);
    if (n > UINT32_MAX) {
        return NULL;
    }
    p = malloc(INFER_GRPC_PREFIX + n + 1);
    if (p == NULL) {
        return NULL;
    }
    p[0] = 0;
    p[1] = (unsigned char) (n >> 24);
    p[2] = (unsigned char) (n >> 16);
    p[3] = (unsigned char) (n >> 8);
    p[4] = (unsigned char) n;
    protobuf_c_message_pack(msg, p + INFER_GRPC_PREFIX);
    *len = INFER_GRPC_PREFIX + n;
    return p;
}
