# POST /v1/chat/completions.  The prompt is the model's chat template
# rendered as transformers' apply_chat_template renders it.  stories260K
# has no template, so the default one applies: "<s>user: Once upon a
# time\nassistant:", which Hugging Face tokenizers encodes (specials
# recognised) to 18 tokens; Llama-3.1's published template named with
# chat_template= renders its system header (170 tokens with this
# vocabulary, 169 with chat_template_kwargs {"date_string": "1 Dec 2026"}),
# and a copy of the model whose tokenizer_config.json carries Qwen2's
# ChatML template gives "<|im_start|>user\nOnce upon a time<|im_end|>\n
# <|im_start|>assistant\n" (45 tokens, no bos in ChatML).  The counts are
# transformers 5.24's apply_chat_template(..., tokenize=False) encoded by
# tokenizers with add_special_tokens=False.
use Test::Nginx::Socket 'no_plan';
use Cwd ();
use JSON::PP ();

# stories260K with a ChatML chat_template, next to the test servroot.
our $chatml = Cwd::cwd() . '/t/servroot-models/stories260K-chatml';
{
    my $src = $ENV{TEST_NGINX_MODEL_DIR};
    system('rm', '-rf', $chatml) == 0 && system('mkdir', '-p', $chatml) == 0
        or die "cannot create $chatml";
    for my $f (qw(config.json generation_config.json model.safetensors
                  tokenizer.json)) {
        symlink("$src/$f", "$chatml/$f") or die "symlink $f: $!";
    }
    open my $in, '<', "$src/tokenizer_config.json" or die $!;
    my $cfg = JSON::PP->new->decode(do { local $/; <$in> });
    $cfg->{chat_template} = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    open my $out, '>', "$chatml/tokenizer_config.json" or die $!;
    print $out JSON::PP->new->encode($cfg);
    close $out;
    $ENV{TEST_NGINX_CHATML_MODEL_DIR} = $chatml;
}
# A random-weight Llama with Llama-3's tokenizer (its 128256 ids and its
# own chat template), for the counts of the families' templates.
our $l3 = Cwd::cwd() . '/t/servroot-models/tiny-llama3-chat';
{
    my $gen = $ENV{TEST_NGINX_GEN_MODEL} || 'build/infer-gen-model';
    my $tok = ($ENV{INFER_SHARED} || '../shared') . '/tokenizers/llama3';
    system("mkdir -p t/servroot-models && rm -rf '$l3'"
           . " && $gen '$l3' --preset tiny-llama --seed 1"
           . " --tokenizer '$tok' > /dev/null") == 0
        or die "cannot generate $l3 with $gen";
    $ENV{TEST_NGINX_LLAMA3_MODEL_DIR} = $l3;
}
# The published templates (../shared/chat_templates).
$ENV{TEST_NGINX_TEMPLATES} = ($ENV{INFER_SHARED} || Cwd::cwd() . '/../shared')
                             . '/chat_templates';

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

our $streamed;

sub remember_stream {
    $streamed = sse_text($_[0]);
    return $streamed =~ /\A.+\n(?:length|stop)\n\z/s ? "stream ok\n"
                                                     : "bad stream: $streamed";
}

sub compare_with_stream {
    my $c = JSON::PP->new->decode($_[0]);
    my $text = "$c->{choices}[0]{message}{content}\n"
               . "$c->{choices}[0]{finish_reason}\n";
    return $text eq $streamed
           ? "same text, $c->{usage}{prompt_tokens} prompt tokens\n"
           : "differs: $text vs $streamed";
}

our $id = qr/"id":"chatcmpl-[0-9a-f]{24}","object":"chat.completion","created":\d+,"model":"tiny"/;
our $cid = qr/"id":"chatcmpl-[0-9a-f]{24}","object":"chat.completion.chunk","created":\d+,"model":"tiny"/;
our $lp = qr/-\d+(?:\.\d+)?(?:e-\d+)?/;

