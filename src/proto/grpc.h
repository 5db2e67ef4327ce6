/*
 * gRPC over HTTP/2, the parts that are bytes: the 5-byte message framing
 * (a compressed flag, a 4-byte big-endian length, the message), the
 * grpc-timeout header, grpc-message's percent-encoding, status codes and
 * the method of a path.  Pure functions, no nginx types, so they are
 * unit-tested and fuzzed alone; the messages themselves are the KServe
 * codec's (kserve.h).
 */
#ifndef INFER_GRPC_H
#define INFER_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define INFER_GRPC_PREFIX  5

/* The status codes of the gRPC specification (doc/statuscodes.md). */
typedef enum {
    INFER_GRPC_OK = 0,
    INFER_GRPC_CANCELLED = 1,
    INFER_GRPC_UNKNOWN = 2,
    INFER_GRPC_INVALID_ARGUMENT = 3,
    INFER_GRPC_DEADLINE_EXCEEDED = 4,
    INFER_GRPC_NOT_FOUND = 5,
    INFER_GRPC_PERMISSION_DENIED = 7,
    INFER_GRPC_RESOURCE_EXHAUSTED = 8,
    INFER_GRPC_UNIMPLEMENTED = 12,
    INFER_GRPC_INTERNAL = 13,
    INFER_GRPC_UNAVAILABLE = 14,
    INFER_GRPC_UNAUTHENTICATED = 16
} infer_grpc_status_t;

/* The code of an HTTP status the codecs gave an error (400 is
 * INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 404 NOT_FOUND, 413 and 429
 * RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 405/415/501
 * UNIMPLEMENTED, the rest
 * INTERNAL). */
infer_grpc_status_t infer_grpc_status_of_http(int status);

/* The methods of inference.GRPCInferenceService this server has. */
typedef enum {
    INFER_GRPC_NONE = 0,               /* not the service's path */
    INFER_GRPC_OTHER,                  /* the service's, not served */
    INFER_GRPC_SERVER_LIVE,
    INFER_GRPC_SERVER_READY,
    INFER_GRPC_MODEL_READY,
    INFER_GRPC_SERVER_METADATA,
    INFER_GRPC_MODEL_METADATA,
    INFER_GRPC_MODEL_INFER,
    INFER_GRPC_MODEL_STREAM_INFER
} infer_grpc_method_t;

/* The method of a path "/inference.GRPCInferenceService/Name" (the path
 * must be exactly that: gRPC has no prefixes). */
infer_grpc_method_t infer_grpc_method(const char *path, size_t len);

/*
 * grpc-timeout: 1 to 8 digits and a unit (H, M, S, m, u, n), as
 * milliseconds rounded up, at most INT32_MAX.  0, or -1 when malformed.
 */
int infer_grpc_timeout(const char *value, size_t len, uint64_t *ms);

/* grpc-message: percent-encoded as the specification asks (bytes outside
 * 0x20-0x7e and '%' as %XX).  malloc'd, NUL-terminated; NULL when out of
 * memory. */
char *infer_grpc_percent(const char *s, size_t len);

/*
 * Request messages out of a body that comes in pieces.  Feed appends
 * bytes; next gives the following whole message (pointing into the
 * reader, valid until the next feed or next), 0 when more bytes are
 * needed, or an error with its message: a compressed one (no
 * grpc-encoding is accepted) or one longer than max.
 */
#define INFER_GRPC_ECOMPRESSED  -1
#define INFER_GRPC_ETOO_LONG    -2

typedef struct {
    unsigned char  *buf;               /* malloc'd */
    size_t          len, cap;
    size_t          pos;               /* what next has handed out */
} infer_grpc_reader_t;

int infer_grpc_feed(infer_grpc_reader_t *rd, const void *data, size_t len);
int infer_grpc_next(infer_grpc_reader_t *rd, size_t max,
    const unsigned char **msg, size_t *len, char *err, size_t errlen);
/* Bytes fed and not yet handed out as a message. */
size_t infer_grpc_pending(const infer_grpc_reader_t *rd);
void infer_grpc_reader_free(infer_grpc_reader_t *rd);

/* A message packed after its 5-byte prefix (uncompressed); malloc'd, NULL
 * when out of memory. */
unsigned char *infer_grpc_pack(const ProtobufCMessage *msg, size_t *len);

#endif
