//! Polling with a deadline: tests wait for a condition, never for a fixed time.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Calls `check` every 50 ms until it returns `Ok` or `timeout` has passed; the error then names
/// `what` was awaited and the last thing `check` saw.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(timed_out(what, timeout, &last)),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn timed_out(what: &str, timeout: Duration, last: &str) -> String {
    format!("timed out after {timeout:?} waiting for {what}; last: {last}")
}

/// [`wait_for`] for async tests: sleeps on the tokio timer between checks, so the runtime's
/// threads stay free for the work being awaited.
#[cfg(feature = "tokio")]
pub async fn wait_for_async<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(timed_out(what, timeout, &last)),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Awaits `fut`, failing the test if it takes longer than `secs` (a hung request must not hang
/// the suite).
#[cfg(feature = "tokio")]
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check that fails until its `n`th call, which returns `n`.
    fn succeeds_on_call(n: u32) -> impl FnMut() -> Result<u32, String> {
        let mut calls = 0;
        move || {
            calls += 1;
            if calls == n {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        }
    }

    #[test]
    fn returns_the_first_success() {
        assert_eq!(wait_for("three calls", Duration::from_secs(10), succeeds_on_call(3)), Ok(3));
    }

    #[test]
    fn a_timeout_names_what_was_awaited_and_the_last_answer() {
        let got: Result<(), String> = wait_for("nothing", Duration::ZERO, || Err("still no".to_owned()));
        assert_eq!(got, Err("timed out after 0ns waiting for nothing; last: still no".to_owned()));
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_polling_and_deadlines() {
        assert_eq!(wait_for_async("two calls", Duration::from_secs(10), succeeds_on_call(2)).await, Ok(2));
        assert_eq!(within(10, "a ready future", async { 7 }).await, 7);
        let hung = tokio::spawn(within(0, "a hung future", std::future::pending::<()>()));
        let message = hung.await.expect_err("the deadline fails the test").into_panic();
        assert_eq!(
            message.downcast_ref::<String>().map(String::as_str),
            Some("a hung future did not finish within 0s")
        );
    }
}
