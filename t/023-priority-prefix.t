# Priorities and the prefix cache through nginx.  One worker, one running
# sequence at a time (max_seqs=1), generations of 500 tokens (min_tokens:
# no early end).  Two requests of 8 choices each (16 engine requests, run
# one after the other), then one of a single choice, sent 10 ms apart:
# first come, first served, the single one would end last; admitted by
# priority it runs as soon as the choice running when it came ends, and
# ends first.
#   - infer_priority from a map of the API key: gold (0) before bronze (10);
#   - the body's "priority" where no infer_priority is set, the same;
#   - where infer_priority gives a value, the body's cannot raise it;
#   - the prefix cache: the second of two requests with the same 40-token
#     prompt reports 32 cached tokens in its usage and /stats counts them;
#     with prefix_cache=off, nothing cached.
# Plain Test::More with its own nginx (t/lib/InferNginx.pm).
use strict;
use warnings;

use InferNginx;
use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep);

my $srv = InferNginx->new(name => 'priority', port => 24);
my $model = $srv->model;
my $port = $srv->port;
END { $srv->stop if $srv }

$srv->start(http => <<"_EOC_");
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
_EOC_

sub send_request {
    my ($path, $body, $key) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
    my $h = $key ? "X-API-Key: $key\r\n" : '';
    print $s "POST $path HTTP/1.0\r\nHost: x\r\n$h"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

# Sends the requests 10 ms apart (the first is running when the others
# come) and returns the indices in the order their responses ended.
sub end_order {
    my @reqs = @_;
    my (%idx, @order);
    my $sel = IO::Select->new;
    for my $i (0 .. $#reqs) {
        my $s = send_request(@{ $reqs[$i] });
        $idx{$s} = $i;
        $sel->add($s);
        sleep 0.01;
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
my $eight = sprintf $long, ',"n":8';
my $one = sprintf $long, '';

is(end_order((map { ['/keyed/v1/completions', $eight, 'bronze'] } 1 .. 2),
             ['/keyed/v1/completions', $one, 'gold']),
   '2 0 1', 'infer_priority by API key: gold (0) overtakes the 15 bronze '
   . '(10) choices waiting before it');

is(end_order((map { ['/v1/completions', sprintf($long, ',"n":8,"priority":5')] }
              1 .. 2),
             ['/v1/completions', sprintf($long, ',"priority":-1')]),
   '2 0 1', 'no infer_priority: the body\'s priority -1 overtakes 5');

is(end_order((map { ['/keyed/v1/completions', $eight, 'bronze'] } 1 .. 2),
             ['/keyed/v1/completions', sprintf($long, ',"priority":-100'),
              'bronze']),
   '0 1 2', 'where infer_priority gives a value the body\'s priority '
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

$srv->log_clean;
done_testing();
