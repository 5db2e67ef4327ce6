# The real openai Python SDK (t/requirements.txt, unmodified) against the
# OpenAI front end: completions and chat, logprobs against Hugging Face
# transformers, echo, scoring with max_tokens 0, n, streaming, the
# penalties and logit_bias, GET /v1/models/{id}, and the 400s of the fields
# the server does not implement.  t/clients/openai_sdk.py does the checks;
# each of its "ok - ..." / "not ok - ..." lines is a test here.  Plain
# Test::More: it runs its own nginx (master and one worker).
use strict;
use warnings;

use IPC::Run qw(run);
use Test::More;
use InferNginx;

$ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON unset (make nginx-test sets it to the '
                        . 'venv of t/requirements.txt)';
my $srv = InferNginx->new(name => 'openai-sdk', port => 15);
END { $srv->stop if $srv }
my ($repo, $port, $model, $root) = ($srv->repo, $srv->port, $srv->model,
                                    $srv->root);

sub http {
    my $extra = shift;
    return <<"_EOC_";
    infer_model tiny $model threads=1;
    $extra
    server {
        listen 127.0.0.1:$port;
        location /v1/ { infer_openai tiny; }
    }
_EOC_
}

# infer_max_n is checked by nginx -t, naming the directive.
for my $bad ('0', '129', 'many') {
    $srv->write_conf("$root/conf/bad.conf",
                     $srv->conf(http => http("infer_max_n $bad;")));
    my ($out, $err) = ('', '');
    run [$srv->nginx, '-t', '-p', $root, '-c', "$root/conf/bad.conf"],
        \undef, \$out, \$err;
    like($err, qr/"infer_max_n"/, "nginx -t refuses infer_max_n $bad, "
         . "naming the directive");
    like($err, qr/test failed/, "... and fails");
}

$srv->start(http => http('')) or BAIL_OUT("nginx did not start");
my $checks = $srv->client('the SDK client',
                          ["$repo/t/clients/openai_sdk.py",
                           "http://127.0.0.1:$port/v1", $model,
                           "$repo/t/data/ref/stories260K.logits"]);
cmp_ok($checks, '>=', 40, "the client made its $checks checks");
$srv->log_clean;

done_testing();
