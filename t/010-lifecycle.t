# What the block format cannot express: a graceful reload in the middle of
# a stream, a full admission queue under concurrent load, many HTTP/2
# streams on one connection, TLS, and seeded sampling across requests.
# Plain Test::More: it runs its own nginx (master and one worker) and does
# not depend on Test::Nginx.
use strict;
use warnings;

use Cwd ();
use IO::Select;
use IO::Socket::INET;
use IPC::Run qw(run);
use JSON::PP ();
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use Test::More;
use Time::HiRes qw(sleep time);

my $root = Cwd::cwd() . '/t/servroot-lifecycle';
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 7;
my $tls_port = $port + 1;
my $h2c_port = $port + 2;      # h2c is prior knowledge only in 1.22
my $tiny_buf_port = $port + 3;
my $model = $ENV{TEST_NGINX_MODEL_DIR} or die "TEST_NGINX_MODEL_DIR unset";
my $slow = "$root/tiny-llama";
my $gen = $ENV{TEST_NGINX_GEN_MODEL} || 'build/infer-gen-model';

# An nginx left by an interrupted run would hold the ports.
if (open my $fh, '<', "$root/logs/nginx.pid") {
    my ($pid) = <$fh> =~ /(\d+)/;
    kill 'QUIT', $pid if $pid;
    sleep 0.5;
}
system("rm -rf '$root' && mkdir -p '$root/logs' '$root/conf'") == 0 or die;
system("$gen '$slow' --preset tiny-llama --seed 1 > /dev/null") == 0
    or die "cannot generate $slow";
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout "
       . "'$root/conf/key.pem' -out '$root/conf/cert.pem' -days 2 "
       . "-subj /CN=localhost 2> /dev/null") == 0
    or die "openssl req failed";

my $modules = join '', map { "load_module $_;\n" }
                       split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';

sub write_conf {
    my $extra = shift // '';
    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh <<"_EOC_";
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
    infer_model slow $slow threads=1 max_seqs=1 max_queue=1;
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.1:$h2c_port http2;
        listen 127.0.0.1:$tiny_buf_port sndbuf=4k;
        location /v1/ { infer_openai tiny slow; }
        location /small/v1/ {
            infer_unsent_limit 4k;
            infer_openai tiny;
        }
        location /stuck/v1/ {
            infer_unsent_limit 4k;
            send_timeout 1s;
            infer_openai tiny;
        }
        location = /healthz { infer_health; }
        location = /stats { infer_stats; }
    }
    server {
        listen 127.0.0.1:$tls_port ssl http2;
        ssl_certificate $root/conf/cert.pem;
        ssl_certificate_key $root/conf/key.pem;
        location /v1/ { infer_openai tiny; }
    }
    $extra
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
    for (1 .. 100) { last unless kill 0, $pid; sleep 0.05 }
}

# Never leave nginx running, whatever happens to the tests.
END { stop_nginx() }

