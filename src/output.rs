//! Rendering events for people: the stable, documented line layout.
//!
//! Every event becomes one line (a query becomes a small table). Text that came off the
//! network is escaped so that a peer can neither break a line nor send terminal escape
//! codes. Lines are gathered during a loop turn and written once, before the loop sleeps.
//! On a terminal the prompt is erased before incoming lines and drawn again after them,
//! so what the user is typing is never mixed into a message line.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use crate::command::{HELP, MENU};
use crate::event::{Event, From};
use crate::peers::Row;

/// Renders events into a buffer and writes it out once per loop turn.
#[derive(Debug)]
pub struct Output {
    buf: String,
    /// Whether a person is at a terminal (prompts are shown and redrawn).
    interactive: bool,
    /// Whether the prompt is the last thing on the screen.
    prompt_visible: bool,
}

impl Output {
    /// An output for a terminal user (`interactive`) or for a script.
    pub fn new(interactive: bool) -> Self {
        Output {
            buf: String::with_capacity(4096),
            interactive,
            prompt_visible: false,
        }
    }

    /// Renders `event`; nothing is written until [`Output::flush`].
    pub fn show(&mut self, event: &Event) {
        if self.interactive && self.prompt_visible {
            // Erase the prompt line; it is drawn again after the new lines.
            self.buf.push_str("\r\x1b[K");
            self.prompt_visible = false;
        }
        render(event, &mut self.buf);
    }

    /// The user finished a line: the terminal moved past the prompt.
    pub fn line_typed(&mut self) {
        self.prompt_visible = false;
    }

    /// Whether rendered text is waiting to be written.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes what was rendered, then the prompt when a person is at a terminal.
    pub fn flush(&mut self, out: &mut impl Write, prompt: Option<&str>) -> io::Result<()> {
        if self.interactive && !self.prompt_visible {
            if let Some(prompt) = prompt {
                self.buf.push_str(prompt);
                self.prompt_visible = true;
            }
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = out
            .write_all(self.buf.as_bytes())
            .and_then(|()| out.flush());
        self.buf.clear();
        result
    }
}

/// Appends the documented rendering of `event` to `out` (one or more `\n`-ended lines).
pub fn render(event: &Event, out: &mut String) {
    // Writing into a String cannot fail.
    let _ = match event {
        Event::Listening { addr, name } => writeln!(out, "listening on {addr} as {name}"),
        Event::Message { from, text } => {
            out.push('[');
            sender(from, out);
            out.push_str("] ");
            escape(text, out);
            writeln!(out)
        }
        Event::ConnectFrom { from, answered } => {
            out.push_str("* connect from ");
            sender(from, out);
            if *answered {
                writeln!(out, " (answered connect_ack)")
            } else {
                writeln!(out, " (no listening port given, cannot answer)")
            }
        }
        Event::ConnectAck { from } => {
            out.push_str("* connect_ack from ");
            sender(from, out);
            writeln!(out)
        }
        Event::PeerLeft { addr, name, reason } => {
            out.push_str("* ");
            escape(name.as_deref().unwrap_or("?"), out);
            writeln!(out, " {addr} left ({})", reason.as_str())
        }
        Event::PeerUnreachable {
            addr,
            name,
            failures,
        } => {
            out.push_str("* ");
            escape(name.as_deref().unwrap_or("?"), out);
            writeln!(
                out,
                " {addr} is not answering ({failures} checks failed in a row)"
            )
        }
        Event::PeerBack { addr, name } => {
            out.push_str("* ");
            escape(name.as_deref().unwrap_or("?"), out);
            writeln!(out, " {addr} answers again")
        }
        Event::Sent { dest, text } => {
            let _ = write!(out, "* sent to {dest}: ");
            escape(text, out);
            writeln!(out)
        }
        Event::SendFailed { dest, text, reason } => {
            let _ = write!(out, "! could not send to {dest}: {reason} (message: ");
            escape(text, out);
            writeln!(out, ")")
        }
        Event::Split { dest, parts } => writeln!(
            out,
            "* message to {dest} split into {parts} parts (receivers read at most 1024 bytes)"
        ),
        Event::Peers(rows) => {
            table(rows, out);
            Ok(())
        }
        Event::Help => writeln!(out, "{HELP}"),
        Event::Menu => writeln!(out, "{MENU}"),
        Event::Hint(hint) => writeln!(out, "? {hint}"),
        Event::Warning(text) => writeln!(out, "! {text}"),
        Event::Info(text) => writeln!(out, "* {text}"),
        Event::Bye => writeln!(out, "* bye"),
    };
}

/// `NAME IP:PORT`, `?` for what is unknown, plus `(claims IP)` when the header lied.
fn sender(from: &From, out: &mut String) {
    escape(from.name.as_deref().unwrap_or("?"), out);
    out.push(' ');
    push_ip(from.ip, out);
    match from.port {
        Some(port) => {
            let _ = write!(out, ":{port}");
        }
        None => out.push_str(":?"),
    }
    if let Some(claimed) = from.claimed_ip {
        let _ = write!(out, " (claims {claimed})");
    }
}

fn push_ip(ip: IpAddr, out: &mut String) {
    let _ = match ip {
        IpAddr::V4(ip) => write!(out, "{ip}"),
        IpAddr::V6(ip) => write!(out, "[{ip}]"),
    };
}

/// Copies `text`, escaping control characters (a newline shows as `\n`).
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
}

