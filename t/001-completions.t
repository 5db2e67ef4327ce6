# POST /v1/completions against stories260K.  Expected text comes from the
# model's reference greedy output (expected_greedy_200.txt: 200 tokens after
# <s>) and prompt token counts from Hugging Face tokenizers: "Once upon a
# time" encodes to [1, 403, 407, 261, 378] ("Once", " upon", " a", " time").
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

our $greedy = do {
    my $f = "$ENV{TEST_NGINX_MODEL_DIR}/expected_greedy_200.txt";
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    <$fh>;
};

# A string as it appears inside a JSON string literal.
sub json_str { substr(JSON::PP->new->encode([$_[0]]), 2, -2) }

our $greedy_json = json_str($greedy);
# Greedy continuation of "Once upon a time" up to the first period.
our ($after_once) = $greedy =~ /^Once upon a time([^.]*)\./ or die;
our $after_once_json = json_str($after_once);

# The text of an SSE stream joined, then the finish reason on a line.
sub sse_text {
    my ($text, $finish) = ('', '');
    for my $ev (split /\n\n/, $_[0]) {
        $ev =~ s/^data: // or return "bad event: $ev";
        next if $ev eq '[DONE]';
        my $c = JSON::PP->new->decode($ev)->{choices}[0] or next;
        $text .= defined $c->{text} ? $c->{text} : $c->{delta}{content} // '';
        $finish = $c->{finish_reason} if defined $c->{finish_reason};
    }
    return "$text\n$finish\n";
}

our $id = qr/"id":"cmpl-[0-9a-f]{24}","object":"text_completion","created":\d+,"model":"tiny"/;
our $lp = qr/-\d+(?:\.\d+)?(?:e-\d+)?/;

# A body's choices, checked: the legacy logprobs of each join to its text
# (with offsets pointing at each token, the leading space of the first
# real token aside), greedy's token is the best of its alternatives, and
# usage counts every choice's tokens.  Says what it found.
sub logprobs_summary {
    my $r = JSON::PP->new->decode($_[0]);
    my ($n, $sum) = (0, 0);
    for my $c (@{ $r->{choices} }) {
        my $l = $c->{logprobs} or return "choice $c->{index}: no logprobs\n";
        my @t = @{ $l->{tokens} };
        $sum += @t;
        for my $i (0 .. $#t) {
            my $off = $l->{text_offset}[$i];
            my $tok = $i == 0 ? substr($t[0], 1) : $t[$i];
            return "choice $c->{index}: token $i '$t[$i]' not at $off\n"
                unless substr($c->{text}, $off, length $tok) eq $tok;
            my $top = $l->{top_logprobs}[$i];
            my ($best) = sort { $top->{$b} <=> $top->{$a} } keys %$top;
            return "choice $c->{index}: token $i is not the best\n"
                unless $best eq $t[$i]
                       && $top->{$best} == $l->{token_logprobs}[$i];
        }
        $n++;
    }
    return "usage $r->{usage}{completion_tokens} for $sum tokens\n"
        unless $r->{usage}{completion_tokens} == $sum;
    return "$n choices, $sum tokens, all consistent: "
           . join('|', map { $_->{text} } @{ $r->{choices} }) . "\n";
}

run_tests();

__DATA__

=== TEST 1: prompt [<s>], greedy, 200 tokens: the reference text exactly
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
qq{POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":200,"temperature":0}}
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/^\{$::id,"choices":\[\{"index":0,"text":"\Q$::greedy_json\E","logprobs":null,"finish_reason":"length"\}\],"usage":\{"prompt_tokens":1,"completion_tokens":200,"total_tokens":201\}\}\n\z/
--- no_error_log
[error]



=== TEST 2: text prompt with a stop string: continuation up to the stop
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"Once upon a time","max_tokens":100,
 "temperature":0,"stop":"."}
--- response_body_like eval
qr/"text":"\Q$::after_once_json\E","logprobs":null,"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":5,/



=== TEST 3: a one-string array prompt is the same prompt
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":["Once upon a time"],"max_tokens":100,
 "temperature":0,"stop":["."]}
