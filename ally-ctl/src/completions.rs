//! `ally-ctl completions SHELL`: a completion script for bash, zsh or
//! fish, generated from the commands' own definitions.
//!
//! argh's `ArgsInfo` (derived beside `FromArgs` on every command) lists
//! each command, option, switch and positional argument with its help
//! text, so the script is built from exactly what the parser accepts and
//! cannot drift from it. App names (positional `apps`) and families
//! (`--family`) are completed at completion time by asking the masters:
//! `ally-ctl list --names` and `--families` (with the line's `--socket`
//! in bash). The packages ship the scripts from `packaging/completions/`,
//! which a test keeps equal to what this module generates.

use argh::{ArgsInfo, FlagInfoKind, FromArgs};

use crate::cli::{Cli, PROGRAM, say};
use crate::failure::Failure;

/// The shells a script is made for.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

/// print a shell completion script for ally-ctl: bash, zsh or fish
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "completions",
    example = "ally-ctl completions bash > /usr/share/bash-completion/completions/ally-ctl\n\
               ally-ctl completions zsh > /usr/share/zsh/vendor-completions/_ally-ctl\n\
               ally-ctl completions fish > /usr/share/fish/vendor_completions.d/ally-ctl.fish",
    note = "the packages and `make install` install all three. App names and\n\
            families are completed by asking the running masters."
)]
pub struct CompletionsArgs {
    /// the shell: bash, zsh or fish
    #[argh(positional, from_str_fn(parse_shell))]
    pub shell: String,
}

fn parse_shell(s: &str) -> Result<String, String> {
    SHELLS
        .contains(&s)
        .then(|| s.to_owned())
        .ok_or_else(|| format!("expected one of {}, not {s:?}", SHELLS.join(", ")))
}

/// Prints the script.
///
/// # Errors
///
/// If stdout cannot be written.
pub fn run(args: &CompletionsArgs) -> Result<(), Failure> {
    say(script(&args.shell, &model()).trim_end())
}

/// What a word completes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Words {
    /// Nothing we can list (a number, a signal).
    Free,
    /// The apps of the running masters, and `all`.
    Apps,
    /// Their families, and `all`.
    Families,
    /// A file name.
    Files,
    /// The shells.
    Shells,
}

/// An option or switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// `--family`.
    pub long: String,
    /// `f` for `-f`.
    pub short: Option<char>,
    /// What its value completes to; `None` for a switch.
    pub value: Option<Words>,
    /// Its help, on one line.
    pub about: String,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// `reload`.
    pub name: String,
    /// Its help, on one line.
    pub about: String,
    /// Its options and switches.
    pub flags: Vec<Flag>,
    /// What its positional arguments complete to, if it takes any.
    pub positional: Option<Words>,
}

