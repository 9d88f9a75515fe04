//! Scheduler hints for the threads that answer people and rollouts.
#![allow(unsafe_code)] // sched_setattr has no safe wrapper in libc

/// Asks the scheduler to treat the calling thread as latency-sensitive: on Linux 6.12+ (EEVDF
/// custom slices) a SCHED_OTHER thread with a short slice preempts a busy one as soon as it
/// wakes, instead of waiting out the running thread's slice (~3 ms). The API threads get it,
/// so a verdict is not queued behind a core that ingest keeps busy. Needs no privilege, keeps
/// the thread's nice value; older kernels accept and ignore it, other systems skip it.
pub fn latency_sensitive_thread() {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
            util_min: u32,
            util_max: u32,
        }
        // SAFETY: getpriority and sched_setattr only read their arguments; the struct is a
        // valid, fully initialised sched_attr that outlives the call.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            if nice == -1 && *libc::__errno_location() != 0 {
                return;
            }
            let attr = SchedAttr {
                size: std::mem::size_of::<SchedAttr>() as u32,
                policy: libc::SCHED_OTHER as u32,
                flags: 0,
                nice,
                priority: 0,
                runtime: API_SLICE_NS,
                deadline: 0,
                period: 0,
                util_min: 0,
                util_max: 0,
            };
            if libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "no short scheduler slice for the API thread");
            }
        }
    }
}

/// The API threads' scheduler slice: the kernel's minimum (0.1 ms).
#[cfg(target_os = "linux")]
const API_SLICE_NS: u64 = 100_000;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// `se.slice` of the calling thread, in ns, as the kernel reports it.
    fn slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        sched
            .lines()
            .find(|l| l.starts_with("se.slice"))
            .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
    }

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse::<u32>().ok());
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }

    #[test]
    fn api_threads_get_the_short_slice_and_keep_their_nice() {
        std::thread::spawn(|| {
            // A niced process stays niced: the hint must not reset it to 0.
            // SAFETY: setpriority/getpriority on the calling thread.
            let before = unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 3);
                libc::getpriority(libc::PRIO_PROCESS, 0)
            };
            let slice_before = slice_ns();
            super::latency_sensitive_thread();
            let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(after, before, "nice changed");
            if kernel_at_least(6, 12) {
                assert_eq!(
                    slice_ns(),
                    Some(super::API_SLICE_NS),
                    "slice before: {slice_before:?}"
                );
            }
        })
        .join()
        .unwrap();
    }
}
