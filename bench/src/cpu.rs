//! CPU time of processes, read from /proc (clock ticks of `USER_HZ`, 100 on Linux).

/// Ticks a process has run, user and system.
pub(crate) fn proc_ticks(pid: u32) -> u64 {
    let f = fields(pid);
    f.0 + f.1
}

/// Ticks of a process tree: the root's own and its reaped children's (the kernel adds a
/// child's time to its parent's `cutime`/`cstime` when the parent waits for it), plus the
/// live children's. Postfix's master forks smtpd, cleanup and the rest and reaps them as
/// they exit, so this counts all of an instance's work, short-lived processes included.
pub(crate) fn tree_ticks(root: u32) -> u64 {
    let (u, s, cu, cs) = fields(root);
    let children: u64 = children(root).into_iter().map(tree_ticks).sum();
    u + s + cu + cs + children
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent(p) == Some(pid))
        .collect()
}

/// The rest of a /proc/PID/stat line after the command (which may contain spaces), split.
fn stat(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().map(str::to_owned).collect()
}

fn parent(pid: u32) -> Option<u32> {
    // Field 4; the slice starts at field 3.
    stat(pid).get(1)?.parse().ok()
}

/// utime, stime, cutime, cstime (fields 14 to 17).
fn fields(pid: u32) -> (u64, u64, u64, u64) {
    let f = stat(pid);
    let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (at(14), at(15), at(16), at(17))
}
