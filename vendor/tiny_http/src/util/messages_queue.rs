use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

enum Control<T> {
    Elem(T),
    Unblock,
}

// hello-path-rs patch 4: `push` woke the condvar (a futex syscall) for every message even
// when nobody waited, which under load is most of the time; the queue now counts its
// waiters and notifies only when there is one.

struct Queue<T> {
    items: VecDeque<Control<T>>,
    /// threads blocked in `pop` / `pop_timeout`
    waiting: usize,
    /// hello-path-rs patch 10: `wake` was called since the last `pop_until` returned.
    woken: bool,
}

/// What `pop_until` returns.
pub enum Popped<T> {
    Elem(T),
    /// `wake` (or `unblock`) was called.
    Woken,
    /// The deadline passed.
    TimedOut,
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    queue: Mutex<Queue<T>>,
    condvar: Condvar,
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(capacity),
                waiting: 0,
                woken: false,
            }),
            condvar: Condvar::new(),
        })
    }

    /// Pushes an element to the queue.
    pub fn push(&self, value: T) {
        let mut queue = self.queue.lock().unwrap();
        queue.items.push_back(Control::Elem(value));
        if queue.waiting > 0 {
            self.condvar.notify_one();
        }
    }

    /// hello-path-rs patch 8: pushes every element of `values` at once (one lock, one
    /// wake-up), emptying it.
    pub fn push_all(&self, values: &mut Vec<T>) {
        if values.is_empty() {
            return;
        }
        let mut queue = self.queue.lock().unwrap();
        queue.items.extend(values.drain(..).map(Control::Elem));
        if queue.waiting > 0 {
            self.condvar.notify_one();
        }
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        let mut queue = self.queue.lock().unwrap();
        queue.items.push_back(Control::Unblock);
        if queue.waiting > 0 {
            self.condvar.notify_one();
        }
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        let mut queue = self.queue.lock().unwrap();

        loop {
            match queue.items.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }

            queue.waiting += 1;
            queue = self.condvar.wait(queue).unwrap();
            queue.waiting -= 1;
        }
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        let mut queue = self.queue.lock().unwrap();
        match queue.items.pop_front() {
            Some(Control::Elem(value)) => Some(value),
            Some(Control::Unblock) | None => None,
        }
    }

    /// hello-path-rs patch 10: makes the next (or the current) `pop_until` return
    /// `Popped::Woken`, before any queued element, so that a wake-up is never starved by a
    /// busy queue. Wake-ups do not pile up: several before one `pop_until` count once.
    pub fn wake(&self) {
        let mut queue = self.queue.lock().unwrap();
        queue.woken = true;
        if queue.waiting > 0 {
            self.condvar.notify_all();
        }
    }

    /// hello-path-rs patch 10: pops an element, waiting until `deadline` (`None`: as long as
    /// it takes) or a `wake`. Unlike `pop_timeout`, a waiter with no deadline sleeps with no
    /// timeout at all: an idle process has no periodic wake-up.
    pub fn pop_until(&self, deadline: Option<Instant>) -> Popped<T> {
        let mut queue = self.queue.lock().unwrap();
        loop {
            if queue.woken {
                queue.woken = false;
                return Popped::Woken;
            }
            match queue.items.pop_front() {
                Some(Control::Elem(value)) => return Popped::Elem(value),
                Some(Control::Unblock) => return Popped::Woken,
                None => (),
            }
            queue.waiting += 1;
            queue = match deadline {
                None => self.condvar.wait(queue).unwrap(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        queue.waiting -= 1;
                        return Popped::TimedOut;
                    }
                    self.condvar.wait_timeout(queue, deadline - now).unwrap().0
                }
            };
            queue.waiting -= 1;
        }
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let mut queue = self.queue.lock().unwrap();
        let mut duration = timeout;
        loop {
            match queue.items.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }
            let now = Instant::now();
            queue.waiting += 1;
            let (_queue, result) = self.condvar.wait_timeout(queue, timeout).unwrap();
            queue = _queue;
            queue.waiting -= 1;
            let sleep_time = now.elapsed();
            duration = if duration > sleep_time {
                duration - sleep_time
            } else {
                Duration::from_millis(0)
            };
            if result.timed_out()
                || (duration.as_secs() == 0 && duration.subsec_nanos() < 1_000_000)
            {
                return None;
            }
        }
    }
}
