//! wasmesh-cli-args: command-line parsing for the workspace's binaries (`wasmesh`,
//! `wasmesh-bench`, `wasmesh-demo`, `echo`): clap, with argument errors on one line.
//!
//! clap's own error is several lines: the message, a tip, the usage, a pointer to
//! `--help`. Our binaries run under scripts, compose health checks and CI logs, where
//! one line per failure reads best, so [`parse`] keeps clap's message (joined onto
//! one line) and replaces the rest with the `--help` to run. `--help` and `--version`
//! print to stdout and exit 0; an argument error exits 2, clap's usage code.

use clap::error::ErrorKind;
use clap::Parser;
use std::ffi::OsString;

pub mod contract;

/// The process's arguments parsed into `P`, or the process exits as [`exit`] says.
pub fn parse<P: Parser>() -> P {
    parse_from(std::env::args_os())
}

/// Like [`parse`], from `args` (the first is the program's name).
pub fn parse_from<P, I, T>(args: I) -> P
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    P::try_parse_from(args).unwrap_or_else(|e| exit(e))
}

/// Exits for `error`: help and version on stdout with 0, as clap does; an argument
/// error as [`one_line`] on stderr with clap's exit code (2).
pub fn exit(error: clap::Error) -> ! {
    if !error.use_stderr() {
        error.exit()
    }
    eprintln!("{}", one_line(&error));
    std::process::exit(error.exit_code())
}

/// `error` on one line: clap's message without its tips and usage, and the `--help`
/// of the (sub)command that refused the arguments where clap names it, e.g.
/// `error: unexpected argument '--bogus' found; try 'wasmesh generate --help'`.
pub fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let message = match error.kind() {
        // clap renders the whole help here: arguments were needed and none came.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "error: arguments are required".to_string()
        }
        _ => text
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    match command_of(&text) {
        Some(command) => format!("{message}; try '{command} --help'"),
        None => format!("{message}; try --help"),
    }
}

/// The command a usage line names (`Usage: wasmesh generate [OPTIONS] ...` is
/// `wasmesh generate`): its words up to the first argument.
fn command_of(text: &str) -> Option<String> {
    let usage = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage:"))?;
    let words: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with(['[', '<', '-']))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(name = "tool")]
    struct Tool {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand, Debug)]
    enum Command {
        Run {
            mesh: String,
            #[arg(long)]
            rounds: u32,
        },
    }

    fn error(args: &[&str]) -> clap::Error {
        Tool::try_parse_from(args).unwrap_err()
    }

    #[test]
    fn an_unknown_argument_is_one_line_naming_the_subcommands_help() {
        let line = one_line(&error(&["tool", "run", "m", "--rounds", "1", "--bogus"]));
        assert_eq!(
            line,
            "error: unexpected argument '--bogus' found; try 'tool run --help'"
        );
    }

    #[test]
    fn missing_and_invalid_values_are_one_line_each() {
        let missing = one_line(&error(&["tool", "run"]));
        assert!(!missing.contains('\n'), "{missing}");
        assert!(
            missing.contains("<MESH>") && missing.contains("--rounds"),
            "{missing}"
        );
        let invalid = one_line(&error(&["tool", "run", "m", "--rounds", "many"]));
        assert!(!invalid.contains('\n'), "{invalid}");
        assert!(
            invalid.starts_with("error: invalid value 'many'"),
            "{invalid}"
        );
    }

    #[test]
    fn no_arguments_at_all_is_one_line_not_the_help() {
        let line = one_line(&error(&["tool"]));
        assert_eq!(line, "error: arguments are required; try 'tool --help'");
    }

    #[test]
    fn help_is_not_an_error() {
        assert!(!error(&["tool", "--help"]).use_stderr());
    }
}
