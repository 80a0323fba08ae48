//! What the benchmark reads off the machine and the server: unexpected log lines, CPU time,
//! listen-queue overflows, RSS, the open-file limit and the machine's description.

#![allow(unused_imports)]
use super::*;

pub(super) fn unexpected(line: &str) -> bool {
    (line.contains(" WARN ") || line.contains(" ERROR ")) && !line.contains("signed=no")
}

/// The unexpected WARN and ERROR lines in the server's log so far.
pub(super) fn warnings(pa: &Postagent) -> Vec<String> {
    let log = std::fs::read_to_string(pa.log()).unwrap_or_default();
    log.lines().filter(|l| unexpected(l)).map(str::to_owned).collect()
}

/// Shows the first few `lines` (those after the first `skip`) and returns how many there are.
pub(super) fn show(what: &str, lines: &[String], skip: usize) -> usize {
    let new = lines.get(skip..).unwrap_or_default();
    for l in new.iter().take(5) {
        eprintln!("  {what}: {l}");
    }
    new.len()
}

/// CPU use over a span: of the server, of this process (clients and receiver) and of the
/// whole machine (Postfix and everything else included).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// Cores busy on average: the server's, the bench's, the machine's.
    pub server: f64,
    pub bench: f64,
    pub machine: f64,
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU cores busy: server {:.2}, bench clients {:.2}, whole machine {:.2} of {}",
            self.server,
            self.bench,
            self.machine,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )
    }
}

pub(super) use crate::cpu::proc_ticks;

/// The machine's (busy, total) clock ticks over all CPUs.
pub(super) fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub struct CpuMeter {
    server: u32,
    at: Instant,
    ticks: (u64, u64, (u64, u64)),
}

impl CpuMeter {
    pub(super) fn start(server: u32) -> CpuMeter {
        CpuMeter {
            server,
            at: Instant::now(),
            ticks: (proc_ticks(server), proc_ticks(std::process::id()), machine_ticks()),
        }
    }

    pub(super) fn stop(&self) -> Cpu {
        let secs = self.at.elapsed().as_secs_f64().max(f64::EPSILON);
        let (s0, b0, (busy0, total0)) = self.ticks;
        let (busy, total) = machine_ticks();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Cpu {
            server: proc_ticks(self.server).saturating_sub(s0) as f64 / 100.0 / secs,
            bench: proc_ticks(std::process::id()).saturating_sub(b0) as f64 / 100.0 / secs,
            machine: busy.saturating_sub(busy0) as f64 / total.saturating_sub(total0).max(1) as f64 * cores,
        }
    }
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt ListenOverflows` in /proc/net/netstat), machine-wide.
pub(super) fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// VmRSS of `pid` in KiB.
pub(super) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// The soft open-file limit (which the server inherits) must cover every socket plus some, in
/// this process and in the server alike.
pub(super) fn check_open_files(connections: u64) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .context("no open-file limit in /proc/self/limits")?;
    let need = connections + 256;
    anyhow::ensure!(
        soft >= need,
        "the open-file limit is {soft}, {connections} WebSockets need {need}: run bench/fanout/run \
         (which raises it to the hard limit) or ulimit -n {need}"
    );
    Ok(())
}

/// CPU model and memory of the machine.
pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |m| m.trim_start_matches(|c: char| c == ':' || c.is_whitespace()));
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024 / 1024);
    format!("{model}, {total} GiB RAM")
}
