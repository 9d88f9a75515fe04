//! A hint to the CPU to start loading memory that a later point will touch, so that the cache
//! misses of a request's points overlap instead of following one another.
#![allow(unsafe_code)] // `_mm_prefetch` takes a raw pointer; it neither reads it nor can fault

/// Starts loading the `lines` cache lines from `addr`. Any address is fine, even a stale or
/// dangling one: a prefetch reads nothing the program can see and never faults.
#[inline(always)]
pub(crate) fn prefetch(addr: usize, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in 0..lines {
        let p = addr.wrapping_add(i * 64) as *const i8;
        // SAFETY: PREFETCHT0 is a hint: it does not access memory architecturally, so it has
        // no validity requirement on `p` (stale, unmapped or null addresses are ignored).
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, lines);
}
