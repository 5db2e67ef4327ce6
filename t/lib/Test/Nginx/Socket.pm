package Test::Nginx::Socket;

# A small subset of Test::Nginx::Socket (openresty/test-nginx 0.30), enough
# for this project's t/*.t, written for machines where the real one is not
# installed (Debian does not package it).  The suites stay in the real
# format; with the real Test::Nginx on @INC they run unchanged.
#
# Supported sections: main_config, http_config, config, request (eval ok),
# more_headers, http2, error_code, ignore_response, response_body,
# response_body_like,
# response_body_filters (code refs, uc, lc, length),
# response_headers, response_headers_like, timeout, abort, wait, error_log,
# no_error_log, must_die.  As in the real one, error_log and no_error_log
# look at what each request logged (the first request of a block also sees
# start-up), or at the whole log after check_accum_error_log().
# Environment: TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES, TEST_NGINX_PORT /
# TEST_NGINX_SERVER_PORT, TEST_NGINX_SERVROOT, TEST_NGINX_TIMEOUT,
# TEST_NGINX_CHECK_ACCUM_ERR_LOG and any $TEST_NGINX_* variable expanded in
# configuration sections.

use strict;
use warnings;

use Cwd qw(cwd);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempfile);
use IO::Socket::INET;
use IPC::Run qw(run);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::Base ();

our @EXPORT_OK;
our @EXPORT = qw(run_tests repeat_each master_on master_off workers
                 log_level no_shuffle no_long_string no_root_location
                 server_port env_to_nginx worker_connections
                 check_accum_error_log);

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerAddr  = '127.0.0.1';
our $ServerPort  = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                   || 1984;
our $ServRoot    = $ENV{TEST_NGINX_SERVROOT} || cwd() . '/t/servroot';
our $Timeout     = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $LogLevel    = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $Master      = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Workers     = 1;
our $WorkerConnections = 64;
our $RepeatEach  = 1;
our $NoRootLocation = 0;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our @EnvToNginx;

my $ConfFile = "$ServRoot/conf/nginx.conf";
my $ErrLog   = "$ServRoot/logs/error.log";
my $PidFile  = "$ServRoot/logs/nginx.pid";
my $PrevConf;
my $ErrLogPos = 0;

$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;

sub import {
    my $class = shift;
    my $caller = caller;

    no strict 'refs';
    for my $f (@EXPORT) {
        *{"${caller}::$f"} = \&{"Test::Nginx::Socket::$f"};
    }
    # Test::Base exports its API (blocks, plan, is, ...) to the test script
    # and hands 'no_plan' / tests => N to Test::More.
    unshift @_, 'Test::Base';
    goto &Test::Base::import;
}

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub master_on { $Master = 'on' }
sub master_off { $Master = 'off' }
sub workers { $Workers = shift }
sub worker_connections { $WorkerConnections = shift }
sub log_level { $LogLevel = shift }
sub no_shuffle { }
sub no_long_string { }
sub no_root_location { $NoRootLocation = 1 }
sub server_port { return $ServerPort }
sub env_to_nginx { push @EnvToNginx, @_ }
sub check_accum_error_log { $CheckAccumErrLog = 1 }

sub expand_env {
    my $text = shift;
    return '' unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : die "environment variable $1 is not set\n"
    }ge;
    return $text;
}

sub write_conf {
    my $block = shift;

    my $main = '';
    if ($ENV{TEST_NGINX_LOAD_MODULES}) {
        $main = join '', map { "load_module $_;\n" }
                         split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
    }
    $main .= expand_env($block->main_config);
    my $http = expand_env($block->http_config);
    my $config = expand_env($block->config);
    my $listen = $block->http2 ? "$ServerPort http2" : $ServerPort;
    my $env = join '', map { "env $_;\n" } @EnvToNginx;
    my $root = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $ServRoot/html;
            index index.html index.htm;
        }
_EOC_

    my $conf = <<"_EOC_";
