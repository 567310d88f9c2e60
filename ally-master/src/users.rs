//! Users and groups for `user =` / `group =`, read from `/etc/passwd` and
//! `/etc/group` (the files, not NSS: the master links no C library for
//! this, and services managed by it are local accounts).

use std::fs;

/// Who an instance runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// User name, for `USER` and `LOGNAME`.
    pub name: String,
    /// Home directory, for `HOME`.
    pub home: String,
}

/// Resolves the `user` and `group` of an app. `None` when neither is set:
/// the instance runs as the master does.
///
/// # Errors
///
/// A message naming the user or group that does not exist, or saying why
/// the master cannot switch to it.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let me = rustix::process::geteuid().as_raw();
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut identity = match user {
        Some(user) => find_user(&passwd, user)
            .ok_or_else(|| format!("user `{user}` does not exist (looked in /etc/passwd)"))?,
        None => find_user(&passwd, &me.to_string()).unwrap_or(Identity {
            uid: me,
            gid: rustix::process::getegid().as_raw(),
            name: me.to_string(),
            home: "/".into(),
        }),
    };
    if let Some(group) = group {
        let groups = fs::read_to_string("/etc/group").unwrap_or_default();
        identity.gid = find_group(&groups, group)
            .ok_or_else(|| format!("group `{group}` does not exist (looked in /etc/group)"))?;
    }
    let is_root = me == 0;
    let same = identity.uid == me && identity.gid == rustix::process::getegid().as_raw();
    if !is_root && !same {
        return Err(format!(
            "cannot run as user {} (uid {}, gid {}): the master runs as uid {me} and only root can switch users",
            identity.name, identity.uid, identity.gid
        ));
    }
    Ok(Some(identity))
}

/// The gid of group `group` (a name or a number).
///
/// # Errors
///
/// A message naming the group when it does not exist.
pub fn group_id(group: &str) -> Result<u32, String> {
    let groups = fs::read_to_string("/etc/group").unwrap_or_default();
    find_group(&groups, group)
        .ok_or_else(|| format!("group `{group}` does not exist (looked in /etc/group)"))
}

/// Whether process `pid` belongs to group `gid` as a supplementary group,
/// from the `Groups:` line of `/proc/<pid>/status`.
pub fn has_supplementary_group(pid: rustix::process::Pid, gid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{}/status", pid.as_raw_nonzero()));
    status.is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|groups| groups.split_whitespace().any(|g| g == gid.to_string()))
    })
}

/// The passwd entry whose name, or uid if `wanted` is a number, matches.
fn find_user(passwd: &str, wanted: &str) -> Option<Identity> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, home, ..] = f.as_slice() else {
            return None;
        };
        (*name == wanted || *uid == wanted).then(|| {
            Some(Identity {
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                name: (*name).to_owned(),
                home: (*home).to_owned(),
            })
        })?
    })
}

/// The gid of the group whose name, or gid if `wanted` is a number,
/// matches.
fn find_group(groups: &str, wanted: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, gid, ..] = f.as_slice() else {
            return None;
        };
        if *name == wanted || *gid == wanted {
            gid.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nweb:x:1001:1002:Web:/srv/web:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:web\n";

    #[test]
    fn finds_users_and_groups_by_name_or_number() {
        let web = find_user(PASSWD, "web").unwrap();
        assert_eq!(
            (web.uid, web.gid, web.home.as_str()),
            (1001, 1002, "/srv/web")
        );
        assert_eq!(find_user(PASSWD, "1001").unwrap().name, "web");
        assert!(find_user(PASSWD, "nobody-here").is_none());
        assert_eq!(find_group(GROUP, "www"), Some(33));
        assert_eq!(find_group(GROUP, "0"), Some(0));
        assert_eq!(find_group(GROUP, "nope"), None);
    }

    #[test]
    fn unknown_user_is_a_clear_error() {
        let err = resolve(Some("no-such-user-for-ally"), None).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }
}
