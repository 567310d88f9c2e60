//! `include`: expansion, order, and errors that name the included file.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A directory of config files, unique to a test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ally-config-include-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name`, creating its directory, and returns its
    /// path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Loads `ally.toml` after writing `main` to it.
    fn load(&self, main: &str) -> Result<Config, ConfigError> {
        load(&self.write("ally.toml", main))
    }

    /// The error loading `main`, with this directory's path shown as `$D`.
    fn err(&self, main: &str) -> String {
        let e = self.load(main).expect_err("config should be refused");
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        e.to_string().replace(self.0.to_str().unwrap(), "$D")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `[[app]]` table named `name`.
fn app(name: &str) -> String {
    format!("[[app]]\nname = \"{name}\"\ncommand = [\"./{name}\"]\n")
}

fn names(config: &Config) -> Vec<&str> {
    config.apps.iter().map(|a| a.name.as_str()).collect()
}

#[test]
fn wildcards_expand_in_name_order() {
    let dir = TempDir::new();
    dir.write("apps.d/b.toml", &app("b"));
    dir.write("apps.d/a.toml", &format!("{}\n{}", app("a1"), app("a2")));
    dir.write("apps.d/10.toml", &app("ten"));
    dir.write("apps.d/a.toml.bak", &app("bak"));
    dir.write("apps.d/.hidden.toml", &app("hidden"));
    dir.write("apps.d/empty.toml", "# nothing here yet\n");
    std::fs::create_dir(dir.0.join("apps.d/sub.toml")).unwrap();
    dir.write(
        "extra.toml",
        "[[app]]\nname = \"extra\"\ncommand = [\"x\"]\ncwd = \"run\"\n",
    );
    let config = dir
        .load(&format!(
            "include = [\"apps.d/*.toml\", \"extra.toml\"]\n\n{}",
            app("main")
        ))
        .unwrap();
    assert_eq!(names(&config), ["main", "ten", "a1", "a2", "b", "extra"]);
    assert_eq!(config.path, dir.0.join("ally.toml"));
    assert_eq!(config.apps[0].cwd, dir.0);
    // Relative paths in an included file are its own directory's.
    assert_eq!(config.apps[1].cwd, dir.0.join("apps.d"));
    assert_eq!(config.apps[5].cwd, dir.0.join("run"));
}

#[test]
fn question_mark_and_dot_patterns() {
    let dir = TempDir::new();
    dir.write("conf/app1.toml", &app("one"));
    dir.write("conf/app22.toml", &app("twentytwo"));
    dir.write("conf/.dot.toml", &app("dot"));
    let config = dir.load(r#"include = ["conf/app?.toml"]"#).unwrap();
    assert_eq!(names(&config), ["one"]);
    let config = dir.load(r#"include = ["./conf/.*"]"#).unwrap();
    assert_eq!(names(&config), ["dot"]);
    let config = dir
        .load(&format!("include = [\"{}/conf/*2*\"]", dir.0.display()))
        .unwrap();
    assert_eq!(names(&config), ["twentytwo"]);
}

#[test]
fn a_pattern_may_match_nothing() {
    let dir = TempDir::new();
    let config = dir
        .load(&format!(
            "include = [\"apps.d/*.toml\", \"missing/*\"]\n{}",
            app("web")
        ))
        .unwrap();
    assert_eq!(names(&config), ["web"]);
    assert_eq!(
        dir.err("include = [\"apps.d/*.toml\"]\n"),
        "$D/ally.toml:1:1: no app declared, here or in the included files: declare one with \
         an [[app]] table: name = \"web\" and command = [\"./server\"]"
    );
}

#[test]
fn a_file_is_read_once() {
    let dir = TempDir::new();
    dir.write("web.toml", &app("web"));
    let config = dir
        .load(&format!(
            "include = [\"*.toml\", \"web.toml\", \"./web.toml\"]\n{}",
            app("main")
        ))
        .unwrap();
    assert_eq!(names(&config), ["main", "web"]);
}

#[test]
fn a_missing_plain_include_is_an_error() {
    let dir = TempDir::new();
    assert_eq!(
        dir.err(&format!(
            "include = [\n  \"apps.d/*.toml\",\n  \"other.toml\",\n]\n{}",
            app("web")
        )),
        "$D/ally.toml:3:3: included file $D/other.toml does not exist (only a pattern with * \
         or ? may match nothing)"
    );
}

#[test]
fn an_unreadable_include_names_the_file() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("apps.d")).unwrap();
    let e = dir
        .load(&format!("include = [\"apps.d\"]\n{}", app("web")))
        .unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read {}: ", dir.0.join("apps.d").display())),
        "{e}"
    );
    std::fs::write(dir.0.join("bad.toml"), b"[[app]]\nname = \"w\xffb\"\n").unwrap();
    assert_eq!(
        dir.err(&format!("include = [\"bad.toml\"]\n{}", app("web"))),
        "$D/bad.toml:2:10: the file is not valid UTF-8"
    );
}