worker_processes  $Workers;
daemon on;
master_process $Master;
error_log $ErrLog $LogLevel;
pid       $PidFile;
$env
$main

http {
    access_log $ServRoot/logs/access.log;
    client_body_temp_path $ServRoot/client_body_temp;
    proxy_temp_path $ServRoot/proxy_temp;
    fastcgi_temp_path $ServRoot/fastcgi_temp;
    scgi_temp_path $ServRoot/scgi_temp;
    uwsgi_temp_path $ServRoot/uwsgi_temp;

    default_type text/plain;
    keepalive_timeout  68000ms;

$http
    server {
        listen          $listen;
        server_name     'localhost';
        client_max_body_size 30M;

        # Begin test case config...
$config
        # End test case config.

$root    }
}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
_EOC_

    return $conf;
}

sub nginx_pid {
    open my $fh, '<', $PidFile or return;
    my $pid = <$fh>;
    close $fh;
    return unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

sub stop_nginx {
    my $pid = nginx_pid();
    $PrevConf = undef;
    return unless $pid && kill(0, $pid);
    kill 'QUIT', $pid;
    for (1 .. 200) {
        return unless kill(0, $pid);
        sleep 0.05;
    }
    kill 'KILL', $pid;
    sleep 0.1;
}

sub port_ready {
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                  PeerPort => $ServerPort, Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# Starts nginx with the block's configuration; returns nginx's exit status
# (0 when it daemonised) and leaves it running.
sub start_nginx {
    my ($block, $conf) = @_;

    stop_nginx();
    remove_tree($ServRoot);
    make_path("$ServRoot/conf", "$ServRoot/logs", "$ServRoot/html");
    open my $fh, '>', $ConfFile or die "cannot write $ConfFile: $!\n";
    print $fh $conf;
    close $fh;

    my ($out, $err) = ('', '');
    run [$NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile, '-e', $ErrLog],
        \undef, \$out, \$err;
    my $status = $? >> 8;
    if ($err ne '') {
        open my $log, '>>', $ErrLog;
        print $log $err;
        close $log;
    }
    return $status if $status != 0;

    for (1 .. 100) {
        last if nginx_pid() && port_ready();
        sleep 0.05;
    }
    $PrevConf = $conf;
    return 0;
}

sub read_log_from {
    my $pos = shift;
    open my $fh, '<', $ErrLog or return '';
    seek $fh, $pos, 0;
    local $/;
    my $text = <$fh>;
    close $fh;
    return defined $text ? $text : '';
}

# As the real Test::Nginx: the log from where the previous check of this
# block stopped (from the start for a block's first check), or all of it
# with check_accum_error_log.
sub error_log_data {
    sleep 0.05;     # log-phase lines come after the response
    my $text = read_log_from($CheckAccumErrLog ? 0 : $ErrLogPos);
    $ErrLogPos += length $text unless $CheckAccumErrLog;
    return $text;
}

# The request section: "METHOD URI [HTTP/x]\nbody".
sub parse_request {
    my $req = shift;
    my ($first, $body) = split /\n/, $req, 2;
    $body = '' unless defined $body;
    my ($meth, $uri) = $first =~ /^\s*(\S+)\s+(\S+)/
        or die "bad request line: $first\n";
    return ($meth, $uri, $body);
}

sub more_headers {
    my $block = shift;
    my $text = $block->more_headers;
    return () unless defined $text;
    return grep { /\S/ } split /\n/, expand_env($text);
}

sub decode_chunked {
    my $data = shift;
    my $out = '';
    while ($data =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
        my $n = hex $1;
        last if $n == 0;
        $out .= substr($data, 0, $n, '');
        $data =~ s/\A\r\n//;
    }
    return $out;
}

# Parses "HTTP/x code ...\r\nheaders\r\n\r\nbody".
sub parse_response {
    my $raw = shift;
    my ($head, $body) = split /\r?\n\r?\n/, $raw, 2;
    return unless defined $head;
    my @lines = split /\r?\n/, $head;
    my $status = shift @lines;
    my ($code) = $status =~ m{^HTTP/\S+\s+(\d+)} or return;
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = $v;
    }
    $body = '' unless defined $body;
    if (($h{'transfer-encoding'} || '') =~ /chunked/i) {
        $body = decode_chunked($body);
    }
    return { code => $code, headers => \%h, body => $body };
}

sub http1_request {
    my ($block, $meth, $uri, $body, $timeout) = @_;
    my @hdrs = more_headers($block);
    my $req = "$meth $uri HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n";
    $req .= "$_\r\n" for @hdrs;
    if ($body ne '' || $meth =~ /^(POST|PUT)$/) {
        $req .= "Content-Length: " . length($body) . "\r\n";
    }
    $req .= "\r\n" . $body;

    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                     PeerPort => $ServerPort,
                                     Timeout => $timeout)
        or return (undef, "connect failed: $!");
    binmode $sock;
    print $sock $req;

    my $raw = '';
    my $deadline = time + $timeout;
    my $timed_out = 0;
    my $rin = '';
    vec($rin, fileno($sock), 1) = 1;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            $timed_out = 1;
            last;
        }
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n < 0;
        if ($n == 0) {
            $timed_out = 1;
            last;
        }
        my $got = sysread($sock, my $buf, 65536);
        last if !$got;
        $raw .= $buf;
    }
    close $sock;
    return ($raw, $timed_out ? 'timeout' : undef);
}

