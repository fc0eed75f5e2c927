module hello-path-rs/bench/peer-go

go 1.19