sub log_text {
    open my $fh, '<', "$root/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

sub curl {
    my @args = @_;
    my ($out, $err) = ('', '');
    run ['curl', '-sS', '--max-time', '30', @args], \undef, \$out, \$err;
    return $out;
}

# Opens an HTTP/1.1 POST and returns the socket without reading.
sub post_socket {
    my ($uri, $body, $to) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $to // $port,
                                  Timeout => 5) or die "connect: $!";
    print $s "POST $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             . "Content-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

sub read_all {
    my $s = shift;
    local $/;
    my $r = <$s>;
    close $s;
    return $r // '';
}

write_conf();
run [$nginx, '-p', "$root/", '-c', "$root/conf/nginx.conf",
     '-e', "$root/logs/error.log"], \undef, \my $o, \my $e;
is($? >> 8, 0, 'nginx starts') or diag($e);
for (1 .. 100) { last if master_pid() && curl("http://127.0.0.1:$h2c_port/healthz", '--http2-prior-knowledge') =~ /ok/; sleep 0.05 }

# --- graceful reload in the middle of a stream ---------------------------
{
    my $s = post_socket('/v1/completions', '{"model":"slow","prompt":"Hello",'
        . '"max_tokens":1500,"temperature":0,"stream":true,'
        . '"stream_options":{"include_usage":true}}');
    my $head = '';
    while ($head !~ /data: /) {
        my $n = sysread($s, my $buf, 4096);
        last unless $n;
        $head .= $buf;
    }
    like($head, qr/^HTTP\/1\.1 200/, 'stream started before the reload');

    my $t0 = time;
    kill 'HUP', master_pid();
    sleep 0.2;
    like(curl("http://127.0.0.1:$h2c_port/v1/completions",
              '--http2-prior-knowledge', '-d',
              '{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0}'),
         qr/"text":"Once upon a time"/, 'the new worker answers meanwhile');

    my $rest = $head . read_all($s);
    like($rest, qr/"usage":\{"prompt_tokens":2,"completion_tokens":1500,"total_tokens":1502\}\}\r?\n\r?\n(?:[0-9a-f]+\r\n)?data: \[DONE\]\n\n/,
         'the stream finished on the old worker, all 1500 tokens');
    my $log;
    for (1 .. 100) {
        $log = log_text();
        last if $log =~ /gracefully shutting down.*exit\b/s;
        sleep 0.05;
    }
    like($log, qr/gracefully shutting down.*\bexit\b/s,
         'old worker exited gracefully once its stream was done');
    unlike($log, qr/\[alert\]|\[crit\]|exited on signal/, 'no crash or alert');
}

# --- an HTTP/1.1 client that leaves mid-stream cancels it -------------------
{
    my $before = () = log_text() =~ /infer: client gone, cancelling/g;
    my $s = post_socket('/v1/completions', '{"model":"slow","prompt":"Hello",'
        . '"max_tokens":2000,"temperature":0,"stream":true}');
    my $head = '';
    while ($head !~ /data: /) {
        my $n = sysread($s, my $buf, 4096);
        last unless $n;
        $head .= $buf;
    }
    close $s;
    my $after = $before;
    for (1 .. 40) {
        $after = () = log_text() =~ /infer: client gone, cancelling/g;
        last if $after > $before;
        sleep 0.05;
    }
    is($after, $before + 1, 'closing mid-stream cancels the generation');
    sleep 0.2;      # the engine frees it at its next step
}

