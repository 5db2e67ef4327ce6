/*
 * KServe v2 (Open Inference Protocol) REST codec with Triton's extensions:
 * inference requests whose tensors come as JSON or in the binary tensor
 * data extension (a JSON header of Inference-Header-Content-Length bytes,
 * then each binary input's bytes in order), the generate extension's
 * {"text_input": ..., "parameters": {...}} bodies, and every response body
 * and SSE event the front end sends.  Pure functions over jansson, no
 * nginx types, so they are unit-tested and fuzzed alone.
 *
 * Two layers: tensors (names, datatypes, shapes, data in the binary
 * layout), which any transport of the protocol yields, then the model's
 * meaning of them (token ids to score, texts to continue, sampling
 * settings), which the front end turns into engine requests.
 */
#ifndef INFER_KSERVE_H
#define INFER_KSERVE_H

#include <stddef.h>
#include <stdint.h>

/* Limits of one request, each refused with a 400 that names it. */
#define INFER_KS_MAX_DIMS      8       /* a tensor's rank */
#define INFER_KS_MAX_INPUTS    32      /* input tensors */
#define INFER_KS_MAX_OUTPUTS   8       /* outputs asked for */
#define INFER_KS_MAX_BATCH     64      /* rows: each is an engine request */
#define INFER_KS_MAX_STOP      16      /* stop words of a row (the
                                          engine's own limit) */
#define INFER_KS_MAX_STOP_LEN  1024
#define INFER_KS_MAX_NAME      256

typedef enum {
    INFER_KS_BOOL = 0,
    INFER_KS_UINT8,
    INFER_KS_UINT16,
    INFER_KS_UINT32,
    INFER_KS_UINT64,
    INFER_KS_INT8,
    INFER_KS_INT16,
    INFER_KS_INT32,
    INFER_KS_INT64,
    INFER_KS_FP16,
    INFER_KS_FP32,
    INFER_KS_FP64,
    INFER_KS_BF16,
    INFER_KS_BYTES,
    INFER_KS_NO_DTYPE
} infer_ks_dtype_t;

/* "INT32", ...; NULL for INFER_KS_NO_DTYPE. */
const char *infer_ks_dtype_name(infer_ks_dtype_t t);
/* The datatype of a name, or INFER_KS_NO_DTYPE. */
infer_ks_dtype_t infer_ks_dtype(const char *name);
/* Bytes of one element; 0 for BYTES, whose elements vary. */
size_t infer_ks_dtype_size(infer_ks_dtype_t t);

typedef struct {
    int   status;                  /* 400, 404, 413, 500, ... */
    char  message[512];
} infer_ks_error_t;

