# KServe v2 REST (infer_kserve) against stories260K: the health and
# metadata routes, /infer with JSON and binary tensors (Triton's binary
# tensor data extension), the generate extension, and a 400/404/405/415
# for every kind of bad request each decoder can get.  Expected text comes
# from the model's reference greedy output (expected_greedy_200.txt: 200
# tokens after <s>); token ids from Hugging Face tokenizers: "Once upon a
# time" is [1, 403, 407, 261, 378], and its greedy continuation starts with
# "," (id 432).  t/014-kserve-client.t drives the same routes with
# tritonclient and compares logits with transformers.
use Test::Nginx::Socket 'no_plan';
use Cwd ();
use JSON::PP ();

our $greedy = do {
    my $f = "$ENV{TEST_NGINX_MODEL_DIR}/expected_greedy_200.txt";
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    <$fh>;
};

sub json_str { substr(JSON::PP->new->encode([$_[0]]), 2, -2) }

our $greedy_json = json_str($greedy);
our ($after_once) = $greedy =~ /^Once upon a time([^.]*)\./ or die;
our $after_once_json = json_str($after_once);
our ($to_period) = $greedy =~ /^([^.]*)\./ or die;

# A model of 32000 ids, whose logits are big enough to pass the output cap.
$ENV{TEST_NGINX_KS_WIDE} = Cwd::cwd() . '/t/servroot-kserve-models/wide';
{
    my $gen = $ENV{TEST_NGINX_GEN_MODEL} || 'build/infer-gen-model';
    system("rm -rf '$ENV{TEST_NGINX_KS_WIDE}' && mkdir -p "
           . "'$ENV{TEST_NGINX_KS_WIDE}' && $gen '$ENV{TEST_NGINX_KS_WIDE}' "
           . "--preset tiny-llama --seed 1 > /dev/null") == 0
        or die "cannot generate $ENV{TEST_NGINX_KS_WIDE}";
}

# A binary body: the JSON header, then the inputs' bytes.
our $ids_json = '{"inputs":[{"name":"input_ids","datatype":"INT32",'
    . '"shape":[1,5],"parameters":{"binary_data_size":20}}],'
    . '"outputs":[{"name":"logits","parameters":{"binary_data":true}}],'
    . '"parameters":{"logits":"last"}}';
our $ids_bin = pack('l<*', 1, 403, 407, 261, 378);

# BYTES: a 4-byte little-endian length, then the bytes, for each element.
sub bytes_el { join '', map { pack('V', length $_) . $_ } @_ }
our $text_json = '{"inputs":[{"name":"text_input","datatype":"BYTES",'
    . '"shape":[2,1],"parameters":{"binary_data_size":%d}},'
    . '{"name":"max_tokens","datatype":"INT32","shape":[1,1],'
    . '"parameters":{"binary_data_size":4}},'
    . '{"name":"temperature","datatype":"FP32","shape":[1,1],'
    . '"data":[0]},{"name":"stop_words","datatype":"BYTES","shape":[1,1],'
    . '"data":["."]}],"parameters":{"binary_data_output":true}}';
our $text_bin = bytes_el('', 'Once upon a time') . pack('l<', 100);
$text_json = sprintf $text_json, length($text_bin) - 4;

# A binary response: its JSON header and what follows, summed up.
sub binary_summary {
    my $body = shift;
    my ($head, $n) = JSON::PP->new->decode_prefix($body);
    my $rest = substr $body, $n;
    my @out;
    for my $o (@{ $head->{outputs} }) {
        my $size = $o->{parameters}{binary_data_size};
        my $data = substr $rest, 0, $size, '';
        my $s = "$o->{name} $o->{datatype} [@{ $o->{shape} }] $size:";
        if ($o->{datatype} eq 'FP32') {
            my @f = unpack 'f<*', $data;
            my $best = 0;
            $f[$_] > $f[$best] and $best = $_ for 0 .. $#f;
            $s .= " floats " . @f . " argmax $best";
        } else {
            while (length $data >= 4) {
                my $len = unpack 'V', substr($data, 0, 4, '');
                $s .= ' "' . substr($data, 0, $len, '') . '"';
            }
        }
        push @out, $s;
    }
    return join("\n", @out) . "\nleft " . length($rest) . "\n";
}

