# infer_api_keys: Bearer keys from a file (plain, or SHA-256 as hex, made
# here with Perl's Digest::SHA), 401 in each protocol's error shape (OpenAI
# JSON, KServe JSON, gRPC UNAUTHENTICATED through grpcio), keys rotated by a
# reload, and bad files refused by nginx -t.  Plain Test::More with its own
# nginx (t/lib/InferNginx.pm).
use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use IPC::Run qw(run);
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use InferNginx;

my $srv = InferNginx->new(name => 'keys', port => 22);
END { $srv->stop if $srv }
my ($root, $model, $nginx) = ($srv->root, $srv->model, $srv->nginx);
my ($port, $h2c_port) = ($srv->port, $srv->port(1));
my $python = $ENV{TEST_PYTHON};

sub write_file { $srv->write_conf(@_) }

sub server {
    my ($keys) = @_;
    return <<"_EOC_";
    infer_model tiny $model threads=1;
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.1:$h2c_port http2;
        infer_api_keys $keys;
        location /v1/ { infer_openai tiny; }
        location /v2 { infer_kserve tiny; }
        location /inference.GRPCInferenceService/ { infer_grpc tiny; }
        location = /healthz {
            infer_api_keys off;
            infer_health;
        }
        location = /metrics {
            infer_api_keys off;
            infer_metrics;
        }
        # satisfy any: the key or the address lets a request in
        location /lan/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            infer_openai tiny;
        }
        location /wan/ {
            satisfy any;
            deny all;
            infer_openai tiny;
        }
    }
_EOC_
}

write_file("$root/conf/keys", "# the team's keys\nsk-test-one\n\n  "
           . sha256_hex('sk-test-two') . "  \r\n");

# --- bad files: nginx -t says so ---------------------------------------------
write_file("$root/conf/empty", "# nothing\n\n");
for my $case (["$root/conf/nosuch",
               qr/infer_api_keys: cannot open "[^"]*nosuch"/],
              ["$root/conf/empty",
               qr/infer_api_keys: "[^"]*empty" has no keys/]) {
    my ($file, $re) = @$case;
    my ($rc, $err) = $srv->test_conf(http => server($file));
    isnt($rc, 0, "nginx -t refuses $file");
    like($err, $re, 'and says why');
}

$srv->start(http => server("$root/conf/keys"));

# to this nginx, or (local $port) to another
our $to = $port;
sub http { InferNginx::http_to($to, @_) }

my $completion = '{"model":"tiny","prompt":"Once","max_tokens":2}';

