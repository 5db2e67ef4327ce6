# infer_allowed_models: the models a request may call, from a variable
# (here a request header, as the fleet's instances take it from the
# front): unset allows all, a list its names, "*" all, empty none; a model
# not allowed is a 403 in OpenAI's and KServe's error shapes, an unknown
# one still a 404.  (gRPC's PERMISSION_DENIED and the fleet's use of it:
# t/021-fleet.t.)  Plain Test::More with its own nginx.
use strict;
use warnings;

use IPC::Run qw(run);
use JSON::PP;
use Test::More;
use InferNginx;

system('curl --version >/dev/null 2>&1') == 0
    or plan skip_all => 'curl is not installed';
my $srv = InferNginx->new(name => 'allowed', port => 64);
END { $srv->stop if $srv }
my ($model, $port) = ($srv->model, $srv->port);

$srv->start(http => <<"_EOC_");
    infer_model a $model threads=1;
    infer_model b $model threads=1;
    server {
        listen 127.0.0.1:$port;
        infer_allowed_models \$http_x_models;
        location /v1/ { infer_openai a b; }
        location /v2 { infer_kserve a b; }
        location /open/v1/ {
            infer_allowed_models "*";
            infer_openai a b;
        }
    }
    server {
        listen 127.0.0.1:@{[$port + 1]};
        location /v1/ { infer_openai a b; }
    }
_EOC_

sub curl {
    my ($path, $body, @headers) = @_;
    my ($out, $err) = ('', '');
    run ['curl', '-s', '-o', '-', '-w', '\n%{http_code}',
         (map { ('-H', $_) } @headers), '-H', 'Content-Type: application/json',
         '-d', $body, "http://127.0.0.1:$path"], \undef, \$out, \$err;
    my ($text, $code) = $out =~ /^(.*)\n(\d+)$/s;
    return ($code // 0, $text // '');
}

sub completion {
    my ($m, $where, @headers) = @_;
    $where //= '';
    return curl("$port$where/v1/completions",
                qq{{"model":"$m","prompt":"Once","max_tokens":2}}, @headers);
}

my $forbidden = qr/^\{"error":\{"message":"this client may not use the model 'b'","type":"invalid_request_error","param":"model","code":"model_not_allowed"\}\}/;

is((completion('a', '', 'X-Models: a'))[0], 200, 'a listed model: 200');
my ($code, $body) = completion('b', '', 'X-Models: a');
is($code, 403, 'a model not listed: 403');
like($body, $forbidden, "in OpenAI's error shape, param model");
is((completion('b', '', 'X-Models: c, b'))[0], 200,
   'a list separated by commas and spaces');
is((completion('b', '', 'X-Models: bb ab'))[0], 403,
   'names match whole, not in part');
is((completion('b', '', 'X-Models: *'))[0], 200, '"*": every model');
($code, $body) = completion('a');
is($code, 403, 'an empty value (no header): no model');
($code, $body) = completion('zz', '', 'X-Models: zz');
is($code, 404, 'an unknown model is still a 404');
like($body, qr/"code":"model_not_found"/, 'model_not_found');
is((completion('b', '/open'))[0], 200, 'a location may allow all ("*")');
($code) = curl(($port + 1) . '/v1/completions',
               '{"model":"b","prompt":"Once","max_tokens":2}');
is($code, 200, 'unset: every model of the location');

($code, $body) = curl("$port/v2/models/b/generate",
                      '{"text_input":"Once","max_tokens":2}', 'X-Models: a');
is($code, 403, 'KServe: a model not listed is a 403');
is($body, qq{{"error":"this client may not use the model 'b'"}},
   "in KServe's error shape");
is((curl("$port/v2/models/a/generate",
         '{"text_input":"Once","max_tokens":2}', 'X-Models: a'))[0], 200,
   'KServe: a listed model: 200');

$srv->log_clean;
done_testing();
