//! An app's own log file: `ally-ctl logs` reads it back (`-n`, `-f`), and
//! `ally-ctl reopen` starts a new file after logrotate moved it away.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::script::{NEVER_READY, START_LINES, Spawned, signal_script, wait_file_line};

const APP: &str = "talk";
const T: Duration = Duration::from_secs(10);

/// A master whose app [`APP`] runs the signal script, logging to its
/// default file under `<dir>/logs`; returns once the script printed its
/// start lines there.
fn start(dir: &TestDir) -> (Master, PathBuf) {
    let script = signal_script(dir.path(), APP);
    let app = AppConfig::new(APP, &script)
        .ready_timeout(NEVER_READY)
        .log(None);
    let log_dir = dir.path().join("logs");
    let config = format!(
        "[master]\nlog_dir = {:?}\n\n{}",
        log_dir.to_string_lossy(),
        config_toml(&[app])
    );
    let master = Master::start_with(bins(), dir, &config);
    let file = log_dir.join(format!("{APP}.log"));
    let last = format!("start line {START_LINES}");
    let (found, text) = wait_file_line(&file, &last, T);
    assert!(
        found,
        "no {last:?} in {} within {T:?}: {text:?}\n{}",
        file.display(),
        master.log_tail()
    );
    (master, file)
}

/// Whether `line` reads `TIME talk#ID STREAM| text`, TIME as
/// `2026-11-23T17:40:01.123Z`, with this `id`, `stream` and `text`.
fn is_log_line(line: &str, id: u64, stream: &str, text: &str) -> bool {
    let Some((time, rest)) = line.split_once(' ') else {
        return false;
    };
    let digits_at = |i: &[usize]| i.iter().all(|&i| time.as_bytes()[i].is_ascii_digit());
    time.len() == 24
        && time.ends_with('Z')
        && time.as_bytes()[10] == b'T'
        && digits_at(&[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22])
        && rest == format!("{APP}#{id} {stream}| {text}")
}