# The text of a generate_stream, then the last event's finish reason.
sub sse_text {
    my ($text, $finish, $n) = ('', '', 0);
    for my $ev (split /\n\n/, $_[0]) {
        $ev =~ s/^data: // or return "bad event: $ev";
        my $o = JSON::PP->new->decode($ev);
        return "error: $o->{error}\n" if exists $o->{error};
        $text .= $o->{text_output};
        $finish = $o->{finish_reason} if exists $o->{finish_reason};
        $n++;
    }
    return "$text\n$finish\n";
}

# The number of floats of a JSON logits output and each row's argmax.
sub logits_summary {
    my $o = JSON::PP->new->decode($_[0])->{outputs}[0];
    my @f = @{ $o->{data} };
    my $vocab = $o->{shape}[-1];
    my @best;
    for (my $r = 0; $r < @f; $r += $vocab) {
        my $b = $r;
        $f[$_] > $f[$b] and $b = $_ for $r .. $r + $vocab - 1;
        push @best, $b - $r;
    }
    return "$o->{name} $o->{datatype} [@{ $o->{shape} }] "
           . scalar(@f) . " argmax @best\n";
}

our $ctx600 = '{"inputs":[{"name":"input_ids","datatype":"INT64",'
    . '"shape":[1,600],"data":[' . join(',', (1) x 600) . ']}]}';
our $bytes_cut_json = '{"inputs":[{"name":"text_input","datatype":"BYTES",'
    . '"shape":[1],"parameters":{"binary_data_size":8}}]}';
our $wide600 = '{"inputs":[{"name":"input_ids","datatype":"INT32",'
    . '"shape":[1,600],"data":[' . join(',', (1) x 600) . ']}]}';

run_tests();

__DATA__

=== TEST 1: GET /v2: server metadata with the extensions
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
GET /v2
--- response_headers
Content-Type: application/json
--- response_body chomp
{"name":"ngx_http_infer_module","version":"1.22.1","extensions":["binary_tensor_data","parameters","generate"]}



=== TEST 2: health: live, ready, and the model ready (also by version)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
["GET /v2/health/live", "GET /v2/health/ready",
 "GET /v2/models/tiny/ready", "GET /v2/models/tiny/versions/1/ready",
 "HEAD /v2/health/ready"]
--- response_body eval
['{"live":true}', '{"ready":true}', '{"ready":true}', '{"ready":true}', '']



=== TEST 3: model metadata: every input and output with datatype and shape
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
GET /v2/models/tiny
--- response_body_like eval
qr/^\{"name":"tiny","versions":\["1"\],"platform":"ngx_http_infer","inputs":\[\{"name":"input_ids","datatype":"INT64","shape":\[-1,-1\]\},\{"name":"text_input","datatype":"BYTES","shape":\[-1,1\]\},\{"name":"max_tokens","datatype":"INT32","shape":\[-1,1\]\},.*\{"name":"temperature","datatype":"FP32","shape":\[-1,1\]\},.*\{"name":"stop_words","datatype":"BYTES","shape":\[-1,-1\]\},\{"name":"stream","datatype":"BOOL","shape":\[-1,1\]\},.*\],"outputs":\[\{"name":"logits","datatype":"FP32","shape":\[-1,-1,512\]\},\{"name":"text_output","datatype":"BYTES","shape":\[-1,1\]\}\]\}\z/



=== TEST 4: unknown model, version and route: 404 in KServe's shape
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
["GET /v2/models/nope", "POST /v2/models/nope/infer\n{}",
 "GET /v2/models/tiny/versions/2", "GET /v2/models/tiny/stats",
 "POST /v2/models/nope/generate\n{\"text_input\":\"a\"}"]
--- error_code eval
[404, 404, 404, 404, 404]
--- response_body eval
['{"error":"unknown model \'nope\'"}', '{"error":"unknown model \'nope\'"}',
 '{"error":"unknown version \'2\' of model \'tiny\': its only version is 1"}',
 '{"error":"unknown route /v2/models/tiny/stats"}',
 '{"error":"unknown model \'nope\'"}']



=== TEST 5: wrong methods: 405 with Allow
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
["GET /v2/models/tiny/infer", "POST /v2/health/live\n{}"]
--- error_code eval
[405, 405]
--- response_headers eval
["Allow: POST", "Allow: GET, HEAD"]
--- response_body eval
['{"error":"method GET is not allowed here, use POST"}',
 '{"error":"method POST is not allowed here, use GET"}']



