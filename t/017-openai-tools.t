# Tool calling through the real openai Python SDK (t/clients/openai_tools.py
# does the checks; each "ok - ..." line is a test here): a completion with
# tools, the tool's result sent back, the final answer, and the stream's
# deltas, for the Hermes/Qwen, Llama-3.1 JSON and Mistral formats, each
# found from its published template.
#
# The model has random weights (build/infer-gen-model) and stories260K's
# tokenizer with added tokens, each the text of a whole tool call, and
# Mistral's special [TOOL_CALLS] with a call and content to go with it;
# logit_bias +100 on one makes the model write it.  Plain Test::More: it
# runs its own nginx (master and one worker).
use strict;
use warnings;

use JSON::PP ();
use Test::More;
use InferNginx;

$ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON unset (make nginx-test sets it to the '
                        . 'venv of t/requirements.txt)';
my $srv = InferNginx->new(name => 'openai-tools', port => 19);
END { $srv->stop if $srv }
my ($repo, $port, $src, $root) = ($srv->repo, $srv->port, $srv->model,
                                  $srv->root);
my $gen = $ENV{TEST_NGINX_GEN_MODEL} || "$repo/build/infer-gen-model";
my $templates = ($ENV{INFER_SHARED} || "$repo/../shared") . '/chat_templates';

sub slurp {
    open my $fh, '<', $_[0] or die "$_[0]: $!";
    local $/;
    return scalar <$fh>;
}

sub spew {
    open my $fh, '>', $_[0] or die "$_[0]: $!";
    print $fh $_[1];
    close $fh;
}

mkdir "$root/tok" or die "$root/tok: $!";

# The tokenizer: stories260K's with the calls as added tokens, and Qwen2.5's
# template in its tokenizer_config.json.
my $json = JSON::PP->new->canonical;
my $tok = $json->decode(slurp("$src/tokenizer.json"));
my $first = 0;
for my $id (values %{ $tok->{model}{vocab} }) {
    $first = $id + 1 if $id >= $first;
}
my @calls = (
    "<tool_call>\n" . q|{"name": "get_weather", "arguments": {"city": "Paris"}}|
        . "\n</tool_call>",
    q|{"name": "get_weather", "parameters": {"city": "Paris"}}|,
    q|[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]|,
    "<tool_call>\n" . q|{"name": "get_weather", "arguments": {"city": |,
    # a real Mistral tokenizer's marker: a special token (tokenizer.json
    # of Mistral-7B-Instruct-v0.3, Nemo), then the call as text, content
    # before it
    '[TOOL_CALLS]',
    q|[{"name": "get_weather", "arguments": {"city": "Paris"}}]|,
    'Let me check.',
);
for my $i (0 .. $#calls) {
    push @{ $tok->{added_tokens} }, {
        id => $first + $i, content => $calls[$i],
        special => $calls[$i] eq '[TOOL_CALLS]' ? JSON::PP::true
                                                : JSON::PP::false,
        normalized => JSON::PP::false, single_word => JSON::PP::false,
        lstrip => JSON::PP::false, rstrip => JSON::PP::false,
    };
}
spew("$root/tok/tokenizer.json", $json->encode($tok));
my $cfg = $json->decode(slurp("$src/tokenizer_config.json"));
$cfg->{chat_template} = slurp("$templates/Qwen-Qwen2.5-7B-Instruct.jinja");
spew("$root/tok/tokenizer_config.json", $json->encode($cfg));
system("$gen '$root/model' --preset tiny-llama --seed 3 "
       . "--tokenizer '$root/tok' > /dev/null") == 0
    or die "cannot generate the model with $gen";

$srv->start(http => <<"_EOC_") or BAIL_OUT("nginx did not start");
    infer_model hermes $root/model threads=1;
    infer_model llama3 $root/model threads=1
                chat_template=$templates/meta-llama-Llama-3.1-8B-Instruct.jinja;
    infer_model mistral $root/model threads=1
                chat_template=$templates/mistralai-Mistral-Nemo-Instruct-2407.jinja;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai hermes llama3 mistral; }
    }
_EOC_

my $checks = $srv->client('the SDK client',
                          ["$repo/t/clients/openai_tools.py",
                           "http://127.0.0.1:$port/v1", $first],
                          timeout => 300);
cmp_ok($checks, '>=', 25, "the client made its $checks checks");

my $log = $srv->log;
for my $m (['hermes', 'tokenizer_config.json', 'hermes'],
           ['llama3', '/', 'llama3_json'], ['mistral', '/', 'mistral'])
{
    like($log, qr/infer_model "$m->[0]": chat template from \Q$m->[1]\E[^,]*, tool calls $m->[2]\b/,
         "$m->[0]: tool calls $m->[2], found from its template");
}
$srv->log_clean;

done_testing();
