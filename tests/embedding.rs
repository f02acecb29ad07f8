//! peerchat built to be embedded and scripted: the `--json` event stream, read by a consumer
//! that checks every line against the documented schema (valid UTF-8, one object per line,
//! `v`, `event`, `ts` and each event's fields), including unreachable peers, their return
//! and their removal; memory across `kill -9` with `--state` (every message shown before
//! the kill is in `/history` after a restart, a torn last record is survived, remembered
//! peers are greeted on request, and answered and greeted in the dialect they spoke before
//! the restart); two peers exchanging messages over IPv6 on `::1`; and the
//! `ping_bot` example (the library API) answering a real peerchat process. The
//! pseudo-terminal behaviour is in `tests/terminal.rs`.
//!
//! Address blocks: `127.0.130.*` to `127.0.135.*` (one per test), plus `::1`; every
//! listener binds port 0. Every wait has a deadline and waits for an output line, a process
//! exit or a connection; nothing sleeps to synchronise.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use common::{
    accept_one, closed_addr, connect_from, fields, poll_until, send_raw, unhex, Peer, LONG_WAIT,
    WAIT,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// JSON consumer
// ---------------------------------------------------------------------------------------

/// Unix milliseconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.fff]Z`; `None` if the
/// text is not of that form.
fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let millis = match &s[19..s.len() - 1] {
        "" => 0,
        frac => {
            let f = frac.strip_prefix('.')?;
            let v = digits(20..20 + f.len())?;
            // Scale to milliseconds whatever the number of digits.
            let mut ms = v as f64;
            ms /= 10f64.powi(f.len() as i32);
            (ms * 1000.0) as i64
        }
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + millis)
}

fn unix_millis_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// The kinds of value a field may hold.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// A string or null.
    OptStr,
    Bool,
    Num,
    Arr,
}

fn has(v: &Value, field: &str, kind: Kind) -> bool {
    let Some(x) = v.as_object().and_then(|o| o.get(field)) else {
        return false;
    };
    match kind {
        Kind::Str => x.is_string(),
        Kind::OptStr => x.is_string() || x.is_null(),
        Kind::Bool => x.is_boolean(),
        Kind::Num => x.is_u64(),
        Kind::Arr => x.is_array(),
    }
}

/// Whether `addr` is `IP:PORT` (IPv6 in brackets).
fn is_addr(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<SocketAddr>().is_ok())
}

/// The fields each documented event must carry (besides `v`, `event` and `ts`).
fn schema(event: &str) -> Option<&'static [(&'static str, Kind)]> {
    use Kind::*;
    const PEER: &[(&str, Kind)] = &[
        ("name", OptStr),
        ("addr", OptStr),
        ("observed_ip", Str),
        ("claimed_ip", OptStr),
    ];
    Some(match event {
        "listening" => &[("addr", Str), ("name", Str)],
        "message" => &[
            ("name", OptStr),
            ("addr", OptStr),
            ("observed_ip", Str),
            ("claimed_ip", OptStr),
            ("text", Str),
        ],
        "connect" => &[
            ("name", OptStr),
            ("addr", OptStr),
            ("observed_ip", Str),
            ("claimed_ip", OptStr),
            ("answering", Bool),
        ],
        "connect_ack" => PEER,
        "peer_joined" | "peer_back" => &[("addr", Str), ("name", OptStr)],
        "peer_left" => &[("addr", Str), ("name", OptStr), ("reason", Str)],
        "peer_unreachable" => &[("addr", Str), ("name", OptStr), ("failures", Num)],
        "sent" => &[("addr", Str), ("text", Str)],
        "send_failed" => &[("addr", Str), ("text", Str), ("reason", Str)],
        "split" => &[("addr", Str), ("parts", Num)],
        "peers" => &[("peers", Arr)],
        "history" => &[("entries", Arr)],
        "help" | "menu" => &[("text", Str)],
        "hint" | "error" | "info" => &[("message", Str)],
        "bye" => &[],
        _ => return None,
    })
}

