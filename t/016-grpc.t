# KServe v2 gRPC with real clients: t/clients/grpc_check.py drives nginx with
# tritonclient.grpc and with grpcio stubs that grpcio-tools generates from
# src/proto/grpc_service.proto, over h2c and over TLS (a self-signed
# certificate made here with openssl); each of its lines is a test here.
# Plain Test::More with its own nginx (master and one worker), so that a
# worker that crashed shows in the log.
use strict;
use warnings;

use IO::Socket::INET;
use IPC::Run qw(run);
use Test::More;
use Time::HiRes qw(sleep);
use InferNginx;

$ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON is not set (make venv; make test sets it)';
system('openssl version >/dev/null 2>&1') == 0
    or plan skip_all => 'openssl is not installed';
my $srv = InferNginx->new(name => 'grpc', port => 16);
END { $srv->stop if $srv }
my ($repo, $root, $model) = ($srv->repo, $srv->root, $srv->model);
my ($h2c, $tls, $http) = ($srv->port(0), $srv->port(1), $srv->port(2));

run ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
     '-keyout', "$root/conf/key.pem", '-out', "$root/conf/cert.pem",
     '-days', '1', '-subj', '/CN=localhost',
     '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    \undef, \my $so, \my $se;
is($? >> 8, 0, 'a self-signed certificate') or diag($se);

$srv->start(connections => 256, http => <<"_EOC_");
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
_EOC_

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
    my ($name, @more) = @$mode;
    $srv->client("grpc_check.py $name",
                 ["$repo/t/clients/grpc_check.py", $name, @args, @more],
                 prefix => "$name: ");
}

like($srv->log, qr/client gone, cancelling request/,
     'the cancelled stream was cancelled in the engine');
$srv->log_clean;

done_testing();
