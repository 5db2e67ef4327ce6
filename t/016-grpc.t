# KServe v2 gRPC with real clients: t/clients/grpc_check.py drives nginx with
# tritonclient.grpc and with grpcio stubs that grpcio-tools generates from
# src/proto/grpc_service.proto, over h2c and over TLS (a self-signed
# certificate made here with openssl); each of its lines is a test here.
# Plain Test::More with its own nginx (master and one worker), so that a
# worker that crashed shows in the log.
use strict;
use warnings;

use Cwd ();
use IO::Socket::INET;
use IPC::Run qw(run);
use Test::More;
use Time::HiRes qw(sleep);

my $python = $ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON is not set (make venv; make test sets it)';
system('openssl version >/dev/null 2>&1') == 0
    or plan skip_all => 'openssl is not installed';
my $here = Cwd::cwd();
my $repo = $ENV{INFER_ROOT} || $here;
my $root = "$here/t/servroot-grpc";
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 16;
my ($h2c, $tls, $http) = ($base, $base + 1, $base + 2);
my $model = $ENV{TEST_NGINX_MODEL_DIR} or die "TEST_NGINX_MODEL_DIR unset";
my $modules = join '', map { "load_module $_;\n" }
                       split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';

sub pid_of {
    open my $fh, '<', "$root/logs/nginx.pid" or return;
    my ($pid) = <$fh> =~ /(\d+)/;
    return $pid;
}

sub quit {
    my $pid = pid_of() or return;
    kill 'QUIT', $pid;
    for (1 .. 100) { last unless kill 0, $pid; sleep 0.05 }
}

quit();         # one an interrupted run left
system("rm -rf '$root' && mkdir -p '$root/logs' '$root/conf'") == 0 or die;
run ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
     '-keyout', "$root/conf/key.pem", '-out', "$root/conf/cert.pem",
     '-days', '1', '-subj', '/CN=localhost',
     '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    \undef, \my $so, \my $se;
is($? >> 8, 0, 'a self-signed certificate') or diag($se);

open my $conf, '>', "$root/conf/nginx.conf" or die $!;
print $conf <<"_EOC_";
$modules
worker_processes 1;
master_process on;
daemon on;
error_log $root/logs/error.log info;
pid $root/logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $root/body;
    infer_model tiny $model threads=1;
    infer_model short $model threads=1 timeout=100ms;
    infer_model q $model threads=1 max_seqs=1 max_queue=1;
    server {
        listen 127.0.0.1:$h2c http2;
        listen 127.0.0.1:$tls ssl http2;
        ssl_certificate $root/conf/cert.pem;
        ssl_certificate_key $root/conf/key.pem;
        location /inference.GRPCInferenceService/ {
            client_max_body_size 64k;
            infer_grpc tiny short q;
        }
    }
    server {
        listen 127.0.0.1:$http;
        location /v2 { infer_kserve tiny; }
        location /stats { infer_stats; }
        location /inference.GRPCInferenceService/ { infer_grpc tiny; }
    }
}
_EOC_
close $conf;
END { quit() }

run [$nginx, '-p', "$root/", '-c', "$root/conf/nginx.conf",
     '-e', "$root/logs/error.log"], \undef, \my $o, \my $e;
is($? >> 8, 0, 'nginx starts') or diag($e);
# serving once a worker answers (the master listens before its worker has
# loaded the models: seconds under ASan)
my $up = 0;
for (1 .. 600) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$http");
    if ($s) {
        print $s "GET /stats HTTP/1.0\r\n\r\n";
        my $r = do { local $/; <$s> } // '';
        if ($r =~ m{^HTTP/1\.\d 200} && $r =~ /"name":"q"/) {
            $up = 1;
            last;
        }
    }
    sleep 0.05;
}
ok($up, 'a worker serves');

my @args = ("127.0.0.1:$h2c", "localhost:$tls", "127.0.0.1:$http",
            "$root/conf/cert.pem", $model);
for my $mode (['triton', "$repo/t/data/ref/stories260K.logits"],
              ['stubs', "$repo/src/proto/grpc_service.proto",
               "$root/logs/nginx.pid"])
{
    my ($out, $err) = ('', '');
    my ($name, @more) = @$mode;
    run [$python, "$repo/t/clients/grpc_check.py", $name, @args, @more],
        \undef, \$out, \$err;
    my $rc = $? >> 8;
    my $n = 0;
    for (split /\n/, $out) {
        if (/^(not )?ok - (.*)$/) {
            ok(!defined $1, "$name: $2");
            $n++;
        }
    }
    is($rc, 0, "grpc_check.py $name exits 0") or diag($err);
    like($out, qr/^done $n$/m, "grpc_check.py $name ran to its end ($n checks)");
}

open my $log, '<', "$root/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
like($text, qr/client gone, cancelling request/,
     'the cancelled stream was cancelled in the engine');

unlike($text, qr/\[alert\]|\[crit\]|exited on signal/,
       'no worker crashed, no alert');

done_testing();
