# p50 latency against concurrency, from bench/serve/report.py's latency.dat.
#   gnuplot -e "datadir='bench/results'" bench/serve/latency.gp
# Columns: conc, then for each max_tokens (1, 32): ours h1, ours h2, peer.
if (!exists("datadir")) datadir = "bench/results"
set terminal pngcairo size 760,460 font "sans,10"
set output datadir."/latency.png"
set title "p50 latency vs concurrency, stories260K on 1 CPU (lower is better)"
set xlabel "concurrent requests"
set ylabel "p50 latency (ms, log scale)"
set logscale xy
set xtics (1, 16, 64)
set xrange [0.8:80]
set grid
set key top left reverse Left box opaque font ",9"
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 dt 1
set style line 2 lc rgb "#2ca02c" lw 2 pt 5 dt 1
set style line 3 lc rgb "#d62728" lw 2 pt 9 dt 1
set style line 4 lc rgb "#1f77b4" lw 2 pt 6 dt 2
set style line 5 lc rgb "#2ca02c" lw 2 pt 4 dt 2
set style line 6 lc rgb "#d62728" lw 2 pt 8 dt 2
f = datadir."/latency.dat"
plot f u 1:2 w lp ls 1 t "nginx module, HTTP/1.1, 1 tok", \
     f u 1:3 w lp ls 2 t "nginx module, HTTP/2, 1 tok", \
     f u 1:4 w lp ls 3 t "FastAPI+PyTorch, 1 tok", \
     f u 1:5 w lp ls 4 t "nginx module, HTTP/1.1, 32 tok", \
     f u 1:6 w lp ls 5 t "nginx module, HTTP/2, 32 tok", \
     f u 1:7 w lp ls 6 t "FastAPI+PyTorch, 32 tok"
