//! How the CLI fails.

use std::fmt;
use std::process::ExitCode;

use keel_core::{Error, ParseError};

/// A failure of a `keel` command, by exit code: bad input is 2, anything else 1.
#[derive(Debug)]
pub(crate) enum CliError {
    Input(String),
    Io(String),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Input(_) => ExitCode::from(2),
            CliError::Io(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) | CliError::Io(m) => f.write_str(m),
        }
    }
}

impl From<ParseError> for CliError {
    fn from(e: ParseError) -> Self {
        CliError::Input(e.to_string())
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(p) => CliError::Input(p.to_string()),
            other => CliError::Io(other.to_string()),
        }
    }
}

/// The one subject the arguments chose, of `chosen` (each with the argument that chose it, or
/// `None` where that argument was not given): `None` when none was, an input error naming
/// them when several were (`verb` says what they would do, e.g. `check different things`).
#[cfg(any(feature = "registry", feature = "git", feature = "kube"))]
pub(crate) fn one_of<'a, T>(
    chosen: impl IntoIterator<Item = Option<(&'a str, T)>>,
    verb: &str,
) -> Result<Option<T>, CliError> {
    let mut chosen: Vec<(&str, T)> = chosen.into_iter().flatten().collect();
    if chosen.len() > 1 {
        let names: Vec<&str> = chosen.iter().map(|(name, _)| *name).collect();
        return Err(CliError::Input(format!(
            "{} {verb}: give one",
            names.join(" and ")
        )));
    }
    Ok(chosen.pop().map(|(_, subject)| subject))
}

#[cfg(all(test, any(feature = "registry", feature = "git", feature = "kube")))]
mod tests {
    use super::*;

    #[test]
    fn one_subject_or_none_and_several_are_named() {
        assert_eq!(
            one_of([None, Some(("--kube", 1)), None], "x").unwrap(),
            Some(1)
        );
        assert_eq!(one_of::<u8>([None, None], "x").unwrap(), None);
        let several = one_of(
            [Some(("--kube", 1)), None, Some(("--helm", 2))],
            "check two",
        );
        match several {
            Err(CliError::Input(message)) => {
                assert_eq!(message, "--kube and --helm check two: give one");
            }
            other => panic!("{other:?}"),
        }
    }
}
