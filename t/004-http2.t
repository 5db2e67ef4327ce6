# The same API over HTTP/2 (h2c, prior knowledge).
use Test::Nginx::Socket 'no_plan';

our $greedy = do {
    my $f = "$ENV{TEST_NGINX_MODEL_DIR}/expected_greedy_200.txt";
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    <$fh>;
};
our ($first_sentence) = $greedy =~ /^([^.]*)\./ or die;

run_tests();

__DATA__

=== TEST 1: completion over h2c
--- http2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":100,"temperature":0,"stop":"."}
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/"text":"\Q$::first_sentence\E","logprobs":null,"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":1,/



=== TEST 2: streaming over h2c
--- http2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":2,"temperature":0,"stream":true}
--- response_headers
Content-Type: text/event-stream
--- response_body_like chomp
^data: \{[^\n]*"text":"Once"[^\n]*\}\n\ndata: \{[^\n]*"text":" upon"[^\n]*\}\n\ndata: \{[^\n]*"finish_reason":"length"[^\n]*\}\n\ndata: \[DONE\]\n\n\z



=== TEST 3: chat stream over h2c
--- http2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,
 "stream":true}
--- response_body_like chomp
^data: \{[^\n]*"delta":\{"role":"assistant","content":""\}.*data: \[DONE\]\n\n\z



=== TEST 4: models over h2c
--- http2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
GET /v1/models
--- response_body_like chomp
"data":\[\{"id":"tiny"



=== TEST 5: errors over h2c
--- http2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"nope","prompt":"x"}
--- error_code: 404
--- response_body_like chomp
"code":"model_not_found"