=== TEST 6: text_input from "" (<s>), greedy, 200 tokens: the reference text exactly
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/infer
{"id":"g1","inputs":[{"name":"text_input","datatype":"BYTES","shape":[1,1],"data":[""]},
 {"name":"max_tokens","datatype":"INT32","shape":[1,1],"data":[200]},
 {"name":"temperature","datatype":"FP32","shape":[1,1],"data":[0.0]}]}
--- response_headers
Content-Type: application/json
--- response_body eval
qq({"model_name":"tiny","model_version":"1","id":"g1","outputs":[{"name":"text_output","datatype":"BYTES","shape":[1,1],"data":["$::greedy_json"]}]})



=== TEST 7: the settings as request parameters give the same text
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/infer
{"inputs":[{"name":"text_input","datatype":"BYTES","shape":[1],"data":[""]}],
 "parameters":{"max_tokens":200,"temperature":0,"top_k":0,"beam_width":1}}
--- response_body eval
qq({"model_name":"tiny","model_version":"1","outputs":[{"name":"text_output","datatype":"BYTES","shape":[1],"data":["$::greedy_json"]}]})



=== TEST 8: generate: the reference text, with finish_reason
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/generate
{"text_input":"","max_tokens":200,"bad_words":"","stop_words":"","parameters":{"temperature":0}}
--- response_body eval
qq({"model_name":"tiny","model_version":"1","text_output":"$::greedy_json","finish_reason":"length"})



=== TEST 9: generate_stream: SSE events whose text is the reference text
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/generate_stream
{"text_input":"","parameters":{"max_tokens":200,"temperature":0,"stream":true}}
--- response_headers
Content-Type: text/event-stream; charset=utf-8
!Content-Length
--- response_body_filters eval
\&::sse_text
--- response_body eval
"$::greedy\nlength\n"



=== TEST 10: generate with a stop word: the continuation up to it, finish stop
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/generate
{"text_input":"Once upon a time","parameters":{"max_tokens":100,"temperature":0,"stop_words":"."}}
--- response_body eval
qq({"model_name":"tiny","model_version":"1","text_output":"$::after_once_json","finish_reason":"stop"})



=== TEST 11: exclude_input_in_output false: the prompt, then its continuation
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/generate_stream
{"text_input":"Once upon a time","max_tokens":100,"temperature":0,"stop_words":["."],"exclude_input_in_output":false}
--- response_body_filters eval
\&::sse_text
--- response_body eval
"Once upon a time$::after_once\nstop\n"



=== TEST 12: a batch of two texts, each with its max_tokens (INT32 [2, 1])
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/infer
{"inputs":[{"name":"text_input","datatype":"BYTES","shape":[2,1],"data":[["Once upon a time"],[""]]},
 {"name":"max_tokens","datatype":"INT32","shape":[2,1],"data":[[3],[4]]},
 {"name":"temperature","datatype":"FP32","shape":[1],"data":[0]}]}
--- response_body chomp
{"model_name":"tiny","model_version":"1","outputs":[{"name":"text_output","datatype":"BYTES","shape":[2,1],"data":[", there was","Once upon a time"]}]}



=== TEST 13: input_ids (JSON) -> logits of the last position: 512 floats, argmax ","
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/infer
{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,5],"data":[1,403,407,261,378]}],
 "parameters":{"logits":"last"}}
--- response_body_filters eval
\&::logits_summary
--- response_body
logits FP32 [1 512] 512 argmax 432



=== TEST 14: all positions by default: [batch, seq, vocab]
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request
POST /v2/models/tiny/infer
{"inputs":[{"name":"input_ids","datatype":"INT32","shape":[2,2],"data":[[1,403],[1,403]]}]}
--- response_body_filters eval
\&::logits_summary
--- response_body
logits FP32 [2 2 512] 2048 argmax 403 407 403 407



=== TEST 15: binary INT32 ids and binary logits (Inference-Header-Content-Length both ways)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Content-Type: application/octet-stream\nInference-Header-Content-Length: "
. length($::ids_json)
--- request eval
"POST /v2/models/tiny/infer\n$::ids_json$::ids_bin"
--- response_headers eval
"Content-Type: application/octet-stream\nInference-Header-Content-Length: "
. length('{"model_name":"tiny","model_version":"1","outputs":[{"name":"logits","datatype":"FP32","shape":[1,512],"parameters":{"binary_data_size":2048}}]}')
--- response_body_filters eval
\&::binary_summary
--- response_body
logits FP32 [1 512] 2048: floats 512 argmax 432
left 0



