# Log variables and trace context: a log_format of every $infer_* variable
# (escape=json), requests with and without a traceparent, and each access
# log line compared with the response it belongs to.  Plain Test::More with
# its own nginx (t/lib/InferNginx.pm).
use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use InferNginx;

my $srv = InferNginx->new(name => 'logvars', port => 21);
END { $srv->stop if $srv }
my ($root, $port, $model) = ($srv->root, $srv->port, $srv->model);

$srv->start(access_log => "$root/logs/access.log infer", http => <<"_EOC_");
    log_format infer escape=json '{"uri":"\$uri","status":\$status,'
        '"model":"\$infer_model","prompt_tokens":"\$infer_prompt_tokens",'
        '"completion_tokens":"\$infer_completion_tokens",'
        '"finish_reason":"\$infer_finish_reason","ttft":"\$infer_ttft",'
        '"queue_time":"\$infer_queue_time","steps":"\$infer_engine_steps",'
        '"request_id":"\$infer_request_id","trace_id":"\$infer_trace_id",'
        '"traceparent":"\$infer_traceparent"}';
    infer_model tiny $model threads=1;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai tiny; }
        location = /healthz { infer_health; }
    }
_EOC_

sub http { $srv->http(@_) }

my @log_seen;
sub log_lines {
    sleep 0.2;
    open my $fh, '<', "$root/logs/access.log" or die $!;
    my @lines = map { decode_json($_) } <$fh>;
    my @new = @lines[scalar @log_seen .. $#lines];
    @log_seen = @lines;
    return @new;
}

my $json = JSON::PP->new->canonical;
my $tid = '4bf92f3577b34da6a3ce929d0e0e4736';

# --- a completion with the client's traceparent ----------------------------
{
    my ($st, $h, $b) = http('POST', '/v1/completions',
        '{"model":"tiny","prompt":"Once upon a time","max_tokens":8,'
        . '"temperature":0}',
        "traceparent: 00-$tid-00f067aa0ba902b7-01");
    is($st, 200, 'a completion');
    my $rsp = decode_json($b);
    like($h->{traceparent} // '', qr/^00-$tid-[0-9a-f]{16}-01$/,
         'the response continues the client\'s trace, with its flags');
    isnt(substr($h->{traceparent} // '', 36, 16), '00f067aa0ba902b7',
         'as a span of its own');
    my ($l) = log_lines();
    is($l->{model}, 'tiny', '$infer_model');
    is($l->{prompt_tokens}, $rsp->{usage}{prompt_tokens},
       '$infer_prompt_tokens is usage.prompt_tokens');
    is($l->{completion_tokens}, 8, '$infer_completion_tokens');
    is($l->{finish_reason}, 'length', '$infer_finish_reason');
    like($l->{ttft}, qr/^\d+\.\d{3}$/, '$infer_ttft in ms');
    ok($l->{ttft} > 0 && $l->{ttft} < 10000, "ttft $l->{ttft} ms");
    like($l->{queue_time}, qr/^\d+\.\d{3}$/, '$infer_queue_time in ms');
    ok($l->{queue_time} < $l->{ttft},
       "queue time $l->{queue_time} ms, before the first token");
    # alone in the engine: a step for the prompt and its first token, then
    # one for each further token
    like($l->{steps}, qr/^(\d+)-(\d+)$/, '$infer_engine_steps');
    my ($s0, $s1) = $l->{steps} =~ /^(\d+)-(\d+)$/;
    is(($s1 // 0) - ($s0 // 0) + 1, 8, "steps $l->{steps}: 8 of them");
    like($l->{request_id}, qr/^[0-9a-f]{24}$/, '$infer_request_id');
    is($rsp->{id}, "cmpl-$l->{request_id}",
       'the response id ends with $infer_request_id');
    is($l->{trace_id}, $tid, '$infer_trace_id is the client\'s');
    is($l->{traceparent}, $h->{traceparent},
       '$infer_traceparent is what the response carries');
}

# --- without a traceparent, and with bad ones: a new trace -----------------
for my $tp (undef, "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-$tid-0000000000000000-01", uc("00-$tid-00f067aa0ba902b7-01"),
            "ff-$tid-00f067aa0ba902b7-01", "00-$tid-00f067aa0ba902b7-01-x",
            "00-$tid-00f067aa0ba902b7") {
    my $what = defined $tp ? "traceparent '$tp'" : 'no traceparent';
    my ($st, $h, $b) = http('POST', '/v1/chat/completions',
        '{"model":"tiny","messages":[{"role":"user","content":"Hi"}],'
        . '"max_tokens":3,"temperature":0,"stream":true}',
        defined $tp ? ("traceparent: $tp") : ());
    is($st, 200, "a streamed chat, $what");
    like($h->{traceparent} // '', qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/,
         "$what: a new trace in the response");
    unlike($h->{traceparent} // '', qr/$tid/, "$what: not the client's");
    my ($l) = log_lines();
    is($l->{trace_id}, substr($h->{traceparent} // '', 3, 32),
       "$what: the log has the response's trace id");
    is("$l->{completion_tokens} $l->{finish_reason}", '3 length',
       "$what: tokens and finish reason of the stream");
}

# a later version may carry more fields
{
    my ($st, $h) = http('POST', '/v1/completions',
        '{"model":"tiny","prompt":"x","max_tokens":1}',
        "traceparent: 01-$tid-00f067aa0ba902b7-01-abc");
    like($h->{traceparent} // '', qr/^00-$tid-[0-9a-f]{16}-01$/,
         'version 01 with more fields: its trace is kept, as version 00');
    log_lines();
}

# --- an error never reaches an engine: its figures are empty ---------------
{
    my ($st, $h) = http('POST', '/v1/completions', '{"model":',
                        "traceparent: 00-$tid-00f067aa0ba902b7-01");
    is($st, 400, 'a body cut short');
    like($h->{traceparent} // '', qr/^00-$tid-/, 'its answer has the trace');
    my ($l) = log_lines();
    is($json->encode([@$l{qw(model prompt_tokens completion_tokens
                              finish_reason ttft request_id)}]),
       '["","","","","",""]', 'and no request figures in the log');
    is($l->{trace_id}, $tid, 'but the trace id');
}

# --- other locations are left alone -----------------------------------------
{
    my ($st, $h) = http('GET', '/healthz', undef,
                        "traceparent: 00-$tid-00f067aa0ba902b7-01");
    is($st, 200, '/healthz');
    ok(!exists $h->{traceparent}, 'no traceparent where no model is served');
    my ($l) = log_lines();
    is($l->{trace_id}, '', 'nor in its log line');
}

like($srv->log, qr/\[notice\]\ \d+\#\d+:\ infer_model\ "tiny"\ loaded\ from
               \ "[^"]+":
               \ cpu\ \w+,\ weights\ [\d.]+\ [KMG]iB,
               .*KV\ cache\ [\d.]+\ [KMG]iB\ in\ \d+\ blocks
               .*,\ load\ time\ \d+\.\d{3}\ s$/mx,
     'the start-up line: backend, dtype, weights, KV cache, load time');
$srv->log_clean;

done_testing();