/// The global flags and the commands, from argh's description of [`Cli`].
pub fn model() -> (Vec<Flag>, Vec<Cmd>) {
    let info = Cli::get_args_info();
    let flags = |list: &[argh::FlagInfo]| -> Vec<Flag> {
        list.iter()
            .filter(|f| !f.hidden)
            .map(|f| Flag {
                long: f.long.to_owned(),
                short: f.short,
                value: match f.kind {
                    FlagInfoKind::Switch => None,
                    FlagInfoKind::Option { .. } => Some(match f.long {
                        "--family" => Words::Families,
                        "--socket" => Words::Files,
                        _ => Words::Free,
                    }),
                },
                about: one_line(f.description),
            })
            .collect()
    };
    let commands =
        info.commands
            .iter()
            .map(|c| Cmd {
                name: c.name.to_owned(),
                about: one_line(c.command.description),
                flags: flags(c.command.flags),
                positional: c.command.positionals.iter().find(|p| !p.hidden).map(|p| {
                    match p.name {
                        "apps" => Words::Apps,
                        "shell" => Words::Shells,
                        _ => Words::Free,
                    }
                }),
            })
            .collect();
    (flags(info.flags), commands)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The script for `shell`, one of [`SHELLS`].
pub fn script(shell: &str, (global, commands): &(Vec<Flag>, Vec<Cmd>)) -> String {
    match shell {
        "zsh" => zsh(global, commands),
        "fish" => fish(global, commands),
        _ => bash(global, commands),
    }
}

/// The names `-f --follow` of a flag, for bash's word lists.
fn spellings(flag: &Flag) -> String {
    match flag.short {
        Some(c) => format!("-{c} {}", flag.long),
        None => flag.long.clone(),
    }
}

fn bash(global: &[Flag], commands: &[Cmd]) -> String {
    let names: Vec<&str> = commands.iter().map(|c| c.name.as_str()).collect();
    let global_words: Vec<String> = global.iter().map(spellings).collect();
    let mut cases = String::new();
    for cmd in commands {
        let flags: Vec<String> = cmd.flags.iter().map(spellings).collect();
        let valued: Vec<String> = cmd
            .flags
            .iter()
            .filter(|f| f.value.is_some())
            .flat_map(|f| {
                let mut all = vec![f.long.clone()];
                all.extend(f.short.map(|c| format!("-{c}")));
                all
            })
            .collect();
        let positional = match cmd.positional {
            Some(Words::Apps) => "all $(_ally_ctl_ask --names)",
            Some(Words::Shells) => "bash zsh fish",
            _ => "",
        };
        let skip = if valued.is_empty() {
            String::new()
        } else {
            format!("            {}) return ;;\n", valued.join("|"))
        };
        let positional = if positional.is_empty() {
            String::new()
        } else {
            format!("            [[ $cur == -* ]] || words=\"{positional}\"\n")
        };
        cases.push_str(&format!(
            "        {name})\n            case \"$prev\" in\n{skip}            esac\n            \
             words=\"{flags}\"\n{positional}            ;;\n",
            name = cmd.name,
            flags = flags.join(" "),
        ));
    }
    format!(
        r#"# bash completion for {PROGRAM}; generated by `{PROGRAM} completions bash`.

# Runs `{PROGRAM} list ARGS` against the masters the line names (its
# --socket), quietly.
_ally_ctl_ask() {{
    local i socket=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${{COMP_WORDS[i]}} == --socket ]]; then
            socket=(--socket "${{COMP_WORDS[i + 1]}}")
        fi
    done
    "${{COMP_WORDS[0]}}" "${{socket[@]}}" list "$@" --timeout 2 2>/dev/null
}}

_ally_ctl() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD - 1]}}
    local i cmd= words=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            --socket) ((i++)) ;;
            -*) ;;
            *) cmd=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    case "$prev" in
        --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --family) COMPREPLY=($(compgen -W "all $(_ally_ctl_ask --families)" -- "$cur")); return ;;
    esac
    case "$cmd" in
        "") words="{commands} {global}" ;;
{cases}    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}

complete -F _ally_ctl {PROGRAM}
"#,
        commands = names.join(" "),
        global = global_words.join(" "),
    )
}

/// `text` for inside zsh single quotes, with `[`, `]` and `:` escaped for
/// `_arguments` and `_describe`.
fn zsh_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace(':', "\\:")
        .replace('\'', "'\\''")
}

fn zsh_spec(flag: &Flag) -> Vec<String> {
    let action = match flag.value {
        None => "",
        Some(Words::Families) => ":family:_ally_ctl_families",
        Some(Words::Files) => ":file:_files",
        Some(_) => ":value: ",
    };
    let about = zsh_escape(&flag.about);
    let mut specs = vec![format!("'{}[{about}]{action}'", flag.long)];
    if let Some(c) = flag.short {
        specs.push(format!("'-{c}[{about}]{action}'"));
    }
    specs
}

fn zsh(global: &[Flag], commands: &[Cmd]) -> String {
    let described: Vec<String> = commands
        .iter()
        .map(|c| format!("        '{}:{}'", c.name, zsh_escape(&c.about)))
        .collect();
    let global_specs: Vec<String> = global.iter().flat_map(zsh_spec).collect();
    let mut cases = String::new();
    for cmd in commands {
        let mut specs: Vec<String> = cmd.flags.iter().flat_map(zsh_spec).collect();
        match cmd.positional {
            Some(Words::Apps) => specs.push("'*:app:_ally_ctl_apps'".into()),
            Some(Words::Shells) => specs.push("'1:shell:(bash zsh fish)'".into()),
            Some(_) => specs.push("'*:value: '".into()),
            None => {}
        }
        cases.push_str(&format!(
            "                {})\n                    _arguments {}\n                    ;;\n",
            cmd.name,
            specs.join(" \\\n                        ")
        ));
    }
    format!(
        r#"#compdef {PROGRAM}
# zsh completion for {PROGRAM}; generated by `{PROGRAM} completions zsh`.

_ally_ctl_apps() {{
    local -a apps
    apps=(all ${{(f)"$({PROGRAM} list --names --timeout 2 2>/dev/null)"}})
    compadd -a apps
}}

_ally_ctl_families() {{
    local -a families
    families=(all ${{(f)"$({PROGRAM} list --families --timeout 2 2>/dev/null)"}})
    compadd -a families
}}

_ally_ctl() {{
    local -a commands
    commands=(
{described}
    )
    local curcontext=$curcontext state line
    _arguments -C \
        {global} \
        '1:command:->command' \
        '*::argument:->argument'
    case $state in
        command)
            _describe -t commands command commands
            ;;
        argument)
            case $words[1] in
{cases}            esac
            ;;
    esac
}}

