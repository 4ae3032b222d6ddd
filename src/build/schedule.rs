//! Runs the nodes of a build graph in dependency order, up to `jobs` at a time: a node
//! starts once every node it depends on has finished. The first failure stops the
//! build: nodes not started yet never start, and running ones see `cancel` between
//! steps. A node that is ready while every slot is busy is reported once as queued, and
//! again when it gets a slot, so a waiting platform is never invisible.

use super::BuildError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the scheduler tells its caller (for progress), as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `node` is ready but all `slots` are taken (`busy` of them).
    Queued {
        node: usize,
        busy: usize,
        slots: usize,
    },
    /// A node that was queued got a slot after `waited`.
    Started { node: usize, waited: Duration },
}

/// How the scheduler sees time and reports; a test passes a fake clock.
pub(crate) struct Observer<'a> {
    pub now: &'a (dyn Fn() -> Instant + Sync),
    pub event: &'a (dyn Fn(Event) + Sync),
}

struct Board<T> {
    done: Vec<Option<Arc<T>>>,
    started: Vec<bool>,
    /// When each node was reported queued.
    queued_at: Vec<Option<Instant>>,
    running: usize,
    error: Option<BuildError>,
}

impl<T> Board<T> {
    fn ready(&self, deps: &[&[usize]], i: usize) -> bool {
        !self.started[i] && deps[i].iter().all(|&d| self.done[d].is_some())
    }

    /// Reports the ready nodes no slot is free for, once each. Only when every slot is
    /// taken: a free slot means a worker is about to pick the node up.
    fn note_queued(&mut self, deps: &[&[usize]], slots: usize, observer: &Observer) {
        if self.running < slots || self.error.is_some() {
            return;
        }
        for i in 0..deps.len() {
            if self.queued_at[i].is_none() && self.ready(deps, i) {
                self.queued_at[i] = Some((observer.now)());
                (observer.event)(Event::Queued {
                    node: i,
                    busy: self.running,
                    slots,
                });
            }
        }
    }
}

