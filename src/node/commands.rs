//! The console language: the numbered menu and the one-line `/` commands.
//!
//! [`CommandParser`] turns typed lines into [`Command`]s. It remembers where a multi-step menu
//! dialogue stands (`1` asks for an IP, then a port, then the message), so both
//! interfaces can be interleaved freely, and the current conversation (`/query NAME`), to
//! which plain lines then go. Names are resolved by the node, which knows the peers. Pure:
//! no I/O, no clock.

use std::net::{IpAddr, SocketAddr};

use crate::wire::parse_port;

/// A peer as the user named it: an address, or a name to look up in the peer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `IP:PORT` (or `localhost:PORT`, `[v6]:PORT`).
    Addr(SocketAddr),
    /// A peer's name, as its headers give it.
    Name(String),
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `text` to one peer.
    Send {
        /// The peer's listening address.
        dest: SocketAddr,
        /// What to say.
        text: String,
    },
    /// Send `text` to every active peer.
    All {
        /// What to say.
        text: String,
    },
    /// Show the peer table.
    Peers,
    /// Send `connect` to every active peer.
    Connect,
    /// Send `connect` to one peer.
    ConnectTo(Target),
    /// Send `text` to a peer named by address or name (`/msg`).
    Msg {
        /// Who.
        to: Target,
        /// What to say.
        text: String,
    },
    /// Send `text` to the peer we last heard a message from.
    Reply {
        /// What to say.
        text: String,
    },
    /// Make a peer the current conversation (plain lines go there), or end it (`None`).
    Query(Option<Target>),
    /// Leave: tell every active peer `exit`, then stop.
    Quit,
    /// Show the last N messages.
    History(usize),
    /// Show the command list.
    Help,
    /// Show the numbered menu.
    Menu,
}

impl Command {
    /// Whether it asks for a chat message to go out (not a greeting, not a query).
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            Command::Send { .. }
                | Command::All { .. }
                | Command::Msg { .. }
                | Command::Reply { .. }
        )
    }
}

/// The words of the commands that send a chat message.
const MESSAGE_WORDS: [&str; 7] = ["/send", "/msg", "/m", "/reply", "/r", "/all", "/broadcast"];

/// Whether a typed line is a command that sends a chat message (`/send`, `/msg`, `/reply`,
/// `/all` and their short forms), whether or not the rest of it can be read.
pub fn asks_to_send(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    MESSAGE_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// The one-screen help text for the console.
pub const HELP: &str = "\
menu:  1 send a message   2 query active peers   3 connect to active peers   0 quit
commands: (Tab completes commands, names and addresses)
  /send IP:PORT TEXT   send TEXT to one peer (IPv6 as [::1]:PORT, localhost:PORT)
  /msg NAME TEXT       send TEXT to the peer called NAME (or IP:PORT)
  /reply TEXT          send TEXT to whoever last sent you a message
  /query NAME|IP:PORT  talk to one peer: plain lines go there; /query alone ends it
  /all TEXT            send TEXT to every active peer
  /peers               show known peers and their status
  /connect [NAME|IP:PORT]  send connect to one peer, or to every active peer
  /history [N]         the last N messages sent and received (default 20)
  /quit                tell every active peer exit, then leave
  /help                this text";

/// The commands Tab completes.
pub const COMMANDS: [&str; 12] = [
    "/all", "/connect", "/help", "/history", "/menu", "/msg", "/peers", "/query", "/quit",
    "/reply", "/send", "/list",
];

/// The menu line shown on a terminal.
pub const MENU: &str =
    "1 send a message   2 query active peers   3 connect to active peers   0 quit   (/help for commands)";

/// Where the menu dialogue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Step {
    #[default]
    Idle,
    AskIp,
    AskPort(IpAddr),
    AskText(SocketAddr),
}

/// Reads typed lines, one at a time, and keeps the menu dialogue's state and the current
/// conversation.
#[derive(Debug)]
pub struct CommandParser {
    step: Step,
    /// The current conversation: where plain lines go.
    conversation: Option<SocketAddr>,
    /// The prompt while idle: `> `, or `bob> ` in a conversation.
    idle_prompt: String,
}

impl Default for CommandParser {
    fn default() -> Self {
        CommandParser {
            step: Step::Idle,
            conversation: None,
            idle_prompt: IDLE_PROMPT.to_owned(),
        }
    }
}

/// The prompt outside any conversation.
const IDLE_PROMPT: &str = "> ";