sub http2_request {
    my ($block, $meth, $uri, $body, $timeout) = @_;
    my @args = ('curl', '-i', '-sS', '--http2', '--http2-prior-knowledge',
                '-H', 'User-Agent:', '-H', 'Accept:',
                '--max-time', $timeout);
    push @args, '-X', $meth if $meth ne 'GET' && $meth ne 'HEAD';
    push @args, '-I' if $meth eq 'HEAD';
    push @args, '-H', $_ for more_headers($block);
    my ($fh, $file);
    if ($body ne '') {
        ($fh, $file) = tempfile(UNLINK => 1);
        print $fh $body;
        close $fh;
        push @args, '--data-binary', "\@$file";
    }
    push @args, "http://$ServerAddr:$ServerPort$uri";
    my ($out, $err) = ('', '');
    run \@args, \undef, \$out, \$err;
    my $rc = $? >> 8;
    return ($out, $rc == 28 ? 'timeout' : $rc ? "curl: $err" : undef);
}

sub check_log {
    my ($block, $name, $log) = @_;

    for my $sect (qw(error_log no_error_log)) {
        my $pats = $block->$sect;
        next unless defined $pats;
        my @pats = ref $pats eq 'ARRAY'  ? @$pats
                 : ref $pats eq 'Regexp' ? ($pats)
                 : grep { /\S/ } split /\n/, $pats;
        for my $p (@pats) {
            my $hit = ref $p eq 'Regexp' ? $log =~ $p
                                         : index($log, $p) >= 0;
            if ($sect eq 'error_log') {
                Test::More::ok($hit, "$name - pattern \"$p\" in error log");
            } else {
                Test::More::ok(!$hit,
                               "$name - pattern \"$p\" not in error log");
            }
        }
    }

    # Stricter than the real Test::Nginx, which only warns: alerts and
    # crits fail a test unless wanted.
    for my $level (qw(alert crit)) {
        next if defined $block->error_log
                && join("\n", $block->error_log) =~ /\[$level\]/;
        Test::More::unlike($log, qr/\[$level\]/,
                           "$name - no [$level] in error log");
    }
}