/// `deps[i]` lists the nodes node `i` needs; `build(i, done)` builds it, with every
/// finished node's result in `done`. Returns each node's result, in node order.
pub(crate) fn run<T: Send + Sync>(
    deps: &[&[usize]],
    jobs: usize,
    cancel: &AtomicBool,
    observer: &Observer,
    build: impl Fn(usize, &[Option<Arc<T>>]) -> Result<T, BuildError> + Sync,
) -> Result<Vec<Arc<T>>, BuildError> {
    let board = Mutex::new(Board {
        done: (0..deps.len()).map(|_| None).collect(),
        started: vec![false; deps.len()],
        queued_at: vec![None; deps.len()],
        running: 0,
        error: None,
    });
    let slots = jobs.clamp(1, deps.len().max(1));
    let changed = Condvar::new();
    let lock = || board.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|scope| {
        for _ in 0..slots {
            scope.spawn(|| {
                loop {
                    let (i, done) = {
                        let mut b = lock();
                        loop {
                            if b.error.is_some() || b.started.iter().all(|s| *s) {
                                return;
                            }
                            let ready = (0..deps.len()).find(|&i| b.ready(deps, i));
                            if let Some(i) = ready {
                                b.started[i] = true;
                                b.running += 1;
                                if let Some(at) = b.queued_at[i] {
                                    let waited = (observer.now)().saturating_duration_since(at);
                                    (observer.event)(Event::Started { node: i, waited });
                                }
                                b.note_queued(deps, slots, observer);
                                break (i, b.done.clone());
                            }
                            b = changed.wait(b).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let result = if cancel.load(Ordering::SeqCst) {
                        Err(BuildError::Cancelled)
                    } else {
                        build(i, &done)
                    };
                    let mut b = lock();
                    b.running -= 1;
                    match result {
                        Ok(value) => b.done[i] = Some(Arc::new(value)),
                        Err(e) => {
                            cancel.store(true, Ordering::SeqCst);
                            // A node cancelled because another failed does not hide
                            // the failure that explains it.
                            if b.error.is_none() || matches!(b.error, Some(BuildError::Cancelled)) {
                                b.error = Some(e);
                            }
                        }
                    }
                    changed.notify_all();
                }
            });
        }
    });
    let board = board.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = board.error {
        return Err(e);
    }
    board
        .done
        .into_iter()
        .map(|slot| slot.ok_or(BuildError::Cancelled))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn silent() -> Observer<'static> {
        Observer {
            now: &Instant::now,
            event: &|_| {},
        }
    }

    #[test]
    fn dependencies_finish_first_and_every_node_runs_once() {
        // 0 and 1 independent, 2 needs both, 3 needs 2.
        let deps: Vec<&[usize]> = vec![&[], &[], &[0, 1], &[2]];
        let order = Mutex::new(Vec::new());
        let runs = AtomicUsize::new(0);
        let results = run(&deps, 2, &AtomicBool::new(false), &silent(), |i, done| {
            runs.fetch_add(1, Ordering::SeqCst);
            for &d in deps[i] {
                assert!(done[d].is_some(), "node {i} started before {d}");
            }
            order.lock().unwrap().push(i);
            Ok(i * 10)
        })
        .unwrap();
        assert_eq!(
            results.iter().map(|r| **r).collect::<Vec<_>>(),
            [0, 10, 20, 30]
        );
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let order = order.into_inner().unwrap();
        assert_eq!(&order[2..], [2, 3]);
    }

    #[test]
    fn the_first_real_failure_is_returned_and_dependents_never_start() {
        let deps: Vec<&[usize]> = vec![&[], &[0], &[1]];
        let started = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let err = run::<()>(&deps, 2, &cancel, &silent(), |i, _| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                Err(BuildError::Command {
                    what: "node 0".into(),
                    message: "broken".into(),
                })
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "node 0: broken");
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert!(cancel.load(Ordering::SeqCst));
    }

    #[test]
    fn a_ready_node_without_a_slot_is_reported_queued_then_started() {
        // One slot, three independent nodes: 1 and 2 wait while 0 runs, 2 also while 1
        // runs. The fake clock moves one second per reading.
        let deps: Vec<&[usize]> = vec![&[], &[], &[]];
        let base = Instant::now();
        let ticks = AtomicUsize::new(0);
        let now = || base + Duration::from_secs(ticks.fetch_add(1, Ordering::SeqCst) as u64);
        let events = Mutex::new(Vec::new());
        let record = |e: Event| events.lock().unwrap().push(e);
        let observer = Observer {
            now: &now,
            event: &record,
        };
        run(&deps, 1, &AtomicBool::new(false), &observer, |i, _| Ok(i)).unwrap();
        let secs = Duration::from_secs;
        assert_eq!(
            events.into_inner().unwrap(),
            [
                Event::Queued {
                    node: 1,
                    busy: 1,
                    slots: 1
                },
                Event::Queued {
                    node: 2,
                    busy: 1,
                    slots: 1
                },
                // Clock readings: 0 (queued 1), 1 (queued 2), 2 (1 starts), 3 (2 starts).
                Event::Started {
                    node: 1,
                    waited: secs(2)
                },
                Event::Started {
                    node: 2,
                    waited: secs(2)
                },
            ]
        );
    }

    #[test]
    fn nothing_is_queued_while_a_slot_is_free_or_a_dependency_runs() {
        // Two slots for two independent nodes, and a chain 0 → 2 → 3: 2 and 3 wait on
        // their dependencies, not on a slot.
        let deps: Vec<&[usize]> = vec![&[], &[], &[0], &[2]];
        let events = Mutex::new(Vec::new());
        let record = |e: Event| events.lock().unwrap().push(e);
        let observer = Observer {
            now: &Instant::now,
            event: &record,
        };
        run(&deps, 2, &AtomicBool::new(false), &observer, |i, _| Ok(i)).unwrap();
        assert_eq!(events.into_inner().unwrap(), []);
    }
}
