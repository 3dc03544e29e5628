//! The processes descended from a capture's client pids when it starts: the kernel follows
//! forks from then on, but workers a load generator forked earlier must be found in /proc.

use std::{collections::HashMap, path::Path};

/// The parent pid in the text of `/proc/PID/stat`. The command name in parentheses may itself
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // state, then ppid.
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every live process under `proc_root` descended from one of `roots` (roots excluded).
pub fn find(proc_root: &Path, roots: &[u32]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A process that exits meanwhile is simply not found.
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = parent_of(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if !roots.contains(&c) && !found.contains(&c) {
                found.push(c);
                todo.push(c);
            }
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(procs: &[(u32, &str, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, ppid) in procs {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0"),
            )
            .unwrap();
        }
        // Entries that are not processes are skipped.
        std::fs::create_dir(dir.path().join("sys")).unwrap();
        std::fs::write(dir.path().join("uptime"), "1.0 1.0").unwrap();
        dir
    }

    #[test]
    fn parent_survives_odd_command_names() {
        assert_eq!(parent_of("42 (a) b) (c) R 7 42 42 0"), Some(7));
        assert_eq!(parent_of("42 (python3 -m x) S 1 42"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn whole_subtree_and_nothing_else() {
        let d = fake_proc(&[
            (1, "init", 0),
            (10, "sh", 1),
            (11, "aiperf", 10),
            (12, "worker (1)", 11),
            (13, "worker (2)", 11),
            (14, "grandchild", 13),
            (20, "unrelated", 1),
            (21, "its child", 20),
        ]);
        assert_eq!(find(d.path(), &[10]), vec![11, 12, 13, 14]);
        assert_eq!(find(d.path(), &[13, 20]), vec![14, 21]);
        assert_eq!(find(d.path(), &[14]), Vec::<u32>::new());
        // A root that is another root's descendant is not repeated.
        assert_eq!(find(d.path(), &[11, 13]), vec![12, 14]);
    }

    #[test]
    fn finds_a_real_child_of_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = find(Path::new("/proc"), &[std::process::id()]);
        let pid = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&pid), "{pid} not in {found:?}");
    }
}
