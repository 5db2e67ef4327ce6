# Every bad request gets an OpenAI-shaped JSON error with the right status.
use Test::Nginx::Socket 'no_plan';
use Cwd ();

# The published chat templates (../shared/chat_templates).
$ENV{TEST_NGINX_TEMPLATES} = ($ENV{INFER_SHARED} || Cwd::cwd() . '/../shared')
                             . '/chat_templates';

our $long = '[' . join(',', (5) x 600) . ']';
# Bigger than client_body_buffer_size: nginx spools it to a file.
our $pad = 'x' x 40000;

run_tests();

__DATA__

=== TEST 1: malformed JSON
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like chomp
^\{"error":\{"message":"invalid JSON body: [^"]+","type":"invalid_request_error","param":null,"code":null\}\}$



=== TEST 2: a body that is not an object
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
["tiny"]
--- error_code: 400
--- response_body
{"error":{"message":"the request body must be a JSON object","type":"invalid_request_error","param":null,"code":null}}



=== TEST 3: an empty body
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
--- error_code: 400
--- response_body_like chomp
invalid JSON body



=== TEST 4: wrong type
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","max_tokens":"8"}
--- error_code: 400
--- response_body
{"error":{"message":"'max_tokens' must be an integer","type":"invalid_request_error","param":"max_tokens","code":null}}



=== TEST 5: out of range
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","temperature":2.5}
--- error_code: 400
--- response_body
{"error":{"message":"'temperature' must be between 0 and 2, got 2.5","type":"invalid_request_error","param":"temperature","code":null}}



=== TEST 6: n above infer_max_n (default 8)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"x"}],"n":9}
--- error_code: 400
--- response_body_like chomp
"message":"'n' must be between 1 and 8, got 9","type":"invalid_request_error","param":"n"



=== TEST 7: more than four stop sequences
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","stop":["a","b","c","d","e"]}
--- error_code: 400
--- response_body_like chomp
"message":"'stop' accepts at most 4 sequences","type":"invalid_request_error","param":"stop"



=== TEST 8: unknown model
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"gpt-4","prompt":"x"}
--- error_code: 404
--- response_body
{"error":{"message":"the model 'gpt-4' does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}



=== TEST 9: a model served elsewhere is unknown here
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model other $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
    location /other/v1/ { infer_openai other; }
--- request
POST /v1/completions
{"model":"other","prompt":"x"}
--- error_code: 404
--- response_body_like chomp
"code":"model_not_found"



=== TEST 10: token id outside the vocabulary
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1,512]}
--- error_code: 400
--- response_body
{"error":{"message":"token id 512 is outside the vocabulary of 512","type":"invalid_request_error","param":"prompt","code":null}}



=== TEST 11: prompt longer than the context
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
qq{POST /v1/completions
{"model":"tiny","prompt":$::long}}
--- error_code: 400
--- response_body
{"error":{"message":"this model's maximum context length is 512 tokens, the prompt has 600","type":"invalid_request_error","param":"prompt","code":"context_length_exceeded"}}



=== TEST 12: GET on a completion route
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
GET /v1/chat/completions
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- response_body
{"error":{"message":"method GET is not allowed here, use POST","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}



=== TEST 13: POST on the models route
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/models
{}
--- error_code: 405
--- response_headers
Allow: GET, HEAD



=== TEST 14: unknown route
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/embeddings
{"model":"tiny","input":"x"}
--- error_code: 404
--- response_body
{"error":{"message":"unknown route /v1/embeddings","type":"invalid_request_error","param":null,"code":"unknown_url"}}



=== TEST 15: body over client_max_body_size: 413, in JSON with error_page
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ {
        client_max_body_size 64;
        error_page 413 = @too_large;
        infer_openai tiny;
    }
    location @too_large {
        default_type application/json;
        return 413 '{"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":"request_too_large"}}\n';
    }
--- request
POST /v1/completions
{"model":"tiny","prompt":"a prompt that makes this body longer than sixty-four bytes"}
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":"request_too_large"}}



=== TEST 16: deadline passed before the end: 504
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 timeout=1ms;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":400}
--- error_code: 504
--- response_body
{"error":{"message":"the request did not finish within 1 ms","type":"timeout","param":null,"code":"timeout"}}
--- error_log
passed its deadline



=== TEST 17: deadline while streaming: an error event, then a clean end
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 timeout=1ms;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":400,"stream":true}
--- error_code: 200
--- response_body_like chomp
data: \{"error":\{"message":"the request did not finish within 1 ms","type":"timeout","param":null,"code":"timeout"\}\}\n\ndata: \[DONE\]\n\n\z



=== TEST 18: stream_options without stream
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","stream_options":{"include_usage":true}}
--- error_code: 400
--- response_body_like chomp
"param":"stream_options"



=== TEST 19: a body spooled to a temporary file is read back
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ {
        client_body_buffer_size 1k;
        infer_openai tiny;
    }
--- request eval
qq{POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0,"pad":"$::pad"}}
--- response_body_like chomp
"text":"Once upon a time"
--- error_log
a client request body is buffered to a temporary file



=== TEST 20: a reply whose text is empty is a 200 with "" (stop at once)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"Once upon a time","max_tokens":4,"temperature":0,"stop":","}
--- error_code: 200
--- response_body_like chomp
"choices":\[\{"index":0,"text":"","logprobs":null,"finish_reason":"stop"\}\]



