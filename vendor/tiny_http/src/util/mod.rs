// hello-path-rs patch 8: TaskPool, SequentialReader, EqualReader and FusedReader served the
// per-connection threads; the reader thread (`reactor.rs`) needs none of them.
// hello-path-rs patch 10: `parse_header_value` (q-values as floats) went with the `TE`
// choice of the answer's framing (`response.rs`).
// hello-path-rs patch 12: `RefinedTcpStream` (a second descriptor per connection, for the
// writer thread) and `SequentialWriter` (answers in order, one channel per request) went
// with the writer thread: the reactor owns each socket and keeps its answers in order.
pub use self::messages_queue::{MessagesQueue, Popped};

mod messages_queue;
