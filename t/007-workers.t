# Two workers under a master: each loads its own engine in init_process
# and serves alone.
use Test::Nginx::Socket 'no_plan';
use Cwd ();

# A tiny Llama generated with Llama-3's tokenizer takes its 128256-token
# vocabulary (not the preset's 32000).
our $l3 = Cwd::cwd() . '/t/servroot-models/tiny-llama-llama3';
{
    my $gen = $ENV{TEST_NGINX_GEN_MODEL} || 'build/infer-gen-model';
    my $tok = ($ENV{INFER_SHARED} || '../shared') . '/tokenizers/llama3';
    system("mkdir -p t/servroot-models && rm -rf '$l3'"
           . " && $gen '$l3' --preset tiny-llama --seed 1"
           . " --dtype bf16 --tokenizer '$tok' > /dev/null") == 0
        or die "cannot generate $l3 with $gen";
    $ENV{TEST_NGINX_LLAMA3_MODEL_DIR} = $l3;
}

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
qr/infer_model "tiny" loaded from "[^"]+": cpu f32, weights [\d.]+ [KMG]iB, \d+ threads? x tp=2, KV cache .*, OpenBLAS [\d.]+, \w+ kernels/



=== TEST 5: both workers serve the model generated with Llama-3's tokenizer
("Once upon a time" is 4 tokens in Llama-3's BPE, which adds no bos; 5
with Llama-2's); a bf16 checkpoint, so held as bf16 by default
--- http_config
    infer_model l3 $TEST_NGINX_LLAMA3_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai l3; }
--- request eval
[map { qq{POST /v1/completions
{"model":"l3","prompt":"Once upon a time","max_tokens":4,"temperature":0}} } 1 .. 4]
--- response_body_like eval
[map { qr/"object":"text_completion".*"usage":\{"prompt_tokens":4,/ } 1 .. 4]
--- timeout: 30
--- error_log eval
qr/infer_model "l3" loaded from "[^"]+": cpu bf16, weights [\d.]+ [KMG]iB, 1 thread x tp=1, KV cache/
