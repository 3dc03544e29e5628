//! Where the unified (v2) cgroup hierarchy is mounted: cgroup_skb programs attach to its root,
//! which every socket on the host descends from.

use std::path::PathBuf;

/// The mount point of the first cgroup2 file system in a `/proc/self/mountinfo` text.
pub fn find_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER".
        let (fields, fs) = line.split_once(" - ")?;
        let root_of_hierarchy = fields.split(' ').nth(3)? == "/";
        (fs.split(' ').next()? == "cgroup2" && root_of_hierarchy)
            .then(|| fields.split(' ').nth(4).map(unescape))?
    })
}

/// This host's cgroup2 root, from `/proc/self/mountinfo`; None when none is mounted.
pub fn find() -> Option<PathBuf> {
    find_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
fn unescape(s: &str) -> PathBuf {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hybrid_layouts_unified_mount_and_skips_v1_and_bind_mounts() {
        let text = "\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
40 35 0:35 /system.slice /mnt/bound rw,relatime - cgroup2 cgroup2 rw
41 35 0:38 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
";
        assert_eq!(find_in(text), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn a_pure_v2_host_and_an_escaped_path_and_a_v1_only_host() {
        assert_eq!(
            find_in("29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            find_in("29 23 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n"),
            Some(PathBuf::from("/mnt/my cg"))
        );
        assert_eq!(
            find_in("36 35 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }
}