/// Checks every stdout line of a `--json` process: valid UTF-8, one JSON object, `v` 1,
/// a known `event` with its fields, `ts` an RFC 3339 UTC time between `start` and now
/// (with a minute's slack for clock steps) and never decreasing. Returns the events.
fn check_every_line(raw_lines: &[Vec<u8>], start_ms: i64) -> Vec<Value> {
    let end_ms = unix_millis_now();
    let mut events = Vec::new();
    let mut last_ts = i64::MIN;
    for (i, raw) in raw_lines.iter().enumerate() {
        let line = std::str::from_utf8(raw)
            .unwrap_or_else(|e| panic!("line {i} is not UTF-8 ({e}): {raw:?}"));
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {i} is not JSON ({e}): {line}"));
        assert!(v.is_object(), "line {i} is not an object: {line}");
        assert_eq!(v["v"], 1, "line {i}: schema version: {line}");
        let event = v["event"]
            .as_str()
            .unwrap_or_else(|| panic!("line {i} has no event: {line}"));
        let ts = v["ts"]
            .as_str()
            .and_then(parse_rfc3339_utc)
            .unwrap_or_else(|| panic!("line {i}: ts is not RFC 3339 UTC: {line}"));
        assert!(
            ts >= start_ms - 60_000 && ts <= end_ms + 60_000,
            "line {i}: ts {} is not now: {line}",
            v["ts"]
        );
        assert!(ts >= last_ts, "line {i}: ts went backwards: {line}");
        last_ts = ts;
        let fields = schema(event).unwrap_or_else(|| panic!("line {i}: unknown event: {line}"));
        for &(field, kind) in fields {
            assert!(
                has(&v, field, kind),
                "line {i}: bad field {field:?}: {line}"
            );
        }
        if let Some(a) = v.get("addr").filter(|a| !a.is_null()) {
            assert!(is_addr(a), "line {i}: addr is not IP:PORT: {line}");
        }
        match event {
            "peer_left" => assert!(
                v["reason"] == "exit" || v["reason"] == "unreachable",
                "line {i}: reason: {line}"
            ),
            "message" | "connect" | "connect_ack" => {
                let ip = v["observed_ip"].as_str().unwrap_or_default();
                assert!(
                    ip.parse::<IpAddr>().is_ok(),
                    "line {i}: observed_ip: {line}"
                );
            }
            "peers" => {
                for row in v["peers"].as_array().into_iter().flatten() {
                    assert!(is_addr(&row["addr"]), "line {i}: peer row addr: {line}");
                    for (f, k) in [
                        ("name", Kind::OptStr),
                        ("status", Kind::Str),
                        ("source", Kind::Str),
                        ("messages", Kind::Num),
                        ("claimed_ip", Kind::OptStr),
                    ] {
                        assert!(has(row, f, k), "line {i}: peer row {f}: {line}");
                    }
                    assert!(
                        row.get("last_heard_secs")
                            .is_some_and(|x| x.is_null() || x.is_u64()),
                        "line {i}: peer row last_heard_secs: {line}"
                    );
                }
            }
            "history" => {
                for e in v["entries"].as_array().into_iter().flatten() {
                    assert!(
                        e["ts"].as_str().and_then(parse_rfc3339_utc).is_some(),
                        "line {i}: history entry ts: {line}"
                    );
                    assert!(
                        e["direction"] == "in" || e["direction"] == "out",
                        "line {i}: history entry direction: {line}"
                    );
                    assert!(
                        has(e, "text", Kind::Str) && has(e, "name", Kind::OptStr),
                        "line {i}: history entry: {line}"
                    );
                    assert!(
                        e["addr"].is_null() || is_addr(&e["addr"]),
                        "line {i}: history entry addr: {line}"
                    );
                }
            }
            _ => {}
        }
        events.push(v);
    }
    events
}

