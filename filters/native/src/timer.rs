//! One timer thread for the whole module: runs a task at (or just after) its deadline.
//!
//! The dynamic-module ABI has a scheduler but no timer: a committed event runs on the
//! stream's worker as soon as that worker's loop gets to it. Delays therefore wait here,
//! on a thread of our own, and the task they run commits the event (committing is
//! allowed from any thread). The thread starts on the first delay and sleeps on a
//! condition variable until the earliest deadline or a new, earlier one.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What runs at the deadline. It must be quick: every timer shares the thread.
pub type Task = Box<dyn FnOnce() + Send>;

/// A delay too long to represent waits this long instead ("forever", never a panic).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

struct Entry {
    deadline: Instant,
    /// Ties broken by arrival, so equal deadlines run in the order they were set.
    seq: u64,
    task: Task,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap, and the earliest deadline must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    entries: BinaryHeap<Entry>,
    next_seq: u64,
}

/// A set of timers served by one thread.
pub struct Timers {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Timers {
    fn new() -> Timers {
        Timers {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        }
    }

    /// Runs `task` on the timer thread once `delay` has passed.
    pub fn after(&self, delay: Duration, task: Task) {
        let now = Instant::now();
        let deadline = now.checked_add(delay).unwrap_or(now + FAR);
        let Ok(mut queue) = self.queue.lock() else {
            return;
        };
        let seq = queue.next_seq;
        queue.next_seq += 1;
        queue.entries.push(Entry {
            deadline,
            seq,
            task,
        });
        self.wake.notify_one();
    }

    /// The timer thread's loop: sleep until the earliest deadline, run what is due.
    fn run(&self) {
        let Ok(mut queue) = self.queue.lock() else {
            return;
        };
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while queue.entries.peek().is_some_and(|e| e.deadline <= now) {
                if let Some(entry) = queue.entries.pop() {
                    due.push(entry.task);
                }
            }
            if !due.is_empty() {
                drop(queue);
                for task in due {
                    task();
                }
                let Ok(relocked) = self.queue.lock() else {
                    return;
                };
                queue = relocked;
                continue;
            }
            let wait = queue.entries.peek().map(|e| e.deadline - now);
            queue = match wait {
                Some(wait) => match self.wake.wait_timeout(queue, wait) {
                    Ok((queue, _)) => queue,
                    Err(_) => return,
                },
                None => match self.wake.wait(queue) {
                    Ok(queue) => queue,
                    Err(_) => return,
                },
            };
        }
    }
}

/// The module's timers; the thread starts on first use.
pub fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::new(Timers::new()));
        let spawned = std::thread::Builder::new()
            .name("wasmesh-timers".into())
            .spawn(move || timers.run());
        if let Err(e) = spawned {
            eprintln!("wasmesh-native: cannot start the timer thread ({e}); delays will never end");
        }
        timers
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn tasks_run_in_deadline_order_and_not_early() {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for (name, ms) in [("late", 60u64), ("early", 20), ("middle", 40)] {
            let tx = tx.clone();
            timers().after(
                Duration::from_millis(ms),
                Box::new(move || {
                    let _ = tx.send((name, start.elapsed()));
                }),
            );
        }
        let got: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let names: Vec<_> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["early", "middle", "late"]);
        for ((_, elapsed), ms) in got.iter().zip([20, 40, 60]) {
            assert!(*elapsed >= Duration::from_millis(ms), "{got:?}");
        }
    }

    #[test]
    fn an_absurd_delay_waits_instead_of_panicking() {
        timers().after(Duration::MAX, Box::new(|| {}));
        let (tx, rx) = mpsc::channel();
        timers().after(
            Duration::ZERO,
            Box::new(move || {
                let _ = tx.send(());
            }),
        );
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
