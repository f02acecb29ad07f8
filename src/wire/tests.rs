//! The decoder's and encoder's unit tests: a table per dialect, then the tricky cases.

use std::net::SocketAddr;

use super::decoder::*;
use super::encode::*;
use super::json::*;
use super::*;

/// A limit no table case comes near.
const LIMIT: usize = 4096;

fn chat(text: &str) -> Body {
    Body::Chat(text.to_owned())
}

/// An expected message; `""` and `0` stand for "absent".
fn m(name: &str, ip: &str, port: u16, body: Body, dialect: Dialect) -> Message {
    Message {
        name: (!name.is_empty()).then(|| name.to_owned()),
        claimed_ip: (!ip.is_empty()).then(|| ip.parse().expect("test ip")),
        port: (port != 0).then_some(port),
        body,
        dialect,
    }
}

fn raw(body: Body) -> Message {
    m("", "", 0, body, Dialect::Raw)
}

/// Feeds `chunks` then finishes; checks the buffering bound after every call.
fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max_line: usize,
) -> Result<Vec<Message>, DecodeError> {
    let mut decoder = Decoder::new(max_line);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut out)?;
        assert!(decoder.buffered() <= max_line);
    }
    decoder.finish(&mut out);
    assert_eq!(decoder.buffered(), 0);
    Ok(out)
}

/// Decodes `input` in one chunk, and checks that byte-by-byte feeding agrees.
fn decode(input: &str) -> Vec<Message> {
    let whole = decode_chunks([input.as_bytes()], LIMIT).expect("within the limit");
    let bytewise = decode_chunks(input.as_bytes().chunks(1), LIMIT).expect("within the limit");
    assert_eq!(whole, bytewise, "chunking changed the result for {input:?}");
    whole
}

fn check(table: &[(&str, Vec<Message>)]) {
    for (input, expected) in table {
        assert_eq!(&decode(input), expected, "input {input:?}");
    }
}

#[test]
fn standard_dialect() {
    use Dialect::Standard as S;
    let ip = "198.51.100.201";
    check(&[
        (
            "198.51.100.201:8080 blockchain hello",
            vec![m("blockchain", ip, 8080, chat("hello"), S)],
        ),
        (
            "198.51.100.201:8080 blockchain hello\n",
            vec![m("blockchain", ip, 8080, chat("hello"), S)],
        ),
        // Messages written back to back with nothing between them: each header starts
        // the next message (the same header, byte for byte).
        (
            "198.51.100.201:8080 glue first198.51.100.201:8080 glue second198.51.100.201:8080 glue third",
            vec![
                m("glue", ip, 8080, chat("first"), S),
                m("glue", ip, 8080, chat("second"), S),
                m("glue", ip, 8080, chat("third"), S),
            ],
        ),
        // Another sender's header in the text is text.
        (
            "198.51.100.201:8080 alice bob said 198.51.100.201:8080 bob hi",
            vec![m("alice", ip, 8080, chat("bob said 198.51.100.201:8080 bob hi"), S)],
        ),
        // A byte order mark before the header.
        (
            "\u{feff}198.51.100.201:8080 blockchain hello",
            vec![m("blockchain", ip, 8080, chat("hello"), S)],
        ),
        (
            "198.51.100.201:8080   alice  hi  there \t ",
            vec![m("alice", ip, 8080, chat(" hi  there"), S)],
        ),
        (
            "198.51.100.201:8080\talice\thi\tthere",
            vec![m("alice", ip, 8080, chat("hi\tthere"), S)],
        ),
        (
            "  198.51.100.201:8080 alice hi",
            vec![m("alice", ip, 8080, chat("hi"), S)],
        ),
        (
            "[::1]:9000 bob hey you",
            vec![m("bob", "::1", 9000, chat("hey you"), S)],
        ),
        (
            "198.51.100.201:8080 alice héllo wörld 日本 🎉",
            vec![m("alice", ip, 8080, chat("héllo wörld 日本 🎉"), S)],
        ),
        (
            "198.51.100.201:8080 alice a\0b",
            vec![m("alice", ip, 8080, chat("a\0b"), S)],
        ),
        (
            "198.51.100.201:8080 alice",
            vec![m("alice", ip, 8080, chat(""), S)],
        ),
        (
            "198.51.100.201:8080 alice   ",
            vec![m("alice", ip, 8080, chat(""), S)],
        ),
        ("198.51.100.201:8080", vec![m("", ip, 8080, chat(""), S)]),
        // Control words: the whole message, any case, trimmed.
        (
            "198.51.100.201:8080 alice exit",
            vec![m("alice", ip, 8080, Body::Exit, S)],
        ),
        (
            "198.51.100.201:8080 alice  EXIT \r\n",
            vec![m("alice", ip, 8080, Body::Exit, S)],
        ),
        (
            "198.51.100.201:8080 alice Connect",
            vec![m("alice", ip, 8080, Body::Connect, S)],
        ),
        (
            "198.51.100.201:8080 alice connect_ack",
            vec![m("alice", ip, 8080, Body::ConnectAck, S)],
        ),
        (
            "198.51.100.201:8080 alice [PEER_QUIT]",
            vec![m("alice", ip, 8080, Body::Exit, S)],
        ),
        (
            "198.51.100.201:8080 alice DISCONNECT",
            vec![m("alice", ip, 8080, Body::Exit, S)],
        ),
        (
            "198.51.100.201:8080 alice please exit now",
            vec![m("alice", ip, 8080, chat("please exit now"), S)],
        ),
        (
            "198.51.100.201:8080 alice ping",
            vec![m("alice", ip, 8080, chat("ping"), S)],
        ),
        (
            "198.51.100.201:8080 alice exit\0",
            vec![m("alice", ip, 8080, chat("exit\0"), S)],
        ),
        // A header and a lone control word: a sender without a name.
        (
            "198.51.100.201:8080 connect",
            vec![m("", ip, 8080, Body::Connect, S)],
        ),
        // Ports out of range: not a header.
        (
            "198.51.100.201:0 alice hi",
            vec![raw(chat("198.51.100.201:0 alice hi"))],
        ),
        (
            "198.51.100.201:65536 alice hi",
            vec![raw(chat("198.51.100.201:65536 alice hi"))],
        ),
        (
            "198.51.100.201:65535 alice hi",
            vec![m("alice", ip, 65535, chat("hi"), S)],
        ),
        (
            "198.51.100.201:+80 alice hi",
            vec![raw(chat("198.51.100.201:+80 alice hi"))],
        ),
        (
            "999.0.0.1:8080 alice hi",
            vec![raw(chat("999.0.0.1:8080 alice hi"))],
        ),
        ("::1:8080 alice hi", vec![raw(chat("::1:8080 alice hi"))]),
        // Later header-less lines belong to the latest header.
        (
            "198.51.100.201:8080 alice hello\nsecond line\n\nthird",
            vec![
                m("alice", ip, 8080, chat("hello"), S),
                m("alice", ip, 8080, chat("second line"), S),
                m("alice", ip, 8080, chat("third"), S),
            ],
        ),
        (
            "198.51.100.201:8080 alice hi\n198.51.100.2:9090 bob yo\nexit",
            vec![
                m("alice", ip, 8080, chat("hi"), S),
                m("bob", "198.51.100.2", 9090, chat("yo"), S),
                m("bob", "198.51.100.2", 9090, Body::Exit, S),
            ],
        ),
    ]);
}

#[test]
fn spaced_dialect() {
    use Dialect::Spaced as S;
    let ip = "198.51.100.1";
    check(&[
        (
            "198.51.100.1 8080 alice hello world",
            vec![m("alice", ip, 8080, chat("hello world"), S)],
        ),
        (
            "198.51.100.1\t8080   alice\thi ",
            vec![m("alice", ip, 8080, chat("hi"), S)],
        ),
        (
            "::1 8080 alice hi",
            vec![m("alice", "::1", 8080, chat("hi"), S)],
        ),
        (
            "[::1] 8080 alice hi",
            vec![m("alice", "::1", 8080, chat("hi"), S)],
        ),
        (
            "198.51.100.1 8080 alice EXIT",
            vec![m("alice", ip, 8080, Body::Exit, S)],
        ),
        (
            "198.51.100.1 8080 alice exit please",
            vec![m("alice", ip, 8080, chat("exit please"), S)],
        ),
        ("198.51.100.1 8080", vec![m("", ip, 8080, chat(""), S)]),
        (
            "198.51.100.1 8080 alice",
            vec![m("alice", ip, 8080, chat(""), S)],
        ),
        (
            "198.51.100.1 0 alice hi",
            vec![raw(chat("198.51.100.1 0 alice hi"))],
        ),
        (
            "198.51.100.1 70000 alice hi",
            vec![raw(chat("198.51.100.1 70000 alice hi"))],
        ),
        (
            "198.51.100.1 is my address",
            vec![raw(chat("198.51.100.1 is my address"))],
        ),
        (
            "198.51.100.1 8080 alice hi\nmore",
            vec![
                m("alice", ip, 8080, chat("hi"), S),
                m("alice", ip, 8080, chat("more"), S),
            ],
        ),
    ]);
}

#[test]
fn bracketed_dialect() {
    use Dialect::Bracketed as B;
    let ip = "198.51.100.1";
    check(&[
        (
            "<198.51.100.1:8080> @ <team>\nhello\nworld\n<end>\n",
            vec![m("team", ip, 8080, chat("hello\nworld"), B)],
        ),
        (
            "<198.51.100.1:8080> @ <team>\r\nhello\r\nworld\r\n<end>\r\n",
            vec![m("team", ip, 8080, chat("hello\nworld"), B)],
        ),
        (
            "<198.51.100.1:8080> @ <the team>\n\n  hello\n\nworld  \n\n<END>",
            vec![m("the team", ip, 8080, chat("  hello\n\nworld"), B)],
        ),
        (
            "<198.51.100.1:8080> @ team\nhi\n<end>",
            vec![m("team", ip, 8080, chat("hi"), B)],
        ),
        (
            "<198.51.100.1:8080> @ <team> first\nsecond\n<end>",
            vec![m("team", ip, 8080, chat("first\nsecond"), B)],
        ),
        // Blocks written back to back: `<end>` and the next header on one line.
        (
            "<198.51.100.1:8080> @ <team>\nmsg one\n<end><198.51.100.1:8080> @ <team>\nmsg two\n<END>",
            vec![
                m("team", ip, 8080, chat("msg one"), B),
                m("team", ip, 8080, chat("msg two"), B),
            ],
        ),
        // Not a header after `<end>`: a line of the text.
        (
            "<198.51.100.1:8080> @ <team>\n<end>of the line\n<end>",
            vec![m("team", ip, 8080, chat("<end>of the line"), B)],
        ),
        // EOF ends an open block.
        (
            "<198.51.100.1:8080> @ <team>\nhello",
            vec![m("team", ip, 8080, chat("hello"), B)],
        ),
        (
            "<198.51.100.1:8080> @ <team>\n<end>",
            vec![m("team", ip, 8080, chat(""), B)],
        ),
        (
            "<198.51.100.1:8080> @ <team>",
            vec![m("team", ip, 8080, chat(""), B)],
        ),
        (
            "<198.51.100.1:8080> @ <team>\nDISCONNECT\n<end>",
            vec![m("team", ip, 8080, Body::Exit, B)],
        ),
        (
            "<198.51.100.1:8080> @ <team>\nplease DISCONNECT me\n<end>",
            vec![m("team", ip, 8080, chat("please DISCONNECT me"), B)],
        ),
        (
            "<198.51.100.1:8080> DISCONNECT",
            vec![m("", ip, 8080, Body::Exit, B)],
        ),
        (
            "<198.51.100.1:8080> disconnect\n",
            vec![m("", ip, 8080, Body::Exit, B)],
        ),
        // The buggy form: the recipient's IP, our port, team and message on one line.
        (
            "<203.0.113.9:8080> team hello there",
            vec![m("team", "203.0.113.9", 8080, chat("hello there"), B)],
        ),
        (
            "<203.0.113.9:8080> team DISCONNECT",
            vec![m("team", "203.0.113.9", 8080, Body::Exit, B)],
        ),
        ("<198.51.100.1:8080>", vec![m("", ip, 8080, chat(""), B)]),
        (
            "<[::1]:8080> @ <team>\nhi\n<end>",
            vec![m("team", "::1", 8080, chat("hi"), B)],
        ),
        // A new header ends a block that forgot `<end>`.
        (
            "<198.51.100.1:8080> @ <team>\nhi\n<198.51.100.1:8080> DISCONNECT",
            vec![
                m("team", ip, 8080, chat("hi"), B),
                m("", ip, 8080, Body::Exit, B),
            ],
        ),
        (
            "<198.51.100.1:8080> @ <team>\none\n<end>\n<198.51.100.1:8080> @ <team>\ntwo\n<end>\nafter",
            vec![
                m("team", ip, 8080, chat("one"), B),
                m("team", ip, 8080, chat("two"), B),
                m("team", ip, 8080, chat("after"), B),
            ],
        ),
        (
            "<198.51.100.1:99999> @ <team>\nhi",
            vec![raw(chat("<198.51.100.1:99999> @ <team>")), raw(chat("hi"))],
        ),
        ("<end>", vec![raw(chat("<end>"))]),
        ("<b>bold</b>", vec![raw(chat("<b>bold</b>"))]),
    ]);
}

