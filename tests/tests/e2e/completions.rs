//! `ally-ctl completions SHELL`: every command and option the help lists
//! is in each shell's script, and bash, with the script sourced, completes
//! the app names of a running master.

use std::path::Path;
use std::process::Command;

use ally_tests::bins::bins;
use ally_tests::cmd::{CmdOutput, run};
use ally_tests::harness::{AppConfig, CTL_TIMEOUT, Master, TestDir, config_toml};

fn ctl(args: &[&str]) -> CmdOutput {
    let out = run(Command::new(&bins().ctl).args(args), CTL_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out}");
    out
}

/// The commands `ally-ctl --help` lists.
fn commands() -> Vec<String> {
    let help = ctl(&["--help"]).stdout;
    let section = help
        .split("\nCommands:\n")
        .nth(1)
        .expect("a Commands section");
    section
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The options and switches (`--wait`, `-f`) that `ally-ctl [COMMAND]
/// --help` lists, without `--help` itself.
fn options(command: Option<&str>) -> Vec<String> {
    let mut args: Vec<&str> = command.into_iter().collect();
    args.push("--help");
    let help = ctl(&args).stdout;
    let section = help
        .split("\nOptions:\n")
        .nth(1)
        .expect("an Options section");
    section
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  -"))
        .flat_map(|l| {
            let names = l.split("  ").find(|s| !s.is_empty()).unwrap_or_default();
            names
                .split(", ")
                .map(|n| n.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|n| n.starts_with('-') && n != "--help")
        .collect()
}

/// How `option` (`--wait`, `-f`) is spelled in `shell`'s script.
fn spelled(shell: &str, option: &str) -> String {
    match (shell, option.strip_prefix("--")) {
        ("fish", Some(long)) => format!(" -l {long}"),
        ("fish", None) => format!(" -s {}", &option[1..]),
        _ => option.to_owned(),
    }
}

#[test]
fn every_command_and_option_is_in_each_shells_script() {
    let commands = commands();
    assert!(commands.len() >= 13, "{commands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl(&["completions", shell]).stdout;
        let mut missing = Vec::new();
        for option in options(None) {
            if !script.contains(&spelled(shell, &option)) {
                missing.push(option);
            }
        }
        for command in &commands {
            if !script.contains(command.as_str()) {
                missing.push(command.clone());
            }
            for option in options(Some(command)) {
                // Within that command's part of the script.
                let part = match shell {
                    "fish" => script
                        .lines()
                        .filter(|l| l.contains(&format!("__fish_seen_subcommand_from {command}'")))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    // The case arm of the command, to its own `;;`.
                    _ => {
                        let indent = if shell == "zsh" { 16 } else { 8 };
                        let arm = format!("\n{}{command})\n", " ".repeat(indent));
                        let end = format!("\n{};;", " ".repeat(indent + 4));
                        script
                            .split(&arm)
                            .nth(1)
                            .and_then(|rest| rest.split(&end).next())
                            .unwrap_or_default()
                            .to_owned()
                    }
                };
                if !part.contains(&spelled(shell, &option)) {
                    missing.push(format!("{command} {option}"));
                }
            }
        }
        assert!(missing.is_empty(), "{shell}: missing {missing:?}\n{script}");
    }
    let script = ctl(&["completions", "bash"]).stdout;
    let out = run(
        Command::new("bash").args(["-n", "-c", &script]),
        CTL_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "the bash script does not parse\n{out}");
}

/// What bash's `_ally_ctl` puts in COMPREPLY for the command line `words`
/// (the last one being completed), against the masters of `run_dir`.
fn complete(script: &Path, run_dir: &Path, words: &[&str]) -> Vec<String> {
    let ctl = bins().ctl.to_string_lossy().into_owned();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(
            r#"source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ally_ctl
               printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(script)
        .arg(&ctl)
        .args(words)
        .env(ally_proto::paths::RUNTIME_DIR_VAR, run_dir)
        .env_remove("XDG_RUNTIME_DIR");
    let out = run(&mut cmd, CTL_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out}");
    let mut got: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
    got.sort();
    got
}

#[test]
fn bash_completes_app_names_and_families_from_a_running_master() {
    let dir = TestDir::new("completions");
    let sleeper = dir.path().join("sleep.sh");
    ally_tests::executable::install_text("#!/bin/sh\nexec sleep 600\n", &sleeper, 0o755);
    let app = |name: &str, family: &str| {
        AppConfig::new(name, &sleeper)
            .stop_timeout("5s")
            .line("ready = \"immediate\"")
            .line(&format!("family = \"{family}\""))
    };
    let master = Master::start_with(
        bins(),
        &dir,
        &config_toml(&[app("web", "payments"), app("worker", "ops")]),
    );
    let script = dir.path().join("ally-ctl.bash");
    std::fs::write(&script, ctl(&["completions", "bash"]).stdout).unwrap();
    let run_dir = master.dir().join("run");

    assert_eq!(
        complete(&script, &run_dir, &["reload", ""]),
        ["all", "web", "worker"]
    );
    assert_eq!(
        complete(&script, &run_dir, &["logs", "-f", "w"]),
        ["web", "worker"]
    );
    assert_eq!(
        complete(&script, &run_dir, &["stop", "--family", ""]),
        ["all", "ops", "payments"]
    );
    // With --socket on the line, that master is asked.
    let socket = master.socket().to_string_lossy().into_owned();
    assert_eq!(
        complete(
            &script,
            Path::new("/nonexistent"),
            &["--socket", &socket, "status", "wo"]
        ),
        ["worker"]
    );
    assert_eq!(
        complete(&script, &run_dir, &["re"]),
        ["reload", "reopen", "reread", "restart"]
    );
    assert_eq!(
        complete(&script, &run_dir, &["reload", "--k"]),
        ["--keep-going"]
    );
}

#[test]
fn the_packages_and_make_install_ship_the_three_scripts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("ally-master/Cargo.toml")).unwrap();
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    for (file, shell) in [
        ("ally-ctl.bash", "bash"),
        ("_ally-ctl", "zsh"),
        ("ally-ctl.fish", "fish"),
    ] {
        let source = format!("packaging/completions/{file}");
        // The shipped file is what the command generates.
        let shipped = std::fs::read_to_string(root.join(&source)).unwrap();
        assert_eq!(
            shipped.trim_end(),
            ctl(&["completions", shell]).stdout.trim_end(),
            "{source} is stale: run `make completions`"
        );
        // In the .deb (paths relative to ally-master/), the .rpm (relative
        // to the workspace) and `make install`.
        assert!(
            manifest.contains(&format!("[\"../{source}\", ")),
            "deb lacks {source}"
        );
        assert!(
            manifest.contains(&format!("{{ source = \"{source}\", ")),
            "rpm lacks {source}"
        );
        assert!(
            makefile.contains(&format!("install -m 644 {source} ")),
            "make install lacks {source}"
        );
    }
}