_ally_ctl "$@"
"#,
        described = described.join("\n"),
        global = global_specs.join(" \\\n        "),
    )
}

/// `text` in fish single quotes.
fn fish_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn fish_flag(condition: &str, flag: &Flag) -> String {
    let mut line = format!("complete -c {PROGRAM} -n {}", fish_quote(condition));
    if let Some(c) = flag.short {
        line.push_str(&format!(" -s {c}"));
    }
    line.push_str(&format!(" -l {}", flag.long.trim_start_matches("--")));
    match flag.value {
        None => {}
        Some(Words::Files) => line.push_str(" -r -F"),
        Some(Words::Families) => line.push_str(&format!(
            " -x -a {}",
            fish_quote(&format!(
                "all ({PROGRAM} list --families --timeout 2 2>/dev/null)"
            ))
        )),
        Some(_) => line.push_str(" -x"),
    }
    line.push_str(&format!(" -d {}", fish_quote(&flag.about)));
    line
}

fn fish(global: &[Flag], commands: &[Cmd]) -> String {
    let top = "__fish_use_subcommand";
    let mut out = format!(
        "# fish completion for {PROGRAM}; generated by `{PROGRAM} completions fish`.\n\
         complete -c {PROGRAM} -f\n"
    );
    for flag in global {
        out.push_str(&fish_flag(top, flag));
        out.push('\n');
    }
    for cmd in commands {
        out.push_str(&format!(
            "complete -c {PROGRAM} -n {top} -a {} -d {}\n",
            cmd.name,
            fish_quote(&cmd.about)
        ));
    }
    for cmd in commands {
        let seen = format!("__fish_seen_subcommand_from {}", cmd.name);
        for flag in &cmd.flags {
            out.push_str(&fish_flag(&seen, flag));
            out.push('\n');
        }
        let words = match cmd.positional {
            Some(Words::Apps) => Some(format!(
                "all ({PROGRAM} list --names --timeout 2 2>/dev/null)"
            )),
            Some(Words::Shells) => Some("bash zsh fish".to_owned()),
            _ => None,
        };
        if let Some(words) = words {
            out.push_str(&format!(
                "complete -c {PROGRAM} -n {} -a {}\n",
                fish_quote(&seen),
                fish_quote(&words)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_has_every_command_and_flag_the_parser_takes() {
        let (global, commands) = model();
        assert!(
            global
                .iter()
                .any(|f| f.long == "--socket" && f.value == Some(Words::Files))
        );
        let reload = commands.iter().find(|c| c.name == "reload").unwrap();
        assert_eq!(reload.positional, Some(Words::Apps));
        let family = reload.flags.iter().find(|f| f.long == "--family").unwrap();
        assert_eq!(family.value, Some(Words::Families));
        let logs = commands.iter().find(|c| c.name == "logs").unwrap();
        assert!(
            logs.flags
                .iter()
                .any(|f| f.long == "--follow" && f.short == Some('f'))
        );
        let this = commands.iter().find(|c| c.name == "completions").unwrap();
        assert_eq!(this.positional, Some(Words::Shells));
    }

    #[test]
    fn the_packaged_scripts_are_what_the_commands_generate() {
        // `make completions` writes them again after a change to the
        // commands; the packages and `make install` ship these files.
        for (shell, file) in [
            (
                "bash",
                include_str!("../../packaging/completions/ally-ctl.bash"),
            ),
            ("zsh", include_str!("../../packaging/completions/_ally-ctl")),
            (
                "fish",
                include_str!("../../packaging/completions/ally-ctl.fish"),
            ),
        ] {
            assert_eq!(
                file.trim_end(),
                script(shell, &model()).trim_end(),
                "packaging/completions for {shell} is stale: run `make completions`"
            );
        }
    }

    #[test]
    fn quoting_survives_what_help_texts_hold() {
        assert_eq!(zsh_escape("a'b[c]:d"), r"a'\''b\[c\]\:d");
        assert_eq!(fish_quote("it's"), r"'it\'s'");
    }
}
