# Directives: valid configurations start and serve.  Bad ones are in
# 006-config-errors.t (nginx -t; Test::Nginx 0.30 cannot see start-up
# errors of an nginx built with --error-log-path=stderr, as Debian's is).
use Test::Nginx::Socket 'no_plan';
use Cwd ();

# The published chat templates (../shared/chat_templates).
$ENV{TEST_NGINX_TEMPLATES} = ($ENV{INFER_SHARED} || Cwd::cwd() . '/../shared')
                             . '/chat_templates';

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
infer_model "tiny": chat template from the default



=== TEST 2: dtype=bf16 holds stories260K's matrices as bf16 and serves its text
(its greedy continuation is the float32 one for these tokens)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 dtype=bf16;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":16,"temperature":0}
--- response_body_like chomp
"text":"Once upon a time, there was a little girl named Lily\.
--- error_log eval
qr/infer_model "tiny" loaded from "[^"]+": cpu bf16, weights [\d.]+ KiB, 1 thread x tp=1/



=== TEST 3: dtype=int8 quantizes stories260K's matrices at load and serves its text
(per-row int8: this continuation is still the float32 one), with the
dtype and the quarter-size weights in the load line
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 dtype=int8;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":16,"temperature":0}
--- response_body_like chomp
"text":"Once upon a time, there was a little girl named Lily\.
--- error_log eval
qr/infer_model "tiny" loaded from "[^"]+": cpu int8, weights 2[0-9][0-9]\.\d KiB, 1 thread x tp=1/



=== TEST 4: health check of a loaded engine
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



=== TEST 5: two models behind one location
--- http_config
    infer_model a $TEST_NGINX_MODEL_DIR;
    infer_model b $TEST_NGINX_MODEL_DIR
                chat_template=$TEST_NGINX_TEMPLATES/Qwen-Qwen2.5-7B-Instruct.jinja;
--- config
    location /v1/ { infer_openai a b; }
--- request
GET /v1/models
--- response_body_like chomp
"data":\[\{"id":"a",.*\},\{"id":"b",.*\}\]
--- error_log
infer_model "b": chat template from /