void infer_ks_set_error(infer_ks_error_t *err, int status, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

/*
 * One input tensor.  Data is in the binary extension's layout whichever
 * way it came: little-endian elements, row major; BOOL one byte each;
 * BYTES each a 4-byte little-endian length and that many bytes.
 */
typedef struct {
    char                 *name;        /* malloc'd */
    infer_ks_dtype_t      dtype;
    int                   n_dims;
    int64_t               dims[INFER_KS_MAX_DIMS];
    size_t                n;           /* elements: the product of dims */
    const unsigned char  *data;        /* into the body, or own */
    size_t                size;
    unsigned char        *own;         /* data made from JSON, malloc'd */
    size_t               *offs;        /* BYTES: element i's length prefix
                                          is at data + offs[i] */
    unsigned              from_param:1; /* made from a parameter: a tensor
                                          of the same name wins */
} infer_ks_tensor_t;

/* Element i of a BYTES tensor. */
const unsigned char *infer_ks_bytes_at(const infer_ks_tensor_t *t,
    size_t i, size_t *len);

/* What a request asked for beside its inputs. */
typedef struct {
    char               *name;          /* malloc'd */
    int                 binary;        /* 1, 0, or -1: not said */
} infer_ks_want_t;

typedef struct {
    char               *id;            /* the request's "id", or NULL */
    infer_ks_tensor_t   inputs[INFER_KS_MAX_INPUTS];
    int                 n_inputs;
    infer_ks_want_t     outputs[INFER_KS_MAX_OUTPUTS];
    int                 n_outputs;     /* 0: "outputs" not given */
    int                 binary_output; /* parameter binary_data_output */
    int                 logits_last;   /* parameter "logits": "last" */
    /* protobuf: the message the tensors point into, its model */
    void               *pb;
    const char         *model;         /* "" when not named */
    const char         *version;
} infer_ks_tensors_t;

void infer_ks_tensors_free(infer_ks_tensors_t *set);

/*
 * Inference-Header-Content-Length: decimal digits, at most body_len.
 * Returns 0 and the length, or -1 with a 400.
 */
int infer_ks_header_length(const char *value, size_t len, size_t body_len,
    size_t *out, infer_ks_error_t *err);

/*
 * POST .../infer: body of len bytes whose first header_len are the JSON
 * request (header_len == len without binary data).  Tensors in the binary
 * part point into body, which must outlive the set.  Returns 0, or -1 with
 * err (400; 500 when out of memory); the set is then empty.
 */
int infer_ks_parse_infer(const char *body, size_t len, size_t header_len,
    infer_ks_tensors_t *set, infer_ks_error_t *err);

/*
 * POST .../generate[_stream]: {"text_input": ..., "parameters": {...}}
 * and any other member named as one of the model's inputs, each made a
 * tensor of that input's datatype (a scalar of shape [1], an array of
 * shape [n]).
 */
int infer_ks_parse_generate(const char *body, size_t len,
    infer_ks_tensors_t *set, infer_ks_error_t *err);

/* Sampling settings of one row, in the engine's terms. */
typedef struct {
    int                 max_tokens;    /* -1: not given */
    int                 min_tokens;
    float               temperature;   /* default 1 */
    float               top_p;         /* (0, 1], 1 = off */
    int                 top_k;         /* 0 = off */
    float               repetition_penalty;
    float               presence_penalty;
    float               frequency_penalty;
    uint64_t            seed;
    int                 has_seed;
    int32_t             end_id;        /* an extra stop id, or -1 */
    int                 stream;
    int                 exclude_input; /* text_output without the prompt
                                          (default) */
    char               *stop[INFER_KS_MAX_STOP];  /* malloc'd */
    int                 n_stop;
} infer_ks_settings_t;

typedef enum {
    INFER_KS_SCORE = 1,                /* input_ids -> logits */
    INFER_KS_TEXT                      /* text_input -> text_output */
} infer_ks_kind_t;

/* The outputs a model gives. */
typedef enum {
    INFER_KS_OUT_LOGITS = 0,
    INFER_KS_OUT_TEXT
} infer_ks_out_t;

typedef struct {
    infer_ks_kind_t       kind;
    char                 *id;          /* moved from the set, or NULL */
    int                   n_rows;
    /* INFER_KS_SCORE */
    int32_t              *ids;         /* [n_rows][seq] */
    int                   seq;
    int                   logits_last; /* [batch, vocab], not
                                          [batch, seq, vocab] */
    /* INFER_KS_TEXT */
    char                **texts;       /* [n_rows], malloc'd, with a NUL
                                          after the bytes */
    size_t               *text_lens;
    int                   text_rank;   /* 1 or 2: text_output's too */
    infer_ks_settings_t  *settings;    /* [n_rows] */
    /* the outputs to send, in order */
    infer_ks_out_t        outputs[INFER_KS_MAX_OUTPUTS];
    int                   binary[INFER_KS_MAX_OUTPUTS];
    int                   n_outputs;
} infer_ks_request_t;

/*
 * What the model makes of a set: token ids checked against the
 * vocabulary, settings checked and given to each row (a tensor of one
 * element to all rows, of batch elements one each).  generate: the set
 * came from a generate body (text only).  Returns 0 or -1 with a 400.
 */
int infer_ks_interpret(infer_ks_tensors_t *set, int vocab, int generate,
    infer_ks_request_t *req, infer_ks_error_t *err);
void infer_ks_request_free(infer_ks_request_t *req);

/* ---- responses -------------------------------------------------------- */

/* A piece of an output's data: numeric outputs are the bytes of all
 * pieces in order; a BYTES output has one piece an element. */
typedef struct {
    const void  *p;
    size_t       len;
} infer_ks_piece_t;

typedef struct {
    const char              *name;
    infer_ks_dtype_t         dtype;    /* FP32 or BYTES */
    int                      n_dims;
    int64_t                  dims[INFER_KS_MAX_DIMS];
    int                      binary;
    const infer_ks_piece_t  *pieces;
    int                      n_pieces;
} infer_ks_output_t;

/*
 * The inference response.  With any binary output, the body is the JSON
 * header (*header_len bytes: send it as Inference-Header-Content-Length)
 * and then the binary outputs' data in order; otherwise *header_len is 0
 * and the body is JSON.  malloc'd; NULL when out of memory.
 */
char *infer_ks_infer_body(const char *model, const char *version,
    const char *id, const infer_ks_output_t *outs, int n, size_t *len,
    size_t *header_len);

/* {"model_name","model_version","text_output"} of /generate, with
 * "finish_reason" when finish is not NULL. */
char *infer_ks_generate_body(const char *model, const char *version,
    const char *text, size_t text_len, const char *finish, size_t *len);
/* The same as one "data: ...\n\n" event of /generate_stream. */
char *infer_ks_generate_event(const char *model, const char *version,
    const char *text, size_t text_len, const char *finish, size_t *len);

/* {"error": message}, and as an event. */
char *infer_ks_error_body(const infer_ks_error_t *err, size_t *len);
char *infer_ks_error_event(const infer_ks_error_t *err, size_t *len);

/* GET /v2 and GET /v2/models/NAME. */
char *infer_ks_server_metadata(const char *version, size_t *len);
char *infer_ks_model_metadata(const char *model, const char *version,
    int vocab, size_t *len);

/* The engine's finish reason as "stop" / "length", NULL for the rest. */
const char *infer_ks_finish_reason(int finish);

/* ---- protobuf: the messages of inference.GRPCInferenceService ---------- */

/*
 * A ModelInferRequest: the same tensors as the JSON of /infer gives,
 * from typed contents or raw_input_contents, its parameters read as the
 * JSON ones are.  The set keeps the unpacked message (model, version and
 * raw data point into it).  Returns 0, or -1 with a 400 (500 when out of
 * memory); the set is then empty.
 */
int infer_ks_parse_pb(const unsigned char *msg, size_t len,
    infer_ks_tensors_t *set, infer_ks_error_t *err);

/* The name and version a ModelReadyRequest or ModelMetadataRequest asks
 * about (malloc'd); -1 when the message is malformed or out of memory. */
int infer_ks_pb_model_ref(const unsigned char *msg, size_t len, char **name,
    char **version);

/*
 * Responses, each a framed gRPC message (grpc.h; malloc'd, NULL when out
 * of memory).  An inference response carries its outputs in
 * raw_output_contents; final >= 0 adds Triton's triton_final_response
 * parameter (decoupled streams), and stream wraps it in a
 * ModelStreamInferResponse.
 */
unsigned char *infer_ks_pb_infer_body(const char *model,
    const char *version, const char *id, const infer_ks_output_t *outs,
    int n, int final, int stream, size_t *len);
/* A ModelStreamInferResponse that is the error of one request. */
unsigned char *infer_ks_pb_stream_error(const char *message, size_t *len);
/* ServerLiveResponse (live), ServerReadyResponse, ModelReadyResponse. */
unsigned char *infer_ks_pb_flag(int live, int ready, size_t *len);
unsigned char *infer_ks_pb_server_metadata(const char *version, size_t *len);
unsigned char *infer_ks_pb_model_metadata(const char *model,
    const char *version, int vocab, size_t *len);

/* ---- routes ----------------------------------------------------------- */

typedef enum {
    INFER_KS_ROUTE_NONE = 0,
    INFER_KS_ROUTE_SERVER,             /* GET /v2 */
    INFER_KS_ROUTE_LIVE,               /* GET /v2/health/live */
    INFER_KS_ROUTE_READY,              /* GET /v2/health/ready */
    INFER_KS_ROUTE_MODEL,              /* GET /v2/models/M */
    INFER_KS_ROUTE_MODEL_READY,        /* GET /v2/models/M/ready */
    INFER_KS_ROUTE_INFER,              /* POST /v2/models/M/infer */
    INFER_KS_ROUTE_GENERATE,           /* POST .../generate */
    INFER_KS_ROUTE_GENERATE_STREAM     /* POST .../generate_stream */
} infer_ks_route_kind_t;

typedef struct {
    infer_ks_route_kind_t  kind;
    const char            *model;      /* into the path, not terminated */
    size_t                 model_len;
    const char            *version;    /* NULL: none in the path */
    size_t                 version_len;
} infer_ks_route_t;

/* Routes a decoded path: the part from its first "/v2" segment on, so
 * that a location may sit under any prefix. */
void infer_ks_route(const char *path, size_t len, infer_ks_route_t *route);

#endif