sub run_block {
    my $block = shift;
    my $name = $block->name;
    my $conf = write_conf($block);

    if (defined $block->must_die) {
        my $status = start_nginx($block, $conf);
        Test::More::isnt($status, 0, "$name - nginx dies as expected");
        check_log($block, $name, read_log_from(0));
        stop_nginx() if $status == 0;
        return;
    }

    if (!defined $PrevConf || $PrevConf ne $conf || !nginx_pid()) {
        my $status = start_nginx($block, $conf);
        if ($status != 0) {
            Test::More::fail("$name - nginx failed to start:\n"
                             . read_log_from(0));
            return;
        }
    }

    $ErrLogPos = 0;

    my $request = $block->request;
    die "$name: no --- request\n" unless defined $request;
    my @requests = ref $request eq 'ARRAY' ? @$request : ($request);

    for my $i (0 .. $#requests) {
        my ($meth, $uri, $body) = parse_request($requests[$i]);
        my $timeout = $block->timeout || $Timeout;

        my ($raw, $err) = $block->http2
            ? http2_request($block, $meth, $uri, $body, $timeout)
            : http1_request($block, $meth, $uri, $body, $timeout);

        if (defined $err && !($err eq 'timeout' && defined $block->abort)) {
            Test::More::fail("$name - request failed: $err");
        }

        if (!defined $block->ignore_response
            && !(defined $block->abort && defined $err))
        {
            my $res = parse_response($raw || '');
            if ($res) {
                check_response($block, $name, $res,
                               ref $request ? $i : undef);
            } else {
                Test::More::fail("$name - no valid response: "
                                 . (defined $raw ? $raw : ''));
            }
        }

        # As the real Test::Nginx: the log is checked after every request.
        sleep($block->wait) if defined $block->wait;
        check_log($block, @requests > 1 ? "$name (req $i)" : $name,
                  error_log_data());
    }
}

# A section's value for request number $i when requests come as a list.
sub pick {
    my ($v, $i) = @_;
    return $v unless defined $i && ref $v eq 'ARRAY';
    return $v->[$i];
}

sub check_response {
    my ($block, $name, $res, $i) = @_;

    $name .= " (req $i)" if defined $i;
    my $code = pick(scalar $block->error_code, $i);
    $code = 200 unless defined $code;
    $code =~ s/\s+//g;
    Test::More::is($res->{code}, $code, "$name - status code ok");

    if (defined $block->response_headers) {
        for my $line (grep { /\S/ } split /\n/, $block->response_headers) {
            if ($line =~ /^\s*!\s*(\S+)/) {
                Test::More::ok(!exists $res->{headers}{lc $1},
                               "$name - header $1 absent");
                next;
            }
            my ($k, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or next;
            Test::More::is($res->{headers}{lc $k}, $v,
                           "$name - header $k ok");
        }
    }

    if (defined $block->response_headers_like) {
        for my $line (grep { /\S/ } split /\n/,
                      $block->response_headers_like)
        {
            my ($k, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or next;
            Test::More::like($res->{headers}{lc $k} // '', qr/$v/s,
                             "$name - header $k like ok");
        }
    }

    my $filters = $block->response_body_filters;
    $filters = $filters->[$i]
        if defined $i && ref $filters eq 'ARRAY' && ref $filters->[0] eq 'ARRAY';
    if (defined $filters) {
        $filters = [split ' ', $filters] unless ref $filters;
        $filters = [$filters] unless ref $filters eq 'ARRAY';
        for my $f (@$filters) {
            $res->{body} = ref $f eq 'CODE' ? $f->($res->{body})
                         : $f eq 'uc'       ? uc $res->{body}
                         : $f eq 'lc'       ? lc $res->{body}
                         : $f eq 'length'   ? length $res->{body}
                         : die "$name: unknown response_body_filters $f\n";
        }
    }

    my $want = pick(scalar $block->response_body, $i);
    if (defined $want) {
        Test::More::is($res->{body}, $want,
                       "$name - response_body - response is expected");
    }

    if (defined $block->response_body_like) {
        my $re = pick(scalar $block->response_body_like, $i);
        $re = qr/$re/s unless ref $re eq 'Regexp';
        Test::More::like($res->{body}, $re,
                         "$name - response_body_like - response is expected");
    }
}

sub run_tests {
    for my $block (Test::Base::blocks()) {
        for (1 .. $RepeatEach) {
            run_block($block);
        }
    }
    stop_nginx();
}

END {
    stop_nginx() if defined $PrevConf;
}

1;