# The chat logprobs of a body or a stream, checked: one entry per token,
# joining to the content, bytes the token's UTF-8, greedy's token the best
# of its alternatives.  Says what it found.
sub chat_logprobs {
    my ($content, @lp, $tokens) = ('');
    for my $ev (split /\n\n/, $_[0]) {
        next if $ev eq 'data: [DONE]';
        $ev =~ s/^data: //;
        my $j = JSON::PP->new->decode($ev);
        $tokens = $j->{usage}{completion_tokens} if $j->{usage};
        my $c = $j->{choices}[0] or next;
        $content .= $c->{message}{content} // $c->{delta}{content} // '';
        push @lp, @{ $c->{logprobs}{content} } if $c->{logprobs};
    }
    return "content '$content' from tokens "
           . CORE::join('|', map { $_->{token} } @lp) . "\n"
        unless $content eq CORE::join('', map { $_->{token} } @lp);
    for my $t (@lp) {
        return "bytes of '$t->{token}'\n"
            unless CORE::join(',', @{ $t->{bytes} })
                   eq CORE::join(',', unpack 'C*', $t->{token});
        return "'$t->{token}' not the best\n"
            unless $t->{top_logprobs}[0]{token} eq $t->{token}
                   && $t->{top_logprobs}[0]{logprob} == $t->{logprob};
    }
    return scalar(@lp) . " entries ($tokens tokens), "
           . scalar(@{ $lp[0]{top_logprobs} }) . " alternatives each\n";
}

run_tests();

__DATA__

=== TEST 1: chat completion shape and usage
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":6,"temperature":0}
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/^\{$::id,"choices":\[\{"index":0,"message":\{"role":"assistant","content":"[^"]*"\},"logprobs":null,"finish_reason":"length"\}\],"usage":\{"prompt_tokens":18,"completion_tokens":6,"total_tokens":24\}\}\n\z/



=== TEST 2: max_completion_tokens and text content parts
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":[{"type":"text",
 "text":"Once upon a time"}]}],"max_completion_tokens":3,"temperature":0}
--- response_body_like eval
qr/"usage":\{"prompt_tokens":18,"completion_tokens":3,"total_tokens":21(?:,"prompt_tokens_details":\{"cached_tokens":16\})?\}/



=== TEST 3: streaming: the role first, then content deltas, an empty final delta
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":3,"temperature":0,"stream":true}
--- response_headers
Content-Type: text/event-stream
--- response_body_like eval
my $c = qr/data: \{$::cid,"choices":\[\{"index":0,"delta":/;
qr/^${c}\{"role":"assistant","content":""\},"logprobs":null,"finish_reason":null\}\]\}\n\n(?:${c}\{"content":"[^"]*"\},"logprobs":null,"finish_reason":null\}\]\}\n\n){1,3}${c}\{\},"logprobs":null,"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/



=== TEST 4: streaming with usage
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":3,"temperature":0,"stream":true,
 "stream_options":{"include_usage":true}}
--- response_body_like eval
qr/"finish_reason":"length"\}\],"usage":null\}\n\ndata: \{$::cid,"choices":\[\],"usage":\{"prompt_tokens":18,"completion_tokens":3,"total_tokens":21(?:,"prompt_tokens_details":\{"cached_tokens":16\})?\}\}\n\ndata: \[DONE\]\n\n\z/



=== TEST 5: the streamed chat text equals the non-streamed one
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
[qq{POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"system","content":"Be short."},
 {"role":"user","content":"Tell me a story."}],"max_tokens":40,
 "temperature":0,"stream":true}},
qq{POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"system","content":"Be short."},
 {"role":"user","content":"Tell me a story."}],"max_tokens":40,
 "temperature":0}}]
--- response_body_filters eval
[[\&::remember_stream], [\&::compare_with_stream]]
--- response_body eval
["stream ok\n", "same text, 38 prompt tokens\n"]



=== TEST 6: a template's raise_exception is a 400 naming the message
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/google-gemma-2-2b-it.jinja;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"assistant","content":"Hi"}]}
--- error_code: 400
--- response_body_like chomp
"message":"the model's chat template cannot render messages\[0\] \(role \\"assistant\\"\): TemplateError: Conversation roles must alternate user/assistant/user/assistant/\.\.\. \(template line \d+, column \d+\)","type":"invalid_request_error","param":"messages"



=== TEST 7: chat_template= names a template file: Llama-3.1's system header
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/meta-llama-Llama-3.1-8B-Instruct.jinja;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":2,"temperature":0}
--- response_body_like chomp
"usage":\{"prompt_tokens":170,"completion_tokens":2,"total_tokens":172\}
--- error_log
infer_model "tiny": chat template from /



=== TEST 8: a ChatML template in tokenizer_config.json applies
--- http_config
    infer_model cm $TEST_NGINX_CHATML_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai cm; }
