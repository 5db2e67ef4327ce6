# Directives: valid configurations start and serve; every bad directive or
# value stops nginx with a message naming the directive and the value.
use Test::Nginx::Socket 'no_plan';

run_tests();

__DATA__

=== TEST 1: a minimal configuration serves /v1/models and the health check
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 max_batch_tokens=256
                max_seqs=8 kv_cache=4m max_queue=16 timeout=30s tp=1
                chat_template=auto;
--- config
    location /v1/ { infer_openai tiny; }
    location = /healthz { infer_health; }
--- request
GET /v1/models
--- response_headers
Content-Type: application/json
--- response_body_like chomp
^\{"object":"list","data":\[\{"id":"tiny","object":"model","created":\d+,"owned_by":"nginx"\}\]\}$
--- error_log
infer_model "tiny" loaded from
chat template plain



=== TEST 2: health check of a loaded engine
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 max_batch_tokens=256
                max_seqs=8 kv_cache=4m max_queue=16 timeout=30s tp=1
                chat_template=auto;
--- config
    location /v1/ { infer_openai tiny; }
    location = /healthz { infer_health; }
--- request
GET /healthz
--- response_body
{"status":"ok"}



=== TEST 3: two models behind one location
--- http_config
    infer_model a $TEST_NGINX_MODEL_DIR;
    infer_model b $TEST_NGINX_MODEL_DIR chat_template=chatml;
--- config
    location /v1/ { infer_openai a b; }
--- request
GET /v1/models
--- response_body_like chomp
"data":\[\{"id":"a",.*\},\{"id":"b",.*\}\]
--- error_log
infer_model "b": chat template chatml



=== TEST 4: unknown parameter
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR batch=4;
--- config
    location /v1/ { infer_openai tiny; }
--- must_die
--- error_log
unknown parameter "batch=4" in "infer_model"



=== TEST 5: bad integer
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=two;
--- config
--- must_die
--- error_log
invalid value "two" of "threads" in "infer_model", expected a positive integer



=== TEST 6: zero is not a positive integer
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR max_seqs=0;
--- config
--- must_die
--- error_log
invalid value "0" of "max_seqs" in "infer_model"



=== TEST 7: bad size
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR kv_cache=lots;
--- config
--- must_die
--- error_log
invalid value "lots" of "kv_cache" in "infer_model", expected a size



=== TEST 8: bad time
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR timeout=soon;
--- config
--- must_die
--- error_log
invalid value "soon" of "timeout" in "infer_model", expected a time



=== TEST 9: bad backend
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR backend=tpu;
--- config
--- must_die
--- error_log
invalid value "tpu" of "backend" in "infer_model", expected cpu or cuda



=== TEST 10: bad chat template name
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR chat_template=vicuna;
--- config
--- must_die
--- error_log
invalid value "vicuna" of "chat_template" in "infer_model"



=== TEST 11: bad device list
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR devices=0,x;
--- config
--- must_die
--- error_log
invalid value "0,x" of "devices" in "infer_model"



=== TEST 12: parameter without a value
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR cpu;
--- config
--- must_die
--- error_log
invalid parameter "cpu" in "infer_model", expected key=value



=== TEST 13: missing model directory gives the engine's message
--- http_config
    infer_model tiny /nonexistent/model;
--- config
--- must_die
--- error_log eval
qr{infer_model "tiny": .*/nonexistent/model/config\.json}



=== TEST 14: duplicate model name
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR;
    infer_model tiny $TEST_NGINX_MODEL_DIR;
--- config
--- must_die
--- error_log
duplicate infer_model "tiny"



=== TEST 15: infer_openai names an unknown model
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR;
--- config
    location /v1/ { infer_openai small; }
--- must_die
--- error_log
unknown model "small" in "infer_openai"



=== TEST 16: infer_model is an http-level directive
--- config
    infer_model tiny $TEST_NGINX_MODEL_DIR;
--- must_die
--- error_log
"infer_model" directive is not allowed here



=== TEST 17: infer_model needs a name and a directory
--- http_config
    infer_model tiny;
--- config
--- must_die
--- error_log
invalid number of arguments in "infer_model" directive



=== TEST 18: infer_health takes no arguments
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR;
--- config
    location = /healthz { infer_health tiny; }
--- must_die
--- error_log
invalid number of arguments in "infer_health" directive
