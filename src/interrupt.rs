//! Ctrl-C (or SIGTERM, as a CI runner sends when it cancels a job): a run stops starting new work,
//! stops waiting, and (for apply) rolls back.
//!
//! [`Interrupt::install`] listens for SIGINT and SIGTERM; the first one trips the flag that every
//! operation and wait checks. A second one exits at once (the state already records every step that
//! completed).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A flag tripped by Ctrl-C (or by a test).
#[derive(Debug, Clone)]
pub struct Interrupt {
    rx: watch::Receiver<bool>,
}

impl Interrupt {
    /// A flag nothing trips.
    pub fn never() -> Interrupt {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive so `tripped` never resolves.
        std::mem::forget(tx);
        Interrupt { rx }
    }

    /// A flag tripped by calling [`Trip::trip`] on the other half (tests).
    #[cfg(test)]
    pub fn manual() -> (Interrupt, Trip) {
        let (tx, rx) = watch::channel(false);
        (Interrupt { rx }, Trip(tx))
    }

    /// Listen for Ctrl-C and SIGTERM; `on_first` is printed when the first one arrives.
    pub fn install(on_first: &'static str) -> Interrupt {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            let mut signalled = async || {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    r = term.recv() => r.is_some(),
                }
            };
            if signalled().await {
                eprintln!("{on_first}");
                let _ = tx.send(true);
            }
            if signalled().await {
                eprintln!("Second interrupt: exiting now. The state records every completed step.");
                std::process::exit(130);
            }
        });
        Interrupt { rx }
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when Ctrl-C is pressed.
    pub async fn tripped(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// What trips an [`Interrupt::manual`] flag.
#[cfg(test)]
pub struct Trip(watch::Sender<bool>);

#[cfg(test)]
impl Trip {
    /// Press Ctrl-C.
    pub fn trip(&self) {
        let _ = self.0.send(true);
    }
}
