//! The JSON dialect: objects with `type`, `content`, `sender_name`, `sender_port`.

use super::dialects::*;
use super::{control_word, Body, Dialect, Message};

/// How deeply an unfinished JSON text is nested, updated line by line in one pass.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Nesting {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A closing bracket with nothing open: not JSON; parse (and fail) at once.
    broken: bool,
}

impl Nesting {
    /// Takes in the next line (the `\n` joining it is whitespace to JSON).
    pub(super) fn scan(&mut self, line: &str) {
        for b in line.bytes() {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => match self.depth.checked_sub(1) {
                    Some(depth) => self.depth = depth,
                    None => self.broken = true,
                },
                _ => {}
            }
        }
    }

    /// Whether the text can be a whole value (or is certainly not JSON).
    pub(super) fn may_be_complete(&self) -> bool {
        self.broken || (self.depth == 0 && !self.in_string)
    }
}

/// What some text held as JSON.
pub(super) enum JsonRead {
    /// One or more messages (several objects may be glued on one line).
    Messages(Vec<Message>),
    /// Valid so far but cut short: more lines may complete it.
    Incomplete,
    /// Not JSON, or not a message.
    Invalid,
}

pub(super) fn parse_json(text: &str) -> JsonRead {
    let mut msgs = Vec::new();
    let values = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for value in values {
        match value {
            Ok(value) => match json_message(&value, text.len()) {
                Some(m) => msgs.push(m),
                None => return JsonRead::Invalid,
            },
            Err(e) if e.is_eof() => return JsonRead::Incomplete,
            Err(_) => return JsonRead::Invalid,
        }
    }
    if msgs.is_empty() {
        JsonRead::Invalid
    } else {
        JsonRead::Messages(msgs)
    }
}

/// `{"type": ..., "content": ..., "sender_name": ..., "sender_port": N}`; needs `type` or
/// `content`. Also reads an optional `sender_ip`. `max_len` bounds a non-string content.
pub(super) fn json_message(value: &serde_json::Value, max_len: usize) -> Option<Message> {
    use serde_json::Value;
    let obj = value.as_object()?;
    let kind = obj.get("type");
    let content = obj.get("content");
    if kind.is_none() && content.is_none() {
        return None;
    }
    let kind_body = kind.and_then(Value::as_str).and_then(|k| {
        if k.eq_ignore_ascii_case("ack") {
            Some(Body::ConnectAck)
        } else {
            control_word(k)
        }
    });
    let body = kind_body.unwrap_or_else(|| {
        Body::Chat(match content {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.trim_end().to_owned(),
            // Non-string content is shown as compact JSON, never longer than the input
            // (`1e15` re-serialises as `1000000000000000.0`).
            Some(other) => {
                let mut shown = other.to_string();
                let mut cut = shown.len().min(max_len);
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                shown
            }
        })
    });
    let port = match obj.get("sender_port") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0),
        Some(Value::String(s)) => parse_port(s.trim()),
        _ => None,
    };
    let name = obj
        .get("sender_name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let claimed_ip = obj
        .get("sender_ip")
        .and_then(Value::as_str)
        .and_then(|s| parse_ip(s.trim()));
    Some(Message {
        name,
        claimed_ip,
        port,
        body,
        dialect: Dialect::Json,
    })
}
