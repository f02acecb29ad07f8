//! The `peerchat` binary: command line in, exit status out.
//!
//! Exit status: 0 after a normal quit, 1 when the peer cannot run (for example the port
//! is taken) or, driven by a script (stdin not a terminal), when a message it asked for
//! could not be delivered; 2 for a command-line mistake. `peerchat send`: 0 when the
//! message was delivered, 1 when it was not.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

use peerchat::cli::{self, Parsed, UsageError};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        // Through peerchat's writer, so that records land above the prompt while it edits
        // the line on the terminal that stderr is too; coloured as env_logger would colour
        // stderr itself (it cannot tell through a writer).
        .target(env_logger::Target::Pipe(Box::new(peerchat::LogWriter)))
        .write_style(log_style())
        .init();
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(Parsed::Help(usage)) => {
            say(&usage);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            say(&format!("peerchat {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Send(config, dest, text)) => {
            // Rendered as the loop renders them: the reply comes from the network.
            return match peerchat::send_once(&config, dest, &text) {
                Ok(reply) => {
                    let sent = peerchat::Event::Sent { dest, text, reply };
                    say(peerchat::plain_line(&sent).trim_end_matches('\n'));
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    let failed = peerchat::Event::SendFailed { dest, text, reason };
                    eprint!("{}", peerchat::plain_line(&failed));
                    ExitCode::FAILURE
                }
            };
        }
        Err(e) => return usage_error(&e),
    };
    let interactive = io::stdin().is_terminal();
    let name = match args.name.clone() {
        Some(name) => name,
        // A bad answer is explained and asked again.
        None if interactive => loop {
            let Some(name) = ask("Enter your name: ") else {
                return ended("a name");
            };
            match cli::check_name(&name) {
                Ok(()) => break name,
                Err(why) => eprintln!("{why}; try again"),
            }
        },
        None => return missing("--name NAME"),
    };
    let asked_port = args.port.is_none() && interactive;
    let mut port = match args.port {
        Some(port) => port,
        None if interactive => match ask_port() {
            Some(port) => port,
            None => return ended("a port"),
        },
        None => return missing("--port PORT"),
    };
    let config = match args.resolve(name, port) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    loop {
        let attempt = peerchat::Config {
            port,
            ..config.clone()
        };
        match peerchat::run(attempt) {
            Ok(()) => return ExitCode::SUCCESS,
            // A port typed at the prompt that is taken: say so and ask for another.
            Err(peerchat::Error::Bind(addr, e)) if asked_port => {
                eprintln!("cannot listen on {addr}: {e}; try another port");
                match ask_port() {
                    Some(p) => port = p,
                    None => return ended("a port"),
                }
            }
            // A script learns that a send failed from the exit status too.
            Err(e) => {
                eprintln!("peerchat: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Asks for the port until the answer is one (0 lets the system choose); `None` when
/// stdin ends.
fn ask_port() -> Option<u16> {
    loop {
        let answer = ask("Enter your port number: ")?;
        match answer.parse::<u16>() {
            Ok(port) => return Some(port),
            Err(_) => eprintln!("a port is a number from 0 to 65535; try again"),
        }
    }
}

/// Colour in log records when stderr is a terminal and neither `NO_COLOR` nor
/// `RUST_LOG_STYLE=never` says otherwise (`RUST_LOG_STYLE=always` forces it).
fn log_style() -> env_logger::WriteStyle {
    let env = |name| std::env::var(name).unwrap_or_default();
    match env("RUST_LOG_STYLE").as_str() {
        "always" => env_logger::WriteStyle::Always,
        "never" => env_logger::WriteStyle::Never,
        _ if io::stderr().is_terminal() && env("NO_COLOR").is_empty() => {
            env_logger::WriteStyle::Always
        }
        _ => env_logger::WriteStyle::Never,
    }
}

/// A command-line mistake: its reason on one line, and where the full usage is, so that
/// the reason does not scroll off the screen.
fn usage_error(e: &UsageError) -> ExitCode {
    eprintln!(
        "peerchat: {}\ntry 'peerchat --help' for the usage",
        e.message
    );
    ExitCode::from(2)
}

fn missing(what: &str) -> ExitCode {
    eprintln!(
        "peerchat: {what} is required when stdin is not a terminal\ntry 'peerchat --help' for the usage"
    );
    ExitCode::from(2)
}

/// Prints one line on stdout. A stdout that is gone (`peerchat --help | head -1`) is not an
/// error worth a panic: what it was for has happened.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Input ended (Ctrl-D) at a start-up question: the prompt's line is ended and the reason
/// given, as for any missing option (it exited 2 without a word, on the prompt's line).
fn ended(what: &str) -> ExitCode {
    say(""); // ends the prompt's line
    eprintln!("peerchat: input ended before {what} was given\ntry 'peerchat --help' for the usage");
    ExitCode::from(2)
}

/// Asks at the terminal; `None` when stdin ends.
fn ask(question: &str) -> Option<String> {
    print!("{question}");
    let _ = io::stdout().flush();
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}