# --- OpenAI ------------------------------------------------------------------
for my $case ([undef, 'Missing bearer'],
              ['Bearer sk-test-three', 'Incorrect API key'],
              ['Basic c2stdGVzdC1vbmU6', 'Missing bearer'],
              ['Bearer ', 'Missing bearer'],
              ['Bearer sk-test-on', 'Incorrect API key'],
              ['Bearer ' . sha256_hex('sk-test-two'), 'Incorrect API key']) {
    my ($auth, $why) = @$case;
    my $what = defined $auth ? "Authorization: $auth" : 'no Authorization';
    my ($st, $h, $b) = http('POST', '/v1/completions', $completion,
                            defined $auth ? ("Authorization: $auth") : ());
    is($st, 401, "OpenAI, $what: 401");
    my $err = eval { decode_json($b)->{error} } || {};
    is(join(' ', map { $_ // 'null' } @$err{qw(type code param)}),
       'invalid_request_error invalid_api_key null',
       "$what: OpenAI's error fields");
    like($err->{message} // '', qr/^$why/, "$what: $why");
    is($h->{'www-authenticate'}, 'Bearer', "$what: WWW-Authenticate");
}

for my $auth ('Bearer sk-test-one', 'bearer   sk-test-one  ',
              'Bearer sk-test-two') {
    my ($st, $h, $b) = http('POST', '/v1/completions', $completion,
                            "Authorization: $auth");
    is($st, 200, "OpenAI, Authorization: $auth: 200");
}

# --- satisfy any: either the key or another access module lets it in --------
{
    my ($st, $h) = http('POST', '/lan/v1/completions', $completion);
    is($st, 200, 'satisfy any: an allowed address needs no key');
    ok(!exists $h->{'www-authenticate'}, '... and gets no WWW-Authenticate');
    ($st) = http('POST', '/wan/v1/completions', $completion,
                 'Authorization: Bearer sk-test-one');
    is($st, 200, 'satisfy any: a denied address with a key gets in');
    ($st, $h) = http('POST', '/wan/v1/completions', $completion,
                     'Authorization: Bearer sk-wrong');
    is($st, 401, 'satisfy any: a denied address with a wrong key: 401');
    is($h->{'www-authenticate'}, 'Bearer', '... with WWW-Authenticate');
}

# --- KServe ------------------------------------------------------------------
{
    my ($st, $h, $b) = http('GET', '/v2/health/live');
    is($st, 401, 'KServe without a key: 401');
    my $j = eval { decode_json($b) } || {};
    ok(!ref $j->{error} && ($j->{error} // '') =~ /^Missing bearer/,
       'in KServe\'s shape {"error": message}') or diag($b);
    ($st) = http('GET', '/v2/health/live', undef,
                 'Authorization: Bearer sk-test-two');
    is($st, 200, 'KServe with the hashed key: 200');
    ($st) = http('GET', '/healthz');
    is($st, 200, 'infer_api_keys off: no key needed');
}

# --- gRPC, with grpcio -------------------------------------------------------
my $grpc_py = <<'_PY_';
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
live = ch.unary_unary('/inference.GRPCInferenceService/ServerLive',
                      request_serializer=lambda x: x,
                      response_deserializer=lambda x: x)
for key in sys.argv[2:]:
    md = [] if key == '-' else [('authorization', 'Bearer ' + key)]
    try:
        live(b'', metadata=md, timeout=10)
        print(key, 'OK')
    except grpc.RpcError as e:
        print(key, e.code().name, e.details())
_PY_
SKIP: {
    skip 'TEST_PYTHON is not set', 3 unless $python;
    run [$python, '-c', $grpc_py, "127.0.0.1:$h2c_port", '-', 'sk-wrong',
         'sk-test-one'], \undef, \my $out, \my $err;
    my @l = split /\n/, $out;
    like($l[0] // '', qr/^- UNAUTHENTICATED Missing bearer/,
         'gRPC without a key: UNAUTHENTICATED') or diag($err);
    like($l[1] // '', qr/^sk-wrong UNAUTHENTICATED Incorrect API key/,
         'gRPC with a wrong key: UNAUTHENTICATED');
    is($l[2] // '', 'sk-test-one OK', 'gRPC with a key: OK');
}

# --- the rejections are counted ----------------------------------------------
{
    my (undef, undef, $text) = http('GET', '/metrics');
    my $n = 0;
    $n += $1 while $text =~ /^infer_request_errors_total\{[^}]*
                             kind="unauthorized"\}\ (\d+)$/mgx;
    is($n, 6 + 1 + ($python ? 2 : 0), "infer_metrics counts $n 401s");
}

# --- rotation: a reload rereads the file ------------------------------------
{
    write_file("$root/conf/keys", "sk-test-three\n");
    my ($st) = http('POST', '/v1/completions', $completion,
                    'Authorization: Bearer sk-test-one');
    is($st, 200, 'before the reload the old key works');
    my @old = $srv->reload;
    my $ok = 0;
    for (1 .. 100) {
        sleep 0.1;
        ($st) = http('POST', '/v1/completions', $completion,
                     'Authorization: Bearer sk-test-three');
        if ($st == 200) { $ok = 1; last }
    }
    ok($ok, 'after the reload the new key works');
    # until the old worker has gone it may still accept a connection
    $srv->wait_gone(@old);
    ($st) = http('POST', '/v1/completions', $completion,
                 'Authorization: Bearer sk-test-one');
    is($st, 401, 'and the old one is refused');
}

# --- conf/nginx-keys.conf as shipped: keys, then limit_req per key ---------
{
    my $croot = "$root/shipped";
    my $cport = $srv->port(2);
    system("mkdir -p '$croot/conf' '$croot/logs' '$croot/modules'") == 0
        or die;
    my ($so) = split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';
    symlink $so, "$croot/modules/ngx_http_infer_module.so" or die $!;
    open my $in, '<', $srv->repo . "/conf/nginx-keys.conf" or die $!;
    my $c = do { local $/; <$in> };
    $c =~ s/127\.0\.0\.1:8080/127.0.0.1:$cport/ or die;
    $c =~ s/listen 127\.0\.0\.1:8081 http2;//;
    write_file("$croot/conf/nginx.conf", $c);
    write_file("$croot/conf/infer_model.conf",
               "infer_model default $model threads=1;\n");
    write_file("$croot/conf/api_keys", "sk-shipped\n");
    run [$nginx, '-p', "$croot/", '-c', 'conf/nginx.conf',
         '-e', "$croot/logs/error.log"], \undef, \my $o2, \my $e2;
    is($? >> 8, 0, 'conf/nginx-keys.conf starts') or diag($e2);
    for (1 .. 200) {
        last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$cport");
        sleep 0.05;
    }
    local $to = $cport;
    my ($st) = http('POST', '/v1/completions',
                    '{"model":"default","prompt":"x","max_tokens":1}');
    is($st, 401, 'shipped: no key, 401');
    my %seen;
    my $limited;
    for (1 .. 40) {
        my ($st, $h, $b) = http('POST', '/v1/completions',
            '{"model":"default","prompt":"x","max_tokens":1}',
            'Authorization: Bearer sk-shipped');
        $seen{$st}++;
        $limited //= [$h, $b] if $st == 429;
    }
    ok($seen{200} && $seen{429},
       "shipped: 40 quick requests of one key, "
       . join(', ', map { "$seen{$_} x $_" } sort keys %seen));
    SKIP: {
        skip 'no 429', 2 unless $limited;
        my $err = eval { decode_json($limited->[1])->{error} } || {};
        is("$err->{type} $err->{code}", 'requests rate_limit_exceeded',
           'the 429 in OpenAI\'s shape');
        is($limited->[0]{'retry-after'}, '1', 'with Retry-After');
    }
    ($st) = http('GET', '/healthz');
    is($st, 200, 'shipped: /healthz needs no key');
    open my $pf, '<', "$croot/logs/nginx.pid" or die $!;
    my ($cpid) = <$pf> =~ /(\d+)/;
    kill 'QUIT', $cpid;
    for (1 .. 100) { last unless kill 0, $cpid; sleep 0.05 }
}

$srv->log_clean;

done_testing();