# --- admission queue full: 503 with Retry-After ---------------------------
{
    my $body = '{"model":"slow","prompt":"Hello","max_tokens":1000,'
               . '"temperature":0}';
    my @s = map { post_socket('/v1/completions', $body) } 1 .. 4;
    my @r = map { read_all($_) } @s;
    my @busy = grep { /^HTTP\/1\.1 503/ } @r;
    my @done = grep { /^HTTP\/1\.1 200/ } @r;
    ok(@busy >= 1, scalar(@busy) . ' of 4 rejected with 503');
    ok(@done >= 1, scalar(@done) . ' of 4 served');
    like($busy[0] // '', qr/\r\nRetry-After: 1\r\n/, '503 carries Retry-After');
    like($busy[0] // '', qr/"type":"server_error","param":null,"code":"overloaded"/,
         '503 body is an OpenAI error');
}

# --- concurrent HTTP/2 streams on one connection ---------------------------
# The engine's counters (infer_stats) show they were batched: 8 x 200
# generated tokens in far fewer than the 1600 steps one at a time would take.
sub tiny_stats {
    my $j = eval { JSON::PP::decode_json(curl("http://127.0.0.1:$port/stats")) };
    my ($tiny) = grep { $_->{name} eq 'tiny' } @{ $j->{models} // [] };
    return $tiny // {};
}
{
    my $f = "$root/body.json";
    open my $fh, '>', $f or die;
    print $fh '{"model":"tiny","prompt":[1],"max_tokens":200,"temperature":0}';
    close $fh;
    my $before = tiny_stats();
    my ($out, $err) = ('', '');
    run ['h2load', '-n', '8', '-c', '1', '-m', '8', '-d', $f,
         "http://127.0.0.1:$h2c_port/v1/completions"], \undef, \$out, \$err;
    like($out, qr/requests: 8 total, 8 started, 8 done, 8 succeeded/,
         '8 concurrent streams on one h2c connection succeed');
    like($out, qr/status codes: 8 2xx/, 'all 8 are 200');
    my $after = tiny_stats();
    my $generated = ($after->{generated_tokens} // 0)
                    - ($before->{generated_tokens} // 0);
    my $steps = ($after->{steps} // 0) - ($before->{steps} // 0);
    is($generated, 1600, 'infer_stats: 8 x 200 tokens generated');
    ok($steps > 0 && $steps <= 400,
       "the 8 streams shared the engine's steps ($steps steps for 1600 tokens)");
    is_deeply([ @{$after}{qw(running waiting)} ], [0, 0],
              'infer_stats: nothing running or waiting afterwards');
    is($after->{kv_blocks_free}, $after->{kv_blocks},
       'infer_stats: every KV block free afterwards');
    # what the engine runs on and holds
    is_deeply([ @{$after}{qw(backend dtype tp)} ], ['cpu', 'f32', 1],
              'infer_stats: backend, dtype, tp');
    ok($after->{threads} >= 1, "infer_stats: $after->{threads} threads");
    ok($after->{weight_bytes} > 0,
       "infer_stats: $after->{weight_bytes} bytes of weights");
    is($after->{kv_bytes}, $after->{kv_block_bytes} * $after->{kv_blocks},
       'infer_stats: KV bytes are blocks x block bytes');
    like($after->{kernels} // '', qr/^OpenBLAS [\d.]+, \w+ kernels/,
         "infer_stats: kernels ($after->{kernels})");
}

# --- HTTP/2 RST_STREAM cancels, the connection lives on ----------------------
# Frames by hand (RFC 7540): curl cannot reset one stream and keep going.
sub h2_frame {
    my ($type, $flags, $sid, $payload) = @_;
    # 24-bit length and 8-bit type share the first 32 bits.
    return pack('NCN', (length($payload) << 8) | $type, $flags, $sid)
           . $payload;
}

sub h2_read_frame {
    my ($s, $timeout) = @_;
    my $buf = '';
    my $deadline = time + $timeout;
    while (length($buf) < 9) {
        return if time > $deadline;
        my $n = sysread($s, $buf, 9 - length($buf), length($buf));
        return unless $n;
    }
    my ($l1, $l2, $type, $flags, $sid) = unpack('nCCCN', $buf);
    my $len = ($l1 << 8) | $l2;
    my $payload = '';
    while (length($payload) < $len) {
        my $n = sysread($s, $payload, $len - length($payload),
                        length($payload));
        return unless $n;
    }
    return ($type, $flags, $sid & 0x7fffffff, $payload);
}

{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $h2c_port, Timeout => 5)
        or die "connect: $!";
    my $body = '{"model":"slow","prompt":"Hello","max_tokens":2000,'
               . '"temperature":0,"stream":true}';
    my $path = '/v1/completions';
    # :method POST, :scheme http (static table), :path and :authority
    # literal without indexing, by static name index.
    my $hdrs = "\x83\x86" . "\x04" . chr(length $path) . $path
               . "\x01" . chr(9) . 'localhost';
    print $s "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2_frame(4, 0, 0, ''),
             h2_frame(1, 0x4, 1, $hdrs), h2_frame(0, 0x1, 1, $body);

    my ($got_data, $got_pong) = (0, 0);
    while (my ($type, $flags, $sid, $payload) = h2_read_frame($s, 5)) {
        print $s h2_frame(4, 1, 0, '') if $type == 4 && !($flags & 1);
        if ($type == 0 && $sid == 1 && length $payload) {
            $got_data = 1;
            last;
        }
    }
    ok($got_data, 'h2 stream 1 started streaming');

    print $s h2_frame(3, 0, 1, pack('N', 8));           # RST_STREAM CANCEL
    sleep 0.3;
    print $s h2_frame(6, 0, 0, 'pingpong');
    while (my ($type, $flags, $sid, $payload) = h2_read_frame($s, 3)) {
        if ($type == 6 && ($flags & 1) && $payload eq 'pingpong') {
            $got_pong = 1;
            last;
        }
    }
    ok($got_pong, 'the connection lives on after the reset');
    close $s;

    my $log = log_text();
    like($log, qr/client canceled stream 1/, 'nginx saw RST_STREAM');
    like($log, qr/client canceled stream 1.*infer: client gone, cancelling request/s,
         'the reset cancelled the generation');
}

# --- a client that stops reading: backpressure, then the whole stream ------
{
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die $!;
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) or die $!;
    $s->connect(pack_sockaddr_in($tiny_buf_port, inet_aton('127.0.0.1')))
        or die "connect: $!";
    my $body = '{"model":"slow","prompt":"Hello","max_tokens":1500,'
               . '"temperature":0,"stream":true,'
               . '"stream_options":{"include_usage":true}}';
    print $s "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\nContent-Length: " . length($body)
             . "\r\n\r\n$body";
    sleep 1.5;     # generation goes on while nginx cannot write
    my $r = read_all($s);
    my $events = () = $r =~ /data: \{"id"/g;
    like($r, qr/"usage":\{"prompt_tokens":2,"completion_tokens":1500,"total_tokens":1502\}\}\r?\n\r?\n(?:[0-9a-f]+\r\n)?data: \[DONE\]\n\n/,
         'a stalled reader still gets the whole stream');
    cmp_ok($events, '>', 1000, "$events events arrived, none lost");
}

# --- HTTP/2 streams whose window is closed: generation pauses, then resumes
# Stream windows of 1 byte (SETTINGS_INITIAL_WINDOW_SIZE): nginx can send
# nothing, so each response holds its output.  Past infer_unsent_limit (4k
# here) the engine pauses it instead of buffering every token; opening the
# windows lets all of it through, unchanged.
sub h2_open {
    my ($path, $window, @bodies) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $h2c_port, Timeout => 5)
        or die "connect: $!";
    my $hdrs = "\x83\x86" . "\x04" . chr(length $path) . $path
               . "\x01" . chr(9) . 'localhost';
    print $s "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
             h2_frame(4, 0, 0, pack('nN', 4, $window));
    my $sid = 1;
    for my $body (@bodies) {
        print $s h2_frame(1, 0x4, $sid, $hdrs), h2_frame(0, 0x1, $sid, $body);
        $sid += 2;
    }
    return $s;
}

{
    my $expected = do {
        open my $fh, '<', "$model/expected_greedy_200.txt" or die $!;
        local $/;
        <$fh>;
    };
    my $body = '{"model":"tiny","prompt":[1],"max_tokens":200,'
               . '"temperature":0,"stream":true}';
    my $before = tiny_stats();
    my $s = h2_open('/small/v1/completions', 1, ($body) x 4);
    sleep 1;
    my $paused = tiny_stats();
    my $made = ($paused->{generated_tokens} // 0)
               - ($before->{generated_tokens} // 0);
    ok($made > 0 && $made <= 240,
       "4 unread streams generated $made of 800 tokens, then paused");
    is($paused->{running}, 4, 'the paused streams keep their places');

    # open every window, read to the end, keep the connection window open
    print $s h2_frame(4, 0, 0, pack('nN', 4, 1 << 24)),
             h2_frame(8, 0, 0, pack('N', 1 << 30));
    my (%text, %ended);
    while (keys %ended < 4) {
        my ($type, $flags, $sid, $payload) = h2_read_frame($s, 10) or last;
        print $s h2_frame(4, 1, 0, '') if $type == 4 && !($flags & 1);
        next unless $type == 0;
        $text{$sid} .= $payload;
        $ended{$sid} = 1 if $flags & 1;
    }
    close $s;
    my $exact = grep {
        my $t = join '', map {
            /^data: (\{.*\})$/ ? JSON::PP::decode_json($1)->{choices}[0]{text}
                               : ()
        } split /\n\n/, $text{$_};
        $t eq $expected && $text{$_} =~ /data: \[DONE\]\n\n$/;
    } keys %text;
    is($exact, 4, 'then all 4 streams end with the whole reference text');
    my $after = tiny_stats();
    is($after->{kv_blocks_free}, $after->{kv_blocks},
       'every KV block free afterwards');
}

# --- a client that never reads: send_timeout ends it -----------------------
{
    my $before = () = log_text() =~ /client timed out taking the stream/g;
    my $s = h2_open('/stuck/v1/completions', 1,
                    '{"model":"tiny","prompt":[1],"max_tokens":400,'
                    . '"temperature":0,"stream":true}');
    my $n = $before;
    for (1 .. 60) {
        $n = () = log_text() =~ /client timed out taking the stream/g;
        last if $n > $before;
        sleep 0.05;
    }
    is($n, $before + 1, 'send_timeout (1s) ends a stream that never moves');
    close $s;
    my $st = {};
    for (1 .. 40) {
        $st = tiny_stats();
        last if ($st->{running} // 1) == 0;
        sleep 0.05;
    }
    ok(($st->{running} // 1) == 0 && $st->{kv_blocks_free} == $st->{kv_blocks},
       'its generation was cancelled and its blocks freed');
}

# --- TLS with HTTP/2 -------------------------------------------------------
{
    my $out = curl('-k', '-i', '--http2',
                   "https://127.0.0.1:$tls_port/v1/completions", '-d',
                   '{"model":"tiny","prompt":[1],"max_tokens":4,'
                   . '"temperature":0}');
    like($out, qr/^HTTP\/2 200/, 'TLS negotiates HTTP/2 (ALPN)');
    like($out, qr/"text":"Once upon a time"/, 'completion over TLS');
}

# --- seeded sampling is reproducible across requests -----------------------
{
    my @t = map {
        my $seed = $_;
        my $r = curl("http://127.0.0.1:$h2c_port/v1/completions",
                     '--http2-prior-knowledge', '-d',
                     '{"model":"tiny","prompt":[1],"max_tokens":40,'
                     . qq{"temperature":1,"seed":$seed\}});
        JSON::PP->new->decode($r)->{choices}[0]{text};
    } (42, 42, 7);
    is($t[1], $t[0], 'same seed, same text');
    isnt($t[2], $t[0], 'another seed, another text');
}

# --- an engine that cannot start: the worker stays up, answers 503 -------
# kv_cache=1024g passes nginx -t (a block fits) but no machine here can
# allocate it: the new workers of this reload fail to load "broken".
{
    my $broken_port = $port + 4;
    my $emerg = qr/\[emerg\] \d+#\d+: infer_model "broken": [^\n]*out of memory[^\n]*this worker answers 503 and tries again/;
    write_conf(<<"_EOX_");
    infer_model broken $model threads=1 kv_cache=1024g;
    server {
        listen 127.0.0.1:$broken_port;
        location /v1/ { infer_openai broken tiny; }
        location /quiet/v1/ {
            infer_reject_log_level info;
            infer_openai broken;
        }
        location = /healthz { infer_health; }
    }
_EOX_
    kill 'HUP', master_pid();
    my $health = '';
    for (1 .. 100) {
        $health = curl('-i', "http://127.0.0.1:$broken_port/healthz");
        last if $health =~ /^HTTP\/1\.1 503/;
        sleep 0.05;
    }
    like($health, qr/^HTTP\/1\.1 503.*\r\nRetry-After: 1\r\n.*\r\n\{"status":"unavailable","model":"broken","reason":"[^"]*out of memory[^"]*"\}\n$/s,
         'health: 503 naming the model and the reason');
    my $r = curl('-i', "http://127.0.0.1:$broken_port/v1/completions", '-d',
                 '{"model":"broken","prompt":[1],"max_tokens":4}');
    like($r, qr/^HTTP\/1\.1 503.*"message":"the model 'broken' is not available in this worker: [^"]*out of memory[^"]*","type":"server_error","param":null,"code":"unavailable"/s,
         'a request for it: 503 with the reason');
    like(curl("http://127.0.0.1:$broken_port/v1/completions", '-d',
              '{"model":"tiny","prompt":[1],"max_tokens":4,"temperature":0}'),
         qr/"text":"Once upon a time"/,
         'the worker serves its other model meanwhile');
    curl("http://127.0.0.1:$broken_port/quiet/v1/completions", '-d',
         '{"model":"broken","prompt":[1]}') for 1 .. 3;
    sleep 1.5;      # past the first retry
    my $log = log_text();
    my $n = () = $log =~ /$emerg/g;
    is($n, 1, 'the reason is logged once, at the first failure');
    like($log, qr/\[info\] \d+#\d+: infer_model "broken": still cannot start/,
         'the worker tried again (logged at info)');
    like($log, qr/\[warn\] [^\n]*infer: the model 'broken' is not available/,
         'a 503 is logged at infer_reject_log_level, warn by default');
    my $quiet = () = $log =~ /\[info\] [^\n]*infer: the model 'broken' is not available[^\n]*\/quiet\/v1\//g;
    is($quiet, 3, 'infer_reject_log_level info logs those 503s at info');
    unlike($log, qr/exited on signal|worker process \d+ exited with code [^0]/,
           'no worker died');

    write_conf();
    kill 'HUP', master_pid();
    for (1 .. 100) {
        last if curl("http://127.0.0.1:$port/healthz") =~ /"ok"/;
        sleep 0.05;
    }
    is(curl("http://127.0.0.1:$port/healthz"), qq{{"status":"ok"}\n},
       'a reload without the broken model is healthy again');
}

# --- a big prompt is tokenized off the event loop ---------------------------
# stories260K with a 256k-token context: a 1 MB prompt may fit as far as its
# size tells, so it is tokenized (about 0.2 s) before the count refuses it.
# Meanwhile the worker answers others: a health check sent after the big
# body is answered before the big request is.
{
    my $big = "$root/big-context";
    my $big_port = $port + 5;
    system("mkdir -p '$big' && ln -sf '$model'/*.json '$model'/*.safetensors "
           . "'$big'/ && rm '$big/config.json'") == 0 or die;
    my $cfg = JSON::PP::decode_json(do {
        open my $fh, '<', "$model/config.json" or die $!;
        local $/;
        <$fh>;
    });
    $cfg->{max_position_embeddings} = 262144;
    open my $fh, '>', "$big/config.json" or die $!;
    print $fh JSON::PP::encode_json($cfg);
    close $fh;

    write_conf(<<"_EOX_");
    infer_model big $big threads=1 kv_cache=400m;
    server {
        listen 127.0.0.1:$big_port;
        client_max_body_size 8m;
        location /v1/ { infer_openai big; }
        location = /healthz { infer_health; }
    }
_EOX_
    kill 'HUP', master_pid();
    for (1 .. 100) {
        last if curl("http://127.0.0.1:$big_port/healthz") =~ /"ok"/;
        sleep 0.05;
    }
    my $prompt = 'Once upon a time, there was a little girl. ' x 24000;
    my $a = post_socket('/v1/completions', '{"model":"big","prompt":"'
                        . $prompt . '"}', $big_port);
    sleep 0.1;      # nginx has the whole body by now
    is(curl("http://127.0.0.1:$big_port/healthz"), qq{{"status":"ok"}\n},
       'a health check during the big tokenization is answered');
    my $waiting = !IO::Select->new($a)->can_read(0);
    ok($waiting, 'before the big request, which is still being tokenized');
    like(read_all($a), qr/^HTTP\/1\.1 400 .*"message":"this model's maximum context length is 262144 tokens, the prompt has \d+",.*"code":"context_length_exceeded"/s,
         'the big prompt was tokenized, then refused by its count');

    write_conf();
    kill 'HUP', master_pid();
    for (1 .. 100) {
        last if curl("http://127.0.0.1:$port/healthz") =~ /"ok"/;
        sleep 0.05;
    }
}

stop_nginx();
unlike(log_text(), qr/\[alert\]|\[crit\]|exited on signal/,
       'no alerts at shutdown');

done_testing();
