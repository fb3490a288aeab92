//! Tests of a program's command line: its clap flags checked all at once, arguments parsed as
//! the program parses them, and bad values refused naming their flag.
//!
//! ```
//! use clap::Parser;
//! use keel_testsupport::cli::CommandLine;
//!
//! #[derive(Debug, Parser)]
//! struct Args {
//!     /// Look for updates every SECONDS.
//!     #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
//!     interval: Option<u64>,
//! }
//!
//! const CLI: CommandLine<Args> = CommandLine::new(&["keel-example"]);
//! CLI.assert_consistent();
//! assert_eq!(CLI.parse(&["--interval", "60"]).unwrap().interval, Some(60));
//! CLI.assert_refused(&[(&["--interval", "0"], "--interval")]);
//! ```

use std::fmt::{self, Debug};
use std::marker::PhantomData;

use clap::Parser;

/// The command line of a program whose flags are `P`, as its tests give it: every parse starts
/// with `leading`, the program's name and the flags every test needs (a required `--repo`).
pub struct CommandLine<P> {
    leading: &'static [&'static str],
    flags: PhantomData<fn() -> P>,
}

impl<P> Debug for CommandLine<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandLine")
            .field("leading", &self.leading)
            .finish()
    }
}

impl<P: Parser + Debug> CommandLine<P> {
    /// The command line that starts with `leading` (the program's name first).
    pub const fn new(leading: &'static [&'static str]) -> Self {
        CommandLine {
            leading,
            flags: PhantomData,
        }
    }

    /// Checks `P`'s flags as a debug build of clap checks them on each parse, for every flag
    /// at once: two flags with one name, a conflict or a requirement naming no flag, a default
    /// its own parser refuses.
    ///
    /// # Panics
    /// Naming the first inconsistency.
    pub fn assert_consistent(&self) {
        P::command().debug_assert();
    }

    /// Parses `args` after the leading arguments, as the program does.
    ///
    /// # Errors
    /// clap's error, as the program would print it.
    pub fn parse(&self, args: &[&str]) -> Result<P, clap::Error> {
        P::try_parse_from(self.leading.iter().chain(args).copied())
    }

    /// Asserts that each of `cases` (arguments, and the flag whose value they get wrong) is
    /// refused as the program refuses it: with exit code 2, and an error naming the flag.
    ///
    /// # Panics
    /// At the first case that parses, is refused with another exit code, or does not name its
    /// flag.
    pub fn assert_refused(&self, cases: &[(&[&str], &str)]) {
        for &(args, flag) in cases {
            let e = self.parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            let text = e.to_string();
            assert!(text.contains(flag), "{args:?}: {text}");
        }
    }
}
