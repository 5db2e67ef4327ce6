# A client that goes away cancels its generation.  (An HTTP/1.1 stream
# closed by its client is in 010-lifecycle.t: Test::Nginx's timeout counts
# idle time, which a stream never has.)  The model here is a
# random-weight tiny Llama with Llama-2's 32000-token vocabulary generated
# by build/infer-gen-model: slow enough (0.6 s for 2000 tokens on one
# core of an AVX-512 Zen 5, about 1 s on a Zen 3) that a client leaving
# after 0.3 s leaves mid-generation.
use Test::Nginx::Socket 'no_plan';
use Cwd ();

our $slow = Cwd::cwd() . '/t/servroot-models/tiny-llama';
{
    my $gen = $ENV{TEST_NGINX_GEN_MODEL} || 'build/infer-gen-model';
    system("mkdir -p t/servroot-models && rm -rf '$slow'"
           . " && $gen '$slow' --preset tiny-llama --seed 1"
           . " > /dev/null") == 0
        or die "cannot generate $slow with $gen";
    $ENV{TEST_NGINX_SLOW_MODEL_DIR} = $slow;
}

run_tests();

__DATA__

=== TEST 1: HTTP/1.1 client closes while waiting for a whole response
--- http_config
    infer_model slow $TEST_NGINX_SLOW_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai slow; }
    location = /healthz { infer_health; }
--- request
POST /v1/completions
{"model":"slow","prompt":"Hello","max_tokens":2000,"temperature":0}
--- timeout: 0.3
--- abort
--- ignore_response
--- wait: 0.3
--- error_log
client prematurely closed connection
infer: client gone, cancelling request
released after its client left
--- no_error_log
[error]



=== TEST 2: the worker serves on after cancellations
--- http_config
    infer_model slow $TEST_NGINX_SLOW_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai slow; }
    location = /healthz { infer_health; }
--- request
POST /v1/completions
{"model":"slow","prompt":"Hello","max_tokens":3,"temperature":0}
--- response_body_like chomp
"usage":\{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5\}



=== TEST 3: HTTP/2 client goes away during a stream
--- http2
--- http_config
    infer_model slow $TEST_NGINX_SLOW_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai slow; }
--- request
POST /v1/chat/completions
{"model":"slow","messages":[{"role":"user","content":"Hello"}],
 "max_tokens":2000,"temperature":0,"stream":true}
--- timeout: 0.3
--- abort
--- ignore_response
--- wait: 0.3
--- error_log
infer: client gone, cancelling request
released after its client left



=== TEST 4: health after all that
--- http2
--- http_config
    infer_model slow $TEST_NGINX_SLOW_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai slow; }
--- request
GET /v1/models
--- response_body_like chomp
"id":"slow"
