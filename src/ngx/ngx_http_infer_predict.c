/*
 * The predict front end (being written; see issue 11).
 */
#include "ngx_http_infer.h"

ngx_int_t
ngx_http_infer_predict_handler(ngx_http_request_t *r)
{
    return NGX_HTTP_NOT_IMPLEMENTED;
}