fn table(rows: &[Row], out: &mut String) {
    if rows.is_empty() {
        out.push_str("no peers known yet\n");
        return;
    }
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let mut name = String::new();
            escape(r.name.as_deref().unwrap_or("?"), &mut name);
            [
                r.addr.to_string(),
                name,
                r.status.as_str().to_owned(),
                r.source.as_str().to_owned(),
                r.messages.to_string(),
                r.last_heard.map_or_else(|| "-".to_owned(), ago),
                r.claimed_ip
                    .map_or_else(String::new, |ip| format!("claims {ip}")),
            ]
        })
        .collect();
    let header = [
        "ADDRESS",
        "NAME",
        "STATUS",
        "SOURCE",
        "MSGS",
        "LAST-HEARD",
        "NOTE",
    ];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: [&str; 7], out: &mut String| {
        let mut s = String::new();
        for (i, (cell, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header, out);
    for row in &cells {
        line(row.each_ref().map(String::as_str), out);
    }
}

/// A short age: `5s ago`, `3m ago`, `2h ago`, `4d ago`.
fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{Source, Status};

    fn line(event: &Event) -> String {
        let mut s = String::new();
        render(event, &mut s);
        s
    }

    fn from(name: Option<&str>, port: Option<u16>, claimed: Option<&str>) -> From {
        From {
            name: name.map(Into::into),
            ip: "127.0.0.2".parse().expect("ip"),
            port,
            claimed_ip: claimed.map(|c| c.parse().expect("ip")),
        }
    }

    #[test]
    fn message_layout_is_stable() {
        let cases = [
            (
                from(Some("alice"), Some(5001), None),
                "hi",
                "[alice 127.0.0.2:5001] hi\n",
            ),
            (from(None, None, None), "raw", "[? 127.0.0.2:?] raw\n"),
            (
                from(Some("bob"), Some(7), Some("127.0.1.1")),
                "a\nb\x1b[31m",
                "[bob 127.0.0.2:7 (claims 127.0.1.1)] a\\nb\\u{1b}[31m\n",
            ),
        ];
        for (from, text, want) in cases {
            assert_eq!(
                line(&Event::Message {
                    from,
                    text: text.into()
                }),
                want
            );
        }
    }

    #[test]
    fn ipv6_sender_is_bracketed() {
        let mut f = from(Some("six"), Some(9), None);
        f.ip = "::1".parse().expect("ip");
        assert_eq!(
            line(&Event::Message {
                from: f,
                text: "x".into()
            }),
            "[six [::1]:9] x\n"
        );
    }

    #[test]
    fn query_is_an_aligned_table() {
        assert_eq!(line(&Event::Peers(vec![])), "no peers known yet\n");
        let rows = vec![
            Row {
                addr: "127.0.0.3:5002".parse().expect("addr"),
                name: Some("bob".into()),
                status: Status::Active,
                source: Source::Heard,
                messages: 12,
                last_heard: Some(Duration::from_secs(75)),
                claimed_ip: None,
            },
            Row {
                addr: "127.0.0.4:6000".parse().expect("addr"),
                name: None,
                status: Status::Unreachable,
                source: Source::Sent,
                messages: 0,
                last_heard: None,
                claimed_ip: Some("127.0.1.1".parse().expect("ip")),
            },
        ];
        let text = line(&Event::Peers(rows));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ADDRESS"));
        assert!(lines[1].starts_with("127.0.0.3:5002  bob "));
        assert!(lines[1].contains("active") && lines[1].contains("1m ago"));
        assert!(lines[2].ends_with("claims 127.0.1.1"));
        let col = |l: &str| {
            l.find("STATUS")
                .or_else(|| l.find("active"))
                .or_else(|| l.find("unreachable"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    #[test]
    fn prompt_is_erased_and_redrawn_around_incoming_lines() -> io::Result<()> {
        let mut out = Output::new(true);
        let mut screen = Vec::new();
        out.flush(&mut screen, Some("> "))?;
        out.show(&Event::Info("news".into()));
        out.flush(&mut screen, Some("> "))?;
        assert_eq!(String::from_utf8_lossy(&screen), "> \r\x1b[K* news\n> ");
        Ok(())
    }

    #[test]
    fn scripts_get_no_prompt() -> io::Result<()> {
        let mut out = Output::new(false);
        let mut screen = Vec::new();
        out.show(&Event::Bye);
        out.flush(&mut screen, Some("> "))?;
        assert_eq!(screen, b"* bye\n");
        Ok(())
    }
}
