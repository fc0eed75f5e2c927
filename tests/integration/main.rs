//! Integration tests: the real binary, over real sockets, with real signals and a Secret
//! volume laid out and swapped as the kubelet does it.

mod util;

mod bounds;
mod cli;
mod framing;
mod http;
mod probe;
mod props;
mod reads;
mod refusals;
mod reload;
mod robustness;
mod signals;
mod watch;