#[test]
fn json_consumer_parses_every_line() {
    let start_ms = unix_millis_now();
    let mut bob = Peer::spawn("bob", "127.0.130.3", &[]);
    let bob_addr = bob.address();
    let mut alice = Peer::peerchat(
        "alice --json",
        &[
            "-n",
            "alice",
            "-p",
            "0",
            "-b",
            "127.0.130.2",
            "--json",
            "--max-line",
            "4096",
            "-s",
            &bob_addr,
        ],
    );
    let listening = alice.expect_event("listening", |_| true);
    let alice_addr: SocketAddr = listening["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("listening addr: {listening}"));
    assert_eq!(alice_addr.ip().to_string(), "127.0.130.2");
    assert_ne!(alice_addr.port(), 0, "the real port");
    assert_eq!(listening["name"], "alice");

    // The static peer answers our connect.
    let ack = alice.expect_event("connect_ack", |v| v["addr"] == bob_addr.as_str());
    assert_eq!(ack["name"], "bob");
    assert_eq!(ack["observed_ip"], "127.0.130.3");

    // bob says connect: answered.
    bob.send_line(&format!("/send {alice_addr} connect"));
    let c = alice.expect_event("connect", |v| v["addr"] == bob_addr.as_str());
    assert_eq!(c["answering"], true);

    // A message each way.
    alice.send_line(&format!("/send {bob_addr} hello bob"));
    alice.expect_event("sent", |v| {
        v["addr"] == bob_addr.as_str() && v["text"] == "hello bob"
    });
    bob.expect_line(&format!("[alice {alice_addr}] hello bob"));
    bob.send_line(&format!("/send {alice_addr} hi alice, \"ça\" va?\t✓"));
    let m = alice.expect_event("message", |v| v["addr"] == bob_addr.as_str());
    assert_eq!(m["name"], "bob");
    assert_eq!(m["observed_ip"], "127.0.130.3");
    assert_eq!(m["claimed_ip"], Value::Null);
    assert_eq!(m["text"], "hi alice, \"ça\" va?\t✓");

    // A new peer with invalid UTF-8 and a header claiming another IP: peer_joined, then
    // a message whose text carries U+FFFD.
    send_raw(
        "127.0.130.4",
        alice_addr,
        b"127.0.1.1:9 carol bad \xff\xfe bytes \xc3(",
    )
    .expect("send invalid UTF-8");
    let joined = alice.expect_event("peer_joined", |v| v["addr"] == "127.0.130.4:9");
    assert_eq!(joined["name"], "carol");
    let m = alice.expect_event("message", |v| v["addr"] == "127.0.130.4:9");
    assert_eq!(m["name"], "carol");
    assert_eq!(m["observed_ip"], "127.0.130.4");
    assert_eq!(m["claimed_ip"], "127.0.1.1");
    let text = m["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("bad ") && text.contains(" bytes ") && text.contains('\u{fffd}'),
        "invalid UTF-8 must become U+FFFD: {m}"
    );
    assert_eq!(text, "bad \u{fffd}\u{fffd} bytes \u{fffd}(");

    // A send to a closed port fails, with a reason.
    let (dead, _port) = closed_addr("127.0.130.9");
    alice.send_line(&format!("/send {dead} doomed"));
    let failed = alice.expect_event("send_failed", |v| v["addr"] == dead.as_str());
    assert_eq!(failed["text"], "doomed");
    assert!(
        failed["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );

    // A long message is split.
    let long = "word ".repeat(400);
    alice.send_line(&format!("/send {bob_addr} {}", long.trim_end()));
    let split = alice.expect_event("split", |v| v["addr"] == bob_addr.as_str());
    assert!(split["parts"].as_u64().is_some_and(|p| p >= 2), "{split}");

    // Queries, hints, help, history.
    alice.send_line("/peers");
    let peers = alice.expect_event("peers", |_| true);
    let rows = peers["peers"].as_array().cloned().unwrap_or_default();
    let row = |addr: &str| rows.iter().find(|r| r["addr"] == addr).cloned();
    let bob_row = row(&bob_addr).unwrap_or_else(|| panic!("bob in /peers: {peers}"));
    assert_eq!(bob_row["status"], "active", "{peers}");
    assert_eq!(bob_row["name"], "bob", "{peers}");
    let carol_row = row("127.0.130.4:9").unwrap_or_else(|| panic!("carol: {peers}"));
    assert_eq!(carol_row["claimed_ip"], "127.0.1.1", "{peers}");
    alice.send_line("/history 50");
    let history = alice.expect_event("history", |_| true);
    let entries = history["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["direction"] == "out" && e["text"] == "hello bob"),
        "{history}"
    );
    assert!(
        entries.iter().any(|e| e["direction"] == "in"
            && e["name"] == "bob"
            && e["addr"] == bob_addr.as_str()),
        "{history}"
    );
    alice.send_line("what is this");
    alice.expect_event("hint", |v| {
        v["message"].as_str().is_some_and(|m| !m.is_empty())
    });
    alice.send_line("/help");
    alice.expect_event("help", |_| true);

    // A peer's overlong line: a warning (the `error` event).
    let _ = send_raw("127.0.130.5", alice_addr, &vec![b'a'; 6000]);
    let err = alice.expect_event("error", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.130.5"))
    });
    assert!(err["message"].as_str().is_some(), "{err}");

    // bob leaves: peer_left with reason exit.
    bob.quit_ok();
    let left = alice.expect_event("peer_left", |v| v["addr"] == bob_addr.as_str());
    assert_eq!(left["reason"], "exit");
    assert_eq!(left["name"], "bob");

    alice.close_stdin();
    let status = alice.expect_exit(LONG_WAIT);
    // Driven by a program, the exit status tells that one message (`doomed`) did not go.
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        alice.report(&format!("{status}"))
    );
    // Stderr is read by a thread of its own: its last line may come just after the exit.
    let said = "1 of the messages asked for could not be delivered";
    assert!(
        poll_until(WAIT, || alice
            .stderr_lines()
            .iter()
            .any(|l| l.contains(said))),
        "{:?}",
        alice.stderr_lines()
    );

    let events = check_every_line(&alice.raw_lines(), start_ms);
    assert_eq!(
        events.first().map(|v| v["event"].clone()),
        Some("listening".into())
    );
    assert_eq!(
        events.last().map(|v| v["event"].clone()),
        Some("bye".into())
    );
    let seen: BTreeSet<String> = events
        .iter()
        .filter_map(|v| v["event"].as_str().map(str::to_owned))
        .collect();
    for kind in [
        "listening",
        "connect_ack",
        "connect",
        "sent",
        "message",
        "peer_joined",
        "send_failed",
        "split",
        "peers",
        "history",
        "hint",
        "help",
        "error",
        "peer_left",
        "bye",
    ] {
        assert!(seen.contains(kind), "no {kind:?} event among {seen:?}");
    }
}

#[test]
fn json_reports_unreachable_peers_and_their_return() {
    let start_ms = unix_millis_now();
    let mut alice = Peer::peerchat(
        "alice --json",
        &[
            "-n",
            "alice",
            "-p",
            "0",
            "-b",
            "127.0.131.2",
            "--json",
            "--probe-interval",
            "1",
            "--probe-failures",
            "1",
        ],
    );
    let listening = alice.expect_event("listening", |_| true);
    let alice_addr: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();

    // flaky: its listener comes and goes. gone: never listens.
    let flaky_listener = TcpListener::bind("127.0.131.3:0").unwrap();
    let flaky = flaky_listener.local_addr().unwrap();
    drop(flaky_listener);
    let (gone, _port) = closed_addr("127.0.131.4");
    send_raw(
        &flaky.ip().to_string(),
        alice_addr,
        format!("{flaky} flaky here").as_bytes(),
    )
    .unwrap();
    send_raw(
        "127.0.131.4",
        alice_addr,
        format!("{gone} gone here").as_bytes(),
    )
    .unwrap();
    let flaky_s = flaky.to_string();
    alice.expect_event("peer_joined", |v| v["addr"] == flaky_s.as_str());
    alice.expect_event("peer_joined", |v| v["addr"] == gone.as_str());

    let down = alice.expect_event("peer_unreachable", |v| v["addr"] == flaky_s.as_str());
    assert_eq!(down["name"], "flaky");
    assert!(down["failures"].as_u64().is_some_and(|n| n >= 1), "{down}");
    // Back: listen again on the same address; the next check connects.
    let _listener =
        TcpListener::bind(flaky).unwrap_or_else(|e| panic!("cannot listen again on {flaky}: {e}"));
    alice.expect_json("flaky's peer_back", |v| {
        v["event"] == "peer_back" && v["addr"] == flaky_s.as_str()
    });
    // gone: unreachable, then removed with the reason unreachable.
    // Checks back off (1, 2, 4 intervals): removal comes about 7 intervals after the
    // first failure, up to 20% later with jitter.
    let left = alice.expect(
        &format!("peer_left of {gone}"),
        Duration::from_secs(15),
        |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["event"] == "peer_left" && v["addr"] == gone.as_str())
        },
    );
    let left: Value = serde_json::from_str(&left).unwrap();
    assert_eq!(left["reason"], "unreachable", "{left}");
    assert_eq!(left["name"], "gone", "{left}");

    alice.close_stdin();
    assert!(alice.expect_exit(LONG_WAIT).success());
    let events = check_every_line(&alice.raw_lines(), start_ms);
    assert!(events
        .iter()
        .any(|v| v["event"] == "peer_unreachable" && v["addr"] == gone.as_str()));
}

