//! CPU time of processes, read from /proc (clock ticks of `USER_HZ`, 100 on Linux).

/// Ticks a process has run, user and system.
pub(crate) fn proc_ticks(pid: u32) -> u64 {
    stat_ticks(&stat(pid))
}

/// Ticks of a process tree: the root's own and its reaped children's (the kernel adds a
/// child's time to its parent's `cutime`/`cstime` when the parent waits for it), plus the
/// live children's. Postfix's master forks smtpd, cleanup and the rest and reaps them as
/// they exit, so this counts all of an instance's work, short-lived processes included.
pub(crate) fn tree_ticks(root: u32) -> u64 {
    let f = fields(&stat(root));
    let children: u64 = children(root).into_iter().map(tree_ticks).sum();
    f.iter().sum::<u64>() + children
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent(&stat(p)) == Some(pid))
        .collect()
}

fn stat(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
}

/// The fields of a /proc/PID/stat line after the command (which may contain spaces, and
/// ends with ')'): the slice starts at field 3 (state).
fn after_command(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect()
}

/// Field 4.
fn parent(stat: &str) -> Option<u32> {
    after_command(stat).get(1)?.parse().ok()
}

/// utime, stime, cutime, cstime (fields 14 to 17). Indexed by position: some fields before
/// them are not numbers or are negative (tpgid is -1).
fn fields(stat: &str) -> [u64; 4] {
    let f = after_command(stat);
    let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    [at(14), at(15), at(16), at(17)]
}

/// utime + stime of a /proc/PID/stat line.
fn stat_ticks(stat: &str) -> u64 {
    let [u, s, _, _] = fields(stat);
    u + s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime() {
        let line = "11902 (python3 -c x) R 11902 11902 30975 0 -1 4194304 2889 6560 9 1 41 7 3 0 20 0 1 0";
        assert_eq!(stat_ticks(line), 48);
        assert_eq!(stat_ticks(""), 0);
        assert_eq!(parent(line), Some(11902));
        assert_eq!(fields(line), [41, 7, 3, 0]);
    }
}