--- request
POST /v1/chat/completions
{"model":"cm","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":2,"temperature":0}
--- response_body_like chomp
"usage":\{"prompt_tokens":45,"completion_tokens":2,"total_tokens":47\}
--- error_log
infer_model "cm": chat template from tokenizer_config.json



=== TEST 8b: chat_template_kwargs reach the template
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/meta-llama-Llama-3.1-8B-Instruct.jinja;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "chat_template_kwargs":{"date_string":"1 Dec 2026"},
 "max_tokens":2,"temperature":0}
--- response_body_like chomp
"usage":\{"prompt_tokens":169,"completion_tokens":2,"total_tokens":171\}



=== TEST 8c: a role the template accepts is rendered, whatever its name
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"narrator","content":"It was dark."},
 {"role":"user","content":"Once upon a time"}],"max_tokens":2,"temperature":0}
--- response_body_like chomp
"usage":\{"prompt_tokens":32,"completion_tokens":2,"total_tokens":34\}
--- error_log
infer_model "tiny": chat template from the default



=== TEST 8d: a message without content where the template needs it: 400 naming it
--- http_config
    infer_model cm $TEST_NGINX_CHATML_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai cm; }
--- request
POST /v1/chat/completions
{"model":"cm","messages":[{"role":"user","content":"Hi"},
 {"role":"assistant"},{"role":"user","content":"Go on"}]}
--- error_code: 400
--- response_body_like chomp
"message":"the model's chat template cannot render messages\[1\] \(role \\"assistant\\"\): UndefinedError: [^"]*content[^"]*","type":"invalid_request_error","param":"messages"



=== TEST 9: messages are required
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","prompt":"Hi"}
--- error_code: 400
--- response_body
{"error":{"message":"'messages' is required","type":"invalid_request_error","param":"messages","code":null}}



=== TEST 10: logprobs without top_logprobs: the chat shape, no alternatives
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":2,"temperature":0,"logprobs":true}
--- response_body_like eval
my $t = qr/\{"token":"[^"]*","logprob":$::lp,"bytes":\[\d+(?:,\d+)*\],"top_logprobs":\[\]\}/;
qr/^\{$::id,"choices":\[\{"index":0,"message":\{"role":"assistant","content":"[^"]*"\},"logprobs":\{"content":\[$t,$t\],"refusal":null\},"finish_reason":"length"\}\],"usage":\{"prompt_tokens":18,"completion_tokens":2,"total_tokens":20\}\}\n\z/



=== TEST 11: top_logprobs 3: entries join to the content, greedy's token is the best
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":16,"temperature":0,"logprobs":true,"top_logprobs":3}
--- response_body_filters eval
\&::chat_logprobs
--- response_body
16 entries (16 tokens), 3 alternatives each



=== TEST 12: streamed chat logprobs: in the chunks, the same checks
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":16,"temperature":0,"logprobs":true,"top_logprobs":20,
 "stream":true,"stream_options":{"include_usage":true}}
--- response_body_filters eval
\&::chat_logprobs
--- response_body
16 entries (16 tokens), 20 alternatives each



=== TEST 13: n 2: two choices, each the greedy reply
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/chat/completions
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "max_tokens":6,"temperature":0,"n":2}
--- response_body_filters eval
sub {
    my $r = JSON::PP->new->decode($_[0]);
    my @c = @{ $r->{choices} };
    return "choices " . scalar(@c) . ", indices $c[0]{index} $c[1]{index}, "
           . ($c[0]{message}{content} eq $c[1]{message}{content}
              ? "same" : "different") . " content, "
           . "$r->{usage}{completion_tokens} tokens\n";
}
--- response_body
choices 2, indices 0 1, same content, 12 tokens



=== TEST 14: POST /v1/tokenize a prompt as vLLM answers it (ids as Hugging Face tokenizers gives them)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/tokenize
{"model":"tiny","prompt":"Once upon a time"}
--- response_headers
Content-Type: application/json
--- response_body
{"count":5,"max_model_len":512,"tokens":[1,403,407,261,378],"token_strs":null}



=== TEST 15: tokenize without specials, with the token strings, the model left out (the location has one)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/tokenize
{"prompt":"Once upon a time","add_special_tokens":false,"return_token_strs":true}
--- response_body
{"count":4,"max_model_len":512,"tokens":[403,407,261,378],"token_strs":["▁Once","▁upon","▁a","▁time"]}



=== TEST 16: tokenize messages: what the chat request feeds the model (transformers' apply_chat_template(tokenize=True))
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/tokenize
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}]}
--- response_body
{"count":18,"max_model_len":512,"tokens":[1,318,419,285,467,403,407,261,378,13,412,419,419,293,413,303,413,467],"token_strs":null}