// ---------------------------------------------------------------------------------------
// Memory across restarts
// ---------------------------------------------------------------------------------------

/// A fresh, empty state directory for this test.
fn state_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("embedding-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the state directory");
    dir
}

/// `(round, number)` of a line showing burst message `msg-R-NNNN` from the feeder at
/// `from` (`[feeder IP:PORT] msg-R-NNNN`, with or without a history time before it).
fn burst_number(line: &str, from: &str) -> Option<(usize, usize)> {
    let tag = format!("[feeder {from}] msg-");
    let at = line.find(&tag)?;
    let (round, n) = line[at + tag.len()..].split_once('-')?;
    Some((round.parse().ok()?, n.parse().ok()?))
}

/// Starts peerchat with `--state DIR` at `127.0.132.2` (stdin a pipe kept open), returns it
/// and its listening address.
fn keeper(dir: &str, round: usize) -> (Peer, SocketAddr) {
    let label = format!("keeper (round {round})");
    let mut keeper = Peer::peerchat(
        &label,
        &[
            "-n",
            "keeper",
            "-p",
            "0",
            "-b",
            "127.0.132.2",
            "--state",
            dir,
        ],
    );
    let first = keeper.expect("the listening line", WAIT, |l| {
        l.starts_with("listening on ")
    });
    let addr = first
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad listening line {first:?}"));
    (keeper, addr)
}