=== TEST 16: binary BYTES rows and settings in, binary text_output out
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: " . length($::text_json)
--- request eval
"POST /v2/models/tiny/infer\n$::text_json$::text_bin"
--- response_body_filters eval
\&::binary_summary
--- response_body eval
"text_output BYTES [2 1] " . (8 + length($::to_period) + length($::after_once))
. qq(: "$::to_period" "$::after_once"\nleft 0\n)



=== TEST 17: the same binary request over HTTP/2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- http2
--- more_headers eval
"Inference-Header-Content-Length: " . length($::ids_json)
--- request eval
"POST /v2/models/tiny/infer\n$::ids_json$::ids_bin"
--- response_body_filters eval
\&::binary_summary
--- response_body
logits FP32 [1 512] 2048: floats 512 argmax 432
left 0



=== TEST 18: generate_stream over HTTP/2
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- http2
--- request
POST /v2/models/tiny/generate_stream
{"text_input":"Once upon a time","max_tokens":100,"temperature":0,"stop_words":["."]}
--- response_body_filters eval
\&::sse_text
--- response_body eval
"$::after_once\nstop\n"



=== TEST 19: JSON decoder: wrong datatype, shape that does not match the data, bad dims, ids outside the vocabulary
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
my $p = "POST /v2/models/tiny/infer\n";
my $in = sub { qq({"inputs":[{"name":"input_ids",$_[0]}]}) };
[$p . $in->('"datatype":"FP32","shape":[1,2],"data":[1,2]'),
 $p . $in->('"datatype":"INT64","shape":[1,3],"data":[1,2]'),
 $p . $in->('"datatype":"INT64","shape":[1,1],"data":[1,2]'),
 $p . $in->('"datatype":"INT64","shape":[-1,2],"data":[1,2]'),
 $p . $in->('"datatype":"INT64","shape":[4294967296,4294967296],"data":[1]'),
 $p . $in->('"datatype":"INT64","shape":[1,2],"data":[1,512]'),
 $p . $in->('"datatype":"INT32","shape":[1,2],"data":[1,-1]'),
 $p . $in->('"datatype":"INT64","shape":[1,2],"data":[1,2.5]'),
 $p . $in->('"datatype":"STRING","shape":[1,2],"data":[1,2]'),
 $p . '{"inputs":[{"name":"pixels","datatype":"FP32","shape":[1],"data":[1]}]}']
--- error_code eval
[(400) x 10]
--- response_body eval
['{"error":"input \'input_ids\' has the datatype FP32, expected INT32 or INT64"}',
 '{"error":"input \'input_ids\': its data has 2 elements, its shape 3"}',
 '{"error":"input \'input_ids\': its data has more elements than the 1 of its shape"}',
 '{"error":"input \'input_ids\': dimension 0 of its shape is -1, a negative size"}',
 '{"error":"input \'input_ids\': dimension 1 of its shape (4294967296) makes more elements than a request can hold"}',
 '{"error":"input \'input_ids\': the id 512 at [0, 1] is outside the vocabulary of 512"}',
 '{"error":"input \'input_ids\': the id -1 at [0, 1] is outside the vocabulary of 512"}',
 '{"error":"input \'input_ids\': element 1 is a real number, expected an integer for INT64"}',
 '{"error":"input \'input_ids\' has the unknown datatype \'STRING\'"}',
 '{"error":"unknown input \'pixels\': the model takes input_ids (to score) or text_input (to continue) and the settings its metadata lists"}']



=== TEST 20: binary decoder: one byte short of binary_data_size
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: " . length($::ids_json)
--- request eval
"POST /v2/models/tiny/infer\n" . $::ids_json . substr($::ids_bin, 0, 19)
--- error_code: 400
--- response_body eval
'{"error":"the body has 19 bytes after the JSON header, but the inputs\' binary_data_size add up to 20"}'



=== TEST 21: binary decoder: a byte past binary_data_size
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: " . length($::ids_json)
--- request eval
"POST /v2/models/tiny/infer\n$::ids_json$::ids_bin\0"
--- error_code: 400
--- response_body eval
'{"error":"the body has 21 bytes after the JSON header, but the inputs\' binary_data_size add up to 20"}'



