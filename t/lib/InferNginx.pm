package InferNginx;

# The nginx of a plain Test::More suite (t/012, t/014 ... ): its own
# server root and ports, a configuration around the suite's http block, a
# master with one worker started and stopped, a Python client whose TAP
# lines become the suite's tests, and the error log read for crashes.
# Suites that need Test::Nginx's per-block servers use Test::Nginx::Socket.
#
#   my $srv = InferNginx->new(name => 'kserve', port => 14);
#   $srv->start(http => "infer_model tiny ... server { ... }");
#   $srv->client('kserve_check.py', ["$repo/t/clients/x.py", ...]);
#   $srv->log_clean;
#
# Environment: TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES, TEST_NGINX_PORT
# (the suite's ports are offsets from it), TEST_NGINX_MODEL_DIR,
# TEST_PYTHON (the venv of t/requirements.txt), INFER_ROOT (the repository,
# when the suites run from a copy of t/, as make asan-nginx does).

use strict;
use warnings;

use Cwd ();
use IO::Socket::INET;
use IPC::Run qw(run timeout);
use Test::More;
use Time::HiRes qw(sleep);

sub new {
    my ($class, %a) = @_;
    my $here = Cwd::cwd();
    my $self = bless {
        root   => "$here/t/servroot-$a{name}",
        repo   => $ENV{INFER_ROOT} || $here,
        nginx  => $ENV{TEST_NGINX_BINARY} || 'nginx',
        base   => ($ENV{TEST_NGINX_PORT} || 1984) + $a{port},
        model  => $ENV{TEST_NGINX_MODEL_DIR}
                  || die("TEST_NGINX_MODEL_DIR unset\n"),
        python => $ENV{TEST_PYTHON},
    }, $class;
    # an nginx left by an interrupted run would hold the port
    $self->stop;
    system("rm -rf '$self->{root}' && mkdir -p '$self->{root}/logs'"
           . " '$self->{root}/conf'") == 0
        or die "cannot make $self->{root}\n";
    return $self;
}

sub root   { $_[0]{root} }
sub repo   { $_[0]{repo} }
sub model  { $_[0]{model} }
sub python { $_[0]{python} }
sub nginx  { $_[0]{nginx} }
sub port   { $_[0]{base} + ($_[1] || 0) }

# The whole configuration: the suite's text inside http { }, after the
# lines every suite has.
sub conf {
    my ($self, %o) = @_;
    my $root = $self->{root};
    my $modules = join '', map { "load_module $_;\n" }
                           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';
    my $conns = $o{connections} || 64;
    return <<"_EOC_";
$modules
worker_processes 1;
master_process on;
daemon on;
error_log $root/logs/error.log info;
pid $root/logs/nginx.pid;
events { worker_connections $conns; }
http {
    access_log off;
    client_body_temp_path $root/body;
$o{http}
}
_EOC_
}

sub write_conf {
    my ($self, $file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!\n";
    print $fh $text;
    close $fh;
}

# Writes conf/nginx.conf and starts nginx; a test says whether it did.
# Returns once the port listens (the master's: a worker may still be
# loading its models, which it does before it accepts).
sub start {
    my ($self, %o) = @_;
    my $root = $self->{root};
    my ($out, $err) = ('', '');

    $self->write_conf("$root/conf/nginx.conf", $self->conf(%o));
    run [$self->{nginx}, '-p', "$root/", '-c', "$root/conf/nginx.conf",
         '-e', "$root/logs/error.log"], \undef, \$out, \$err;
    is($? >> 8, 0, 'nginx starts') or return diag($err);
    for (1 .. 200) {
        last if $self->pid
                && IO::Socket::INET->new(PeerAddr => '127.0.0.1:'
                                                     . $self->port);
        sleep 0.05;
    }
    return 1;
}

sub pid {
    my $self = shift;
    open my $fh, '<', "$self->{root}/logs/nginx.pid" or return;
    my ($pid) = <$fh> =~ /(\d+)/;
    return $pid;
}

sub stop {
    my $self = shift;
    my $pid = $self->pid or return;
    kill 'QUIT', $pid;
    for (1 .. 200) { last unless kill 0, $pid; sleep 0.05 }
}

# Runs the Python client: each of its "ok [N] - what" / "not ok [N] - what"
# lines is a test, "# ..." a diagnostic; then a test that it ran to its end
# (exit 0, and as many checks as its closing "done N" says, if it says).
# Returns the number of checks.
sub client {
    my ($self, $label, $cmd, %o) = @_;
    my ($out, $err, $n, $done) = ('', '', 0, undef);

    my $ran = eval {
        run [$self->{python}, @$cmd], \undef, \$out, \$err,
            timeout($o{timeout} || 600);
        1;
    };
    my $rc = $ran ? $? >> 8 : -1;
    for (split /\n/, $out) {
        if (/^(not )?ok(?: \d+)? - (.*)$/) {
            ok(!defined $1, ($o{prefix} // '') . $2);
            $n++;
        } elsif (/^done (\d+)$/) {
            $done = $1;
        } elsif (/^# ?(.*)$/) {
            diag($1);
        }
    }
    ok($rc == 0 && $n > 0 && (!defined $done || $done == $n),
       "$label ran to its end ($n checks, exit $rc)")
        or diag($err || $@);
    return $n;
}

sub log {
    my $self = shift;
    open my $fh, '<', "$self->{root}/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

sub log_clean {
    my $self = shift;
    unlike($self->log, qr/\[(?:alert|emerg|crit)\]|exited on signal/,
           'no worker crashed, no alert in the error log');
}

1;
