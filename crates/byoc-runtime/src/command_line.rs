//! How both binaries answer their command line: `--help` and `--version` print to stdout and exit 0; anything
//! they do not know is refused with one line on stderr and exit code 2, before anything starts.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// What to do with a clap parse error of `program`: print help or version (stdout, exit 0; help shown for a
/// missing subcommand exits 2), or print the usage error's first line to stderr (exit 2).
pub fn exit_for(program: &str, error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print_to_stdout(error);
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print_to_stdout(error);
            ExitCode::from(2)
        }
        _ => {
            eprintln!("{program}: {} (see {program} --help)", first_line(error));
            ExitCode::from(2)
        }
    }
}

/// Prints clap's rendering to stdout; a closed stdout (`byoc --help | head`) is not an error.
fn print_to_stdout(error: &clap::Error) {
    let _ = write!(std::io::stdout(), "{}", error.render());
}

/// The first non-empty line of a rendered usage error, without clap's `error: ` prefix.
fn first_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A program with no arguments, like `byoc-api`.
    #[derive(Debug, Parser)]
    #[command(name = "example", version)]
    struct NoArguments {}

    #[test]
    fn an_unknown_argument_is_one_line() {
        let error = NoArguments::try_parse_from(["example", "--bogus"]).expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::UnknownArgument);
        let line = first_line(&error);
        assert!(line.contains("--bogus"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(exit_for("example", &error), ExitCode::from(2));
    }

    #[test]
    fn help_and_version_succeed() {
        for flag in ["--help", "--version"] {
            let error = NoArguments::try_parse_from(["example", flag]).expect_err("displayed");
            assert_eq!(exit_for("example", &error), ExitCode::SUCCESS, "{flag}");
        }
    }
}