=== TEST 22: binary decoder: a header longer than the body
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: 100000"
--- request eval
"POST /v2/models/tiny/infer\n$::ids_json$::ids_bin"
--- error_code: 400
--- response_body eval
'{"error":"Inference-Header-Content-Length is 100000, but the body has ' . (length($::ids_json) + 20) . ' bytes"}'



=== TEST 23: binary decoder: a header length that is not a number
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: 12x"
--- request eval
"POST /v2/models/tiny/infer\n$::ids_json$::ids_bin"
--- error_code: 400
--- response_body eval
'{"error":"Inference-Header-Content-Length must be a decimal number of bytes"}'



=== TEST 24: binary decoder: BYTES elements cut short
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: " . length($::text_json)
--- request eval
"POST /v2/models/tiny/infer\n" . $::text_json . substr($::text_bin, 0, 10)
--- error_code: 400
--- response_body eval
'{"error":"the body has 10 bytes after the JSON header, but the inputs\' binary_data_size add up to ' . length($::text_bin) . '"}'



=== TEST 25: binary decoder: a BYTES length past its binary_data_size
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers eval
"Inference-Header-Content-Length: " . length($::bytes_cut_json)
--- request eval
"POST /v2/models/tiny/infer\n$::bytes_cut_json" . pack("V", 9) . "Once"
--- error_code: 400
--- response_body eval
'{"error":"input \'text_input\': its BYTES data ends inside element 0 of 1"}'



=== TEST 26: generate decoder: no text_input, wrong types, beam_width 4, stream where the route answers once
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
my $p = "POST /v2/models/tiny/generate\n";
[$p . '{"parameters":{"max_tokens":3}}', $p . '{"text_input":5}',
 $p . '{"text_input":"a","stream":true}',
 $p . '{"text_input":"a","temperature":"hot"}',
 $p . '{"text_input":"a","beam_width":4}',
 "POST /v2/models/tiny/infer\n" . '{"inputs":[{"name":"text_input","datatype":"BYTES","shape":[1],"data":["a"]}],"parameters":{"stream":true}}']
--- error_code eval
[(400) x 6]
--- response_body eval
['{"error":"the request needs text_input: a string"}',
 '{"error":"input \'text_input\': element 0 is an integer, expected a string for BYTES"}',
 '{"error":"stream is true, but this route answers once: POST to .../generate_stream for a stream"}',
 '{"error":"input \'temperature\': element 0 is a string, expected a number for FP32"}',
 '{"error":"input \'beam_width\' is 4: only 1 is supported (one sequence a row, no beam search)"}',
 '{"error":"stream is true, but this route answers once: POST to .../generate_stream for a stream"}']



=== TEST 27: what does not fit: a context of 512, the output cap of 64 MB
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
["POST /v2/models/tiny/infer\n$::ctx600",
 "POST /v2/models/wide/infer\n$::wide600",
 "POST /v2/models/tiny/generate\n" . '{"text_input":"Once upon a time","max_tokens":508}']
--- error_code eval
[400, 400, 400]
--- response_body eval
['{"error":"input_ids of 600 tokens do not fit the model\'s context of 512"}',
 '{"error":"the outputs asked for take 76800000 bytes, more than the 67108864 one request may have"}',
 '{"error":"text_input 0 has 5 tokens and max_tokens is 508, but the model\'s context is 512 tokens"}']



=== TEST 28: truncated JSON, and binary data without its header: 400, JSON errors
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- request eval
["POST /v2/models/tiny/infer\n" . '{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,2],"data":[1,2]}',
 "POST /v2/models/tiny/generate\n" . '{"text_input":"a","max_tokens":',
 "POST /v2/models/tiny/infer\n$::ids_json$::ids_bin"]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[qr/^\{"error":"the request is not valid JSON: [^"]+ \(at byte \d+\)"\}\z/,
 qr/^\{"error":"the request is not valid JSON: [^"]+ \(at byte \d+\)"\}\z/,
 qr/^\{"error":"the request is not valid JSON: [^"]+ \(at byte @{[length($::ids_json) + 1]}\)"\}\z/]



=== TEST 29: a compressed body: 415
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
    infer_model wide $TEST_NGINX_KS_WIDE threads=1;
--- config
    location /v2 { infer_kserve tiny wide; }
--- more_headers
Content-Encoding: gzip
--- request
POST /v2/models/tiny/generate
{"text_input":"a"}
--- error_code: 415
--- response_body chomp
{"error":"Content-Encoding gzip is not supported: send the body as it is"}