--- response_body_like eval
qr/"text":"\Q$::after_once_json\E","logprobs":null,"finish_reason":"stop"/



=== TEST 4: several stop strings: the earliest wins
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":100,"temperature":0,
 "stop":["Lily","girl"]}
--- response_body_like eval
qr/"text":"Once upon a time, there was a little ","logprobs":null,"finish_reason":"stop"/



=== TEST 5: max_tokens 4 from <s>: four whole tokens
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0}
--- response_body_like eval
qr/"text":"Once upon a time","logprobs":null,"finish_reason":"length"\}\],"usage":\{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5\}/



=== TEST 6: without max_tokens OpenAI's default of 16 applies
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"temperature":0}
--- response_body_like eval
qr/"finish_reason":"length"\}\],"usage":\{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17\}/



=== TEST 7: unknown fields and null values are ignored
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0,"n":1,
 "user":"u-1","logit_bias":{},"echo":false,"frequency_penalty":0,
 "best_of":null,"top_p":null,"seed":null,"stop":null,"stream":false}
--- response_body_like eval
qr/"text":"Once upon a time","logprobs":null,"finish_reason":"length"/



=== TEST 8: top_k 1 samples the argmax whatever the temperature
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":1.5,"top_k":1,
 "seed":7}
--- response_body_like eval
qr/"text":"Once upon a time","logprobs":null,"finish_reason":"length"/



=== TEST 9: streaming: one SSE event per token, a finish event, [DONE]
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0,"stream":true}
--- response_headers
Content-Type: text/event-stream
Cache-Control: no-cache
!Content-Length
--- response_body_like eval
my $c = qr/data: \{$::id,"choices":\[\{"index":0,"text":/;
qr/^${c}"Once","logprobs":null,"finish_reason":null\}\]\}\n\n${c}" upon","logprobs":null,"finish_reason":null\}\]\}\n\n${c}" a","logprobs":null,"finish_reason":null\}\]\}\n\n${c}" time","logprobs":null,"finish_reason":null\}\]\}\n\n${c}"","logprobs":null,"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/



=== TEST 10: streaming with include_usage: usage null on chunks, usage event last
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":2,"temperature":0,"stream":true,
 "stream_options":{"include_usage":true}}
--- response_body_like eval
my $c = qr/data: \{$::id,"choices":\[\{"index":0,"text":/;
qr/^${c}"Once","logprobs":null,"finish_reason":null\}\],"usage":null\}\n\n${c}" upon","logprobs":null,"finish_reason":null\}\],"usage":null\}\n\n${c}"","logprobs":null,"finish_reason":"length"\}\],"usage":null\}\n\ndata: \{$::id,"choices":\[\],"usage":\{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3\}\}\n\ndata: \[DONE\]\n\n\z/



=== TEST 11: a streamed stop string is never sent, even in part
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":50,"temperature":0,
 "stream":true,"stop":" named"}
--- response_body_filters eval
\&::sse_text
--- response_body
Once upon a time, there was a little girl
stop



=== TEST 12: the streamed text joins to the reference text
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":200,"temperature":0,"stream":true}
--- response_body_filters eval
\&::sse_text
--- response_body eval
"$::greedy\nlength\n"



=== TEST 13: echo with max_tokens 0 scores the prompt: the legacy shape, <s> without a logprob
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"Once upon a time","max_tokens":0,"echo":true,
 "logprobs":1}
--- response_body_like eval
my $t = qr/\{"[^"]+":$::lp(?:,"[^"]+":$::lp)?\}/;
qr/^\{$::id,"choices":\[\{"index":0,"text":"Once upon a time","logprobs":\{"tokens":\["<s>"," Once"," upon"," a"," time"\],"token_logprobs":\[null,$::lp,$::lp,$::lp,$::lp\],"top_logprobs":\[null,$t,$t,$t,$t\],"text_offset":\[0,0,4,9,11\]\},"finish_reason":"length"\}\],"usage":\{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5\}\}\n\z/