impl CommandParser {
    /// A console waiting for a command.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `addr` (shown as `label`) the current conversation, or ends it.
    pub fn converse(&mut self, with: Option<(SocketAddr, &str)>) {
        self.conversation = with.map(|(addr, _)| addr);
        self.idle_prompt = match with {
            Some((_, label)) => format!("{label}> "),
            None => IDLE_PROMPT.to_owned(),
        };
    }

    /// The current conversation, if any.
    pub fn conversation(&self) -> Option<SocketAddr> {
        self.conversation
    }

    /// What to show before the next line is typed.
    pub fn prompt(&self) -> &str {
        match self.step {
            Step::Idle => &self.idle_prompt,
            Step::AskIp => "Enter the recipient's IP address: ",
            Step::AskPort(_) => "Enter the recipient's port number: ",
            Step::AskText(_) => "Enter your message: ",
        }
    }

    /// Interprets one typed line (without its newline). `Ok(None)` means "nothing to do
    /// yet" (an empty line, or a menu step that needs more input); `Err` carries a short
    /// hint for the user.
    pub fn input(&mut self, line: &str) -> Result<Option<Command>, String> {
        let trimmed = line.trim();
        match self.step {
            Step::AskText(dest) => {
                self.step = Step::Idle;
                // The message is taken as typed: it may well start with a slash.
                let text = line.trim_end_matches(['\r', '\n']);
                if text.trim().is_empty() {
                    return Err("empty message not sent".into());
                }
                Ok(Some(Command::Send {
                    dest,
                    text: text.to_owned(),
                }))
            }
            Step::AskIp | Step::AskPort(_) if trimmed.is_empty() || trimmed.starts_with('/') => {
                // An empty line or a command abandons the dialogue.
                self.step = Step::Idle;
                if trimmed.is_empty() {
                    Err("send cancelled".into())
                } else {
                    self.idle(trimmed)
                }
            }
            Step::AskIp => match parse_ip(trimmed) {
                Some(ip) => {
                    self.step = Step::AskPort(ip);
                    Ok(None)
                }
                None => Err(format!("{trimmed:?} is not an IP address; try again")),
            },
            Step::AskPort(ip) => match parse_port(trimmed) {
                Some(port) => {
                    self.step = Step::AskText(SocketAddr::new(ip, port));
                    Ok(None)
                }
                None => Err(format!("{trimmed:?} is not a port (1-65535); try again")),
            },
            Step::Idle => self.idle(trimmed),
        }
    }

    fn idle(&mut self, line: &str) -> Result<Option<Command>, String> {
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((word, rest)) => (word, rest.trim_start()),
            None => (line, ""),
        };
        // In a conversation, every line that is not a command goes there (digits too).
        if let Some(dest) = self.conversation.filter(|_| !word.starts_with('/')) {
            if line.is_empty() {
                return Ok(None);
            }
            let text = line.to_owned();
            return Ok(Some(Command::Send { dest, text }));
        }
        let word = word.to_ascii_lowercase();
        let bare = |command: Command| match rest {
            "" => Ok(command),
            _ => Err(format!("{word} takes no argument; type /help")),
        };
        let command = match word.as_str() {
            "" => return Ok(None),
            "1" => {
                bare(Command::Menu)?;
                self.step = Step::AskIp;
                return Ok(None);
            }
            "2" | "/peers" | "/list" => bare(Command::Peers)?,
            "/query" => match rest {
                "" => Command::Query(None),
                target => Command::Query(Some(parse_target(target)?)),
            },
            "3" => bare(Command::Connect)?,
            "/connect" => match rest {
                "" => Command::Connect,
                target if target.split_whitespace().nth(1).is_some() => {
                    return Err(
                        "usage: /connect [NAME|IP:PORT]  (one peer, or none for all)".into(),
                    )
                }
                target => Command::ConnectTo(parse_target(target)?),
            },
            "0" | "/quit" | "/exit" | "/q" => bare(Command::Quit)?,
            "/help" | "/h" | "/?" => bare(Command::Help)?,
            "/history" => match rest {
                "" => Command::History(20),
                n => match n.parse::<usize>() {
                    Ok(n) if n > 0 => Command::History(n),
                    _ => return Err("usage: /history [N]  (N a positive number)".into()),
                },
            },
            "/menu" => bare(Command::Menu)?,
            "/send" => parse_send(rest)?,
            "/msg" | "/m" => {
                let (to, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let text = text.trim_start();
                if to.is_empty() || text.is_empty() {
                    return Err("usage: /msg NAME TEXT  (or /msg IP:PORT TEXT)".into());
                }
                Command::Msg {
                    to: parse_target(to)?,
                    text: text.to_owned(),
                }
            }
            "/reply" | "/r" => match rest {
                "" => return Err("usage: /reply TEXT".into()),
                text => Command::Reply {
                    text: text.to_owned(),
                },
            },
            "/all" | "/broadcast" => {
                if rest.is_empty() {
                    return Err("usage: /all TEXT".into());
                }
                Command::All {
                    text: rest.to_owned(),
                }
            }
            _ if word.starts_with('/') => {
                return Err(format!("unknown command {word}; type /help"));
            }
            _ => return Err("type 1, 2, 3 or 0 for the menu, or /help for commands".into()),
        };
        Ok(Some(command))
    }
}

