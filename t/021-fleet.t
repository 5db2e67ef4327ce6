# The fleet (conf/fleet/, tools/fleet.sh): three instances and the front on
# loopback, and t/clients/fleet_check.py running load through the front
# while it kills, stops, overloads and reloads instances, and checks the
# mTLS rules; each of its lines is a test here.  Then every error log is
# read for crashes.  Ports: TEST_NGINX_PORT + 60 (the front) to + 63.
use strict;
use warnings;

use Cwd ();
use IPC::Run qw(run timeout);
use Test::More;

my $python = $ENV{TEST_PYTHON}
    or plan skip_all => 'TEST_PYTHON is not set (make venv; make test sets it)';
system('openssl version >/dev/null 2>&1') == 0
    or plan skip_all => 'openssl is not installed';
system('curl --version >/dev/null 2>&1') == 0
    or plan skip_all => 'curl is not installed';

my $here = Cwd::cwd();
my $repo = $ENV{INFER_ROOT} || $here;
my $dir = "$here/t/servroot-fleet";
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 60;
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($module) = split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';
my %env = (FLEET_DIR => $dir, FLEET_PORT => $port, NGINX_BIN => $nginx,
           MODEL => $ENV{TEST_NGINX_MODEL_DIR}
                    || die("TEST_NGINX_MODEL_DIR unset\n"),
           $module ? (MODULE => $module) : ());

# system(), not IPC::Run: the nginx daemons it starts would inherit a pipe
# of IPC::Run's, which then waits for them to exit
sub fleet {
    local @ENV{keys %env} = values %env;
    system("mkdir -p '$dir' && '$repo/tools/fleet.sh' @_ </dev/null"
           . " >'$dir/fleet.out' 2>&1");
    my $rc = $? >> 8;
    open my $fh, '<', "$dir/fleet.out" or return ($rc, '');
    return ($rc, do { local $/; <$fh> });
}

fleet('stop');          # what an interrupted run left
system("rm -rf '$dir'") == 0 or die;
END { fleet('stop') if $dir }

my ($rc, $out) = fleet('start', 3);
is($rc, 0, 'tools/fleet.sh start 3') or diag($out);
like($out, qr/3 instances .* behind the front on https:\/\/127\.0\.0\.1:$port/s,
     'it says where the fleet is');

my ($cout, $cerr) = ('', '');
my $ran = eval {
    run [$python, "$repo/t/clients/fleet_check.py", $dir, $port, 3,
         "$repo/src/proto/grpc_service.proto", $nginx],
        \undef, \$cout, \$cerr, timeout(400);
    1;
};
my $crc = $ran ? $? >> 8 : -1;
my ($n, $done) = (0, undef);
for (split /\n/, $cout) {
    if (/^(not )?ok - (.*)$/) {
        ok(!defined $1, $2);
        $n++;
    } elsif (/^done (\d+)$/) {
        $done = $1;
    } elsif (/^#! ?(.*)$/) {
        diag($1);
    } elsif (/^# ?(.*)$/) {
        note($1);
    }
}
ok($crc == 0 && $n > 0 && defined $done && $done == $n,
   "fleet_check.py ran to its end ($n checks, exit $crc)")
    or diag($cerr || $@);

($rc, $out) = fleet('stop');
is($rc, 0, 'tools/fleet.sh stop') or diag($out);

for my $p ('front', 'i1', 'i2', 'i3') {
    open my $fh, '<', "$dir/$p/logs/error.log" or next;
    my $log = do { local $/; <$fh> };
    # i2's engine is made to fail on purpose ("no engine")
    $log =~ s/^[^\n]*\[emerg\][^\n]*infer_model "(?:default|premium)"[^\n]*out of memory[^\n]*\n//mg
        if $p eq 'i2';
    unlike($log, qr/\[(?:alert|emerg|crit)\]|exited on signal/,
           "$p: no worker crashed, no alert in the error log");
}

done_testing();
