# Priorities and the prefix cache through nginx.  One worker, one running
# sequence at a time (max_seqs=1), generations of 500 tokens (min_tokens:
# no early end): requests sent while one runs wait, and the order in which
# their responses end is the order the scheduler admitted them.
#   - infer_priority from a map of the API key: a gold request sent after
#     three bronze ones ends before the two that waited longest;
#   - the body's "priority" where no infer_priority is set, the same;
#   - where infer_priority gives a value, the body's cannot raise it;
#   - the prefix cache: the second of two requests with the same 40-token
#     prompt reports 32 cached tokens in its usage and /stats counts them;
#     with prefix_cache=off, nothing cached.
# Plain Test::More with its own nginx.
use strict;
use warnings;

use Cwd ();
use IO::Select;
use IO::Socket::INET;
use IPC::Run qw(run);
use Test::More;
use Time::HiRes qw(sleep);

my $here = Cwd::cwd();
my $root = "$here/t/servroot-priority";
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 23;
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

quit();
system("rm -rf '$root' && mkdir -p '$root/logs' '$root/conf'") == 0 or die;
open my $conf, '>', "$root/conf/nginx.conf" or die $!;
print $conf <<"_EOC_";
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
    infer_model tiny $model threads=1 max_seqs=1;
    infer_model cold $model threads=1 prefix_cache=off;
    map \$http_x_api_key \$infer_prio {
        gold    0;
        default 10;
    }
    server {
        listen 127.0.0.1:$port;
        location /keyed/ {
            infer_priority \$infer_prio;
            rewrite ^/keyed(/.*)\$ \$1 break;
            infer_openai tiny cold;
        }
        location /v1/ { infer_openai tiny cold; }
        location = /stats { infer_stats; }
    }
}
_EOC_
close $conf;
END { quit() }

run [$nginx, '-p', "$root/", '-c', "$root/conf/nginx.conf",
     '-e', "$root/logs/error.log"], \undef, \my $o, \my $e;
is($? >> 8, 0, 'nginx starts') or diag($e);
for (1 .. 200) {
    last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
    sleep 0.05;
}

sub send_request {
    my ($path, $body, $key) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
    my $h = $key ? "X-API-Key: $key\r\n" : '';
    print $s "POST $path HTTP/1.0\r\nHost: x\r\n$h"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

# Sends the requests 50 ms apart (the first is running when the others
# come) and returns the indices in the order their responses ended.
sub end_order {
    my @reqs = @_;
    my (%idx, @order);
    my $sel = IO::Select->new;
    for my $i (0 .. $#reqs) {
        my $s = send_request(@{ $reqs[$i] });
        $idx{$s} = $i;
        $sel->add($s);
        sleep 0.05;
    }
    my $deadline = time + 60;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $n = sysread($s, my $buf, 65536);
            next if $n;
            push @order, $idx{$s};
            $sel->remove($s);
            close $s;
        }
    }
    return join ' ', @order;
}

my $long = '{"model":"tiny","prompt":[1],"max_tokens":500,"min_tokens":500,'
         . '"temperature":0%s}';
my $plain = sprintf $long, '';

# bronze, bronze, bronze, gold: gold waits only for the running one
is(end_order((map { ['/keyed/v1/completions', $plain, 'bronze'] } 1 .. 3),
             ['/keyed/v1/completions', $plain, 'gold']),
   '0 3 1 2', 'infer_priority by API key: gold (0) overtakes the two '
   . 'bronze (10) waiting before it');

# no infer_priority: the body's priority
is(end_order((map { ['/v1/completions', sprintf($long, ',"priority":5')] }
              1 .. 3),
             ['/v1/completions', sprintf($long, ',"priority":-1')]),
   '0 3 1 2', 'the body\'s priority -1 overtakes three of 5');

# infer_priority gives 10 to bronze: the body's -100 does not count
is(end_order((map { ['/keyed/v1/completions', $plain, 'bronze'] } 1 .. 3),
             ['/keyed/v1/completions', sprintf($long, ',"priority":-100'),
              'bronze']),
   '0 1 2 3', 'where infer_priority gives a value the body\'s priority '
   . 'cannot raise it: first come, first served');

# ---- the prefix cache -----------------------------------------------------

sub post {
    my ($body) = @_;
    my $s = send_request('/v1/completions', $body);
    local $/;
    my $r = <$s>;
    close $s;
    return $r;
}

sub stats_of {
    my ($name) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
    print $s "GET /stats HTTP/1.0\r\nHost: x\r\n\r\n";
    local $/;
    my $r = <$s>;
    my ($m) = $r =~ /(\{"name":"$name".*?\})/;
    return $m // '';
}

my @prompt = (1, map { 400 + $_ % 50 } 1 .. 39);        # 40 tokens
my $p = join ',', @prompt;
for my $name ('tiny', 'cold') {
    my $before = stats_of($name);
    my ($h0) = $before =~ /"prefix_cache_hits":(\d+)/;
    my $body = qq({"model":"$name","prompt":[$p],"max_tokens":2});
    my $first = post($body);
    my $second = post($body);
    my $after = stats_of($name);
    my ($h1) = $after =~ /"prefix_cache_hits":(\d+)/;
    if ($name eq 'tiny') {
        unlike($first, qr/cached_tokens/, 'tiny: the first request of a '
               . 'prompt has nothing cached');
        like($second, qr/"usage":\{"prompt_tokens":40,"completion_tokens":2,"total_tokens":42,"prompt_tokens_details":\{"cached_tokens":32\}\}/,
             'tiny: the second reports its first two blocks cached');
        is($h1 - $h0, 32, 'tiny: /stats counts the 32 hits');
        like($after, qr/"kv_blocks_cached":[1-9]/, 'tiny: blocks stay '
             . 'cached after the requests end');
    } else {
        unlike($second, qr/cached_tokens/, 'cold (prefix_cache=off): '
               . 'nothing cached the second time');
        is($h1 - $h0, 0, 'cold: no hits');
        like($after, qr/"kv_blocks_cached":0,/, 'cold: no blocks cached');
    }
}

done_testing();
