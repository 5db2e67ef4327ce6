# The real openai Python SDK (t/requirements.txt, unmodified) against the
# OpenAI front end: completions and chat, logprobs against Hugging Face
# transformers, echo, scoring with max_tokens 0, n, streaming, the
# penalties and logit_bias, GET /v1/models/{id}, and the 400s of the fields
# the server does not implement.  t/clients/openai_sdk.py does the checks;
# each of its "ok - ..." / "not ok - ..." lines is a test here.  Plain
# Test::More: it runs its own nginx (master and one worker).
use strict;
use warnings;

use Cwd ();
use IPC::Run qw(run timeout);
use Test::More;

my $python = $ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON unset (make nginx-test sets it to the '
                        . 'venv of t/requirements.txt)';

# tools/asan-nginx.sh runs the suites from a copy of t/: the client and
# the reference are found from the repository
my $repo = $ENV{INFER_ROOT} || Cwd::cwd();
my $root = Cwd::cwd() . '/t/servroot-openai-sdk';
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 15;
my $model = $ENV{TEST_NGINX_MODEL_DIR} or die "TEST_NGINX_MODEL_DIR unset";
my $ref = "$repo/t/data/ref/stories260K.logits";

my $modules = join '', map { "load_module $_;\n" }
                       split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';

sub write_conf {
    my ($file, $extra) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh <<"_EOC_";
$modules
worker_processes 1;
master_process on;
daemon on;
error_log $root/logs/error.log info;
pid $root/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $root/body;
    infer_model tiny $model threads=1;
    $extra
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai tiny; }
    }
}
_EOC_
    close $fh;
}

sub master_pid {
    open my $fh, '<', "$root/logs/nginx.pid" or return;
    my ($pid) = <$fh> =~ /(\d+)/;
    return $pid;
}

sub stop_nginx {
    my $pid = master_pid() or return;
    kill 'QUIT', $pid;
    for (1 .. 100) {
        last unless kill 0, $pid;
        select undef, undef, undef, 0.05;
    }
}

# An nginx left by an interrupted run would hold the port.
stop_nginx();
system("rm -rf '$root' && mkdir -p '$root/logs' '$root/conf'") == 0 or die;

# infer_max_n is checked by nginx -t, naming the directive.
for my $bad ('0', '129', 'many') {
    write_conf("$root/conf/bad.conf", "infer_max_n $bad;");
    my ($out, $err) = ('', '');
    run [$nginx, '-t', '-p', $root, '-c', "$root/conf/bad.conf"],
        \undef, \$out, \$err;
    like($err, qr/"infer_max_n"/, "nginx -t refuses infer_max_n $bad, "
         . "naming the directive");
    like($err, qr/test failed/, "... and fails");
}

write_conf("$root/conf/nginx.conf", '');
system($nginx, '-p', $root, '-c', "$root/conf/nginx.conf") == 0
    or BAIL_OUT("nginx did not start");
END { stop_nginx() }

my ($out, $err) = ('', '');
my $ok = eval {
    run [$python, "$repo/t/clients/openai_sdk.py",
         "http://127.0.0.1:$port/v1",
         $model, $ref], \undef, \$out, \$err, timeout(600);
};
my $checks = 0;
for my $line (split /\n/, $out) {
    if ($line =~ /^(not )?ok - (.*)$/) {
        ok(!$1, $2);
        $checks++;
    } elsif ($line =~ /^# ?(.*)$/) {
        diag($1);
    }
}
ok($ok, 'the SDK client ran to its end') or diag($err || $@);
cmp_ok($checks, '>=', 40, "the client made its $checks checks");

open my $fh, '<', "$root/logs/error.log" or die $!;
my @alerts = grep { /\[(alert|emerg|crit)\]/ } <$fh>;
ok(!@alerts, 'no alert in the error log') or diag(@alerts);

done_testing();
