//! Which apps a command is about: `web`, `web api`, `--family payments`
//! or `all`.

use ally_proto::AppStatus;

use crate::failure::Failure;

/// The word for every app, as a name (`ally-ctl reload all`) or a family
/// (`--family all`). The master refuses it as an app or family name.
pub const ALL: &str = "all";

/// The apps a command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These apps, in this order, each once.
    Apps(Vec<String>),
    /// Every app whose `family` is this.
    Family(String),
    /// Every app of every master.
    All,
}

impl Selection {
    /// The selection from a command's positional names and `--family`.
    ///
    /// # Errors
    ///
    /// [`Failure::Usage`] for neither or both, or `all` beside other
    /// names.
    pub fn parse(names: &[String], family: Option<&str>) -> Result<Selection, Failure> {
        match (names, family) {
            ([], None) => Err(Failure::Usage(
                "name the app (or several), --family NAME, or all".into(),
            )),
            ([_, ..], Some(family)) => Err(Failure::Usage(format!(
                "give app names or --family {family}, not both"
            ))),
            ([], Some(ALL)) => Ok(Selection::All),
            ([], Some(family)) => Ok(Selection::Family(family.to_owned())),
            ([one], None) if one == ALL => Ok(Selection::All),
            (names, None) if names.iter().any(|n| n == ALL) => Err(Failure::Usage(format!(
                "\"{ALL}\" means every app: give it alone, not beside other names"
            ))),
            (names, None) => {
                let mut once: Vec<String> = Vec::with_capacity(names.len());
                for name in names {
                    if !once.contains(name) {
                        once.push(name.clone());
                    }
                }
                Ok(Selection::Apps(once))
            }
        }
    }

    /// Whether `app` is selected.
    pub fn matches(&self, app: &AppStatus) -> bool {
        match self {
            Selection::Apps(names) => names.contains(&app.name),
            Selection::Family(family) => app.family.as_deref() == Some(family.as_str()),
            Selection::All => true,
        }
    }

    /// The selection as the command line wrote it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Selection::Apps(names) => names.join(" "),
            Selection::Family(family) => format!("--family {family}"),
            Selection::All => ALL.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(names: &[&str], family: Option<&str>) -> Result<Selection, Failure> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        Selection::parse(&names, family)
    }

    #[test]
    fn names_family_or_all() {
        assert_eq!(
            parse(&["web", "api", "web"], None),
            Ok(Selection::Apps(vec!["web".into(), "api".into()]))
        );
        assert_eq!(parse(&[], Some("pay")), Ok(Selection::Family("pay".into())));
        assert_eq!(parse(&["all"], None), Ok(Selection::All));
        assert_eq!(parse(&[], Some("all")), Ok(Selection::All));
        for (names, family) in [
            (&[][..], None),
            (&["web"][..], Some("pay")),
            (&["web", "all"][..], None),
        ] {
            let e = parse(names, family).unwrap_err();
            assert_eq!(e.exit_code(), crate::failure::EXIT_USAGE, "{e}");
        }
    }
}
