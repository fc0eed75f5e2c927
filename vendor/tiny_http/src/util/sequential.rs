use std::io::Result as IoResult;
use std::io::Write;

use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Receiver<()>>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Receiver<()>>,
    writer: Arc<Mutex<W>>,
    on_finish: Sender<()>,
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    /// hello-path-rs patch 9: true when every writer handed out so far is done (no answer
    /// is pending on the connection).
    pub fn is_idle(&mut self) -> bool {
        match self.next_trigger.as_mut().map(|t| t.try_recv()) {
            None => true,
            Some(Ok(())) | Some(Err(std::sync::mpsc::TryRecvError::Disconnected)) => {
                // the next writer has nothing to wait for
                self.next_trigger = None;
                true
            }
            Some(Err(std::sync::mpsc::TryRecvError::Empty)) => false,
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let (tx, rx) = channel();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
        })
    }
}

impl<W: Write + Send> SequentialWriter<W> {
    /// hello-path-rs patch 8: true when the answers before this one are written (a write now
    /// would not wait).
    pub fn is_ready(&mut self) -> bool {
        match self.trigger.as_mut().map(|t| t.try_recv()) {
            None => true,
            Some(Ok(())) | Some(Err(std::sync::mpsc::TryRecvError::Disconnected)) => {
                self.trigger = None;
                true
            }
            Some(Err(std::sync::mpsc::TryRecvError::Empty)) => false,
        }
    }
}

impl SequentialWriter<std::io::BufWriter<super::RefinedTcpStream>> {
    /// hello-path-rs patch 9: shuts the connection's sending side down, in this writer's
    /// turn (after the answers before it).
    pub fn shutdown_write(&mut self) {
        if let Some(v) = self.trigger.take() {
            v.recv().ok();
        }
        let mut writer = self.writer.lock().unwrap();
        writer.flush().ok();
        writer.get_mut().shutdown_write();
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().flush()
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.on_finish.send(()).ok();
    }
}