/// One round: a burst of `burst` messages to a fresh keeper, killed with SIGKILL once it
/// has shown `kill_after` of them. Returns the burst numbers it showed, in the order shown.
fn burst_and_kill(
    dir: &str,
    round: usize,
    feeder: SocketAddr,
    burst: usize,
    kill_after: usize,
) -> Vec<usize> {
    let feeder_s = feeder.to_string();
    let (mut keeper, keeper_addr) = keeper(dir, round);
    // One message per connection, written and closed back to back without waiting for
    // the receiver, so that many are queued in the kernel when the kill comes.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let feeder_ip = feeder.ip().to_string();
    let sender = thread::spawn(move || {
        for i in 1..=burst {
            let msg = format!("{feeder} feeder msg-{round}-{i:04}");
            let Ok(mut stream) = connect_from(&feeder_ip, keeper_addr) else {
                break; // the receiver was killed
            };
            if stream.write_all(msg.as_bytes()).is_err() {
                break;
            }
            counter.store(i, Ordering::SeqCst);
        }
    });
    keeper.expect(&format!("message {round}-{kill_after}"), LONG_WAIT, |l| {
        burst_number(l, &feeder_s) == Some((round, kill_after))
    });
    keeper.signal(libc::SIGKILL);
    let sent_at_kill = sent.load(Ordering::SeqCst);
    let status = keeper.expect_exit(WAIT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    sender.join().expect("the sender thread");
    // Everything it printed (read to EOF after the kill), in the order printed.
    let shown: Vec<usize> = keeper
        .lines()
        .iter()
        .filter_map(|l| burst_number(l, &feeder_s))
        .map(|(r, n)| {
            assert_eq!(r, round, "a message of another round");
            n
        })
        .collect();
    println!(
        "round {round}: {sent_at_kill} of {burst} sent when killed, {} shown",
        shown.len()
    );
    assert!(shown.len() >= kill_after);
    assert!(
        shown.len() < burst,
        "round {round}: the whole burst was shown before the kill: not mid-burst"
    );
    shown
}

#[test]
fn restart_after_kill_9_keeps_every_shown_message() {
    // Rounds × burst stays under 1000, so `/history 1000` can hold every message.
    const ROUNDS: usize = 2;
    const BURST: usize = 450;
    const KILL_AFTER: usize = 30;
    let dir = state_dir("restart");
    let dir_s = dir.to_str().expect("UTF-8 path").to_owned();
    // The feeder's listening port: a real listener, so that greeting it can be observed.
    let feeder_listener = TcpListener::bind("127.0.132.5:0").unwrap();
    let feeder = feeder_listener.local_addr().unwrap();
    let feeder_s = feeder.to_string();

    // Each round kills a keeper mid-burst; the next one starts from the same state.
    let shown: Vec<Vec<usize>> = (1..=ROUNDS)
        .map(|round| burst_and_kill(&dir_s, round, feeder, BURST, KILL_AFTER))
        .collect();

    // A torn last record, as a crash in the middle of a write would leave.
    OpenOptions::new()
        .append(true)
        .open(dir.join("journal.jsonl"))
        .expect("the journal exists")
        .write_all(b"{\"k\":\"msg\",\"ts\":17,\"dir\":\"in\",\"te")
        .expect("append a torn record");

    // Now: warns, starts, remembers.
    let mut keeper = Peer::spawn("keeper", "127.0.132.2", &["--state", &dir_s]);
    keeper.expect("the torn-record warning", WAIT, |l| {
        l.starts_with("! ") && l.contains("torn")
    });
    let remembered = keeper.expect("what was remembered", WAIT, |l| {
        l.starts_with("* remembered ")
    });
    let total: usize = shown.iter().map(Vec::len).sum();
    // `1 peer`, `2 peers`: the noun agrees with its count.
    let count = |what: &str| -> usize {
        remembered
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .find_map(|w| {
                let n: usize = w[0].parse().ok()?;
                let agrees = match n {
                    1 => w[1] == what,
                    _ => w[1].strip_suffix('s') == Some(what),
                };
                agrees.then_some(n)
            })
            .unwrap_or_else(|| panic!("no count of {what} in {remembered:?}"))
    };
    assert!(count("peer") >= 1, "{remembered}");
    assert!(
        count("message") >= total,
        "{remembered}: {total} were shown"
    );
    keeper.send_line("/history 1000");
    keeper.send_line("/no-such-command-ends-the-history");
    keeper.expect("the hint after the history", WAIT, |l| l.starts_with("? "));
    let lines = keeper.lines();
    let history: Vec<&String> = lines
        .iter()
        .filter(|l| burst_number(l, &feeder_s).is_some())
        .collect();
    let listed: Vec<(usize, usize)> = history
        .iter()
        .filter_map(|l| burst_number(l, &feeder_s))
        .collect();
    let distinct: BTreeSet<(usize, usize)> = listed.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        listed.len(),
        "/history lists a message twice: {listed:?}"
    );
    let rounds: Vec<usize> = listed.iter().map(|(r, _)| *r).collect();
    assert!(
        rounds.windows(2).all(|w| w[0] <= w[1]),
        "/history mixes up the rounds: {listed:?}"
    );
    for (i, shown) in shown.iter().enumerate() {
        let round = i + 1;
        let numbers: Vec<usize> = listed
            .iter()
            .filter(|(r, _)| *r == round)
            .map(|(_, n)| *n)
            .collect();
        println!(
            "round {round}: {} in /history (shown: {})",
            numbers.len(),
            shown.len()
        );
        assert!(
            numbers.len() >= shown.len() && numbers[..shown.len()] == shown[..],
            "round {round}: /history must start with every message shown before the kill, \
             in the order shown\nshown:   {shown:?}\nhistory: {numbers:?}"
        );
    }
    for l in &history {
        // `YYYY-MM-DD HH:MM:SS  [feeder ...] msg-R-NNNN`
        let b = l.as_bytes();
        assert!(
            b.len() > 21 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' && b[19] == b' ',
            "a history line carries its time: {l:?}"
        );
    }
    let row = keeper
        .query_row(&feeder_s)
        .unwrap_or_else(|| panic!("{}", keeper.report("the feeder is not remembered")));
    assert!(
        row.len() >= 3 && row[1] == "feeder" && row[2] == "remembered",
        "the feeder is listed as remembered: {row:?}"
    );
    keeper.quit_ok();

    // Greeting remembered peers: the feeder's listener gets `connect`.
    let mut keeper = Peer::spawn(
        "keeper",
        "127.0.132.2",
        &["--state", &dir_s, "--greet-remembered"],
    );
    let greeting = accept_one(&feeder_listener, WAIT)
        .unwrap_or_else(|e| panic!("{}", keeper.report(&format!("no greeting: {e}"))));
    assert_eq!(
        String::from_utf8_lossy(&greeting),
        format!("{} keeper connect", keeper.address())
    );
    keeper.expect_line(&format!("* sent to {feeder_s}: connect"));
    keeper.quit_ok();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first line, not yet matched, in which the spaced stand-in shows `what` it understood
/// (`pred` on its fields) or says it could not parse what arrived: its fields.
fn understood_or_not(
    spaced: &mut Peer,
    what: &str,
    pred: impl Fn(&std::collections::HashMap<String, String>) -> bool,
) -> std::collections::HashMap<String, String> {
    let line = spaced.expect(&format!("{what}, or a decode error"), WAIT, |l| {
        let f = fields(l);
        f["event"] == "decode_error" || pred(&f)
    });
    fields(&line)
}

/// The dialect a peer spoke is remembered across a restart: a peer that speaks only the
/// spaced form (and chokes on the standard one) spoke to us; after a restart on the same
/// `--state`, `/peers` lists it as spaced, a message typed to it reaches it in its form,
/// and so does the `--greet-remembered` greeting.
#[test]
fn after_a_restart_a_peer_is_answered_in_the_dialect_it_spoke_before() {
    let dir = state_dir("dialect");
    let dir_s = dir.to_str().expect("UTF-8 path").to_owned();
    let mut spaced = Peer::python("spaced_peer.py", "dave", "127.0.133.3", &[]);
    let mut keeper = Peer::spawn("keeper", "127.0.133.2", &["--state", &dir_s]);
    spaced.send_line(&format!("send {} hello spaced", keeper.address()));
    keeper.expect_line(&format!("[dave {}] hello spaced", spaced.address()));
    let row = keeper.query_row(&spaced.address()).expect("dave is listed");
    assert_eq!(row[4], "spaced", "{row:?}");
    keeper.quit_ok();

    let mut keeper = Peer::spawn("keeper", "127.0.133.2", &["--state", &dir_s]);
    keeper.expect_line("* remembered 1 peer and 1 message");
    let row = keeper
        .query_row(&spaced.address())
        .expect("dave is remembered");
    assert_eq!(
        (row[1].as_str(), row[2].as_str(), row[4].as_str()),
        ("dave", "remembered", "spaced"),
        "{row:?}"
    );
    keeper.send_line("/msg dave hello again");
    let got = understood_or_not(&mut spaced, "our message", |f| {
        f["event"] == "message"
            && f.get("text_hex").map(|h| unhex(h)) == Some(b"hello again".into())
    });
    assert_eq!(
        got["event"],
        "message",
        "{}",
        spaced.report("the message after the restart is not in the spaced form")
    );
    keeper.expect_line(&format!("* sent to {}: hello again", spaced.address()));
    keeper.quit_ok();

    let mut keeper = Peer::spawn(
        "keeper",
        "127.0.133.2",
        &["--state", &dir_s, "--greet-remembered"],
    );
    let got = understood_or_not(&mut spaced, "our greeting", |f| {
        f["event"] == "control" && f["word"] == "connect"
    });
    assert_eq!(
        got["event"],
        "control",
        "{}",
        spaced.report("the greeting after the restart is not in the spaced form")
    );
    keeper.expect_line(&format!("* sent to {}: connect", spaced.address()));
    keeper.quit_ok();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------------------

#[test]
fn ipv6_peers_exchange_messages_on_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        println!("skipped: ::1 is not available on this machine ({e})");
        return;
    }
    let mut six = Peer::spawn("six", "::1", &[]);
    let mut seven = Peer::spawn("seven", "::1", &[]);
    assert!(six.addr.is_ipv6() && six.address().starts_with("[::1]:"));
    six.send_line(&format!("/send [::1]:{} hello over six", seven.port()));
    seven.expect_line(&format!("[six [::1]:{}] hello over six", six.port()));
    six.expect_line(&format!("* sent to [::1]:{}: hello over six", seven.port()));
    seven.send_line(&format!("/msg {} and back", six.address()));
    six.expect_line(&format!("[seven [::1]:{}] and back", seven.port()));

    // The table read by hand: the row of an IPv6 peer starts with `[::1]:PORT`.
    seven.send_line("/peers");
    seven.send_line("/no-such-command-ends-the-table");
    seven.expect("the query's header", WAIT, |l| l.starts_with("ADDRESS"));
    seven.expect("the hint after the query", WAIT, |l| l.starts_with("? "));
    let six_addr = format!("[::1]:{}", six.port());
    let row: Vec<String> = seven
        .lines()
        .iter()
        .find(|l| l.split_whitespace().next() == Some(six_addr.as_str()))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_else(|| panic!("{}", seven.report("six is not in the table")));
    assert_eq!(row[1], "six", "{row:?}");
    assert_eq!(row[2], "active", "{row:?}");

    six.quit_ok();
    seven.expect_line(&format!("* six [::1]:{} left (exit)", six.port()));
    seven.quit_ok();
}

