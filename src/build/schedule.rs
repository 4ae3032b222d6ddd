//! Runs the nodes of a build graph in dependency order, up to `jobs` at a time: a node
//! starts once every node it depends on has finished. The first failure stops the
//! build: nodes not started yet never start, and running ones see `cancel` between
//! steps.

use super::BuildError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

struct Board<T> {
    done: Vec<Option<Arc<T>>>,
    started: Vec<bool>,
    error: Option<BuildError>,
}

/// `deps[i]` lists the nodes node `i` needs; `build(i, done)` builds it, with every
/// finished node's result in `done`. Returns each node's result, in node order.
pub(crate) fn run<T: Send + Sync>(
    deps: &[&[usize]],
    jobs: usize,
    cancel: &AtomicBool,
    build: impl Fn(usize, &[Option<Arc<T>>]) -> Result<T, BuildError> + Sync,
) -> Result<Vec<Arc<T>>, BuildError> {
    let board = Mutex::new(Board {
        done: (0..deps.len()).map(|_| None).collect(),
        started: vec![false; deps.len()],
        error: None,
    });
    let changed = Condvar::new();
    let lock = || board.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, deps.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let (i, done) = {
                        let mut b = lock();
                        loop {
                            if b.error.is_some() || b.started.iter().all(|s| *s) {
                                return;
                            }
                            let ready = (0..deps.len()).find(|&i| {
                                !b.started[i] && deps[i].iter().all(|&d| b.done[d].is_some())
                            });
                            if let Some(i) = ready {
                                b.started[i] = true;
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

    #[test]
    fn dependencies_finish_first_and_every_node_runs_once() {
        // 0 and 1 independent, 2 needs both, 3 needs 2.
        let deps: Vec<&[usize]> = vec![&[], &[], &[0, 1], &[2]];
        let order = Mutex::new(Vec::new());
        let runs = AtomicUsize::new(0);
        let results = run(&deps, 2, &AtomicBool::new(false), |i, done| {
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
        let err = run::<()>(&deps, 2, &cancel, |i, _| {
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
}
