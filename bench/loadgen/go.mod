module certgate.bench/loadgen

go 1.19
