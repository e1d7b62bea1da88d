//! What happens when a node exits on its own: a function of plain data.

use std::time::Duration;

use crate::agent::config::Config;
use crate::agent::process::Exit;

/// The restart policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevivalPolicy {
    /// Revivals in a row, without a long enough run, before giving up.
    pub max_revivals: u32,
    /// The delay of the second revival in a row (the first is at once).
    pub delay: Duration,
    pub max_delay: Duration,
    /// A run this long resets the count of revivals in a row.
    pub reset_after: Duration,
}

impl RevivalPolicy {
    pub fn of(cfg: &Config) -> RevivalPolicy {
        RevivalPolicy {
            max_revivals: cfg.max_revivals,
            delay: cfg.revive_delay,
            max_delay: cfg.revive_max_delay,
            reset_after: cfg.revive_reset_after,
        }
    }
}

/// What to do about a node that exited prematurely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after `delay`; this is revival number `attempt` in a
    /// row.
    Revive { attempt: u32, delay: Duration },
    /// `max_revivals` revivals in a row have failed: the node is `FAILED`.
    GiveUp { after: u32 },
    /// The agent is shutting down: leave it.
    Leave,
}

/// Decides on a premature exit, given the revivals in a row so far and how
/// long the process ran.
pub fn after_exit(
    policy: &RevivalPolicy,
    attempts: u32,
    ran: Duration,
    shutting_down: bool,
) -> AfterExit {
    if shutting_down {
        return AfterExit::Leave;
    }
    let attempts = if ran >= policy.reset_after {
        0
    } else {
        attempts
    };
    if attempts >= policy.max_revivals {
        return AfterExit::GiveUp {
            after: policy.max_revivals,
        };
    }
    let attempt = attempts + 1;
    AfterExit::Revive {
        attempt,
        delay: revival_delay(attempt, policy.delay, policy.max_delay),
    }
}

/// The delay before revival number `attempt` (1-based): none for the first
/// (as Zeek's Supervisor restarts a first crash at once), then the base
/// delay, doubled every third attempt (0, 1, 1, 2, 2, 2, 4, …), capped.
pub fn revival_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let Some(later) = attempt.checked_sub(2) else {
        return Duration::ZERO;
    };
    let doublings = ((later + 1) / 3).min(30);
    base.saturating_mul(1 << doublings).min(cap)
}

/// What `notify_error` says of an exit: "node w exited with code 3 while
/// starting; stderr:\n…".
pub fn exit_message(name: &str, status: &Exit, was_running: bool, stderr_tail: &str) -> String {
    let mut msg = format!("node {name} {status}");
    if !was_running {
        msg.push_str(" while starting");
    }
    with_stderr(msg, stderr_tail)
}

/// `line`, and after it the stderr tail when there is one.
pub fn with_stderr(mut line: String, stderr_tail: &str) -> String {
    let tail = stderr_tail.trim_end_matches('\n');
    if !tail.is_empty() {
        line.push_str("; stderr:\n");
        line.push_str(tail);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RevivalPolicy = RevivalPolicy {
        max_revivals: 3,
        delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        reset_after: Duration::from_secs(30),
    };
    const SHORT: Duration = Duration::from_millis(10);

    #[test]
    fn a_crash_loop_is_revived_then_given_up() {
        let mut attempts = 0;
        let mut delays = Vec::new();
        loop {
            match after_exit(&POLICY, attempts, SHORT, false) {
                AfterExit::Revive { attempt, delay } => {
                    assert_eq!(attempt, attempts + 1);
                    attempts = attempt;
                    delays.push(delay.as_secs());
                }
                AfterExit::GiveUp { after } => {
                    assert_eq!(after, 3);
                    break;
                }
                AfterExit::Leave => panic!("not shutting down"),
            }
        }
        assert_eq!(delays, [0, 1, 1]);
    }

    #[test]
    fn a_long_run_starts_the_count_again() {
        assert_eq!(
            after_exit(&POLICY, 3, Duration::from_secs(30), false),
            AfterExit::Revive {
                attempt: 1,
                delay: Duration::ZERO
            }
        );
        assert_eq!(
            after_exit(&POLICY, 3, Duration::from_secs(29), false),
            AfterExit::GiveUp { after: 3 }
        );
    }

    #[test]
    fn nothing_is_revived_during_shutdown() {
        assert_eq!(after_exit(&POLICY, 0, SHORT, true), AfterExit::Leave);
    }

    #[test]
    fn no_revival_at_all_with_a_limit_of_zero() {
        let policy = RevivalPolicy {
            max_revivals: 0,
            ..POLICY
        };
        assert_eq!(
            after_exit(&policy, 0, SHORT, false),
            AfterExit::GiveUp { after: 0 }
        );
    }

    #[test]
    fn the_message_says_when_and_quotes_stderr() {
        assert_eq!(
            exit_message("w", &Exit::Code(3), false, "boom"),
            "node w exited with code 3 while starting; stderr:\nboom"
        );
        assert_eq!(
            exit_message("w", &Exit::Signal(9), true, ""),
            "node w killed by signal 9 (SIGKILL)"
        );
    }
}