=== TEST 14: echo puts the prompt before the greedy continuation
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":"Once upon a time","max_tokens":100,
 "temperature":0,"stop":".","echo":true}
--- response_body_like eval
qr/"text":"Once upon a time\Q$::after_once_json\E","logprobs":null,"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":5,/



=== TEST 15: logprobs 2: offsets point at each token, greedy picks the best
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":14,"temperature":0,"logprobs":2}
--- response_body_filters eval
\&::logprobs_summary
--- response_body
1 choices, 14 tokens, all consistent: Once upon a time, there was a little girl named Lily



=== TEST 16: streamed logprobs: each chunk carries its tokens
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":2,"temperature":0,"logprobs":0,
 "stream":true}
--- response_body_like eval
my $c = qr/data: \{$::id,"choices":\[\{"index":0,"text":/;
qr/^${c}"Once","logprobs":\{"tokens":\[" Once"\],"token_logprobs":\[($::lp)\],"top_logprobs":\[\{" Once":\1\}\],"text_offset":\[0\]\},"finish_reason":null\}\]\}\n\n${c}" upon","logprobs":\{"tokens":\[" upon"\],"token_logprobs":\[($::lp)\],"top_logprobs":\[\{" upon":\2\}\],"text_offset":\[4\]\},"finish_reason":null\}\]\}\n\n${c}"","logprobs":null,"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/



=== TEST 17: n 3 at temperature 0: three greedy choices, usage for all
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0,"n":3}
--- response_body_like eval
qr/^\{$::id,"choices":\[\{"index":0,"text":"Once upon a time","logprobs":null,"finish_reason":"length"\},\{"index":1,"text":"Once upon a time","logprobs":null,"finish_reason":"length"\},\{"index":2,"text":"Once upon a time","logprobs":null,"finish_reason":"length"\}\],"usage":\{"prompt_tokens":1,"completion_tokens":12,"total_tokens":13\}\}\n\z/



=== TEST 18: n 2 streamed: chunks of both choices, each finished, one [DONE]
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":2,"temperature":0,"n":2,
 "stream":true,"stream_options":{"include_usage":true}}
--- response_body_filters eval
sub {
    my (%text, %fin, $usage, $done);
    for my $ev (split /\n\n/, $_[0]) {
        $ev =~ s/^data: // or return "bad event: $ev\n";
        if ($ev eq '[DONE]') { $done++; next }
        my $j = JSON::PP->new->decode($ev);
        $usage = $j->{usage}{completion_tokens} if $j->{usage};
        for my $c (@{ $j->{choices} }) {
            $text{ $c->{index} } .= $c->{text};
            $fin{ $c->{index} } .= $c->{finish_reason} // '';
        }
    }
    CORE::join('', map { "$_: $text{$_} ($fin{$_})\n" } sort keys %text)
        . "usage $usage, [DONE] x $done\n";
}
--- response_body
0: Once upon (length)
1: Once upon (length)
usage 4, [DONE] x 1



=== TEST 19: logit_bias +100 on " a" (id 261) makes it every token
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":3,"temperature":0,
 "logit_bias":{"261":100}}
--- response_body_like eval
qr/"text":"a a a","logprobs":null,"finish_reason":"length"/



=== TEST 20: min_tokens holds </s> back, even when logit_bias pushes it
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":8,"temperature":0,
 "logit_bias":{"2":100},"min_tokens":3}
--- response_body_like eval
qr/"text":"Once upon a","logprobs":null,"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":1,"completion_tokens":4,/



=== TEST 21: presence and frequency penalties reach the sampler
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/completions
{"model":"tiny","prompt":[1],"max_tokens":40,"temperature":0,
 "presence_penalty":2,"frequency_penalty":2}
--- response_body_filters eval
sub {
    my $t = JSON::PP->new->decode($_[0])->{choices}[0]{text};
    my $g = substr($::greedy, 0, length $t);
    $t ne $g ? "penalised text differs from greedy\n" : "same as greedy: $t\n";
}
--- response_body
penalised text differs from greedy
