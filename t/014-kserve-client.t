# KServe v2 with real clients: t/clients/kserve_check.py drives nginx with
# tritonclient[http] (and http.client for the generate extension and for
# malformed bodies) and checks logits against transformers and text against
# the reference greedy output; each of its lines is a test here.  Plain
# Test::More with its own nginx (master and one worker), so that a worker
# that crashed shows in the log.
use strict;
use warnings;

use Test::More;
use InferNginx;

$ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON is not set (make venv; make test sets it)';
my $srv = InferNginx->new(name => 'kserve', port => 14);
END { $srv->stop if $srv }
my ($repo, $port, $model) = ($srv->repo, $srv->port, $srv->model);

$srv->start(http => <<"_EOC_");
    infer_model tiny $model threads=1;
    server {
        listen 127.0.0.1:$port;
        location /v2 { infer_kserve tiny; }
    }
_EOC_

$srv->client('kserve_check.py',
             ["$repo/t/clients/kserve_check.py", "127.0.0.1:$port", $model,
              "$repo/t/data/ref/stories260K.logits"]);
$srv->log_clean;

done_testing();