/// A peer as typed: `IP:PORT` (`localhost:PORT`, `[v6]:PORT`), or else a name. A token
/// that looks like an address but is not a valid one gets a hint.
fn parse_target(s: &str) -> Result<Target, String> {
    match parse_addr(s) {
        Ok(addr) => Ok(Target::Addr(addr)),
        Err(_) if !looks_like_address(s) => Ok(Target::Name(s.to_owned())),
        Err(why) => Err(why),
    }
}

/// Whether `s` is meant as an address: `host:port` with a digit after the colon, or an IP.
fn looks_like_address(s: &str) -> bool {
    parse_ip(s).is_some()
        || s.rsplit_once(':')
            .is_some_and(|(_, port)| port.bytes().next().is_some_and(|b| b.is_ascii_digit()))
}

/// `IP:PORT`, `[v6]:PORT` or `localhost:PORT`; the error says what is wrong in plain words.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return match addr.port() {
            0 => Err("port 0 cannot be sent to".into()),
            _ => Ok(addr),
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not IP:PORT"));
    };
    let Some(ip) = parse_ip(host) else {
        return Err(format!("{host:?} is not an IP address"));
    };
    match parse_port(port) {
        Some(port) => Ok(SocketAddr::new(ip, port)),
        None => Err(format!("{port:?} is not a port (1-65535)")),
    }
}

/// `/send IP:PORT TEXT`, also accepting `/send IP PORT TEXT`, `[v6]:PORT` and
/// `localhost:PORT`.
fn parse_send(rest: &str) -> Result<Command, String> {
    const USAGE: &str = "usage: /send IP:PORT TEXT";
    let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let after = after.trim_start();
    let (dest, text) = if first.contains(':') && parse_ip(first).is_none() {
        (
            parse_addr(first).map_err(|why| format!("{why}; {USAGE}"))?,
            after,
        )
    } else if let Some(ip) = parse_ip(first) {
        let (port, text) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        match parse_port(port) {
            Some(port) => (SocketAddr::new(ip, port), text.trim_start()),
            None => return Err(format!("missing or bad port after {first}; {USAGE}")),
        }
    } else if first.is_empty() {
        return Err(USAGE.into());
    } else {
        return Err(format!("{first:?} is not IP:PORT; {USAGE}"));
    };
    if text.is_empty() {
        return Err(format!("nothing to send; {USAGE}"));
    }
    Ok(Command::Send {
        dest,
        text: text.to_owned(),
    })
}

