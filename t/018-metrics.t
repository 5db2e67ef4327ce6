# infer_metrics with two workers: t/clients/metrics_check.py sends a known
# set of requests, scrapes until both workers have answered, parses every
# scrape with prometheus_client's parser and checks each counter, gauge and
# histogram count against what was sent, then reloads nginx and checks that
# the counters go on; each of its lines is a test here.  Plain Test::More
# with its own nginx (master and two workers, t/lib/InferNginx.pm).
use strict;
use warnings;

use Test::More;
use InferNginx;

$ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON is not set (make venv; make test sets it)';
my $srv = InferNginx->new(name => 'metrics', port => 20);
END { $srv->stop if $srv }
my ($port, $model, $repo) = ($srv->port, $srv->model, $srv->repo);

# reuseport: the kernel spreads the connections over both workers, so that
# each of them answers some scrapes
$srv->start(workers => 2, events => 'accept_mutex off;', http => <<"_EOC_");
    infer_model tiny $model threads=1;
    server {
        listen 127.0.0.1:$port reuseport sndbuf=4k;
        add_header X-Pid \$pid always;
        location /v1/ {
            infer_unsent_limit 4k;
            infer_openai tiny;
        }
        location = /metrics { infer_metrics; }
        location = /stats { infer_stats; }
    }
_EOC_

$srv->client('metrics_check.py', ["$repo/t/clients/metrics_check.py",
                                  "127.0.0.1:$port", $srv->pid]);
$srv->log_clean;

done_testing();