#[test]
fn logs_prints_the_last_lines_of_the_app_s_file() {
    let dir = TestDir::new("logs_tail");
    let (master, _) = start(&dir);
    let out = master.ctl_expect(&["logs", APP, "-n", "5"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let expected: Vec<String> = (START_LINES - 4..=START_LINES)
        .map(|i| format!("start line {i}"))
        .collect();
    master.assert_output(
        &out,
        lines.len() == 5
            && lines
                .iter()
                .zip(&expected)
                .all(|(l, text)| is_log_line(l, 1, "err", text)),
        &format!("expected the last 5 lines, `TIME {APP}#1 err| {expected:?}`"),
    );
    let out = master.ctl_expect(&["logs", APP, "-n", "0"], 0);
    master.assert_output(&out, out.stdout.is_empty(), "-n 0 prints nothing");
    let out = master.ctl_expect(&["logs", APP], 0);
    master.assert_output(
        &out,
        out.stdout.lines().count() == START_LINES,
        "without -n, every line there is (fewer than the default 20)",
    );
}

#[test]
fn logs_follow_shows_lines_written_after_it_started() {
    let dir = TestDir::new("logs_follow");
    let (master, _) = start(&dir);
    let mut cmd = Command::new(&bins().ctl);
    cmd.arg("--socket")
        .arg(master.socket())
        .args(["logs", APP, "-f", "-n", "1"]);
    let mut follower = Spawned::with_stdout_lines(cmd);
    // The tail line comes once the master has registered the follower.
    let first = follower.next_line(T);
    let expected_first = format!("start line {START_LINES}");
    assert!(
        first
            .as_deref()
            .is_some_and(|l| is_log_line(l, 1, "err", &expected_first)),
        "the follower's first line should be the last one written: {first:?}\n{}",
        master.log_tail()
    );
    master.ctl_expect(&["kill", APP, "--signal", "USR1"], 0);
    let (line, before) = follower.wait_line("usr1 1", T);
    assert!(
        line.as_deref()
            .is_some_and(|l| is_log_line(l, 1, "err", "usr1 1")),
        "the follower did not show the new line: {line:?}, before it {before:?}\n{}",
        master.log_tail()
    );
    assert!(before.is_empty(), "unexpected lines: {before:?}");
    assert!(follower.running(), "logs -f ended by itself");
}

#[test]
fn reopen_writes_to_a_new_file_at_the_original_path() {
    let dir = TestDir::new("reopen");
    let (master, file) = start(&dir);
    let moved = file.with_extension("log.1");
    std::fs::rename(&file, &moved).unwrap();

    // Until reopen, the master writes to the moved file.
    master.ctl_expect(&["kill", APP, "--signal", "USR1"], 0);
    let (found, text) = wait_file_line(&moved, "usr1 1", T);
    assert!(found, "{text:?}\n{}", master.log_tail());
    assert!(!file.exists(), "a file came back before reopen");

    let out = master.ctl_expect(&["reopen"], 0);
    master.assert_output(
        &out,
        out.stdout.contains("reopened 1 log file(s)"),
        "reopen counts the files",
    );
    master.ctl_expect(&["kill", APP, "--signal", "USR1"], 0);
    let (found, text) = wait_file_line(&file, "usr1 2", T);
    assert!(
        found,
        "the line written after reopen is not in the new {}: {text:?}\n{}",
        file.display(),
        master.log_tail()
    );
    assert!(
        text.lines().all(|l| !l.contains("start line")),
        "the new file should hold only new lines: {text:?}"
    );
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(
        !old.contains("usr1 2"),
        "the line written after reopen went to the moved file too: {old:?}"
    );
    // `logs` reads the new file.
    let out = master.ctl_expect(&["logs", APP, "-n", "5"], 0);
    master.assert_output(
        &out,
        out.stdout.lines().count() == 1 && out.stdout.contains("usr1 2"),
        "after reopen, logs reads the new file",
    );
}

/// A config whose app [`APP`] logs to `<dir>/logs/talk.log`.
fn file_log_config(dir: &TestDir) -> (String, PathBuf) {
    let script = signal_script(dir.path(), APP);
    let app = AppConfig::new(APP, &script)
        .ready_timeout(NEVER_READY)
        .log(None);
    let log_dir = dir.path().join("logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = format!(
        "[master]\nlog_dir = {:?}\n\n{}",
        log_dir.to_string_lossy(),
        config_toml(&[app])
    );
    (config, log_dir.join(format!("{APP}.log")))
}

#[test]
fn a_symlinked_log_file_is_refused_and_its_target_untouched() {
    let dir = TestDir::new("log_symlink");
    let (config, file) = file_log_config(&dir);
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep\n").unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let out = Master::run_to_exit(bins(), &dir, &config, &[], None);
    assert_eq!(out.code(), Some(1), "{out}");
    let expected = format!("log file {}: is a symbolic link", file.display());
    assert!(out.stderr.contains(&expected), "{out}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
}

#[test]
fn a_hard_linked_log_file_is_refused() {
    let dir = TestDir::new("log_hardlink");
    let (config, file) = file_log_config(&dir);
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep\n").unwrap();
    std::fs::hard_link(&target, &file).unwrap();
    let out = Master::run_to_exit(bins(), &dir, &config, &[], None);
    assert_eq!(out.code(), Some(1), "{out}");
    let expected = format!("log file {}: has 2 hard links", file.display());
    assert!(out.stderr.contains(&expected), "{out}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
}

#[test]
fn reopen_refuses_a_symlink_put_in_place_of_the_log_file() {
    let dir = TestDir::new("reopen_symlink");
    let (master, file) = start(&dir);
    let moved = file.with_extension("log.1");
    std::fs::rename(&file, &moved).unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep\n").unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();

    let out = master.ctl_expect(&["reopen"], 1);
    master.assert_output(
        &out,
        out.stderr.contains("is a symbolic link"),
        "reopen names the symlink",
    );
    // The old file stays in use; the symlink's target is never written.
    master.ctl_expect(&["kill", APP, "--signal", "USR1"], 0);
    let (found, text) = wait_file_line(&moved, "usr1 1", T);
    assert!(found, "{text:?}\n{}", master.log_tail());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
}