#[test]
fn an_included_file_holds_only_apps() {
    let dir = TempDir::new();
    dir.write("apps.d/a.toml", &app("a"));
    dir.write(
        "apps.d/b.toml",
        &format!("{}\n[master]\nsocket = \"x.sock\"\n", app("b")),
    );
    assert_eq!(
        dir.err(&format!("include = [\"apps.d/*\"]\n{}", app("web"))),
        "$D/apps.d/b.toml:5:1: [master] is not allowed in an included file: move it to the \
         main config file $D/ally.toml"
    );
    dir.write(
        "apps.d/b.toml",
        &format!("include = [\"more.toml\"]\n{}", app("b")),
    );
    assert_eq!(
        dir.err(&format!("include = [\"apps.d/*\"]\n{}", app("web"))),
        "$D/apps.d/b.toml:1:11: include is not allowed in an included file (includes do not \
         nest): list every include in the main config file $D/ally.toml"
    );
}

#[test]
fn duplicate_names_across_files() {
    let dir = TempDir::new();
    dir.write("apps.d/a.toml", &app("api"));
    dir.write("apps.d/b.toml", &format!("# b\n\n{}", app("web")));
    assert_eq!(
        dir.err(&format!("include = [\"apps.d/*\"]\n\n{}", app("web"))),
        "$D/apps.d/b.toml:4:8: duplicate app name \"web\": already declared at \
         $D/ally.toml:4:8; app names must be unique"
    );
    dir.write("apps.d/b.toml", &format!("# b\n\n{}", app("api")));
    assert_eq!(
        dir.err(&format!("include = [\"apps.d/*\"]\n\n{}", app("web"))),
        "$D/apps.d/b.toml:4:8: duplicate app name \"api\": already declared at \
         $D/apps.d/a.toml:2:8; app names must be unique"
    );
}

#[test]
fn errors_inside_an_included_file_name_it() {
    let dir = TempDir::new();
    dir.write(
        "apps.d/web.toml",
        "[[app]]\nname = \"web\"\ncommand = [\"x\"]\n\n  ready_timeout = \"soon\"\n",
    );
    assert_eq!(
        dir.err(r#"include = ["apps.d/web.toml"]"#),
        "$D/apps.d/web.toml:5:19: invalid duration \"soon\": expected a number with a unit, \
         e.g. 500ms, 10s, 2m, 1h"
    );
    dir.write("apps.d/web.toml", "[[app]]\nname = \"web\"\n");
    assert_eq!(
        dir.err(r#"include = ["apps.d/web.toml"]"#),
        "$D/apps.d/web.toml:1:1: app \"web\" has no command: add one, e.g. command = \
         [\"./server\", \"--port\", \"8080\"]"
    );
    dir.write("apps.d/web.toml", "[[app]\n");
    assert!(
        dir.err(r#"include = ["apps.d/web.toml"]"#)
            .starts_with("$D/apps.d/web.toml:1:"),
    );
}

#[test]
fn rejects_bad_patterns() {
    let dir = TempDir::new();
    let main = |include: &str| format!("include = [{include}]\n{}", app("web"));
    assert_eq!(
        dir.err(&main(r#""apps.*/web.toml""#)),
        "$D/ally.toml:1:12: invalid include \"apps.*/web.toml\": wildcards are allowed in the \
         last path component only, e.g. \"apps.d/*.toml\""
    );
    assert_eq!(
        dir.err(&main(r#""a.toml", """#)),
        "$D/ally.toml:1:22: empty include: give a file or a pattern such as \"apps.d/*.toml\""
    );
    assert_eq!(
        dir.err(&main(r#""apps.d/""#)),
        "$D/ally.toml:1:12: invalid include \"apps.d/\": it names a directory, not a file"
    );
    assert_eq!(
        dir.err(&format!("include = \"apps.d/*\"\n{}", app("web"))),
        "$D/ally.toml:1:11: invalid type: string \"apps.d/*\", expected a sequence"
    );
}

#[test]
fn parse_refuses_include() {
    assert_eq!(
        err(&format!("include = [\"apps.d/*\"]\n{}", app("web"))),
        "1:12: include needs the files it names: load the config from its file rather than \
         parsing its text"
    );
    assert_eq!(
        names(&ok(&format!("include = []\n{}", app("web")))),
        ["web"]
    );
}

#[test]
fn wildcard_matching() {
    use super::super::include::matches;
    for (pattern, name) in [
        ("*", ""),
        ("*", "a.toml"),
        ("*.toml", ".toml"),
        ("*.toml", "web.toml"),
        ("a*b*c", "abc"),
        ("a*b*c", "aXbYbZc"),
        ("a?c", "abc"),
        ("?", "é"),
        ("**", "x"),
        ("*a", "aaa"),
        ("web.toml", "web.toml"),
        ("*?", "x"),
    ] {
        assert!(matches(pattern, name), "{pattern:?} should match {name:?}");
    }
    for (pattern, name) in [
        ("*.toml", "web.toml.bak"),
        ("a?c", "ac"),
        ("a?c", "abbc"),
        ("?", ""),
        ("a*b", "aXbY"),
        ("web.toml", "Web.toml"),
        ("*?", ""),
    ] {
        assert!(
            !matches(pattern, name),
            "{pattern:?} should not match {name:?}"
        );
    }
}
