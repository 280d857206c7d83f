//! The state as a run changes it, and its writes to the store.
//!
//! Every step of a run changes the state (an object applied, deleted, its outputs read); writing
//! the whole state after each would make a platform of thousands of steps write thousands of
//! times. A [`Recorder`] holds the run's state, numbers each change, and writes soon rather than
//! at once: a change is written now unless a write is in flight or the last one ended less than a
//! gap ago, in which case a later write — at the latest [`Recorder::finish`] — takes it along.
//! Objects a killed run made but had not recorded yet carry the platform's labels, and the next
//! plan finds them again (the state says the run did not finish).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;
use vz_state::{State, Store, Unfinished};

/// The least time between two state writes during a run; a state that takes long to write waits
/// four times as long as its last write took, so writing never takes more than a fifth of a run.
const MIN_WRITE_GAP: Duration = Duration::from_millis(500);

/// A run's state and its writes to `store`.
pub(super) struct Recorder<'a> {
    store: &'a Store,
    /// The state; locked only between awaits, never across one.
    state: Mutex<State>,
    /// Changes made so far: a generation number, raised with each.
    changed: AtomicU64,
    /// The writes; held while writing, so writes go one at a time.
    writes: tokio::sync::Mutex<Writes>,
}

/// What the writes of a run have done so far.
#[derive(Default)]
struct Writes {
    /// The change generation last written.
    written: u64,
    /// When the last write ended, and how long it took.
    last: Option<(Instant, Duration)>,
}

impl<'a> Recorder<'a> {
    pub(super) fn new(store: &'a Store, state: State) -> Self {
        Recorder {
            store,
            state: Mutex::new(state),
            changed: AtomicU64::new(0),
            writes: tokio::sync::Mutex::new(Writes::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the state was locked left it as it was at the panic: still the best record.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read the state.
    pub(super) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// The state as it is now.
    pub(super) fn snapshot(&self) -> State {
        self.lock().clone()
    }

    /// Change the state with `f`, which says whether it changed anything, and record the change
    /// soon.
    pub(super) async fn change(&self, f: impl FnOnce(&mut State) -> bool) -> Result<()> {
        if !f(&mut self.lock()) {
            return Ok(());
        }
        let change = self.changed.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(mut writes) = self.writes.try_lock() else {
            // The write in flight, or a later one, takes it along.
            return Ok(());
        };
        if writes.written >= change {
            return Ok(());
        }
        if let Some((ended, took)) = writes.last
            && ended.elapsed() < MIN_WRITE_GAP.max(took * 4)
        {
            return Ok(());
        }
        self.write(&mut writes).await
    }

    /// Say in the stored state that the run has started and not finished, before it changes
    /// anything: if it is killed, the next plan looks for objects it made and had not recorded.
    pub(super) async fn begin(&self, operation: &str) -> Result<()> {
        self.lock().unfinished = Some(Unfinished::now(operation));
        self.changed.fetch_add(1, Ordering::SeqCst);
        let mut writes = self.writes.lock().await;
        self.write(&mut writes).await
    }

    /// Say that the run is over, and write every change made so far (after a write in flight).
    pub(super) async fn finish(&self) -> Result<()> {
        if self.lock().unfinished.take().is_some() {
            self.changed.fetch_add(1, Ordering::SeqCst);
        }
        let mut writes = self.writes.lock().await;
        if writes.written >= self.changed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.write(&mut writes).await
    }

    /// Write `state` instead of the run's (a rollback's), after a write in flight; `state` gets
    /// the serial it was written as.
    pub(super) async fn write_instead(&self, state: &mut State) -> Result<()> {
        let _writes = self.writes.lock().await;
        Ok(self.store.write(state).await?)
    }

    async fn write(&self, writes: &mut Writes) -> Result<()> {
        let started = Instant::now();
        let (mut snapshot, upto) = {
            let s = self.lock();
            (s.clone(), self.changed.load(Ordering::SeqCst))
        };
        self.store.write(&mut snapshot).await?;
        self.lock().serial = snapshot.serial;
        writes.written = upto;
        writes.last = Some((Instant::now(), started.elapsed()));
        Ok(())
    }
}
