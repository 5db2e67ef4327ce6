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
#   my ($status, $headers, $body) = $srv->http('GET', '/healthz');
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
# lines every suite has.  Options: workers (1), connections (64), events
# (more of the events block), access_log (its arguments, placed after the
# suite's text so that a log_format there is known; else off).
sub conf {
    my ($self, %o) = @_;
    my $root = $self->{root};
    my $modules = join '', map { "load_module $_;\n" }
                           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '';
    my $conns = $o{connections} || 64;
    my $workers = $o{workers} || 1;
    my $events = $o{events} || '';
    my $log = $o{access_log} || 'off';
    return <<"_EOC_";
$modules
worker_processes $workers;
master_process on;
daemon on;
error_log $root/logs/error.log info;
pid $root/logs/nginx.pid;
events { worker_connections $conns; $events }
http {
    client_body_temp_path $root/body;
$o{http}
    access_log $log;
}
_EOC_
}

# nginx -t of a configuration made as conf() makes it, in a file of its
# own; returns nginx's exit code and what it printed.
sub test_conf {
    my ($self, %o) = @_;
    my $root = $self->{root};
    my ($out, $err) = ('', '');

    $self->write_conf("$root/conf/test.conf", $self->conf(%o));
    run [$self->{nginx}, '-t', '-p', "$root/", '-c', "$root/conf/test.conf",
         '-e', "$root/logs/error-t.log"], \undef, \$out, \$err;
    return ($? >> 8, $err);
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

# nginx -s reload; returns the old workers' pids (they may still accept
# until they exit: wait_gone)
sub reload {
    my $self = shift;
    my $pid = $self->pid or return;
    my @old = split ' ', qx(pgrep -P $pid);
    kill 'HUP', $pid;
    return @old;
}

sub wait_gone {
    my ($self, @pids) = @_;
    for (1 .. 100) { last unless grep { kill 0, $_ } @pids; sleep 0.1 }
}

# One HTTP/1.0 request to 127.0.0.1:PORT: (status, {lower-case header =>
# value}, body).  A body is sent as JSON.
sub http_to {
    my ($port, $method, $path, $body, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 30) or die "connect: $!";
    my $req = "$method $path HTTP/1.0\r\nHost: localhost\r\n"
              . join('', map { "$_\r\n" } @headers);
    $req .= "Content-Type: application/json\r\nContent-Length: "
            . length($body) . "\r\n" if defined $body;
    print $s $req, "\r\n", $body // '';
    local $/;
    my $r = <$s> // '';
    my ($head, $rest) = split /\r\n\r\n/, $r, 2;
    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () }
            split /\r\n/, $head;
    return ($status, \%h, $rest);
}

# the same to this nginx's first port
sub http {
    my $self = shift;
    return http_to($self->port, @_);
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