#[test]
fn key_value_dialect() {
    use Dialect::KeyValue as K;
    check(&[
        (
            "LISTENING_PORT:8080|TEAM_NAME:alpha|hello",
            vec![m("alpha", "", 8080, chat("hello"), K)],
        ),
        (
            "LISTENING_PORT: 8080 | TEAM_NAME: alpha | hello | world |",
            vec![m("alpha", "", 8080, chat("hello | world |"), K)],
        ),
        (
            "listening_port:8080|team_name:alpha|EXIT",
            vec![m("alpha", "", 8080, Body::Exit, K)],
        ),
        (
            "LISTENING_PORT:8080|TEAM_NAME:alpha|exit now",
            vec![m("alpha", "", 8080, chat("exit now"), K)],
        ),
        (
            "LISTENING_PORT:8080|TEAM_NAME:alpha",
            vec![m("alpha", "", 8080, chat(""), K)],
        ),
        (
            "LISTENING_PORT:8080|TEAM_NAME:|hi",
            vec![m("", "", 8080, chat("hi"), K)],
        ),
        (
            "LISTENING_PORT:8080|hello|there",
            vec![m("", "", 8080, chat("hello|there"), K)],
        ),
        ("LISTENING_PORT:8080", vec![m("", "", 8080, chat(""), K)]),
        (
            "LISTENING_PORT:abc|TEAM_NAME:alpha|hi",
            vec![raw(chat("LISTENING_PORT:abc|TEAM_NAME:alpha|hi"))],
        ),
        (
            "LISTENING_PORT:8080|TEAM_NAME:alpha|hi\nand more",
            vec![
                m("alpha", "", 8080, chat("hi"), K),
                m("alpha", "", 8080, chat("and more"), K),
            ],
        ),
    ]);
}

#[test]
fn colon_dialect() {
    use Dialect::Colon as C;
    check(&[
        (
            "MESSAGE:bob:8080:hello",
            vec![m("bob", "", 8080, chat("hello"), C)],
        ),
        (
            "MESSAGE:bob:8080:time is 12:30: ok ",
            vec![m("bob", "", 8080, chat("time is 12:30: ok"), C)],
        ),
        // A typed dialect: the text is never a control word.
        (
            "MESSAGE:bob:8080:exit",
            vec![m("bob", "", 8080, chat("exit"), C)],
        ),
        ("MESSAGE:bob:8080", vec![m("bob", "", 8080, chat(""), C)]),
        (
            "CONNECT:bob:8080",
            vec![m("bob", "", 8080, Body::Connect, C)],
        ),
        (
            "ACK:bob:8080\n",
            vec![m("bob", "", 8080, Body::ConnectAck, C)],
        ),
        ("EXIT:8080", vec![m("", "", 8080, Body::Exit, C)]),
        ("EXIT:bob:8080", vec![m("bob", "", 8080, Body::Exit, C)]),
        ("CONNECT:8080", vec![m("", "", 8080, Body::Connect, C)]),
        ("connect: 8080 ", vec![m("", "", 8080, Body::Connect, C)]),
        ("EXIT:bob", vec![raw(chat("EXIT:bob"))]),
        ("EXIT:0", vec![raw(chat("EXIT:0"))]),
        ("MESSAGE:bob:0:hi", vec![raw(chat("MESSAGE:bob:0:hi"))]),
        ("CONNECT", vec![raw(Body::Connect)]),
        ("note: 8080", vec![raw(chat("note: 8080"))]),
        (
            "CONNECT:bob:8080\nhi",
            vec![
                m("bob", "", 8080, Body::Connect, C),
                m("bob", "", 8080, chat("hi"), C),
            ],
        ),
    ]);
}

#[test]
fn persistent_dialect() {
    use Dialect::Persistent as P;
    check(&[
        (
            "5000\nCONNECT\nhello\nworld\n",
            vec![
                m("", "", 5000, Body::Connect, P),
                m("", "", 5000, chat("hello"), P),
                m("", "", 5000, chat("world"), P),
            ],
        ),
        (
            "5000\r\nhi\r\n  exit  \r\n",
            vec![
                m("", "", 5000, chat("hi"), P),
                m("", "", 5000, Body::Exit, P),
            ],
        ),
        ("\n\n5000\nhi", vec![m("", "", 5000, chat("hi"), P)]),
        // Only a number: someone typed it.
        ("5000", vec![raw(chat("5000"))]),
        ("5000\n", vec![raw(chat("5000"))]),
        ("  5000 \n\n \n", vec![raw(chat("5000"))]),
        ("0\nhi", vec![raw(chat("0")), raw(chat("hi"))]),
        ("70000\nhi", vec![raw(chat("70000")), raw(chat("hi"))]),
        ("hi\n5000", vec![raw(chat("hi")), raw(chat("5000"))]),
        ("5000\n6000", vec![m("", "", 5000, chat("6000"), P)]),
        // A header on a persistent connection: later lines are its sender's.
        (
            "5000\n198.51.100.1:8080 bob hi\nyo",
            vec![
                m("bob", "198.51.100.1", 8080, chat("hi"), Dialect::Standard),
                m("bob", "198.51.100.1", 8080, chat("yo"), P),
            ],
        ),
    ]);
}