// ---------------------------------------------------------------------------------------
// The example bot
// ---------------------------------------------------------------------------------------

/// `target/.../examples/ping_bot`, next to the peerchat binary's directory.
fn ping_bot_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_peerchat"));
    let path = bin
        .parent()
        .expect("the binary's directory")
        .join("examples")
        .join("ping_bot");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples; with a test filter, run \
         `cargo build --example ping_bot` first",
        path.display()
    );
    path
}

#[test]
fn ping_bot_example_answers_a_real_peer() {
    let mut cmd = Command::new(ping_bot_bin());
    cmd.args(["127.0.134.2", "0"]);
    let mut bot = Peer::launch("ping_bot", cmd, Stdio::null());
    let listening = bot.expect_event("listening", |_| true);
    let bot_addr = listening["addr"].as_str().unwrap_or_default().to_owned();
    assert!(bot_addr.starts_with("127.0.134.2:"), "{listening}");
    assert_eq!(listening["name"], "pingbot");

    let mut peer = Peer::spawn("pinger", "127.0.134.3", &[]);
    peer.send_line(&format!("/send {bot_addr} ping"));
    peer.expect_line(&format!("[pingbot {bot_addr}] pong"));
    let ping = bot.expect_event("message", |v| v["text"] == "ping");
    assert_eq!(ping["name"], "pinger");
    assert_eq!(ping["addr"], peer.address());
    bot.expect_event("sent", |v| {
        v["text"] == "pong" && v["addr"] == peer.address()
    });

    // Anything else is ignored; `quit` makes it leave.
    peer.send_line(&format!("/send {bot_addr} PING  "));
    peer.expect_line(&format!("[pingbot {bot_addr}] pong"));
    peer.send_line(&format!("/send {bot_addr} quit"));
    peer.expect_line(&format!("* pingbot {bot_addr} left (exit)"));
    let status = bot.expect_exit(LONG_WAIT);
    assert!(
        status.success(),
        "{}",
        bot.report(&format!("exit {status}"))
    );
    let lines = bot.lines();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("\"event\":\"bye\"")),
        "{}",
        bot.report("bye is the last line")
    );
    peer.quit_ok();
}