=== TEST 21: a chat reply whose content is empty is a 200 with ""
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4,"temperature":0,"stop":" "}
--- error_code: 200
--- response_body_like chomp
"message":\{"role":"assistant","content":""\},"logprobs":null,"finish_reason":"stop"



=== TEST 22: a URI that is not UTF-8 gets a JSON 404 (U+FFFD in the message)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
GET /v1/%ff
--- error_code: 404
--- response_body eval
qq{{"error":{"message":"unknown route /v1/\xef\xbf\xbd","type":"invalid_request_error","param":null,"code":"unknown_url"}}\n}



=== TEST 23: a model name cut inside a character still gets a JSON 404
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
"POST /v1/completions\n" . '{"model":"a' . ("\xc3\xa9" x 300)
    . '","prompt":"x"}'
--- error_code: 404
--- response_body_like chomp
^\{"error":\{"message":"the model 'a(\xc3\xa9)+","type":"invalid_request_error","param":"model","code":"model_not_found"\}\}$



=== TEST 24: the JSON parser's message cut inside a character: a JSON 400
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
open my $f, '<:raw',
    "$ENV{TEST_NGINX_MODEL_DIR}/../../repro/openai-body-bad-escape.json"
    or die "repro: $!";
local $/;
"POST /v1/completions\n" . <$f>
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"message":"invalid JSON body: (?:[^"\\]|\\.)+","type":"invalid_request_error","param":null,"code":null\}\}$



=== TEST 25: a NUL byte in the model name is refused, not cut off
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny\u0000x","prompt":"x"}
--- error_code: 400
--- response_body
{"error":{"message":"'model' must not contain a NUL character","type":"invalid_request_error","param":"model","code":null}}



=== TEST 26: a NUL byte in chat content is refused
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"a\u0000b"}]}
--- error_code: 400
--- response_body
{"error":{"message":"messages[0].content must not contain a NUL character","type":"invalid_request_error","param":"messages","code":null}}



=== TEST 27: an explicit max_tokens past the context: 400 naming both
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1,2,3],"max_tokens":510}
--- error_code: 400
--- response_body
{"error":{"message":"this model's maximum context length is 512 tokens, but 513 were requested (3 in the prompt, 510 in the completion): reduce the length of the prompt or of max_tokens","type":"invalid_request_error","param":"max_tokens","code":"context_length_exceeded"}}



=== TEST 28: max_tokens that just fits is served to the last position
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1,2,3],"max_tokens":509,"temperature":0}
--- error_code: 200
--- response_body_like chomp
"finish_reason":"(length|stop)"



=== TEST 29: two user turns where the template wants them alternating: 400 naming the second
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/mistralai-Mistral-Nemo-Instruct-2407.jinja;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"message":"the model's chat template cannot render messages\[1\] \(role \\"user\\"\): TemplateError: After the optional system message, conversation roles must alternate user/assistant/user/assistant/\.\.\. \(template line \d+, column \d+\)","type":"invalid_request_error","param":"messages","code":null\}\}$



=== TEST 30: a prompt too big for the context by its size alone: refused before encoding
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ {
        client_max_body_size 2m;
        infer_openai tiny;
    }
--- request eval
"POST /v1/completions\n" . '{"model":"tiny","prompt":"' . ('Once upon a time ' x 61681) . '"}'
--- error_code: 400
--- response_body
{"error":{"message":"this model's maximum context length is 512 tokens, and a prompt of 1048577 bytes has at least 116508","type":"invalid_request_error","param":"prompt","code":"context_length_exceeded"}}



