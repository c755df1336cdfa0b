//! The hang switch: simulates an engine stuck mid-generation that still looks alive.
//!
//! While hung, no token is produced: running requests stall (they do not fail), new ones
//! are accepted and take a slot or queue but produce nothing, and the small endpoints
//! (`/health`, `/v1/models`, `/metrics`) answer as usual, with
//! `vllm:num_requests_running` above zero and `vllm:generation_tokens_total` frozen: what
//! a health checker watching progress has to detect. Unhanging resumes generation.

use tokio::sync::watch;

/// Whether the engine is hung, shared by the handle, the control endpoints and the
/// generating requests.
#[derive(Debug)]
pub(crate) struct HangSwitch {
    state: watch::Sender<bool>,
}

impl HangSwitch {
    /// A switch that is not hung.
    pub(crate) fn new() -> Self {
        Self {
            state: watch::Sender::new(false),
        }
    }

    /// Hangs or unhangs. Once `set(true)` returns, no token is produced until `set(false)`
    /// (see [`HangSwitch::unless_hung`]).
    pub(crate) fn set(&self, hung: bool) {
        if self.state.send_replace(hung) != hung {
            tracing::info!(hung, "mock engine hang switch");
        }
    }

    /// Whether the engine is hung.
    pub(crate) fn is_hung(&self) -> bool {
        *self.state.borrow()
    }

    /// Runs `f` unless hung. [`HangSwitch::set`] waits for a running `f` to return, so no
    /// `f` starts or runs after `set(true)` returned. `f` must not use the switch.
    pub(crate) fn unless_hung<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let hung = self.state.borrow();
        if *hung {
            None
        } else {
            Some(f())
        }
    }

    /// Resolves once the engine is not hung.
    pub(crate) async fn wait_unhung(&self) {
        let mut rx = self.state.subscribe();
        // The sender is `self`: it outlives this wait, so this never fails.
        let _ = rx.wait_for(|hung| !*hung).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn gates_work_until_unhung() {
        let s = Arc::new(HangSwitch::new());
        assert!(!s.is_hung());
        assert_eq!(s.unless_hung(|| 1), Some(1));
        s.set(true);
        assert!(s.is_hung());
        assert_eq!(s.unless_hung(|| 1), None);
        let s2 = Arc::clone(&s);
        let waiter = tokio::spawn(async move { s2.wait_unhung().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        s.set(false);
        waiter.await.unwrap();
        assert_eq!(s.unless_hung(|| 2), Some(2));
        // Not hung: resolves at once.
        s.wait_unhung().await;
    }
}
