//! CPU time and memory of a running process, read from /proc (Linux).

use anyhow::Context;

/// CPU time (user + system, every thread) and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    /// Peak resident set size since the process started (VmHWM).
    pub hwm_kib: u64,
    pub threads: u64,
}

pub fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').context("/proc/PID/stat format")?.1.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcStats { cpu_seconds: (utime + stime) / ticks, rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:"), threads: field("Threads:") })
}

/// Lowers the CPU priority of every thread of a process (Linux nice is per thread; threads
/// started later inherit it from the thread that starts them).
pub fn renice(pid: u32, nice: i32) -> anyhow::Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("listing /proc/{pid}/task"))? {
        let tid: u32 = task?.file_name().to_string_lossy().parse()?;
        // SAFETY: setpriority has no memory-safety preconditions.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            anyhow::bail!("setpriority({tid}, {nice}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
