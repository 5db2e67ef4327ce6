# Every bad directive or value fails "nginx -t" with a message that names
# the directive and the value.  Plain Test::More around nginx -t: nginx
# reports configuration errors on stderr (Debian's build logs there before
# any error_log is open), which Test::Nginx 0.30 does not look at.
use strict;
use warnings;

use Cwd ();
use IPC::Run qw(run);
use Test::More;

my $root = Cwd::cwd() . '/t/servroot-config';
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $model = $ENV{TEST_NGINX_MODEL_DIR} or die "TEST_NGINX_MODEL_DIR unset";
my $modules = join '', map { "load_module $_;\n" }
                       split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';

# name, http-level lines, server-level lines, expected stderr
my @cases = (
    ['unknown parameter',
     "infer_model tiny $model batch=4;", '',
     qr/\[emerg\] \d+#\d+: unknown parameter "batch=4" in "infer_model" in .*nginx\.conf:\d+/],
    ['bad integer',
     "infer_model tiny $model threads=two;", '',
     qr/invalid value "two" of "threads" in "infer_model", expected a positive integer/],
    ['zero is not a positive integer',
     "infer_model tiny $model max_seqs=0;", '',
     qr/invalid value "0" of "max_seqs" in "infer_model", expected a positive integer/],
    ['bad size',
     "infer_model tiny $model kv_cache=lots;", '',
     qr/invalid value "lots" of "kv_cache" in "infer_model", expected a size such as 64m or 2g/],
    ['bad time',
     "infer_model tiny $model timeout=soon;", '',
     qr/invalid value "soon" of "timeout" in "infer_model", expected a time such as 30s/],
    ['bad backend',
     "infer_model tiny $model backend=tpu;", '',
     qr/invalid value "tpu" of "backend" in "infer_model", expected cpu or cuda/],
    ['a KV cache that holds no block',
     "infer_model tiny $model kv_cache=1k;", '',
     qr/infer_model "tiny": kv_cache=1024 bytes holds no block of 16 tokens \(one block needs 20480 bytes with backend=cpu\)/],
    ['bad dtype',
     "infer_model tiny $model dtype=int4;", '',
     qr/invalid value "int4" of "dtype" in "infer_model", expected auto, f32, bf16 \(cpu\), int8 or f16 \(cuda\)/],
    ['a dtype the backend does not hold',
     "infer_model tiny $model dtype=f16;", '',
     qr/infer_model "tiny": dtype=f16: backend=cpu holds weights as f32, bf16 or int8/],
    ['more threads than any machine has',
     "infer_model tiny $model threads=100000;", '',
     qr/invalid value "100000" of "threads" in "infer_model", expected a positive integer up to 256/],
    ['CPU models with different threads=',
     "infer_model tiny $model threads=1;\n    infer_model big $model threads=2;",
     '', qr/infer_model "big": threads=2 differs from threads=1 of infer_model "tiny"; CPU models share one BLAS thread count per process/],
    ['bad reject log level',
     "infer_model tiny $model;\n    infer_reject_log_level debug;", '',
     qr/invalid value "debug" in .*nginx\.conf:\d+/],
    ['bad prefix_cache',
     "infer_model tiny $model prefix_cache=maybe;", '',
     qr/invalid value "maybe" of "prefix_cache" in "infer_model", expected on or off/],
    ['infer_priority twice',
     "infer_model tiny $model;\n    infer_priority 1;\n    infer_priority 2;",
     '', qr/"infer_priority" directive is duplicate/],
    ['bad output cap',
     "infer_model tiny $model max_output=big;", '',
     qr/invalid value "big" of "max_output" in "infer_model", expected a size such as 64m or 2g/],
    ['bad unsent limit',
     "infer_model tiny $model;\n    infer_unsent_limit lots;", '',
     qr/"infer_unsent_limit" directive invalid value/],
    ['a chat template file that is not there',
     "infer_model tiny $model chat_template=vicuna.jinja;", '',
     qr/infer_model "tiny": cannot open the chat template "\Q$root\E\/conf\/vicuna\.jinja" \(2: No such file or directory\)/],
    ['a chat template that does not parse: its line and column',
     "infer_model tiny $model chat_template=unclosed.jinja;", '',
     qr/infer_model "tiny": the chat template of \Q$root\E\/conf\/unclosed\.jinja does not parse: TemplateSyntaxError: [^\n]* \(line 3, column \d+\)/],
    ['a chat template that cannot render a chat',
     "infer_model tiny $model chat_template=raises.jinja;", '',
     qr/infer_model "tiny": the chat template of \Q$root\E\/conf\/raises\.jinja cannot render a chat: TemplateError: no chats here \(line 2, column \d+\)/],
    ['a chat template that reads what is not there',
     "infer_model tiny $model chat_template=undefined.jinja;", '',
     qr/infer_model "tiny": the chat template of \Q$root\E\/conf\/undefined\.jinja cannot render a chat: UndefinedError: [^\n]*'nothing'[^\n]* \(line 1, column \d+\)/],
    ['bad device list',
     "infer_model tiny $model devices=0,x;", '',
     qr/invalid value "0,x" of "devices" in "infer_model"/],
    ['parameter without a value',
     "infer_model tiny $model cpu;", '',
     qr/invalid parameter "cpu" in "infer_model", expected key=value/],
    ['missing model directory gives the engine\'s message',
     "infer_model tiny /nonexistent/model;", '',
     qr{infer_model "tiny": .*/nonexistent/model/config\.json}],
    ['a directory without a model',
     "infer_model tiny $root;", '',
     qr{infer_model "tiny": .*\Q$root\E/config\.json}],
    ['duplicate model name',
     "infer_model tiny $model;\n    infer_model tiny $model;", '',
     qr/duplicate infer_model "tiny"/],
    ['infer_openai names an unknown model',
     "infer_model tiny $model;", 'location /v1/ { infer_openai small; }',
     qr/unknown model "small" in "infer_openai"/],
    ['infer_openai before the model is declared',
     '', 'location /v1/ { infer_openai tiny; }',
     qr/unknown model "tiny" in "infer_openai" \(declare it with "infer_model" earlier in the http block\)/],
    ['infer_model is an http-level directive',
     '', "infer_model tiny $model;",
     qr/"infer_model" directive is not allowed here/],
    ['infer_model needs a name and a directory',
     'infer_model tiny;', '',
     qr/invalid number of arguments in "infer_model" directive/],
    ['infer_health takes no arguments',
     "infer_model tiny $model;", 'location = /healthz { infer_health tiny; }',
     qr/invalid number of arguments in "infer_health" directive/],
    ['infer_openai needs a model',
     "infer_model tiny $model;", 'location /v1/ { infer_openai; }',
     qr/invalid number of arguments in "infer_openai" directive/],
    ['tp must divide the heads',
     "infer_model tiny $model tp=3;", '',
     qr/infer_model "tiny": tp=3 does not divide the model's 8 attention heads and 4 key\/value heads/],
    ['devices are for the cuda backend',
     "infer_model tiny $model devices=0,1;", '',
     qr/infer_model "tiny": devices= needs backend=cuda/],
    ['devices come in groups of tp',
     "infer_model tiny $model backend=cuda tp=2 devices=0,1,2;", '',
     qr/infer_model "tiny": 3 devices do not form groups of tp=2/],
    ['more workers than device groups',
     "infer_model tiny $model backend=cuda tp=2 devices=0,1,2,3;", '',
     qr/infer_model "tiny": worker_processes 3 need 3 groups of tp=2 devices, but devices= lists 4 devices/,
     'worker_processes 3;'],
);

system("rm -rf '$root' && mkdir -p '$root/conf' '$root/logs'") == 0 or die;

# chat_template= files, relative to the configuration's directory
my %templates = (
    'unclosed.jinja' => "{% for m in messages %}\n{{ m.content }}\n"
                        . "{% if m.role %}\n",
    'raises.jinja' => "{{ bos_token }}\n{{ raise_exception('no chats here') }}",
    'undefined.jinja' => "{{ messages[0].content + nothing.at.all }}",
    'good.jinja' => "{% for m in messages %}{{ m.content }}{% endfor %}",
);
for my $name (keys %templates) {
    open my $fh, '>', "$root/conf/$name" or die $!;
    print $fh $templates{$name};
    close $fh;
}

# A bad tokenizer.json fails nginx -t with the tokenizer's message, naming
# the file and what is wrong: the stories260K weights (linked) with the
# tokenizers of ../shared/repro (which made encode overflow or never end)
# and a few written here.
my $repro = "$model/../../repro";
my %tokenizers = (
    'split-backslash-C-unk' => "$repro/tokenizer-split-backslash-C-unk.json",
    'split-backslash-C-fallback' =>
        "$repro/tokenizer-split-backslash-C-fallback.json",
    'empty-normalized-added-token' =>
        "$repro/tokenizer-empty-normalized-added-token.json",
);
my $tok_model = '"model": {"type": "BPE", "vocab": {"a": 0, "<unk>": 1},'
              . ' "unk_token": "<unk>"}, "decoder": {"type": "Fuse"}';
my $replace_a = '{"type": "Replace", "pattern": {"String": "a"},'
              . ' "content": "aaaaaaaaaaaaaaaaaaaa"}';
my %written = (
    'empty-added-token' =>
        "{$tok_model, \"added_tokens\": [{\"id\": 2, \"content\": \"\"}]}",
    'growing-normalizer' =>
        "{$tok_model, \"normalizer\": {\"type\": \"Sequence\","
        . " \"normalizers\": [$replace_a, $replace_a]}}",
);
for my $name (keys %tokenizers, keys %written) {
    my $dir = "$root/model-$name";
    mkdir $dir or die "$dir: $!";
    for my $f ('config.json', 'model.safetensors') {
        symlink("$model/$f", "$dir/$f") or die "$dir/$f: $!";
    }
    if ($written{$name}) {
        open my $fh, '>', "$dir/tokenizer.json" or die $!;
        print $fh $written{$name};
        close $fh;
    } else {
        symlink($tokenizers{$name}, "$dir/tokenizer.json") or die $!;
    }
}

sub tok_case {
    my ($name, $want) = @_;
    my $file = quotemeta "$root/model-$name/tokenizer.json";
    return ["tokenizer $name",
            "infer_model tiny $root/model-$name;", '',
            qr/\[emerg\] .*infer_model "tiny": $file: $want/];
}

push @cases,
    tok_case('split-backslash-C-unk',
             qr/pre_tokenizer Split: regex error at offset 2 of "\\C": using \\C is disabled/),
    tok_case('split-backslash-C-fallback',
             qr/pre_tokenizer Split: regex error at offset 2 of "\\C": using \\C is disabled/),
    tok_case('empty-normalized-added-token',
             qr/added_tokens\[0\] "x" \(id 1\): normalizes to an empty string/),
    tok_case('empty-added-token',
             qr/added_tokens\[0\] \(id 2\): empty content/),
    tok_case('growing-normalizer',
             qr/the normalizer and pre_tokenizer could make more than 256 bytes of one input byte \(at normalizer 1\)/);

sub nginx_t {
    my ($http, $server, $main) = @_;
    $main //= '';
    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh <<"_EOC_";
$modules
$main
error_log $root/logs/error.log;
pid $root/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    $http
    server {
        listen 127.0.0.1:1;
        $server
    }
}
_EOC_
    close $fh;
    my ($out, $err) = ('', '');
    run [$nginx, '-t', '-p', "$root/", '-c', "$root/conf/nginx.conf"],
        \undef, \$out, \$err;
    return ($? >> 8, $err);
}

# A module built without CUDA (make CUDA=0, or no nvcc) refuses
# backend=cuda at nginx -t, before what the cases below look at.
my $no_cuda = qr/backend=cuda: this build has no CUDA support/;
my ($rc, $err) = nginx_t("infer_model tiny $model backend=cuda;", '');
my $cuda = $err !~ $no_cuda;
if (!$cuda) {
    isnt($rc, 0, 'without CUDA, backend=cuda fails nginx -t');
    like($err, $no_cuda, 'saying the build has no CUDA support');
}

($rc, $err) = nginx_t("infer_model tiny $model threads=1 "
                      . "max_batch_tokens=256 max_seqs=8 kv_cache=2g "
                      . "max_queue=16 timeout=30s tp=1 "
                      . ($cuda ? "backend=cuda devices=0 " : "")
                      . "chat_template=good.jinja;",
                      'location /v1/ { infer_openai tiny; } '
                      . 'location = /healthz { infer_health; }');
is($rc, 0, 'every parameter at once passes nginx -t') or diag($err);

for my $c (@cases) {
    my ($name, $http, $server, $want, $main) = @$c;
    $want = $no_cuda if !$cuda && $http =~ /backend=cuda/;
    ($rc, $err) = nginx_t($http, $server, $main);
    isnt($rc, 0, "$name: nginx -t fails");
    like($err, $want, "$name: the message names it");
}

done_testing();