#[test]
fn json_dialect() {
    use Dialect::Json as J;
    check(&[
        (
            r#"{"type": "message", "content": "hi", "sender_name": "bob", "sender_port": 8080}"#,
            vec![m("bob", "", 8080, chat("hi"), J)],
        ),
        (
            r#"{"type":"connect","content":"","sender_name":"bob","sender_port":"8080"}"#,
            vec![m("bob", "", 8080, Body::Connect, J)],
        ),
        (
            r#"{"type": "EXIT", "sender_port": 8080}"#,
            vec![m("", "", 8080, Body::Exit, J)],
        ),
        (
            r#"{"type": "connect_ack", "sender_port": 8080}"#,
            vec![m("", "", 8080, Body::ConnectAck, J)],
        ),
        (
            r#"{"type": "ack", "sender_port": 8080}"#,
            vec![m("", "", 8080, Body::ConnectAck, J)],
        ),
        // A typed dialect: the content is never a control word.
        (
            r#"{"type": "message", "content": "exit", "sender_port": 8080}"#,
            vec![m("", "", 8080, chat("exit"), J)],
        ),
        (
            r#"{"type": "shout", "content": "HI", "sender_port": 8080}"#,
            vec![m("", "", 8080, chat("HI"), J)],
        ),
        (
            r#"{"content": "two\nlines", "sender_port": 0, "sender_name": ""}"#,
            vec![m("", "", 0, chat("two\nlines"), J)],
        ),
        (
            r#"{"type": "message", "content": 42, "sender_port": 70000}"#,
            vec![m("", "", 0, chat("42"), J)],
        ),
        (
            r#"{"type":"message","content":"a","sender_ip":"198.51.100.7","sender_port":1}"#,
            vec![m("", "198.51.100.7", 1, chat("a"), J)],
        ),
        // Pretty-printed over several lines.
        (
            "{\n  \"type\": \"message\",\n  \"content\": \"hé\",\n\n  \"sender_name\": \"bob\",\n  \"sender_port\": 8080\n}\n",
            vec![m("bob", "", 8080, chat("hé"), J)],
        ),
        (
            "{\r\n\"type\": \"exit\",\r\n\"sender_port\": 8080\r\n}",
            vec![m("", "", 8080, Body::Exit, J)],
        ),
        // Glued objects, and a header-less line after them.
        (
            "{\"type\":\"message\",\"content\":\"a\",\"sender_port\":1}{\"type\":\"exit\",\"sender_port\":1}\nbye",
            vec![
                m("", "", 1, chat("a"), J),
                m("", "", 1, Body::Exit, J),
                m("", "", 1, chat("bye"), J),
            ],
        ),
        // Not JSON after all: plain lines.
        ("{hello", vec![raw(chat("{hello"))]),
        ("{}", vec![raw(chat("{}"))]),
        (r#"{"foo": 1}"#, vec![raw(chat(r#"{"foo": 1}"#))]),
        (
            r#"{"type": "message"} trailing"#,
            vec![raw(chat(r#"{"type": "message"} trailing"#))],
        ),
        ("{", vec![raw(chat("{"))]),
        (
            "{\n\"type\": \"message\",\nbroken here\n}\nafter",
            vec![
                raw(chat("{")),
                raw(chat("\"type\": \"message\",")),
                raw(chat("broken here")),
                raw(chat("}")),
                raw(chat("after")),
            ],
        ),
        (
            "{\n198.51.100.1:8080 bob hi",
            vec![
                raw(chat("{")),
                m("bob", "198.51.100.1", 8080, chat("hi"), Dialect::Standard),
            ],
        ),
        (
            r#"{"type": "message", "content": "cut"#,
            vec![raw(chat(r#"{"type": "message", "content": "cut"#))],
        ),
    ]);
}

#[test]
fn raw_dialect_and_control_words() {
    check(&[
        ("hello world", vec![raw(chat("hello world"))]),
        ("  indented  ", vec![raw(chat("  indented"))]),
        ("hello\r", vec![raw(chat("hello"))]),
        ("a\0b\x07", vec![raw(chat("a\0b\x07"))]),
        ("", vec![]),
        ("\n\n\r\n  \n\t", vec![]),
        ("one\ntwo", vec![raw(chat("one")), raw(chat("two"))]),
        ("exit", vec![raw(Body::Exit)]),
        ("EXIT\r\n", vec![raw(Body::Exit)]),
        (" Disconnect ", vec![raw(Body::Exit)]),
        ("[peer_quit]", vec![raw(Body::Exit)]),
        ("connect", vec![raw(Body::Connect)]),
        ("CONNECTION_REQUEST", vec![raw(Body::Connect)]),
        ("handshake", vec![raw(Body::Connect)]),
        ("CONNECT_ACK", vec![raw(Body::ConnectAck)]),
        ("ping", vec![raw(chat("ping"))]),
        ("PING", vec![raw(chat("PING"))]),
        ("please exit now", vec![raw(chat("please exit now"))]),
        ("exited", vec![raw(chat("exited"))]),
        ("ACK from 8080", vec![raw(chat("ACK from 8080"))]),
        (
            "Connection Acknowledged",
            vec![raw(chat("Connection Acknowledged"))],
        ),
        ("I will DISCONNECT", vec![raw(chat("I will DISCONNECT"))]),
    ]);
}

#[test]
fn no_piece_of_a_split_message_is_a_bare_control_word() {
    for word in ["exit", "connect", "EXIT", "connect_ack", "[PEER_QUIT]"] {
        for filler in [1000usize, 990, 2000, 2990] {
            let text = format!("{} {word}", "x".repeat(filler));
            for header in [20, 30, 41] {
                let parts = split_for_wire(&text, header);
                assert_eq!(parts.concat(), text);
                for part in &parts {
                    assert!(header + part.len() <= MAX_WIRE_MESSAGE);
                    assert!(control_word(part).is_none(), "{word} {filler} {header}");
                }
            }
        }
    }
}

#[test]
fn a_long_json_block_over_many_lines_is_one_message() {
    // 60,000 lines that keep the value open (`Nesting` lets the decoder parse once,
    // when the value can be complete, not once per line).
    let mut input = String::from("{\"type\": \"message\", \"content\": [\n");
    for _ in 0..20_000 {
        input.push_str("[],\n1,\n\"]\",\n");
    }
    input.push_str("0], \"sender_port\": 5}\n");
    let mut decoder = Decoder::new(1 << 20);
    let mut out = Vec::new();
    decoder
        .feed(input.as_bytes(), &mut out)
        .expect("within the limit");
    decoder.finish(&mut out);
    assert_eq!(out.len(), 1, "one message");
    assert_eq!(out[0].port, Some(5));
}

#[test]
fn nesting_says_when_json_can_be_complete() {
    let mut n = Nesting::default();
    n.scan(r#"{"a": ["}", "#);
    assert!(
        !n.may_be_complete(),
        "a bracket inside a string does not count"
    );
    n.scan(r#""\"]", 1"#);
    assert!(
        !n.may_be_complete(),
        "an escaped quote does not end the string"
    );
    n.scan("]}");
    assert!(n.may_be_complete());
    let mut broken = Nesting::default();
    broken.scan("}");
    assert!(broken.may_be_complete(), "not JSON: give up at once");
}

#[test]
fn non_string_json_content_is_no_longer_than_its_input() {
    let line = format!("{{\"content\":[{}1e15]}}", "1e15,".repeat(200));
    let msgs = decode(&line);
    let Body::Chat(text) = &msgs[0].body else {
        panic!("{msgs:?}");
    };
    assert!(text.len() <= line.len(), "{} > {}", text.len(), line.len());
}

#[test]
fn utf8_is_decoded_whole_or_replaced() {
    let input = "198.51.100.1:80 a héllo 日本 🎉".as_bytes();
    for cut in 0..=input.len() {
        let out = decode_chunks([&input[..cut], &input[cut..]], LIMIT).expect("fits");
        assert_eq!(
            out,
            vec![m(
                "a",
                "198.51.100.1",
                80,
                chat("héllo 日本 🎉"),
                Dialect::Standard
            )]
        );
    }
    let out = decode_chunks([&b"bad \xff\xfe bytes\nok \xe6\x97"[..]], LIMIT).expect("fits");
    assert_eq!(
        out,
        vec![
            raw(chat("bad \u{fffd}\u{fffd} bytes")),
            raw(chat("ok \u{fffd}"))
        ]
    );
}

#[test]
fn empty_connection_yields_nothing() {
    assert_eq!(decode_chunks([], LIMIT).expect("fits"), vec![]);
    assert_eq!(
        decode_chunks([&b""[..], &b""[..]], LIMIT).expect("fits"),
        vec![]
    );
    let mut decoder = Decoder::new(LIMIT);
    let mut out = Vec::new();
    decoder.feed(b"hi", &mut out).expect("fits");
    decoder.finish(&mut out);
    decoder.finish(&mut out);
    assert_eq!(out, vec![raw(chat("hi"))]);
}

#[test]
fn long_lines_are_refused_whatever_the_chunking() {
    let limit = 16;
    let exact = b"0123456789abcdef";
    assert_eq!(
        decode_chunks([&exact[..]], limit).expect("fits"),
        vec![raw(chat("0123456789abcdef"))]
    );
    let too_long = DecodeError::LineTooLong { limit };
    let err = Err(too_long.clone());
    let long = b"0123456789abcdefX\nnext";
    assert_eq!(decode_chunks([&long[..]], limit), err);
    assert_eq!(decode_chunks(long.chunks(1), limit), err);
    assert_eq!(decode_chunks(long.chunks(5), limit), err);
    assert_eq!(decode_chunks([&b"0123456789abcdefX"[..]], limit), err);

    // Lines before the long one are still delivered; then the decoder stays failed.
    let mut decoder = Decoder::new(limit);
    let mut out = Vec::new();
    assert_eq!(
        decoder.feed(b"short\n0123456789abcdefXY", &mut out),
        Err(too_long.clone())
    );
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.feed(b"\nfine\n", &mut out), Err(too_long));
    decoder.finish(&mut out);
    assert_eq!(out, vec![raw(chat("short"))]);
    assert_eq!(
        DecodeError::LineTooLong { limit: 16 }.to_string(),
        "a line longer than 16 bytes without a newline"
    );
}

#[test]
fn blocks_are_bounded() {
    let limit = 32;
    // A bracketed block bigger than the limit arrives in pieces of whole lines.
    let mut input = String::from("<198.51.100.1:80> @ <t>\n");
    for i in 0..20 {
        input.push_str(&format!("line {i}\n"));
    }
    input.push_str("<end>\nafter");
    for chunk in [1, 7, input.len()] {
        let out = decode_chunks(input.as_bytes().chunks(chunk), limit).expect("lines fit");
        let mut lines = Vec::new();
        for msg in &out[..out.len() - 1] {
            assert_eq!((msg.name.as_deref(), msg.port), (Some("t"), Some(80)));
            match &msg.body {
                Body::Chat(text) => {
                    assert!(text.len() <= limit);
                    lines.extend(text.split('\n').map(str::to_owned));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected, "chunk size {chunk}");
        assert_eq!(out.last().map(|m| &m.body), Some(&chat("after")));
    }

    // JSON that never completes within the limit is read as plain lines.
    let mut input = String::from("{\n");
    for i in 0..20 {
        input.push_str(&format!("\"k{i}\": {i},\n"));
    }
    for chunk in [1, 5, input.len()] {
        let out = decode_chunks(input.as_bytes().chunks(chunk), limit).expect("lines fit");
        assert_eq!(out.len(), 21, "chunk size {chunk}");
        assert_eq!(out[0], raw(chat("{")));
        assert_eq!(out[20], raw(chat("\"k19\": 19,")));
    }
}

#[test]
fn header_and_encode() {
    let v4: SocketAddr = "198.51.100.5:7000".parse().expect("addr");
    let v6: SocketAddr = "[fe80::1]:7000".parse().expect("addr");
    let cases = [
        (v4, Format::Standard, "198.51.100.5:7000 me "),
        (v4, Format::Spaced, "198.51.100.5 7000 me "),
        (v6, Format::Standard, "[fe80::1]:7000 me "),
        (v6, Format::Spaced, "fe80::1 7000 me "),
    ];
    for (own, format, expected) in cases {
        assert_eq!(header(own, "me", format), expected);
        assert_eq!(encode(own, "me", "hi", format), format!("{expected}hi"));
    }
    assert_eq!(Format::default(), Format::Standard);
}

#[test]
fn split_for_wire_cases() {
    let room = |h: usize| MAX_WIRE_MESSAGE - h;
    assert_eq!(split_for_wire("", 30), vec![""]);
    assert_eq!(split_for_wire("", 5000), vec![""]);
    assert_eq!(split_for_wire("short", 30), vec!["short"]);
    let exact = "x".repeat(room(30));
    assert_eq!(split_for_wire(&exact, 30), vec![exact.as_str()]);

    let long = "x".repeat(room(30) + 1);
    let pieces = split_for_wire(&long, 30);
    assert_eq!(
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [room(30), 1]
    );

    // Cut just before the last space near the end of a piece: the space leads the next
    // piece, where a receiver keeps it (a trailing one would be trimmed and lost).
    let words = format!("{} tail{}", "a".repeat(room(30) - 10), "b".repeat(50));
    let pieces = split_for_wire(&words, 30);
    assert_eq!(pieces[0], "a".repeat(room(30) - 10));
    assert!(pieces[1].starts_with(" tail"));
    assert_eq!(pieces.concat(), words);

    // A space too far back is not used.
    let far = format!("a {}", "b".repeat(2000));
    assert_eq!(split_for_wire(&far, 30)[0].len(), room(30));

    // Absurd headers: one character per piece.
    assert_eq!(split_for_wire("日本", 1022), vec!["日", "本"]);
    assert_eq!(split_for_wire("ab", 1024), vec!["a", "b"]);
    assert_eq!(split_for_wire("ab", 9999), vec!["a", "b"]);
    assert_eq!(split_for_wire("abcdef", 1020), vec!["abcd", "ef"]);
}

#[test]
fn split_for_wire_properties() {
    let texts = [
        "é".repeat(3000),
        "日本語".repeat(500),
        "🎉 ".repeat(700),
        format!("{}{}", "x".repeat(1500), "é"),
        "word ".repeat(1000),
    ];
    for text in &texts {
        for header_len in [0, 1, 17, 30, 64, 500, 1000, 1019, 1020] {
            let pieces = split_for_wire(text, header_len);
            assert_eq!(&pieces.concat(), text);
            for piece in &pieces {
                assert!(!piece.is_empty());
                assert!(header_len + piece.len() <= MAX_WIRE_MESSAGE);
            }
        }
    }
}

#[test]
fn round_trip_at_every_split_point() {
    let owners: [SocketAddr; 2] = [
        "198.51.100.20:5555".parse().expect("addr"),
        "[2001:db8::7]:65535".parse().expect("addr"),
    ];
    let names = ["alice", "Ünïcödé", "x"];
    let texts = [
        "héllo wörld",
        "日本語のテキスト 🎉",
        "  leading and trailing   ",
        "tab\tinside\r and cr",
        "a\0b",
        "",
        "exit",
        " CONNECT ",
        "exit now",
        "198.51.100.1:80 fake header inside",
        "{\"type\": \"exit\"}",
        "<end>",
        "12345",
    ];
    for own in owners {
        for format in [Format::Standard, Format::Spaced] {
            for name in names {
                for text in texts {
                    let wire = encode(own, name, text, format);
                    let body = control_word(text)
                        .unwrap_or_else(|| Body::Chat(text.trim_end().to_owned()));
                    let dialect = match format {
                        Format::Standard => Dialect::Standard,
                        Format::Spaced => Dialect::Spaced,
                    };
                    let expected = vec![Message {
                        name: Some(name.to_owned()),
                        claimed_ip: Some(own.ip()),
                        port: Some(own.port()),
                        body,
                        dialect,
                    }];
                    let bytes = wire.as_bytes();
                    for cut in 0..=bytes.len() {
                        let out =
                            decode_chunks([&bytes[..cut], &bytes[cut..]], 2048).expect("fits");
                        assert_eq!(out, expected, "{wire:?} cut at {cut}");
                    }
                    let out = decode_chunks(bytes.chunks(1), 2048).expect("fits");
                    assert_eq!(out, expected, "{wire:?} byte by byte");
                }
            }
        }
    }
}

/// A tiny deterministic generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    // Bytes that matter to some dialect, plus arbitrary ones.
    const ALPHABET: &[&[u8]] = &[
        b"\n",
        b"\r\n",
        b" ",
        b"\t",
        b"{",
        b"}",
        b"\"",
        b"<",
        b">",
        b":",
        b"|",
        b"@",
        b"0",
        b"8080",
        b"99999",
        b"198.51.100.1",
        b"[::1]",
        b"<end>",
        b"exit",
        b"CONNECT",
        b"MESSAGE",
        b"LISTENING_PORT",
        b"TEAM_NAME",
        b"\"type\"",
        b"\"content\"",
        b"\0",
        b"\xc3",
        b"\xa9",
        b"\xff",
        b"\xe6\x97\xa5",
        b"\xf0\x9f",
        b"a",
        b"z",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..2000 {
        let max_line = [8, 32, 100, 1024][round % 4];
        let mut input = Vec::new();
        for _ in 0..rng.below(300) {
            if rng.below(4) == 0 {
                input.push(rng.next() as u8);
            } else {
                input.extend_from_slice(ALPHABET[rng.below(ALPHABET.len())]);
            }
        }
        let mut decoder = Decoder::new(max_line);
        let mut out = Vec::new();
        let mut rest = &input[..];
        let mut failed = false;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(64)));
            rest = tail;
            if decoder.feed(chunk, &mut out).is_err() {
                failed = true;
                assert_eq!(decoder.buffered(), 0);
                assert!(decoder.feed(b"x", &mut out).is_err());
                break;
            }
            assert!(decoder.buffered() <= max_line, "round {round}");
        }
        decoder.finish(&mut out);
        assert_eq!(decoder.buffered(), 0);
        if !failed {
            // No message holds more than a limit's worth of input (each invalid byte
            // may grow into a 3-byte U+FFFD).
            for msg in &out {
                if let Body::Chat(text) = &msg.body {
                    assert!(text.len() <= 3 * max_line, "round {round}");
                }
            }
        }
    }
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted_however_it_arrives() {
    let limit = 16;
    let line = b"0123456789abcdef\n";
    let expected = vec![raw(chat("0123456789abcdef")), raw(chat("next"))];
    let input = [&line[..], b"next"].concat();
    for chunk in [1, 5, 8, 15, 16, 17, input.len()] {
        assert_eq!(
            decode_chunks(input.chunks(chunk), limit).expect("fits"),
            expected,
            "chunks of {chunk}"
        );
    }
    // One byte more is refused, whether or not the newline has come yet.
    let too_long = Err(DecodeError::LineTooLong { limit });
    for input in [&b"0123456789abcdefX\n"[..], b"0123456789abcdefX"] {
        for chunk in [1, 8, 16, input.len()] {
            assert_eq!(decode_chunks(input.chunks(chunk), limit), too_long);
        }
    }
}

#[test]
fn our_header_claims_the_configured_ip_only_on_its_own_family() {
    let me = OwnHeader {
        name: "me".into(),
        format: Format::Standard,
        port: 5001,
        claim: Some("198.51.100.7".parse().expect("ip")),
    };
    let v4_local = "203.0.113.1".parse().expect("ip");
    let v6_local = "2001:db8::1".parse().expect("ip");
    let mapped_local = "::ffff:203.0.113.2".parse().expect("ip");
    assert_eq!(me.encode(v4_local, "hi"), b"198.51.100.7:5001 me hi");
    assert_eq!(me.encode(mapped_local, "hi"), b"198.51.100.7:5001 me hi");
    assert_eq!(me.encode(v6_local, "hi"), b"[2001:db8::1]:5001 me hi");
    let unclaimed = OwnHeader { claim: None, ..me };
    assert_eq!(unclaimed.encode(v4_local, "hi"), b"203.0.113.1:5001 me hi");
    assert_eq!(
        unclaimed.encode(mapped_local, "hi"),
        b"203.0.113.2:5001 me hi",
        "a mapped local address is claimed as IPv4"
    );
}

#[test]
fn the_header_budget_covers_every_header_we_might_send() {
    let v4_dest: SocketAddr = "198.51.100.9:7000".parse().expect("addr");
    let v6_dest: SocketAddr = "[2001:db8::9]:7000".parse().expect("addr");
    let locals: [std::net::IpAddr; 4] = [
        "0.2.3.4".parse().expect("ip"),
        "255.255.255.254".parse().expect("ip"),
        "::1".parse().expect("ip"),
        "fe80:1234:5678:9abc:def0:1234:5678:9abc"
            .parse()
            .expect("ip"),
    ];
    for format in [Format::Standard, Format::Spaced] {
        for claim in [None, Some("203.0.113.77".parse().expect("ip"))] {
            let me = OwnHeader {
                name: "Ünïcödé".into(),
                format,
                port: 65535,
                claim,
            };
            for local in locals {
                let dest = if local.is_ipv4() { v4_dest } else { v6_dest };
                let sent = me.encode(local, "").len();
                assert!(me.budget(dest) >= sent, "{format:?} {claim:?} {local}");
            }
        }
    }
    // Exact when the claimed IP is known, and sized for the longest address otherwise.
    let me = OwnHeader {
        name: "me".into(),
        format: Format::Standard,
        port: 5001,
        claim: Some("203.0.113.1".parse().expect("ip")),
    };
    assert_eq!(me.budget(v4_dest), "203.0.113.1:5001 me ".len());
    assert_eq!(
        me.budget(v6_dest),
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:5001 me ".len()
    );
    let spaced = OwnHeader {
        claim: None,
        format: Format::Spaced,
        ..me
    };
    assert_eq!(spaced.budget(v4_dest), "255.255.255.255 5001 me ".len());
}

#[test]
fn split_pieces_leave_room_for_the_header() {
    let text = "x".repeat(3000);
    for header_len in [0, 1, 100, 1000] {
        let pieces = split_for_wire(&text, header_len);
        let room = MAX_WIRE_MESSAGE - header_len;
        assert_eq!(pieces[0].len(), room, "header {header_len}");
        assert_eq!(
            pieces.len(),
            3000usize.div_ceil(room),
            "header {header_len}"
        );
    }
}

#[test]
fn moving_a_cut_to_carry_a_control_word_keeps_every_piece_within_the_limit() {
    // Tiny budgets (absurd headers) make the pieces short enough to see the moves.
    let cases = [
        ("xxxxx xxxxxexit exit  ", MAX_WIRE_MESSAGE - 5),
        ("a bb exit a connect bb exit x", MAX_WIRE_MESSAGE - 7),
        // The only visible character of the previous piece is its first: moving the
        // cut there would leave an empty piece, so the cut stays.
        ("x exit\u{3000}日本", MAX_WIRE_MESSAGE - 9),
    ];
    for (text, header_len) in cases {
        let pieces = split_for_wire(text, header_len);
        assert_eq!(pieces.concat(), text);
        for piece in &pieces {
            assert!(!piece.is_empty(), "{text:?}: {pieces:?}");
            assert!(
                header_len + piece.len() <= MAX_WIRE_MESSAGE,
                "{text:?}: {pieces:?}"
            );
        }
    }
}

/// A message of the bracketed block `<0.2.3.4:80> @ t` used below.
fn block_msg(text: &str) -> Message {
    m("t", "0.2.3.4", 80, chat(text), Dialect::Bracketed)
}

#[test]
fn buffered_counts_the_open_block_and_the_partial_line() {
    let mut decoder = Decoder::new(LIMIT);
    let mut out = Vec::new();
    decoder
        .feed(b"<0.2.3.4:80> @ t\nhello\nwor", &mut out)
        .expect("fits");
    assert!(out.is_empty());
    assert_eq!(decoder.buffered(), "hello".len() + "wor".len());
    decoder.finish(&mut out);
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(out, vec![block_msg("hello\nwor")]);
}

#[test]
fn a_bracketed_block_exactly_at_the_limit_is_one_message() {
    let limit = 24;
    let fits = "<0.2.3.4:80> @ t\naaaaaaaaaa\nbbbbbbbbbbbbb\n<end>\n";
    let over = "<0.2.3.4:80> @ t\naaaaaaaaaa\nbbbbbbbbbbbbbb\n<end>\n";
    for chunk in [1, 7, fits.len()] {
        assert_eq!(
            decode_chunks(fits.as_bytes().chunks(chunk), limit).expect("fits"),
            vec![block_msg("aaaaaaaaaa\nbbbbbbbbbbbbb")],
            "chunks of {chunk}"
        );
        assert_eq!(
            decode_chunks(over.as_bytes().chunks(chunk), limit).expect("fits"),
            vec![block_msg("aaaaaaaaaa"), block_msg("bbbbbbbbbbbbbb")],
            "chunks of {chunk}"
        );
    }
    // A CR-LF line that makes the block exactly fill the limit does not split it either.
    let crlf: [&[u8]; 2] = [b"<0.2.3.4:80> @ t\n0123456789\nabcde\r", b"\n<end>\n"];
    assert_eq!(
        decode_chunks(crlf, 16).expect("fits"),
        vec![block_msg("0123456789\nabcde")]
    );
}

#[test]
fn a_block_split_on_a_blank_line_adds_no_empty_message() {
    let input = "<0.2.3.4:80> @ t\naaaaaaaaaaaaaaaaaaaa\n     \n<end>\n";
    assert_eq!(
        decode_chunks([input.as_bytes()], 24).expect("fits"),
        vec![block_msg("aaaaaaaaaaaaaaaaaaaa")]
    );
}

#[test]
fn a_json_block_exactly_at_the_limit_is_json() {
    let input = "{\n\"content\": \"hello\"}\n";
    let exact = input.len() - 1; // the block's text, without its last newline
    assert_eq!(
        decode_chunks([input.as_bytes()], exact).expect("fits"),
        vec![m("", "", 0, chat("hello"), Dialect::Json)]
    );
    // One byte less room: too big to be JSON, read as plain lines.
    assert_eq!(
        decode_chunks([input.as_bytes()], exact - 1).expect("lines fit"),
        vec![raw(chat("{")), raw(chat("\"content\": \"hello\"}"))]
    );
}

#[test]
fn non_string_json_content_is_cut_at_a_character_boundary() {
    // Shown as `[100.0,…,100.0,"é"]`, 3 bytes longer than the input: the cut at the
    // input's length falls inside the `é`, and moves back before it.
    let input = r#"{"content": [1e2,1e2,1e2,1e2,1e2,1e2,1e2,1e2,"é"]}"#;
    let shown = format!("[{}\"", ["100.0,"; 8].concat());
    assert_eq!(
        decode(input),
        vec![m("", "", 0, chat(&shown), Dialect::Json)]
    );
}

#[test]
fn a_line_that_only_looks_like_json_is_delivered_at_once() {
    let mut decoder = Decoder::new(LIMIT);
    let mut out = Vec::new();
    decoder.feed(b"{oops}\n", &mut out).expect("fits");
    assert_eq!(out, vec![raw(chat("{oops}"))]);
    assert_eq!(decoder.buffered(), 0);
}

/// Random short strings over an alphabet chosen to hit the edges of the fast paths:
/// digits, dots, colons, brackets, separators, letters of the keywords, multi-byte and
/// invisible characters, `\r` and `\n`.
fn nasty_strings(seed: u64, count: usize) -> Vec<String> {
    const ALPHABET: &[&str] = &[
        "0",
        "1",
        "2",
        "5",
        "9",
        "25",
        "255",
        "256",
        "00",
        ".",
        ":",
        "[",
        "]",
        "<",
        ">",
        "{",
        "}",
        "|",
        "@",
        " ",
        "\t",
        "\r",
        "\n",
        "a",
        "E",
        "x",
        "ff",
        "::",
        "exit",
        "connect",
        "MESSAGE",
        "LISTENING_PORT",
        "\u{e9}",
        "\u{a0}",
        "\u{202e}",
        "\u{3000}",
        "+",
        "-",
        "127.0.0.1",
        "65535",
        "65536",
        "0x1",
    ];
    let mut rng = crate::sim::rng::Rng::new(seed);
    (0..count)
        .map(|_| {
            let parts = rng.index(8);
            (0..parts)
                .map(|_| ALPHABET[rng.index(ALPHABET.len())])
                .collect::<String>()
        })
        .collect()
}

#[test]
fn fast_number_parsers_agree_with_the_standard_ones() {
    let port_slow = |s: &str| -> Option<u16> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u16>().ok().filter(|&p| p != 0)
    };
    let mut inputs = nasty_strings(12, 200_000);
    for edge in [
        "",
        "0",
        "00",
        "1",
        "65535",
        "65536",
        "065535",
        "0000000000080",
        "99999999999999999999",
        "0.2.3.4",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "00.2.3.4",
        "1.2.3",
        "0.2.3.4.",
        ".1.2.3",
        "1..2.3",
        "0.2.3.04",
        "1234.1.1.1",
        "0.2.3.4 ",
        " 0.2.3.4",
        "１.2.3.4",
    ] {
        inputs.push(edge.to_owned());
    }
    for s in &inputs {
        assert_eq!(parse_port(s), port_slow(s), "port {s:?}");
        assert_eq!(
            super::dialects::parse_ipv4(s),
            s.parse::<std::net::Ipv4Addr>().ok(),
            "ipv4 {s:?}"
        );
        assert_eq!(
            super::dialects::parse_sockaddr(s),
            super::dialects::parse_sockaddr_general(s),
            "sockaddr {s:?}"
        );
    }
}

/// The one-pass standard header reads what the first token read as a socket address
/// reads, and leaves the same rest.
#[test]
fn the_one_pass_standard_header_agrees_with_token_then_sockaddr() {
    let mut inputs = nasty_strings(17, 300_000);
    for edge in [
        "127.0.0.71:9 cg m00001",
        "127.0.0.71:9",
        "127.0.0.71:9 ",
        "127.0.0.71:9\tcg",
        "127.0.0.71: cg",
        "127.0.0.71:0 cg",
        "127.0.0.71:65536 cg",
        "127.0.0.71:065535 cg",
        "127.0.0.71:9:9 cg",
        "127.0.0.71 9 cg",
        "0.2.3.4:5\u{e9} x",
        "0.2.3.4:5 \u{e9}",
        "0.2.3.1234:5 x",
        "00.2.3.4:5 x",
        "[::1]:5 x",
        "[::1]:5",
        "[::1] x",
        "255.255.255.255:65535 a b",
        "256.0.0.1:1 a",
    ] {
        inputs.push(edge.to_owned());
    }
    for s in &inputs {
        assert_eq!(
            super::dialects::standard_header(s),
            super::dialects::standard_header_general(s),
            "{s:?}"
        );
    }
}

#[test]
fn the_control_word_length_test_changes_no_answer() {
    let slow = |text: &str| {
        let words = [
            "connect",
            "connection_request",
            "handshake",
            "connect_ack",
            "exit",
            "disconnect",
            "[peer_quit]",
        ];
        words.iter().any(|w| text.trim().eq_ignore_ascii_case(w))
    };
    let mut inputs = nasty_strings(13, 50_000);
    inputs.extend(
        [
            "EXIT",
            " Connect_Ack\t",
            "[PEER_QUIT]",
            "handShake",
            "exits",
            "Connection_Request",
        ]
        .map(str::to_owned),
    );
    for s in &inputs {
        assert_eq!(control_word(s).is_some(), slow(s), "{s:?}");
    }
}

/// The digit fast path of dispatch, the direct decoding of a last line and the spares:
/// over random input in random chunkings, `feed_final` and `_reusing` (with strings given
/// back between messages) decode exactly what `feed` and `finish` do.
#[test]
fn final_and_reusing_forms_decode_as_feed_and_finish_do() {
    let mut rng = crate::sim::rng::Rng::new(14);
    let mut spares = Spares::default();
    let mut inputs = nasty_strings(15, 40_000);
    inputs.extend(standard_like(19, 20_000));
    for line in [
        "127.0.0.71:9 cg m00001",
        "  127.0.0.1:80 bob hi",
        "0.2.3.4 80 bob hi",
        "5002",
        "5002\nhello",
        "9 LISTENING_PORT:5",
        "127.0.0.1:5 exit",
        "12 {\"type\":\"x\"}",
        "\u{a0}127.0.0.1:5 n t",
    ] {
        inputs.push(line.to_owned());
    }
    for input in &inputs {
        let bytes = input.as_bytes();
        for max_line in [8, 1 << 16] {
            let mut expected = Vec::new();
            let mut slow = Decoder::new(max_line);
            let expected_ok = slow.feed(bytes, &mut expected).is_ok();
            slow.finish(&mut expected);

            // Some bytes first through `feed_reusing`, the rest through `feed_final`.
            let cut = rng.index(bytes.len() + 1);
            let mut got = Vec::new();
            let mut fast = Decoder::new(max_line);
            let got_ok = fast
                .feed_reusing(&bytes[..cut], &mut got, &mut spares)
                .and_then(|()| fast.feed_final(&bytes[cut..], &mut got, &mut spares))
                .is_ok();
            assert_eq!(got_ok, expected_ok, "{input:?} cut at {cut}");
            if expected_ok {
                assert_eq!(got, expected, "{input:?} cut at {cut}");
            }
            fast.recycle(&mut spares);
            for m in got {
                if let Body::Chat(text) = m.body {
                    spares.give(text);
                }
                if let Some(name) = m.name {
                    spares.give(name);
                }
            }
        }
    }
}

#[test]
fn fast_trims_agree_with_the_standard_ones() {
    let mut inputs = nasty_strings(16, 100_000);
    inputs.extend(
        [
            "",
            " ",
            "a",
            "\u{a0}",
            "a\u{a0}",
            "\u{3000}a",
            "\t\tx\t",
            "x\u{85}",
            "\u{2028}",
        ]
        .map(str::to_owned),
    );
    for s in &inputs {
        assert_eq!(super::dialects::trim(s), s.trim(), "{s:?}");
        assert_eq!(super::dialects::trim_end(s), s.trim_end(), "{s:?}");
        assert_eq!(
            super::dialects::skip_seps(s),
            s.trim_start_matches([' ', '\t']),
            "{s:?}"
        );
    }
}

/// The digit fast path of dispatch skips the JSON, bracketed, key/value and colon
/// dialects for a line whose first visible character is a digit: each of them would have
/// failed on it.
#[test]
fn lines_starting_with_a_digit_are_none_of_the_skipped_dialects() {
    let mut inputs = nasty_strings(17, 100_000);
    inputs.extend(
        [
            "1LISTENING_PORT:5|TEAM_NAME:x|hi",
            " 2MESSAGE:bob:80:hi",
            "3<0.2.3.4:5> x",
            "4{\"type\":\"chat\"}",
            "\u{a0}5CONNECT:80",
            "6|LISTENING_PORT:5",
        ]
        .map(str::to_owned),
    );
    let mut spares = Spares::default();
    let mut checked = 0;
    for s in &inputs {
        let t = super::dialects::trim(s);
        if !t.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            continue;
        }
        checked += 1;
        assert!(!t.starts_with('{'), "{s:?}");
        assert!(
            super::dialects::parse_bracketed(s, &mut spares).is_none(),
            "{s:?}"
        );
        assert!(super::dialects::parse_key_value(s).is_none(), "{s:?}");
        assert!(super::dialects::parse_colon(s).is_none(), "{s:?}");
    }
    assert!(checked > 1000, "only {checked} lines started with a digit");
}

/// Every dialect we send in reads back, through our own decoder, as what we sent: the same
/// dialect, our name and port, the text or the control word; and the budget is exactly
/// what the dialect adds around the text.
#[test]
fn each_dialect_we_send_in_decodes_back_to_what_we_sent() {
    use std::net::IpAddr;
    let me = OwnHeader {
        name: "me".into(),
        format: Format::Standard,
        port: 7000,
        claim: None,
    };
    let local: IpAddr = "198.51.100.5".parse().expect("ip");
    let dest: SocketAddr = "198.51.100.9:1".parse().expect("addr");
    for dialect in sent_dialects() {
        for (text, body) in [
            ("hello there", chat("hello there")),
            ("connect", Body::Connect),
            ("connect_ack", Body::ConnectAck),
            ("exit", Body::Exit),
        ] {
            let bytes = me.encode_in(dialect, local, text);
            let mut decoder = Decoder::new(LIMIT);
            let mut got = Vec::new();
            decoder.feed(&bytes, &mut got).expect("decodes");
            decoder.finish(&mut got);
            let what = format!(
                "{dialect:?} {text:?}: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(got.len(), 1, "{what}");
            assert_eq!(got[0].body, body, "{what}");
            assert_eq!(got[0].dialect, dialect, "{what}");
            assert_eq!(got[0].port, Some(7000), "{what}");
            if body == chat("hello there") {
                // The port-line form carries no name.
                let name = (dialect != Dialect::Persistent).then_some("me");
                assert_eq!(got[0].name.as_deref(), name, "{what}");
                let added = me.budget_in(dialect, dest);
                assert!(bytes.len() <= added + text.len(), "{what}: budget {added}");
            }
        }
    }
}

#[test]
fn every_piece_of_a_split_message_fits_in_one_recv_in_every_dialect() {
    let me = OwnHeader {
        name: "alice".into(),
        format: Format::Standard,
        port: 5001,
        claim: None,
    };
    let dest: SocketAddr = "127.0.0.9:7000".parse().expect("addr");
    let local = "127.0.0.2".parse().expect("ip");
    let dialects: Vec<Dialect> = sent_dialects().collect();
    // JSON escapes quotes and backslashes (two bytes each) and control characters (six).
    let texts = [
        "\"".repeat(1500),
        "\\".repeat(700),
        "\u{1}".repeat(400),
        format!("say {}", "\" ".repeat(600)),
    ];
    for dialect in dialects {
        for text in &texts {
            let parts = split_in(dialect, text, me.budget_in(dialect, dest));
            assert_eq!(parts.concat(), *text);
            // 3000 escaped bytes: four pieces, not one a character.
            assert!(
                parts.len() <= 4,
                "{dialect:?}: {} pieces of {:?}",
                parts.len(),
                &text[..4]
            );
            for part in parts {
                let len = me.encode_in(dialect, local, part).len();
                assert!(len <= MAX_WIRE_MESSAGE, "{dialect:?}: {len} bytes");
            }
        }
    }
}

/// The longest addresses still parse, whatever the shortcuts that refuse longer text, and
/// the keyword shortcuts of the key/value and colon dialects refuse only what the full
/// parsers refuse.
#[test]
fn shortcuts_refuse_only_what_the_parsers_refuse() {
    use super::dialects::{parse_colon, parse_ip, parse_key_value};
    let longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
    assert_eq!(longest.len(), 45);
    assert!(parse_ip(longest).is_some());
    assert!(parse_ip(&format!("[{longest}]")).is_some());
    assert!(parse_ip(&format!("[{longest}0]")).is_none());
    for line in [
        "  listening_port:5|TEAM_NAME:x|hi",
        "\u{a0}LISTENING_PORT : 5",
        "  message : bob : 5 : hi",
        "ack:5",
        "Exit:5",
        "CONNECT   :bob:5",
    ] {
        let parsed = parse_key_value(line).is_some() || parse_colon(line).is_some();
        assert!(parsed, "{line:?}");
    }
    for s in nasty_strings(47, 50_000) {
        let slow = |s: &str| match s.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some(v6) => v6
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(std::net::IpAddr::V6),
            None => s.parse().ok(),
        };
        assert_eq!(parse_ip(&s), slow(&s), "{s:?}");
    }
}

/// A name `--name` accepts reads back as itself in every dialect we may answer in; the
/// names that could not (a dialect's own delimiter in them) are refused at start-up.
#[test]
fn every_name_we_accept_reads_back_in_every_dialect() {
    use std::net::IpAddr;
    let local: IpAddr = "198.51.100.5".parse().expect("ip");
    let names = [
        "me", "a-b", "team_7", "ü", "a@b", "a.b", "[x]", "a,b", "a=b", "a\"b", "a\\b", "{x}",
        "a;b", "a/b", "#1", "@", "7", "5000", "a'b", "(x)", "a:b", "x|y", "q>r", "<q", "-", "...",
        "end", "<end>", "a%b", "a&b", "!x", "x?", "a*b", "a+b", "~", "^", "$x",
    ];
    for name in names {
        let me = OwnHeader {
            name: name.into(),
            format: Format::Standard,
            port: 7000,
            claim: None,
        };
        let accepted = crate::config::check_name(name).is_ok();
        let mut misread = Vec::new();
        for dialect in sent_dialects().filter(|d| *d != Dialect::Persistent) {
            let bytes = me.encode_in(dialect, local, "hello there");
            let mut decoder = Decoder::new(LIMIT);
            let mut got = Vec::new();
            decoder.feed(&bytes, &mut got).expect("decodes");
            decoder.finish(&mut got);
            let right = got.len() == 1
                && got[0].name.as_deref() == Some(name)
                && got[0].body == chat("hello there")
                && got[0].port == Some(7000);
            if !right {
                misread.push(format!("{dialect:?}: {got:?}"));
            }
        }
        assert!(
            !accepted || misread.is_empty(),
            "{name:?} is accepted but misread: {misread:?}"
        );
    }
    for name in ["a:b", "x|y", "q>r", "<q"] {
        let refused = crate::config::check_name(name).expect_err("refused");
        assert!(refused.contains(name), "{refused}");
    }
}

/// Whether `input`, fed to a new decoder (ending nothing), holds a whole message.
fn holds_whole(input: &[u8]) -> bool {
    let mut d = Decoder::new(LIMIT);
    let mut out = Vec::new();
    d.feed(input, &mut out).expect("feeds");
    assert!(out.is_empty(), "nothing ended: {out:?}");
    d.holds_whole_message()
}

/// What a new decoder fed `input` gives once its unfinished line is flushed (names and
/// bodies), and the bytes it still holds then.
fn flushed(input: &[u8]) -> (Vec<(Option<String>, Body)>, usize) {
    let mut d = Decoder::new(LIMIT);
    let (mut out, mut spares) = (Vec::new(), Spares::default());
    d.feed(input, &mut out).expect("feeds");
    d.flush_partial(&mut out, &mut spares);
    let got = out.into_iter().map(|m| (m.name, m.body)).collect();
    (got, d.buffered())
}

/// A connection that ends its messages with nothing: an unfinished line that is a whole
/// standard message can be read as one while the connection goes on, its header then
/// remembered for plain lines; anything else waits for its end.
#[test]
fn an_unfinished_whole_message_can_be_read_while_the_connection_goes_on() {
    let mut d = Decoder::new(LIMIT);
    let (mut out, mut spares) = (Vec::new(), Spares::default());
    for waits in [
        "hello",
        "198.51.100.1:80 bob",
        "198.51.100.1:80 bob  ",
        "<198.51.100.1:80> @ <x>\nhi",
    ] {
        assert!(!holds_whole(waits.as_bytes()), "{waits:?}");
    }
    // Long, or with bytes that are not UTF-8, a whole message still: its head tells.
    let long = format!("198.51.100.1:80 bob {}", "x".repeat(3000));
    let mut broken = b"198.51.100.1:80 bob caf".to_vec();
    broken.extend_from_slice(&[0xe9; 300]);
    for whole in [
        long.as_bytes(),
        &broken[..],
        "\u{feff}198.51.100.1:80 bob hi".as_bytes(),
    ] {
        assert!(holds_whole(whole), "{:?}", String::from_utf8_lossy(whole));
    }
    // The other dialects with their header on the message's line.
    for (line, whole) in [
        ("198.51.100.1 80 sp hi", true),
        ("198.51.100.1 80 sp", false),
        ("[::1]:80 six hi", true),
        ("  198.51.100.1:80 bob hi", true),
        ("<198.51.100.1:80> br hi", true),
        ("<198.51.100.1:80> DISCONNECT", true),
        ("<198.51.100.1:80> @ <br>", false),
        ("LISTENING_PORT:80|TEAM_NAME:kv|hi", true),
        ("LISTENING_PORT:80|TEAM_NAME:kv", false),
        ("LISTENING_PORT:80|TEAM_NA", false),
        ("MESSAGE:co:80:hi", true),
        ("MESSAGE:co:80", false),
        // Ended by its port, which may still be on its way (`EXIT:8` of `EXIT:8080`).
        ("CONNECT:co:80", false),
        ("EXIT:80", false),
        ("LISTENING_PORT:80|TEAM_NAME:kv|exit", true),
        ("12345", false),
    ] {
        assert_eq!(holds_whole(line.as_bytes()), whole, "{line:?}");
    }
    assert!(!holds_whole("x".repeat(3000).as_bytes()));
    // JSON: whole objects that are messages, within 1024 bytes.
    let json = r#"{"type": "message", "content": "hi", "sender_name": "j", "sender_port": 5}"#;
    let too_long = json.replace("hi", &"h".repeat(1024));
    for (line, whole) in [
        (json.to_owned(), true),
        (format!("{json}{json}"), true),
        (format!(" {json} "), true),
        (format!("{json}\r"), true),
        (json[..json.len() - 1].to_owned(), false),
        (r#"{"no": "message"}"#.to_owned(), false),
        (too_long, false),
    ] {
        assert_eq!(holds_whole(line.as_bytes()), whole, "{line:?}");
    }
    d.feed(b"198.51.100.1:80 bob first", &mut out)
        .expect("feeds");
    assert!(out.is_empty());
    assert!(d.holds_whole_message());
    d.flush_partial(&mut out, &mut spares);
    assert_eq!(d.buffered(), 0);
    assert!(!d.holds_whole_message());
    d.feed(b"and a plain line\n", &mut out).expect("feeds");
    let texts: Vec<_> = out
        .iter()
        .map(|m| (m.name.clone(), m.body.clone()))
        .collect();
    assert_eq!(
        texts,
        [
            (Some("bob".to_owned()), chat("first")),
            (Some("bob".to_owned()), chat("and a plain line")),
        ]
    );
}

/// An open block is whole at the unfinished line that closes it, before that line's
/// newline: a bracketed block's `<end>`, a JSON object spread over lines at its last.
#[test]
fn an_open_block_is_whole_at_the_line_that_closes_it() {
    // A bracketed block is whole at its `<end>`, even before that line's newline.
    for (input, whole) in [
        ("<198.51.100.1:80> @ <br>\nhello\n<end>", true),
        ("<198.51.100.1:80> @ <br>\nhello\n<END> ", true),
        ("<198.51.100.1:80> @ <br>\nhello\n<en", false),
        ("<198.51.100.1:80> @ <br>\nhello\n<end>x", false),
    ] {
        assert_eq!(holds_whole(input.as_bytes()), whole, "{input:?}");
    }
    assert_eq!(
        flushed(b"<198.51.100.1:80> @ <br>\nhello\n<end>"),
        ([(Some("br".to_owned()), chat("hello"))].to_vec(), 0),
        "the block read and closed"
    );
    // So is a JSON object spread over lines, at its last line.
    let pretty = "{\n  \"type\": \"message\",\n  \"content\": \"hi\",\n  \"sender_name\": \"j\",\n  \"sender_port\": 5\n}";
    for (input, whole) in [
        (pretty.to_owned(), true),
        (format!("{pretty} "), true),
        (pretty[..pretty.len() - 1].to_owned(), false),
        ("{\n  \"no\": \"message\"\n}".to_owned(), false),
        (pretty.replace("hi", &"h".repeat(1024)), false),
    ] {
        assert_eq!(holds_whole(input.as_bytes()), whole, "{input:?}");
    }
    assert_eq!(
        flushed(pretty.as_bytes()),
        ([(Some("j".to_owned()), chat("hi"))].to_vec(), 0),
        "the value read"
    );
}

/// Messages written back to back with nothing between them, in every dialect that puts
/// its header on the message's line: each header, byte for byte, starts the next message
/// (as the standard IPv4 table shows for that dialect).
#[test]
fn glued_messages_are_told_apart_in_every_single_line_dialect() {
    use Dialect::{Bracketed as B, Colon as C, KeyValue as K, Spaced as Sp, Standard as S};
    let ip = "198.51.100.1";
    let two = |name: &str, ip: &str, port: u16, d: Dialect| {
        vec![
            m(name, ip, port, chat("first"), d),
            m(name, ip, port, chat("second"), d),
        ]
    };
    check(&[
        (
            "198.51.100.1 80 sp first198.51.100.1 80 sp second",
            two("sp", ip, 80, Sp),
        ),
        (
            "[::1]:80 six first[::1]:80 six second",
            two("six", "::1", 80, S),
        ),
        (
            "  [::1]:80 six first[::1]:80 six second ",
            two("six", "::1", 80, S),
        ),
        (
            "LISTENING_PORT:80|TEAM_NAME:kv|firstLISTENING_PORT:80|TEAM_NAME:kv|second",
            two("kv", "", 80, K),
        ),
        (
            "MESSAGE:co:80:firstMESSAGE:co:80:second",
            two("co", "", 80, C),
        ),
        (
            "<198.51.100.1:80> br first<198.51.100.1:80> br second",
            two("br", ip, 80, B),
        ),
        (
            "MESSAGE:co:80:aMESSAGE:co:80:bMESSAGE:co:80:c",
            vec![
                m("co", "", 80, chat("a"), C),
                m("co", "", 80, chat("b"), C),
                m("co", "", 80, chat("c"), C),
            ],
        ),
        // A glued control word is read as one (colon fields' text never is).
        (
            "MESSAGE:co:80:hiMESSAGE:co:80:exit",
            vec![
                m("co", "", 80, chat("hi"), C),
                m("co", "", 80, chat("exit"), C),
            ],
        ),
        (
            "198.51.100.1 80 sp hi198.51.100.1 80 sp exit",
            vec![
                m("sp", ip, 80, chat("hi"), Sp),
                m("sp", ip, 80, Body::Exit, Sp),
            ],
        ),
        // Another sender's header, or another dialect's, is text.
        (
            "MESSAGE:co:80:MESSAGE:bob:80:hi",
            vec![m("co", "", 80, chat("MESSAGE:bob:80:hi"), C)],
        ),
        (
            "LISTENING_PORT:80|TEAM_NAME:kv|see LISTENING_PORT:81|TEAM_NAME:kv|x",
            vec![m(
                "kv",
                "",
                80,
                chat("see LISTENING_PORT:81|TEAM_NAME:kv|x"),
                K,
            )],
        ),
    ]);
}

/// Byte order marks before a header are skipped in one step, however many: one recursion
/// per mark overflowed a debug build's stack with a few hundred.
#[test]
fn many_byte_order_marks_before_a_header_are_skipped() {
    let line = format!("{}198.51.100.1:80 bob hi\n", "\u{feff}".repeat(10_000));
    let got = decode_chunks([line.as_bytes()], line.len() + 1).expect("within the limit");
    assert_eq!(got.len(), 1, "{:?}", got.first());
    assert_eq!(got[0].name.as_deref(), Some("bob"));
    assert_eq!(got[0].body, chat("hi"));
}

/// A byte order mark before a header is ignored wherever the header comes: before a
/// header glued to the message before it (it stayed at the end of that text,
/// shown as `\u{feff}`), and before a bracketed header or `<end>` inside an open block
/// (the next block, or the end, was taken for text: every later message of the
/// connection ran into one block).
#[test]
fn byte_order_marks_before_glued_headers_and_inside_blocks_are_ignored() {
    let bob = |text: &str| m("bob", "198.51.100.1", 80, chat(text), Dialect::Standard);
    let blk = |text: &str| m("bob", "198.51.100.1", 80, chat(text), Dialect::Bracketed);
    let colon = |text: &str| m("bob", "", 80, chat(text), Dialect::Colon);
    check(&[
        (
            "\u{feff}198.51.100.1:80 bob a\u{feff}198.51.100.1:80 bob b",
            vec![bob("a"), bob("b")],
        ),
        (
            "MESSAGE:bob:80:a\u{feff}MESSAGE:bob:80:b",
            vec![colon("a"), colon("b")],
        ),
        (
            "<198.51.100.1:80> @ <bob>\none\n<end>\u{feff}<198.51.100.1:80> @ <bob>\ntwo\n<end>",
            vec![blk("one"), blk("two")],
        ),
        (
            "<198.51.100.1:80> @ <bob>\none\n\u{feff}<end>\n<198.51.100.1:80> @ <bob>\ntwo",
            vec![blk("one"), blk("two")],
        ),
        (
            "<198.51.100.1:80> @ <bob>\none\n\u{feff}<198.51.100.1:80> @ <bob>\ntwo",
            vec![blk("one"), blk("two")],
        ),
    ]);
}

/// Every dialect we send in (raw text is never an answer's form).
fn sent_dialects() -> impl Iterator<Item = Dialect> {
    Dialect::ALL.into_iter().filter(|d| *d != Dialect::Raw)
}

/// A decoder that groups lines decodes what one that does not decodes: over random
/// connections (a header, then plain lines, control words, headers of other dialects,
/// blocks, broken UTF-8...) in random chunkings, each line of every `Body::Lines` is the
/// `Body::Chat` message the plain decoder yields for it, from the same sender.
#[test]
fn grouped_lines_are_the_messages_the_plain_decoder_yields() {
    let mut rng = crate::sim::rng::Rng::new(16);
    let mut spares = Spares::default();
    let nasty = nasty_strings(17, 20_000);
    let plain = [
        "xx yy",
        "hello world",
        "x",
        "zzz\r",
        "wow \u{e9}t\u{e9}",
        "hi  ",
        "connection_request",
        "Exit",
        "handshake",
        "[peer_quit]",
        "xyz",
    ];
    let headers = [
        "127.0.0.1:5 bob hi\n",
        "5000\n",
        "0.2.3.4 80 al x\n",
        "<127.0.0.1:6> @ <T>\n",
        "",
    ];
    let mut grouped_any = false;
    for (i, chunk) in nasty.chunks(8).enumerate() {
        let mut input = headers[i % headers.len()].to_owned();
        for (j, n) in chunk.iter().enumerate() {
            match rng.index(3) {
                0 => input.push_str(n),
                _ => input.push_str(plain[(i + j) % plain.len()]),
            }
            input.push('\n');
        }
        if i % 7 == 0 {
            input.push_str("xx\u{ff}y\n"); // invalid UTF-8 after a run
            input.push_str("tail");
        }
        let mut bytes = input.into_bytes();
        if i % 7 == 0 {
            let at = bytes.len() - 7;
            bytes[at] = 0xff;
        }
        for max_line in [8, 1 << 16] {
            let mut expected = Vec::new();
            let mut one = Decoder::new(max_line);
            let expected_ok = one.feed(&bytes, &mut expected).is_ok();
            one.finish(&mut expected);

            let mut got = Vec::new();
            let mut grouped = Decoder::new(max_line).group_lines();
            let mut rest = &bytes[..];
            let mut got_ok = true;
            // As the driver feeds it: a few lines at a time (a turn's share), what is left
            // after them fed again first with the next bytes (its backlog).
            let mut backlog = Vec::new();
            while !rest.is_empty() && got_ok {
                let take = 1 + rng.index(rest.len().min(200));
                let (now, later) = rest.split_at(take);
                let mut pending = std::mem::take(&mut backlog);
                pending.extend_from_slice(now);
                got_ok = match later.is_empty() {
                    true => grouped.feed_final(&pending, &mut got, &mut spares).is_ok(),
                    false => {
                        let limit = 1 + rng.index(8);
                        match grouped.feed_lines(&pending, &mut got, &mut spares, limit) {
                            Ok((lines, taken)) => {
                                assert!(lines <= limit, "{lines} lines fed, at most {limit}");
                                backlog.extend_from_slice(&pending[taken..]);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                };
                rest = later;
            }
            if rest.is_empty() && got_ok && bytes.is_empty() {
                grouped.finish_reusing(&mut got, &mut spares);
            }
            assert_eq!(got_ok, expected_ok, "{bytes:?}");
            if !expected_ok {
                continue;
            }
            let mut expanded = Vec::new();
            for m in got {
                match &m.body {
                    Body::Lines(run) => {
                        grouped_any = true;
                        assert!(run.line_count() > 1, "a run of one line: {run:?}");
                        // The ends the decoder kept are those of the text's lines.
                        let by_ends: Vec<&str> = run.lines().collect();
                        let by_search: Vec<&str> = super::lines(run.text()).collect();
                        assert_eq!(by_ends, by_search);
                        // A run said visible has nothing to escape: it is shown as it is.
                        let ascii = |l: &&str| l.bytes().all(|b| (0x20..=0x7e).contains(&b));
                        assert!(!run.is_visible() || by_ends.iter().all(ascii), "{run:?}");
                        for line in run.lines() {
                            assert!(!line.is_empty());
                            let mut each = m.clone();
                            each.body = Body::Chat(line.to_owned());
                            expanded.push(each);
                        }
                    }
                    _ => expanded.push(m),
                }
            }
            assert_eq!(expanded, expected, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
    assert!(grouped_any, "no run was ever made: the test tests nothing");
}

/// Lines shaped like standard headers with every field sometimes wrong: plausible and
/// broken addresses, ports, separators, names and texts, some followed by a piece of
/// [`nasty_strings`]. Most start with a digit, so they take the IPv4 fast path; about a
/// third are valid standard lines, short and long (the address is read from a 16-byte
/// window when the line has 16 bytes).
fn standard_like(seed: u64, count: usize) -> Vec<String> {
    const ADDRS: &[&str] = &[
        "127.0.0.71",
        "0.2.3.4",
        "255.255.255.255",
        "0.0.0.0",
        "239.200.250.199",
        "0.99.199.249",
        "256.1.1.1",
        "0.2.3.256",
        "00.2.3.4",
        "0.2.3.04",
        "1.2.3",
        "0.2.3.4.5",
        "1234.1.1.1",
        "0.2.3.1234",
        "1..2.3",
        "9",
        "",
        "[::1]",
        " 0.2.3.4",
    ];
    const COLONS: &[&str] = &[":", ":", ":", ":", " ", "::", "", "."];
    const PORTS: &[&str] = &[
        "9", "5002", "65535", "65536", "0", "00080", "", "9x", "99999999", "1\u{e9}",
    ];
    const SEPS: &[&str] = &["", " ", " ", " ", "\t", "  ", " \t", "\u{a0}", "\r"];
    const NAMES: &[&str] = &[
        "cg",
        "bob",
        "",
        "exit",
        "EXIT",
        "connect_ack",
        "h\u{e9}",
        "x\u{3000}",
        "[peer_quit]",
        "a:b",
        "a_name_longer_than_sixteen",
    ];
    const TEXTS: &[&str] = &[
        "m00042",
        "",
        "hello there",
        " exit",
        "exit",
        "exit ",
        "  hi  ",
        "\u{3000}",
        "x\u{85}",
        "h\u{e9}llo",
        "\r",
        "disconnect",
        "a\tb",
        "{\"type\":1}",
        "a text of more than thirty-two bytes, for the large spares",
    ];
    let mut rng = crate::sim::rng::Rng::new(seed);
    let nasty = nasty_strings(seed + 1, count);
    // The first entries of each list are the usual ones: taken half the time.
    let mut pick = |list: &[&'static str], usual: usize| match rng.index(2) {
        0 => list[rng.index(usual)],
        _ => list[rng.index(list.len())],
    };
    nasty
        .iter()
        .enumerate()
        .map(|(i, tail)| {
            let mut line = String::new();
            for part in [
                pick(ADDRS, 6),
                pick(COLONS, 1),
                pick(PORTS, 3),
                pick(SEPS, 2),
                pick(NAMES, 2),
                pick(SEPS, 2),
                pick(TEXTS, 3),
            ] {
                line.push_str(part);
            }
            if i % 4 == 0 {
                line.push_str(tail);
            }
            line
        })
        .collect()
}

/// The IPv4 fast path of the standard dialect reads every line that starts with a digit
/// as the general parser does (fields, message, or refusal), and a line it reads is never
/// a port line, which `dispatch` would otherwise have tried first.
#[test]
fn the_ipv4_standard_fast_path_agrees_with_the_general_parser() {
    use super::dialects::{
        parse_standard, push_standard_v4, standard_fields_general, standard_v4_fields, trim,
    };
    let mut inputs = standard_like(20, 100_000);
    inputs.extend(nasty_strings(21, 100_000));
    for edge in [
        "127.0.0.71:9 cg m00042",
        "127.0.0.71:9 cg",
        "127.0.0.71:9 exit",
        "127.0.0.71:9 cg exit",
        "127.0.0.71:9  cg  two spaces",
        "127.0.0.71:9\tcg\t\ttabs",
        "127.0.0.71:9",
        "127.0.0.71:9 ",
        "127.0.0.71:9 cg \u{3000}",
        "127.0.0.71:9 cg h\u{e9}llo",
        "0.2.3.4:5 x",
        "255.255.255.255:65535 a b",
        "255.255.255.255:65536 a b",
        "255.255.255.2555:1 a",
        "0.2.3.4:5:6 a",
        "5002",
        "0.2.3.4 5 bob hi",
    ] {
        inputs.push(edge.to_owned());
    }
    let mut spares = Spares::default();
    let mut out = Vec::new();
    let mut checked = 0;
    let mut read = 0;
    for s in &inputs {
        if !s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            continue;
        }
        checked += 1;
        let fields = standard_v4_fields(s)
            .map(|(ip, port, name, text)| (std::net::IpAddr::V4(ip), port, name, text));
        assert_eq!(fields, standard_fields_general(s), "{s:?}");
        let expected = parse_standard(s, &mut Spares::default());
        let pushed = push_standard_v4(s, &mut out, &mut spares);
        assert_eq!(pushed.is_some(), expected.is_some(), "{s:?}");
        assert_eq!(
            pushed.flatten(),
            None,
            "{s:?}: its header does not come again"
        );
        if pushed.is_some() {
            read += 1;
            assert_eq!(out.pop(), expected, "{s:?}");
            assert_eq!(parse_port(trim(s)), None, "{s:?}");
        }
        assert!(out.is_empty(), "{s:?}");
        // Strings given back, so that later messages take spares of every size.
        if let Some(m) = expected {
            if let Body::Chat(text) = m.body {
                spares.give(text);
            }
            if let Some(name) = m.name {
                spares.give(name);
            }
        }
    }
    assert!(
        checked > 50_000,
        "only {checked} lines started with a digit"
    );
    assert!(read > 10_000, "only {read} lines were standard");
}

/// The address read from a 16-byte window is the one read from the line, over windows of
/// digits, dots and the odd other byte.
#[test]
fn the_address_window_reads_as_the_prefix_parser_does() {
    use super::dialects::{ipv4_prefix, ipv4_window};
    const BYTES: &[u8] = b"0000111225569....:: a";
    let mut rng = crate::sim::rng::Rng::new(22);
    // Four runs of one to four digits, mostly joined by dots, then anything.
    let mut windows: Vec<[u8; 16]> = (0..300_000)
        .map(|_| {
            let mut bytes = Vec::new();
            for octet in 0..4 {
                if octet > 0 {
                    bytes.push(match rng.index(8) {
                        0 => BYTES[rng.index(BYTES.len())],
                        _ => b'.',
                    });
                }
                for _ in 0..1 + rng.index(4) {
                    bytes.push(BYTES[rng.index(13)]);
                }
            }
            std::array::from_fn(|i| match bytes.get(i) {
                Some(&b) => b,
                None => BYTES[rng.index(BYTES.len())],
            })
        })
        .collect();
    for edge in [
        b"255.255.255.255:",
        b"255.255.255.2555",
        b"0.2.3.4:5 cg m00",
        b"127.0.0.71:9 cg ",
        b"0.0.0.0.0.0.0.0.",
        b"999.999.999.999.",
        b"1.1.1.1111111111",
    ] {
        windows.push(*edge);
    }
    let mut read = 0;
    for w in &windows {
        let expected = ipv4_prefix(w);
        read += usize::from(expected.is_some());
        assert_eq!(ipv4_window(w), expected, "{:?}", String::from_utf8_lossy(w));
    }
    assert!(read > 10_000, "only {read} windows held an address");
}

/// The word-at-a-time check says what `is_ascii` and a search for `\n` say, whatever the
/// length and wherever the odd byte is.
#[test]
fn the_plain_ascii_check_agrees_with_its_definition() {
    use super::dialects::plain_ascii;
    for len in 0..80 {
        let clean = vec![b'a'; len];
        assert!(plain_ascii::<true>(&clean) && plain_ascii::<false>(&clean));
        for at in 0..len {
            for odd in [b'\n', 0x80, 0xc3, 0xff, 0x00, b'\r', 0x0b, 0x8a] {
                let mut bytes = clean.clone();
                bytes[at] = odd;
                let ascii = bytes.is_ascii();
                assert_eq!(plain_ascii::<false>(&bytes), ascii, "{bytes:?}");
                let plain = ascii && !bytes.contains(&b'\n');
                assert_eq!(plain_ascii::<true>(&bytes), plain, "{bytes:?}");
            }
        }
    }
    let mut rng = crate::sim::rng::Rng::new(23);
    for _ in 0..50_000 {
        let len = rng.index(200);
        let bytes: Vec<u8> = (0..len)
            .map(|_| match rng.index(40) {
                0 => b'\n',
                1 => 0x80 | rng.index(128) as u8,
                _ => rng.index(128) as u8,
            })
            .collect();
        let ascii = bytes.is_ascii();
        assert_eq!(plain_ascii::<false>(&bytes), ascii, "{bytes:?}");
        let plain = ascii && !bytes.contains(&b'\n');
        assert_eq!(plain_ascii::<true>(&bytes), plain, "{bytes:?}");
    }
}

/// A short text takes a small spare and a long one a large spare, so neither grows (a
/// spare that held a name is not reallocated for a long text while a large one is kept).
#[test]
fn spares_give_each_text_a_string_of_its_size() {
    let mut spares = Spares::default();
    let long = "x".repeat(100);
    spares.give(String::with_capacity(100));
    spares.give(String::with_capacity(2));
    // The name given last is not taken for the long text.
    let s = spares.string(&long);
    assert_eq!((s.as_str(), s.capacity()), (long.as_str(), 100));
    let s = spares.string("ab");
    assert_eq!((s.as_str(), s.capacity()), ("ab", 2));
    // With no small spare left, a short text takes a large one rather than allocating.
    spares.give(String::with_capacity(100));
    let s = spares.string("ab");
    assert_eq!((s.as_str(), s.capacity()), ("ab", 100));
    // A long text with only small spares left gets a new string and leaves them be.
    spares.give(String::with_capacity(8));
    let s = spares.string(&long);
    assert_eq!(s, long);
    let s = spares.string("abcdefgh");
    assert_eq!((s.as_str(), s.capacity()), ("abcdefgh", 8));
}

/// The grouped decoder against the plain one as the driver feeds it: random chunks, the
/// vector drained after some feeds (the same decoder then feeds again), `feed_final` or
/// `finish` or neither at the end, and lines around the limit with and without `\r`.
#[test]
fn grouped_lines_agree_with_plain_lines_when_drained_between_feeds() {
    let mut rng = crate::sim::rng::Rng::new(99);
    let pieces: &[&str] = &[
        "xx yy",
        "hello",
        "x",
        "zzz\r",
        "wow \u{e9}",
        "hi  ",
        "exit",
        "Exit\r",
        " exit",
        "{",
        "{\"type\":\"chat\",",
        "\"content\":\"j\"}",
        "}",
        "<end>",
        "<127.0.0.1:6> @ <T>",
        "127.0.0.1:5 bob hi",
        "0.2.3.4 80 al x",
        "5000",
        "1abc",
        "",
        " ",
        "\u{a0}exit",
        "zz\u{a0}",
        "LISTENING_PORT:5|TEAM_NAME:t|m",
        "MESSAGE:b:5:t",
        "qqqqqqqq",
        "qqqqqqqq\r",
        "qqqqqqq\r",
        "qqqqqqqqq",
        "pp\u{e9}pp",
        "handshake",
        "[peer_quit]",
        "rr\u{7f}",
        "\u{1b}[0m",
    ];
    for iter in 0..20_000 {
        let mut input = Vec::new();
        let n = 1 + rng.index(12);
        for _ in 0..n {
            match rng.index(12) {
                0 => input.extend_from_slice(b"xx\xffy"),
                1 => input.extend_from_slice(&vec![b'q'; 1 + rng.index(600)]),
                2 => {
                    let len =
                        [8usize, 9, 16, 18, 19, 20, 21, 24, 25, 26, 599, 600, 601][rng.index(13)];
                    input.extend_from_slice(&vec![b'q'; len]);
                    if rng.index(2) == 0 {
                        input.push(b'\r');
                    }
                }
                _ => input.extend_from_slice(pieces[rng.index(pieces.len())].as_bytes()),
            }
            if rng.index(10) != 0 {
                input.push(b'\n');
            }
        }
        let max_line = [8, 20, 25, 600, 1 << 16][iter % 5];
        let mut expected = Vec::new();
        let mut one = Decoder::new(max_line);
        let expected_ok = one.feed(&input, &mut expected).is_ok();
        let final_style = rng.index(3);
        if final_style != 2 {
            one.finish(&mut expected);
        }
        let mut spares = Spares::default();
        let mut got_all = Vec::new();
        let mut got = Vec::new();
        let mut grouped = Decoder::new(max_line).group_lines();
        let mut rest = &input[..];
        let mut ok = true;
        while !rest.is_empty() && ok {
            let take = 1 + rng.index(rest.len().min(300));
            let (now, later) = rest.split_at(take);
            ok = if later.is_empty() && final_style == 0 {
                grouped.feed_final(now, &mut got, &mut spares).is_ok()
            } else {
                grouped.feed_reusing(now, &mut got, &mut spares).is_ok()
            };
            rest = later;
            if rng.index(2) == 0 {
                got_all.append(&mut got);
            }
        }
        if ok && final_style == 1 {
            grouped.finish_reusing(&mut got, &mut spares);
        }
        got_all.append(&mut got);
        assert_eq!(
            ok,
            expected_ok,
            "{:?} max {max_line}",
            String::from_utf8_lossy(&input)
        );
        if !ok {
            continue;
        }
        let mut expanded = Vec::new();
        for m in got_all {
            match &m.body {
                Body::Lines(run) => {
                    assert_eq!(
                        run.lines().collect::<Vec<_>>(),
                        super::lines(run.text()).collect::<Vec<_>>()
                    );
                    for line in run.lines() {
                        let mut each = m.clone();
                        each.body = Body::Chat(line.to_owned());
                        expanded.push(each);
                    }
                }
                _ => expanded.push(m),
            }
        }
        assert_eq!(
            expanded,
            expected,
            "{:?} max {max_line}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// The limit counts the `\r` of a `\r\n` line in a run too: a line of exactly the limit
/// then `\r\n` is too long for both decoders.
#[test]
fn a_run_line_counts_its_carriage_return_against_the_limit() {
    let input = b"127.0.0.1:5 bob hi\nab\ncd\nqqqqqqqqqqqqqqqqqqqq\r\n";
    let mut a = Vec::new();
    let ra = Decoder::new(20).feed(input, &mut a);
    let mut b = Vec::new();
    let rb = Decoder::new(20).group_lines().feed(input, &mut b);
    assert!(ra.is_err(), "{a:?}");
    assert!(rb.is_err(), "{b:?}");
}

/// Blank is what `str::trim` leaves nothing of: ASCII and Unicode whitespace alike.
#[test]
fn blank_text_is_what_trim_leaves_nothing_of() {
    for text in [
        "",
        " ",
        "\t\n",
        "\u{a0}",
        "\u{3000} ",
        " x",
        "x",
        "\u{a0}é",
        "é",
        "\u{200b}",
        ".",
    ] {
        assert_eq!(super::is_blank(text), text.trim().is_empty(), "{text:?}");
    }
}

/// A spare refilled with a text holds that text, whatever the text's length (around each
/// chunk size of the short copy, and past it) and the spare's capacity and old contents:
/// the same as clearing it and pushing the text, in its own buffer when that is large
/// enough.
#[test]
fn spares_refill_strings_as_clear_and_push_would() {
    let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let texts: Vec<String> = (0..=40)
        .map(|n| alphabet[..n].to_owned())
        .chain(["\u{e9}t\u{e9}", "\u{1f600}", "n\u{e9}e \u{2014} h\u{e9}"].map(str::to_owned))
        .chain([format!("{}\u{e9}", &alphabet[..31])])
        .collect();
    for text in &texts {
        for capacity in [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 64] {
            for old in ["", "zz", "0123456789abcdefghijklmnopqrstuvwxyz!"] {
                let mut spares = Spares::default();
                let mut spare = String::with_capacity(capacity);
                spare.push_str(old);
                let buffer = spare.as_ptr();
                let room = spare.capacity();
                spares.give(spare);
                let s = spares.string(text);
                assert_eq!(s, *text, "capacity {capacity}, old {old:?}");
                if room > 0 && room <= 4096 && text.len() <= room {
                    assert_eq!(s.as_ptr(), buffer, "{text:?} in a spare of {room}");
                }
            }
        }
    }
}

/// The spares keep at most 512 strings and 256 KiB of capacity in all, whatever mix of
/// sizes is given, and nothing without a buffer or over 4 KiB; what they keep is taken
/// back.
#[test]
fn spares_keep_at_most_512_strings_and_256_kib() {
    let bound = |spares: &Spares| {
        let (strings, bytes) = spares.held();
        assert!(
            strings <= 512 && bytes <= 256 * 1024,
            "{strings} strings, {bytes} bytes"
        );
        (strings, bytes)
    };
    let mut spares = Spares::default();
    for _ in 0..600 {
        spares.give(String::with_capacity(32));
    }
    assert_eq!(bound(&spares), (512, 512 * 32));
    for _ in 0..600 {
        spares.give(String::with_capacity(4096));
    }
    assert_eq!(
        bound(&spares),
        (512, 512 * 32),
        "no room left for large ones"
    );
    spares.clear();
    for capacity in [4096, 8, 1000, 0, 4097, 33, 1] {
        for _ in 0..300 {
            spares.give(String::with_capacity(capacity));
            bound(&spares);
        }
    }
    // Strings of no capacity or of more than 4 KiB are not kept.
    let mut fresh = Spares::default();
    fresh.give(String::new());
    fresh.give(String::with_capacity(4097));
    assert_eq!(fresh.held(), (0, 0));
    // Taken back, and counted out again: a large one's room is given back.
    let mut spares = Spares::default();
    for _ in 0..64 {
        spares.give(String::with_capacity(3840));
    }
    let (strings, _) = bound(&spares);
    let long = "y".repeat(100);
    for _ in 0..strings {
        assert_eq!(spares.string(&long), long);
    }
    assert_eq!(spares.held(), (0, 0));
    spares.give(String::with_capacity(3840));
    assert_eq!(spares.held(), (1, 3840));
}

/// A standard header read again from the last one's memo ([`Spares`] keep it) reads as
/// the general parser reads it, after a line with that header: the same line, one that
/// differs from it at any one place of its header (or is cut inside it, or goes on past
/// it), and one with another rest. Through the decoder's `feed_final` too, its spares
/// shared by every line, against a fresh decoder's `feed`.
#[test]
fn a_header_recalled_reads_as_the_general_parser_reads_it() {
    use super::dialects::{parse_standard, push_standard_v4};
    let headers = [
        "127.0.0.71:9 ",
        "127.0.0.71:9\t",
        "127.0.0.71:90 ",
        "127.0.0.7:19 ",
        "0.2.3.4:5 ",
        "198.18.0.1:5002 ",
        "255.255.255.255:65535 ",
        "198.19.100.200:12345\t",
    ];
    let rests = [
        "cg m00001",
        " cg  two",
        "",
        "exit",
        "cg",
        "cg exit",
        "n\u{e9} h\u{e9}llo",
    ];
    let swaps = [
        '0', '1', '5', '9', '.', ':', ' ', '\t', 'a', '\u{e9}', '\u{feff}',
    ];
    let mut lines = Vec::new();
    for header in headers {
        let first = format!("{header}cg m00001");
        let mut next: Vec<String> = rests.iter().map(|r| format!("{header}{r}")).collect();
        for (at, _) in header.char_indices() {
            let (before, after) = header.split_at(at);
            let mut rest = after.chars();
            rest.next();
            for c in swaps {
                next.push(format!("{before}{c}{}cg hi", rest.as_str()));
                next.push(format!("{before}{c}{after}cg hi"));
            }
            next.push(before.to_owned());
            next.push(format!("{before}x"));
        }
        next.push(header.trim_end().to_owned());
        for line in next {
            lines.push(first.clone());
            lines.push(line);
        }
    }
    let (mut spares, mut out) = (Spares::default(), Vec::new());
    let mut shared = Spares::default();
    let mut read = 0;
    for line in &lines {
        // The decoder as the driver runs it, its spares shared by every connection.
        let mut got = Vec::new();
        Decoder::new(LIMIT)
            .feed_final(line.as_bytes(), &mut got, &mut shared)
            .expect("within the limit");
        let expected = decode_chunks([line.as_bytes()], LIMIT).expect("within the limit");
        assert_eq!(got, expected, "{line:?}");
        // The fast path itself, where it is asked (lines that start with a digit).
        if !line.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let general = parse_standard(line, &mut Spares::default());
        let pushed = push_standard_v4(line, &mut out, &mut spares);
        assert_eq!(pushed.is_some(), general.is_some(), "{line:?}");
        if pushed.is_some() {
            read += 1;
            assert_eq!(out.pop(), general, "{line:?}");
        }
    }
    assert!(read > 1_000, "only {read} lines were standard");
}