=== TEST 17: tokenize messages through a template file, with its kwargs (transformers' ids)
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/meta-llama-Llama-3.1-8B-Instruct.jinja;
--- config
    location /v1/ { infer_openai tiny; }
--- request
POST /v1/tokenize
{"model":"tiny","messages":[{"role":"user","content":"Once upon a time"}],
 "chat_template_kwargs":{"date_string":"1 Dec 2026"}}
--- response_body
{"count":169,"max_model_len":512,"tokens":[1,410,504,506,356,295,413,98,260,380,285,98,292,506,505,419,422,356,411,423,504,506,367,98,260,380,285,98,292,506,505,13,13,457,323,413,299,410,462,416,327,421,266,428,411,410,455,294,411,467,410,455,411,331,423,430,285,410,479,477,479,472,13,434,414,418,283,410,455,294,411,467,410,475,410,455,411,429,410,479,477,479,490,13,13,504,506,411,309,98,292,506,505,504,506,356,295,413,98,260,380,285,98,292,506,505,425,419,285,504,506,367,98,260,380,285,98,292,506,505,13,13,441,416,331,407,261,378,504,506,411,309,98,292,506,505,504,506,356,295,413,98,260,380,285,98,292,506,505,412,419,419,293,413,303,413,504,506,367,98,260,380,285,98,292,506,505,13,13],"token_strs":null}



=== TEST 18: POST /v1/detokenize: special tokens kept, as tokenizer.decode() gives them
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
['POST /v1/detokenize
{"model":"tiny","tokens":[1,403,407,261,378]}', 'POST /v1/detokenize
{"model":"tiny","tokens":[403,407,2,1,378]}', 'POST /v1/detokenize
{"model":"tiny","tokens":[]}']
--- response_body eval
[qq{{"prompt":"<s> Once upon a time"}\n}, qq{{"prompt":"Once upon</s><s> time"}\n}, qq{{"prompt":""}\n}]



=== TEST 19: tokenize and detokenize errors: 400 naming the field
--- http_config
    infer_model tiny $TEST_NGINX_MODEL_DIR threads=1;
--- config
    location /v1/ { infer_openai tiny; }
--- request eval
['POST /v1/tokenize
{"model":"tiny"}', 'POST /v1/tokenize
{"model":"tiny","prompt":"a","messages":[]}', 'POST /v1/detokenize
{"model":"tiny","tokens":[9999]}', 'POST /v1/detokenize
{"model":"tiny","tokens":"1 2"}', 'POST /v1/tokenize
{"model":"big","prompt":"a"}']
--- error_code eval
[400, 400, 400, 400, 404]
--- response_body_like eval
[qr/"message":"give either 'prompt' or 'messages'","type":"invalid_request_error","param":"prompt"/,
 qr/"param":"prompt"/,
 qr/"message":"token id 9999 is outside the vocabulary of 512","type":"invalid_request_error","param":"tokens"/,
 qr/"param":"tokens"/,
 qr/"code":"model_not_found"/]



=== TEST 20: the families' templates with Llama-3's vocabulary: a one-line user chat is as many tokens as transformers makes of it
(apply_chat_template(add_generation_prompt=True) encoded by tokenizers
without added specials: Llama-3.0's own template 14, Llama-3.1's with its
system header 39, Qwen2.5's with its default system prompt 55)
--- http_config
    infer_model l30 $TEST_NGINX_LLAMA3_MODEL_DIR threads=1;
    infer_model l31 $TEST_NGINX_LLAMA3_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/meta-llama-Llama-3.1-8B-Instruct.jinja;
    infer_model q25 $TEST_NGINX_LLAMA3_MODEL_DIR threads=1
                chat_template=$TEST_NGINX_TEMPLATES/Qwen-Qwen2.5-7B-Instruct.jinja;
--- config
    location /v1/ { infer_openai l30 l31 q25; }
--- request eval
[map { qq{POST /v1/chat/completions
{"model":"$_","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":1,"temperature":0}} } qw(l30 l31 q25)]
--- response_body_like eval
[qr/"usage":\{"prompt_tokens":14,/, qr/"usage":\{"prompt_tokens":39,/,
 qr/"usage":\{"prompt_tokens":55,/]
--- timeout: 30
