# Bytes and p50 latency of each encoding, from bench/serialize/client.py's
# serialize.dat:  gnuplot -e "datadir='bench/results'" bench/serialize/chart.gp
# Columns: encoding, reply kB (last), reply MB (all), p50 ms (last, all).
if (!exists("datadir")) datadir = "bench/results"
set terminal pngcairo size 1000,760 font "sans,10"
set output datadir."/serialize.png"
f = datadir."/serialize.dat"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -20 nomirror font ",9"
set key off
set multiplot layout 2,2 title "Serialization of logits, TinyLlama-shaped " \
    ."model (vocabulary 32000), 128-token input, one client"
set title "last position: reply size (kB)"
set logscale y
plot f u 2:xtic(1) lc rgb "#1f77b4", \
     f u 0:2:(sprintf("%.0f", $2)) w labels offset 0,0.8 font ",9"
set title "all 128 positions: reply size (MB)"
plot f u 3:xtic(1) lc rgb "#1f77b4", \
     f u 0:3:(sprintf("%.1f", $3)) w labels offset 0,0.8 font ",9"
set title "last position: p50 latency (ms, client decode included)"
plot f u 4:xtic(1) lc rgb "#d62728", \
     f u 0:4:(sprintf("%.1f", $4)) w labels offset 0,0.8 font ",9"
set title "all 128 positions: p50 latency (ms, client decode included)"
plot f u 5:xtic(1) lc rgb "#d62728", \
     f u 0:5:(sprintf("%.0f", $5)) w labels offset 0,0.8 font ",9"
unset multiplot
