//! The agent's resource budget: it runs at a lowered priority, paces its scans so
//! their CPU stays within a share of one core, and a watchdog checks its own CPU and
//! memory use, backs off when over, and reports what it saw to the collector.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use census_proto::v1::AgentHealth;

/// Longest pause pacing adds after one collector.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Most the watchdog multiplies pauses by while the agent is over budget.
const MAX_BACKOFF: u32 = 8;

/// What the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Share of one core, in thousandths, averaged over a watchdog window.
    pub cpu_millicores: u32,
    /// Resident memory.
    pub memory_bytes: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            cpu_millicores: 250,
            memory_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Lowers the agent's scheduling priority (a `nice` value, 0..=19).
pub fn lower_priority(nice: i32) -> std::io::Result<()> {
    rustix::process::setpriority_process(None, nice).map_err(std::io::Error::from)
}

/// CPU time this process has used.
pub fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * rustix::param::page_size() as u64
}

/// Paces work to the budget and keeps the watchdog's findings.
#[derive(Debug)]
pub struct Governor {
    budget: Budget,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Pauses are multiplied by this while over budget.
    backoff: u32,
    window_start: Instant,
    window_cpu: Duration,
    health: AgentHealth,
}

impl Governor {
    pub fn new(budget: Budget) -> Self {
        Governor {
            budget,
            state: Mutex::new(State {
                backoff: 1,
                window_start: Instant::now(),
                window_cpu: process_cpu(),
                health: AgentHealth {
                    cpu_budget_millicores: budget.cpu_millicores,
                    memory_budget_bytes: budget.memory_bytes,
                    ..AgentHealth::default()
                },
            }),
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pause that keeps work that just used `spent` CPU within the budget: the
    /// work's share of the time becomes at most the budget's share of one core.
    pub fn pause_for(&self, spent: Duration) -> Duration {
        let share = f64::from(self.budget.cpu_millicores.clamp(1, 1000)) / 1000.0;
        let backoff = self.state().backoff;
        spent
            .mul_f64((1.0 / share - 1.0) * f64::from(backoff))
            .min(MAX_PAUSE)
    }

    /// Sleeps (blocking) after work that used `spent` CPU on this thread.
    pub fn pace(&self, spent: Duration) {
        let pause = self.pause_for(spent);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }

    /// One watchdog check: measures CPU over the window since the last check and the
    /// resident memory, backs off (doubling pauses) while over budget and recovers
    /// while under, and returns what it found.
    pub fn check(&self) -> AgentHealth {
        let (now, cpu, rss) = (Instant::now(), process_cpu(), rss_bytes());
        let mut state = self.state();
        let wall = now.duration_since(state.window_start);
        let used = cpu.saturating_sub(state.window_cpu);
        state.window_start = now;
        state.window_cpu = cpu;
        let millicores = if wall.is_zero() {
            0
        } else {
            (used.as_secs_f64() / wall.as_secs_f64() * 1000.0).round() as u32
        };
        state.health.cpu_millicores = millicores;
        state.health.rss_bytes = rss;
        if millicores > self.budget.cpu_millicores {
            state.health.cpu_over_budget += 1;
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            tracing::warn!(
                cpu_millicores = millicores,
                budget = self.budget.cpu_millicores,
                backoff = state.backoff,
                "over the CPU budget: scans slow down"
            );
        } else if state.backoff > 1 {
            state.backoff /= 2;
        }
        if rss > self.budget.memory_bytes {
            state.health.memory_over_budget += 1;
            tracing::warn!(
                rss_bytes = rss,
                budget = self.budget.memory_bytes,
                "over the memory budget: caches are dropped"
            );
        }
        state.health
    }

    /// The last watchdog findings, as reported to the collector.
    pub fn health(&self) -> AgentHealth {
        self.state().health
    }

    /// Whether the last check found the agent over its memory budget.
    pub fn over_memory(&self) -> bool {
        let state = self.state();
        state.health.rss_bytes > self.budget.memory_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_keep_the_work_within_its_share_and_back_off_when_over() {
        let governor = Governor::new(Budget {
            cpu_millicores: 250,
            memory_bytes: u64::MAX,
        });
        // A quarter of a core: 100 ms of work is followed by 300 ms of rest.
        assert_eq!(
            governor.pause_for(Duration::from_millis(100)),
            Duration::from_millis(300)
        );
        assert_eq!(governor.pause_for(Duration::from_secs(60)), MAX_PAUSE);

        // Burn CPU well past a quarter core: the check notices and pauses double.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let health = governor.check();
        assert!(health.cpu_millicores > 250, "{health:?}");
        assert_eq!(health.cpu_over_budget, 1);
        assert_eq!(
            governor.pause_for(Duration::from_millis(100)),
            Duration::from_millis(600)
        );
        // Idle: it recovers.
        std::thread::sleep(Duration::from_millis(200));
        let health = governor.check();
        assert!(health.cpu_millicores < 250, "{health:?}");
        assert_eq!(
            governor.pause_for(Duration::from_millis(100)),
            Duration::from_millis(300)
        );

        let full = Governor::new(Budget {
            cpu_millicores: 1000,
            memory_bytes: 1,
        });
        assert_eq!(full.pause_for(Duration::from_secs(1)), Duration::ZERO);
        let health = full.check();
        assert!(
            health.rss_bytes > 1 && health.memory_over_budget == 1,
            "{health:?}"
        );
        assert!(full.over_memory());
    }
}