/// An IP address as typed: IPv6 optionally in brackets, `localhost` for 127.0.0.1.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    if s.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::from([127, 0, 0, 1]));
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Vec<Result<Option<Command>, String>> {
        let mut console = CommandParser::new();
        lines.iter().map(|l| console.input(l)).collect()
    }

    fn send(dest: &str, text: &str) -> Result<Option<Command>, String> {
        Ok(Some(Command::Send {
            dest: dest.parse().expect("test address"),
            text: text.into(),
        }))
    }

    #[test]
    fn one_line_commands() {
        let cases: &[(&str, Result<Option<Command>, String>)] = &[
            (
                "/send 127.0.0.3:5002 hello there",
                send("127.0.0.3:5002", "hello there"),
            ),
            (
                "/msg 127.0.0.3:5002  hi",
                Ok(Some(Command::Msg {
                    to: Target::Addr("127.0.0.3:5002".parse().expect("addr")),
                    text: "hi".into(),
                })),
            ),
            (
                "/msg bob  hi there",
                Ok(Some(Command::Msg {
                    to: Target::Name("bob".into()),
                    text: "hi there".into(),
                })),
            ),
            ("/send localhost:5002 hi", send("127.0.0.1:5002", "hi")),
            ("/reply ok", Ok(Some(Command::Reply { text: "ok".into() }))),
            (
                "/query bob",
                Ok(Some(Command::Query(Some(Target::Name("bob".into()))))),
            ),
            ("/query", Ok(Some(Command::Query(None)))),
            (
                "/connect 127.0.0.12:5012",
                Ok(Some(Command::ConnectTo(Target::Addr(
                    "127.0.0.12:5012".parse().expect("addr"),
                )))),
            ),
            (
                "/send 127.0.0.3 5002 spaced",
                send("127.0.0.3:5002", "spaced"),
            ),
            ("/send [::1]:7000 six", send("[::1]:7000", "six")),
            ("/SEND 127.0.0.3:5002 case", send("127.0.0.3:5002", "case")),
            (
                "/all to everyone",
                Ok(Some(Command::All {
                    text: "to everyone".into(),
                })),
            ),
            ("/peers", Ok(Some(Command::Peers))),
            ("/history", Ok(Some(Command::History(20)))),
            ("/history 5", Ok(Some(Command::History(5)))),
            ("2", Ok(Some(Command::Peers))),
            ("3", Ok(Some(Command::Connect))),
            ("/connect", Ok(Some(Command::Connect))),
            (
                "/connect 127.0.0.12:5012 x",
                Err("usage: /connect [NAME|IP:PORT]  (one peer, or none for all)".into()),
            ),
            ("0", Ok(Some(Command::Quit))),
            ("/quit", Ok(Some(Command::Quit))),
            ("  /help  ", Ok(Some(Command::Help))),
            ("", Ok(None)),
        ];
        for (line, want) in cases {
            assert_eq!(&CommandParser::new().input(line), want, "line {line:?}");
        }
    }

    #[test]
    fn bad_input_gets_a_hint() {
        for line in [
            "/send",
            "/send 127.0.0.3:5002",
            "/send nowhere hi",
            "/send 127.0.0.3:0 hi",
            "/send 127.0.0.3:70000 hi",
            "/all",
            "/history x",
            "/history 0",
            "/frobnicate",
            "hello",
            "4",
            "/peers extra",
            "/quit now",
            "/help me",
            "/msg bob",
            "/msg 127.0.0.3:99999 hi",
            "/reply",
            "/query 127.0.0.3:0",
        ] {
            assert!(CommandParser::new().input(line).is_err(), "line {line:?}");
        }
        // The same words for the same mistake, typed or in the menu.
        let typed = CommandParser::new().input("/send 127.0.0.2:99999 hi");
        assert_eq!(
            typed,
            Err("\"99999\" is not a port (1-65535); usage: /send IP:PORT TEXT".into())
        );
    }

    #[test]
    fn in_a_conversation_plain_lines_and_digits_go_to_the_peer() {
        let mut console = CommandParser::new();
        let bob: SocketAddr = "127.0.0.3:5002".parse().expect("addr");
        console.converse(Some((bob, "bob")));
        assert_eq!(console.prompt(), "bob> ");
        assert_eq!(console.input("hello"), send("127.0.0.3:5002", "hello"));
        assert_eq!(console.input("0"), send("127.0.0.3:5002", "0"));
        assert_eq!(console.input("/peers"), Ok(Some(Command::Peers)));
        console.converse(None);
        assert_eq!(console.prompt(), "> ");
        assert!(console.input("hello").is_err());
    }

    #[test]
    fn menu_dialogue_asks_ip_port_then_message() {
        let mut console = CommandParser::new();
        assert_eq!(console.input("1"), Ok(None));
        assert!(console.prompt().contains("IP"));
        assert_eq!(console.input("127.0.0.3"), Ok(None));
        assert!(console.prompt().contains("port"));
        assert_eq!(console.input("5002"), Ok(None));
        assert!(console.prompt().contains("message"));
        assert_eq!(
            console.input("/not a command"),
            send("127.0.0.3:5002", "/not a command")
        );
        assert_eq!(console.prompt(), "> ");
    }

    #[test]
    fn menu_dialogue_retries_and_cancels() {
        let got = run(&["1", "not-an-ip", "127.0.0.3", "99999", "5002", "hi"]);
        assert!(got[1].is_err() && got[3].is_err());
        assert_eq!(got[5], send("127.0.0.3:5002", "hi"));
        let got = run(&["1", "", "2"]);
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok(Some(Command::Peers)));
        let got = run(&["1", "/peers"]);
        assert_eq!(got[1], Ok(Some(Command::Peers)));
    }

    #[test]
    fn commands_and_the_menu_dialogue_interleave() {
        let mut console = CommandParser::new();
        assert_eq!(console.input("/peers"), Ok(Some(Command::Peers)));
        // The menu: 1, then IP, port and message on their own lines.
        assert_eq!(console.input("1"), Ok(None));
        assert_eq!(console.input("127.0.0.3"), Ok(None));
        assert_eq!(console.input("5002"), Ok(None));
        let dest = "127.0.0.3:5002".parse().expect("test address");
        assert_eq!(
            console.input("hello"),
            Ok(Some(Command::Send {
                dest,
                text: "hello".into()
            }))
        );
        assert!(console.input("/nonsense").is_err());
    }

    #[test]
    fn localhost_and_bracketed_ipv6_are_addresses() {
        assert_eq!(
            CommandParser::new().input("/send localhost 5002 hi"),
            send("127.0.0.1:5002", "hi")
        );
        assert_eq!(
            CommandParser::new().input("/send [::1] 7 hi"),
            send("[::1]:7", "hi")
        );
        let got = run(&["1", "LocalHost", "5002", "hi"]);
        assert_eq!(got[3], send("127.0.0.1:5002", "hi"));
        let got = run(&["1", "[fe80::1]", "9", "hi"]);
        assert_eq!(got[3], send("[fe80::1]:9", "hi"));
    }

    #[test]
    fn an_empty_message_in_the_dialogue_is_not_sent_and_ends_it() {
        let mut console = CommandParser::new();
        for line in ["1", "127.0.0.3", "5002"] {
            assert_eq!(console.input(line), Ok(None));
        }
        assert!(console.input("   ").is_err());
        assert_eq!(console.prompt(), "> ");
        assert_eq!(console.input("2"), Ok(Some(Command::Peers)));
    }

    #[test]
    fn the_message_typed_in_the_dialogue_is_kept_as_typed() {
        let got = run(&["1", "127.0.0.3", "5002", "  two  spaces \r"]);
        assert_eq!(got[3], send("127.0.0.3:5002", "  two  spaces "));
    }

    #[test]
    fn a_command_typed_at_the_port_question_abandons_the_dialogue() {
        let mut console = CommandParser::new();
        console.input("1").expect("menu");
        console.input("127.0.0.3").expect("ip");
        assert_eq!(console.input("/history 3"), Ok(Some(Command::History(3))));
        assert_eq!(console.prompt(), "> ");
        console.input("1").expect("menu");
        console.input("127.0.0.3").expect("ip");
        assert!(console.input("").is_err(), "an empty line cancels");
        assert_eq!(console.prompt(), "> ");
    }

    #[test]
    fn a_send_needs_a_port_and_text() {
        for line in [
            "/send 127.0.0.3",
            "/send 127.0.0.3 hi",
            "/send 127.0.0.3 0 hi",
            "/send 127.0.0.3 5002",
            "/send 127.0.0.3 5002   ",
        ] {
            assert!(CommandParser::new().input(line).is_err(), "line {line:?}");
        }
        assert_eq!(
            CommandParser::new().input("/send 127.0.0.3   5002    x y"),
            send("127.0.0.3:5002", "x y")
        );
    }

    #[test]
    fn every_alias_is_understood() {
        let cases = [
            // Outside a conversation the node answers it with the peer table.
            ("/query", Command::Query(None)),
            ("/list", Command::Peers),
            (
                "/m bob hi",
                Command::Msg {
                    to: Target::Name("bob".into()),
                    text: "hi".into(),
                },
            ),
            ("/r ok", Command::Reply { text: "ok".into() }),
            ("/exit", Command::Quit),
            ("/q", Command::Quit),
            ("/h", Command::Help),
            ("/?", Command::Help),
            ("/menu", Command::Menu),
            ("/broadcast  hey", Command::All { text: "hey".into() }),
            ("/HISTORY 1", Command::History(1)),
        ];
        for (line, want) in cases {
            assert_eq!(
                CommandParser::new().input(line),
                Ok(Some(want)),
                "line {line:?}"
            );
        }
    }

    #[test]
    fn the_hint_says_whether_a_command_or_the_menu_was_misread() {
        let unknown = CommandParser::new()
            .input("/frobnicate")
            .expect_err("unknown");
        assert!(unknown.contains("unknown command /frobnicate"), "{unknown}");
        let chat = CommandParser::new()
            .input("hello there")
            .expect_err("not a command");
        assert!(!chat.contains("unknown command"), "{chat}");
        assert!(chat.contains("menu"), "{chat}");
    }
}
