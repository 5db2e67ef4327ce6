# infer_metrics with two workers: t/clients/metrics_check.py sends a known
# set of requests, scrapes until both workers have answered, parses every
# scrape with prometheus_client's parser and checks each counter, gauge and
# histogram count against what was sent, then reloads nginx and checks that
# the counters go on; each of its lines is a test here.  Plain Test::More
# with its own nginx (master and two workers).
use strict;
use warnings;

use Cwd ();
use IO::Socket::INET;
use IPC::Run qw(run);
use Test::More;
use Time::HiRes qw(sleep);

my $python = $ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON is not set (make venv; make test sets it)';
my $here = Cwd::cwd();
my $repo = $ENV{INFER_ROOT} || $here;
my $root = "$here/t/servroot-metrics";
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 20;
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

quit();         # one an interrupted run left
system("rm -rf '$root' && mkdir -p '$root/logs' '$root/conf'") == 0 or die;
open my $conf, '>', "$root/conf/nginx.conf" or die $!;
# reuseport: the kernel spreads the connections over both workers, so that
# each of them answers some scrapes
print $conf <<"_EOC_";
$modules
worker_processes 2;
master_process on;
daemon on;
error_log $root/logs/error.log info;
pid $root/logs/nginx.pid;
events { worker_connections 64; accept_mutex off; }
http {
    access_log off;
    client_body_temp_path $root/body;
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

my ($out, $err) = ('', '');
run [$python, "$repo/t/clients/metrics_check.py", "127.0.0.1:$port",
     pid_of()], \undef, \$out, \$err;
my $rc = $? >> 8;
my $n = 0;
for (split /\n/, $out) {
    if (/^(not )?ok - (.*)$/) {
        ok(!defined $1, $2);
        $n++;
    }
}
is($rc, 0, 'metrics_check.py exits 0') or diag($err);
like($out, qr/^done $n$/m, "metrics_check.py ran to its end ($n checks)");

open my $log, '<', "$root/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
unlike($text, qr/\[alert\]|\[crit\]|exited on signal/,
       'no worker crashed, no alert');

done_testing();
