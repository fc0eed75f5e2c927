// hello-path-rs patch 8: TaskPool, SequentialReader, EqualReader and FusedReader served the
// per-connection threads; the reader thread (`reactor.rs`) needs none of them.
// hello-path-rs patch 10: `parse_header_value` (q-values as floats) went with the `TE`
// choice of the answer's framing (`response.rs`).
pub use self::messages_queue::{MessagesQueue, Popped};
pub use self::refined_tcp_stream::RefinedTcpStream;
pub use self::sequential::{SequentialWriter, SequentialWriterBuilder};

mod messages_queue;
pub(crate) mod refined_tcp_stream;
mod sequential;