=== TEST 31: infer_max_n 2 in the location: n 3 is refused there
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_max_n 2; infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":1,"n":3}
--- error_code: 400
--- response_body_like chomp
"message":"'n' must be between 1 and 2, got 3","type":"invalid_request_error","param":"n"



=== TEST 32: the deprecated functions: 400 unsupported_parameter naming the field
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"x"}],
 "functions":[{"name":"f"}]}
--- error_code: 400
--- response_body
{"error":{"message":"'functions' is not supported by this server (send 'tools')","type":"invalid_request_error","param":"functions","code":"unsupported_parameter"}}



=== TEST 33: a JSON response_format: 400 naming it
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"x"}],
 "response_format":{"type":"json_object"}}
--- error_code: 400
--- response_body_like chomp
"param":"response_format","code":"unsupported_parameter"\}\}$



=== TEST 34: tool_choice required without tools: 400 naming it
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"x"}],
 "tool_choice":"required"}
--- error_code: 400
--- response_body
{"error":{"message":"'tool_choice' is only allowed when 'tools' are specified","type":"invalid_request_error","param":"tool_choice","code":null}}



=== TEST 35: best_of greater than n: 400 naming it
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","n":2,"best_of":4}
--- error_code: 400
--- response_body
{"error":{"message":"'best_of' greater than 'n' is not supported by this server","type":"invalid_request_error","param":"best_of","code":"unsupported_parameter"}}



=== TEST 36: suffix: 400 naming it
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","suffix":" and they lived happily"}
--- error_code: 400
--- response_body_like chomp
"param":"suffix","code":"unsupported_parameter"\}\}$



=== TEST 37: a logit_bias id outside the vocabulary
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","logit_bias":{"7":1,"512":-100}}
--- error_code: 400
--- response_body
{"error":{"message":"'logit_bias' token id 512 is outside the vocabulary of 512","type":"invalid_request_error","param":"logit_bias","code":null}}



=== TEST 38: min_tokens above the default max_tokens of 16
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"x","min_tokens":17}
--- error_code: 400
--- response_body
{"error":{"message":"'min_tokens' (17) must not exceed the 16 tokens of 'max_tokens'","type":"invalid_request_error","param":"min_tokens","code":null}}



=== TEST 39: top_logprobs without logprobs
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_logprobs":2}
--- error_code: 400
--- response_body_like chomp
"param":"top_logprobs"



=== TEST 40: a chat cannot ask for no tokens
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0}
--- error_code: 400
--- response_body_like chomp
"message":"'max_tokens' must be between 1 and 2147483647, got 0"



=== TEST 41: GET /v1/models/{id}
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
GET /v1/models/tiny
--- error_code: 200
--- response_body_like chomp
^\{"id":"tiny","object":"model","created":\d+,"owned_by":"nginx"\}\n\z



=== TEST 42: GET /v1/models/{id} of a model the location does not serve: 404
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
GET /v1/models/gpt-4o
--- error_code: 404
--- response_body
{"error":{"message":"the model 'gpt-4o' does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}



=== TEST 43: POST on /v1/models/{id}: 405 with Allow
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/models/tiny
{}
--- error_code: 405
--- response_headers
Allow: GET, HEAD



=== TEST 44: the choices share one request's output cap: 5 x 768 bytes of logprobs fit in 4k
(16 tokens x (1 + 5 alternatives) x 8 bytes each, as infer_engine_output_bytes counts)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 max_output=4k;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":16,"logprobs":5,"n":5}
--- error_code: 200
--- response_body_like chomp
"index":4,



=== TEST 45: six of them do not
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 max_output=4k;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":16,"logprobs":5,"n":6}
--- error_code: 400
--- response_body
{"error":{"message":"the logprobs of 6 choices of up to 16 tokens would exceed this server's limit of 4096 bytes","type":"invalid_request_error","param":"logprobs","code":null}}



=== TEST 46: a chat with logprobs to the context end may not fit either
(up to 494 tokens after the 18 of the prompt, x 21 x 8 bytes)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1 max_output=64k;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "logprobs":true,"top_logprobs":20}
--- error_code: 400
--- response_body
{"error":{"message":"the logprobs of 1 choice of up to 494 tokens would exceed this server's limit of 65536 bytes","type":"invalid_request_error","param":"logprobs","code":null}}
