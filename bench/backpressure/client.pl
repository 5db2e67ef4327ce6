# One h2c connection, stream windows of 1 byte, 128 streams, no reading.
use strict;
use warnings;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(sleep);

my ($port, $limit, $master) = @ARGV;

sub frame {
    my ($type, $flags, $sid, $payload) = @_;
    return pack('NCN', (length($payload) << 8) | $type, $flags, $sid)
           . $payload;
}

sub worker_rss_kb {
    my $pids = `pgrep -P $master`;
    my $kb = 0;
    for my $pid (split ' ', $pids) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $kb += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $kb;
}

sub stats {
    my $j = `curl -s --http2-prior-knowledge http://127.0.0.1:$port/stats`;
    return JSON::PP::decode_json($j)->{models}[0];
}

my $before_rss = worker_rss_kb();
my $before = stats();
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    or die "connect: $!";
my $path = '/v1/completions';
my $hdrs = "\x83\x86" . "\x04" . chr(length $path) . $path
           . "\x01" . chr(9) . 'localhost';
my $body = '{"model":"tiny","prompt":[1],"max_tokens":500,'
           . '"temperature":0,"stream":true}';
print $s "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", frame(4, 0, 0, pack('nN', 4, 1));
for my $i (0 .. 127) {
    my $sid = 2 * $i + 1;
    print $s frame(1, 0x4, $sid, $hdrs), frame(0, 0x1, $sid, $body);
}
# until the count stands still for a second
my ($after, $last) = (stats(), -1);
for (1 .. 60) {
    last if $after->{generated_tokens} == $last;
    $last = $after->{generated_tokens};
    sleep 1;
    $after = stats();
}
my $after_rss = worker_rss_kb();
printf "infer_unsent_limit %-4s: worker RSS +%.1f MB, %d tokens generated "
       . "of %d, %d running\n", $limit, ($after_rss - $before_rss) / 1024,
       $after->{generated_tokens} - $before->{generated_tokens}, 128 * 500,
       $after->{running};
close $s;