/// The plain lines a sender streams after its header are each a message: one `message`
/// event per line in `--json`, one line each in text, in order, from the header's sender,
/// with control characters escaped, and the control word on a line of its own still a
/// control word (the lines are decoded together, which must change nothing of this).
#[test]
fn each_streamed_line_is_a_message_of_its_own() {
    let sender = "127.0.140.3";
    let stream = |to: SocketAddr| {
        let mut s = connect_from(sender, to).expect("connect");
        s.write_all(b"127.0.140.3:9 st first\nsecond\nthird \x1b[31m\nx\n\nlast one\nconnect\n")
            .expect("write the stream");
    };
    let texts = ["first", "second", "third \u{1b}[31m", "x", "last one"];

    let mut json = Peer::peerchat(
        "json",
        &["-n", "j", "-p", "0", "-b", "127.0.140.2", "--json"],
    );
    let listening = json.expect_event("listening", |_| true);
    let addr: SocketAddr = listening["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("listening addr: {listening}"));
    stream(addr);
    for text in texts {
        let m = json.expect_event("message", |_| true);
        assert_eq!(m["text"], text, "{m}");
        assert_eq!(m["name"], "st", "{m}");
        assert_eq!(m["addr"], "127.0.140.3:9", "{m}");
    }
    json.expect_event("connect", |v| v["addr"] == "127.0.140.3:9");

    let mut plain = Peer::spawn("t", "127.0.140.4", &[]);
    stream(plain.address().parse().expect("an address"));
    let shown: Vec<String> = ["first", "second", "third \\u{1b}[31m", "x", "last one"]
        .iter()
        .map(|t| format!("[st {sender}:9] {t}"))
        .collect();
    plain.expect_lines_in_order(&shown);
    plain.expect("the connect line", LONG_WAIT, |l| {
        l.starts_with("* connect from st 127.0.140.3:9")
    });
}

/// A journal that remembers more peers than the table holds (65,536): the start-up line
/// said `remembered 65546 peers` while the table kept 65,536. Now it counts what was kept
/// and says how many were forgotten. Nothing is contacted: checks are off, no greeting.
#[test]
fn a_journal_of_more_peers_than_the_table_holds_says_what_it_kept() {
    let dir = state_dir("overfull");
    let mut journal = String::new();
    for host in 200..210u8 {
        for port in 1..=6_555u16 {
            journal.push_str(&format!(
                "{{\"k\":\"peer\",\"addr\":\"127.0.152.{host}:{port}\",\"name\":null}}\n"
            ));
        }
    }
    std::fs::write(dir.join("journal.jsonl"), journal).expect("write the journal");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut keeper = Peer::spawn(
        "keeper",
        "127.0.152.210",
        &["--state", &dir_s, "--probe-interval", "0"],
    );
    keeper.expect_line("* remembered 65536 peers and 0 messages");
    keeper.expect_line("! 14 peers of the state journal did not fit in the peer table: forgotten");
    keeper.quit_ok();
    let _ = std::fs::remove_dir_all(&dir);
}
