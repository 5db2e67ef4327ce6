# Two workers under a master: each loads its own engine in init_process
# and serves alone.
use Test::Nginx::Socket 'no_plan';

master_on();
workers(2);
# TEST 4 looks for a start-up line after each of its requests: each sees
# the whole log, not only what that request logged.
check_accum_error_log();

run_tests();

__DATA__

=== TEST 1: the engines load in the workers
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
    location = /healthz { infer_health; }
--- request
GET /v1/models
--- response_body_like chomp
"id":"tiny"
--- error_log eval
qr/\[notice\] \d+#\d+: infer_model "tiny" loaded from/



=== TEST 2: every request is served, whichever worker takes it
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
    location = /healthz { infer_health; }
--- request eval
[map { qq{POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0}} } 1 .. 6]
--- response_body_like eval
[map { qr/"text":"Once upon a time"/ } 1 .. 6]



=== TEST 3: health of both workers
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
    location = /healthz { infer_health; }
--- request eval
[map { "GET /healthz" } 1 .. 4]
--- response_body eval
[map { qq{{"status":"ok"}\n} } 1 .. 4]



=== TEST 4: two workers, each with a tensor-parallel engine of 2 CPU ranks
(the text is the first 40 tokens of expected_greedy_200.txt)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 tp=2;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
[map { qq{POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":40,"temperature":0}} } 1 .. 6]
--- response_body_like eval
[map { qr/"text":"Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\. One day, she saw a big, r","logprobs":null,"finish_reason":"length"/ } 1 .. 6]
--- error_log eval
qr/infer_model "tiny" loaded from "[^"]+" \(cpu, tp=2\)/
