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
    ['bad chat template name',
     "infer_model tiny $model chat_template=vicuna;", '',
     qr/invalid value "vicuna" of "chat_template" in "infer_model", expected auto, llama2, llama3, chatml or plain/],
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

my ($rc, $err) = nginx_t("infer_model tiny $model threads=1 "
                         . "max_batch_tokens=256 max_seqs=8 kv_cache=2g "
                         . "max_queue=16 timeout=30s tp=1 backend=cuda "
                         . "devices=0 "
                         . "chat_template=chatml;",
                         'location /v1/ { infer_openai tiny; } '
                         . 'location = /healthz { infer_health; }');
is($rc, 0, 'every parameter at once passes nginx -t') or diag($err);

for my $c (@cases) {
    my ($name, $http, $server, $want, $main) = @$c;
    ($rc, $err) = nginx_t($http, $server, $main);
    isnt($rc, 0, "$name: nginx -t fails");
    like($err, $want, "$name: the message names it");
}

done_testing();
