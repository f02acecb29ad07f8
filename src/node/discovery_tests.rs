//! The node's side of LAN discovery and peer exchange: what announcements, goodbyes,
//! queries and answers do to the peer table and what the node sends back (tests only).

use crate::time::Instant;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::discovery::{
    self, encode_peers, padded_query, Datagram, Listed, Nonce, ANSWERS_PER_WINDOW, MAX_DATAGRAM,
    NEW_PEERS_PER_WINDOW,
};
use super::{Effect, Node, Settings};
use crate::node::event::Event;
use crate::node::liveness::Liveness;
use crate::node::peers::{Source, Status};
use crate::wire::{Body, Dialect, Message};

const GROUP: &str = "239.255.77.77:5077";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn node(discover: bool) -> Node {
    let me = Settings {
        discovery: discover.then(|| discovery::Plan {
            group: addr(GROUP),
            interval: discovery::ANNOUNCE_INTERVAL,
        }),
        ..Settings::for_tests()
    };
    Node::new(
        me,
        Liveness::new(Duration::from_secs(30), 3),
        (Instant::now(), 0),
    )
}

fn datagrams(out: &[Effect]) -> Vec<(SocketAddr, Vec<u8>)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Datagram { to, bytes } => Some((*to, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn sends(n: &mut Node) -> Vec<(SocketAddr, String, Dialect)> {
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| (t.dest, t.text, t.dialect))
        .collect()
}

/// The query `out` holds for `to`, if any.
fn query_to(out: &[Effect], to: SocketAddr) -> Option<Vec<u8>> {
    datagrams(out)
        .into_iter()
        .find(|(a, b)| *a == to && matches!(Datagram::parse(b), Some(Datagram::Query { .. })))
        .map(|(_, b)| b)
}

fn nonce_of(query: &[u8]) -> Nonce {
    match Datagram::parse(query) {
        Some(Datagram::Query { nonce: Some(n) }) => n,
        other => panic!("not a query with a nonce: {other:?}"),
    }
}

/// An answer to `query` whose lines (each starting with `\n`) are `lines`.
fn answer(query: &[u8], lines: &str) -> Vec<u8> {
    format!("peerchat1 peers {:08x}{lines}", nonce_of(query)).into_bytes()
}

/// Bob announces himself from `src` (TCP port 6000), our greeting reaches him, and he
/// answers the bare query that follows: the padded query to him is returned.
fn asked_in_full(n: &mut Node, src: SocketAddr, t: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    n.on_datagram(src, &hello("bob", 6000), t, &mut out);
    let _ = sends(n);
    n.on_sent(SocketAddr::new(src.ip(), 6000), None, t, &mut out);
    n.on_timeout(t, &mut out);
    let bare = query_to(&out, src).expect("a bare query");
    assert!(bare.len() < 30, "{} bytes", bare.len());
    out.clear();
    n.on_datagram(src, &answer(&bare, ""), t, &mut out);
    assert_eq!(n.poll_timeout(), Some(t), "the padded query is due");
    n.on_timeout(t, &mut out);
    let padded = query_to(&out, src).expect("a padded query");
    assert_eq!(padded.len(), MAX_DATAGRAM);
    padded
}

/// `connect_ack` from `name` listening at `port`, in the standard dialect, as a peerchat
/// answers our greeting.
fn connect_ack(name: &str, port: u16) -> Message {
    Message {
        claimed_ip: None,
        name: Some(name.into()),
        port: Some(port),
        body: Body::ConnectAck,
        dialect: Dialect::Standard,
    }
}

fn hello(name: &str, port: u16) -> Vec<u8> {
    Datagram::Hello {
        name: name.into(),
        port,
    }
    .encode()
}

#[test]
fn start_announces_and_quit_says_bye_to_the_group() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    assert_eq!(datagrams(&out), vec![(addr(GROUP), hello("me", 5000))]);
    assert_eq!(n.poll_timeout(), Some(t + discovery::ANNOUNCE_REPEAT));
    out.clear();
    n.quit(t, &mut out);
    assert_eq!(
        datagrams(&out),
        vec![(addr(GROUP), b"peerchat1 bye 5000".to_vec())]
    );
    out.clear();
    n.on_datagram(addr("127.0.0.7:5077"), &hello("bob", 6000), t, &mut out);
    assert!(out.is_empty(), "nothing learned while quitting");
}

#[test]
fn without_discover_datagrams_are_ignored_and_none_are_sent() {
    let mut n = node(false);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    n.on_datagram(addr("127.0.0.7:5077"), &hello("bob", 6000), t, &mut out);
    n.on_datagram(addr("127.0.0.7:5077"), &padded_query(1), t, &mut out);
    n.quit(t, &mut out);
    assert!(datagrams(&out).is_empty());
    assert!(n.peers().is_empty());
}

#[test]
fn an_announcement_files_the_peer_as_discovered_and_greets_it_once() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    let src = addr("127.0.0.7:5077");
    let bob = addr("127.0.0.7:6000");
    n.on_datagram(src, &hello("bob", 6000), t, &mut out);
    assert!(out.contains(&Effect::Show(Event::PeerJoined {
        addr: bob,
        name: Some("bob".into())
    })));
    let peer = n.peers().get(bob).expect("filed");
    assert_eq!(
        (peer.source, peer.status),
        (Source::Discovered, Status::Contacted)
    );
    assert_eq!(
        sends(&mut n),
        vec![(bob, "connect".to_owned(), Dialect::Standard)]
    );
    n.on_sent(bob, None, t, &mut out);
    assert_eq!(n.peers().get(bob).map(|p| p.status), Some(Status::Active));
    // Announced again (the periodic hello): not greeted again.
    n.on_datagram(src, &hello("bob", 6000), t, &mut out);
    n.on_datagram(src, &hello("bob", 6000), t, &mut out);
    assert!(sends(&mut n).is_empty());
    // It is asked, once, which peers it knows, to the hello's source: a bare query first
    // (nothing says a peerchat listens there yet), the padded one once it answered.
    out.clear();
    n.on_timeout(t, &mut out);
    let got = datagrams(&out);
    assert_eq!(got.len(), 1);
    let bare = query_to(&out, src).expect("asked");
    assert!(bare.len() < 30);
    out.clear();
    n.on_datagram(src, &answer(&bare, ""), t, &mut out);
    n.on_timeout(t, &mut out);
    let got = datagrams(&out);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1.len()), (src, MAX_DATAGRAM));
    assert_ne!(nonce_of(&got[0].1), nonce_of(&bare), "a nonce per query");
}

#[test]
fn our_own_announcement_coming_back_is_ignored() {
    let mut n = node(true);
    let mut out = Vec::new();
    let t = Instant::now();
    n.on_datagram(addr("127.0.0.2:5077"), &hello("me", 5000), t, &mut out);
    assert!(n.peers().is_empty());
    assert!(sends(&mut n).is_empty());
}

#[test]
fn a_peer_heard_over_tcp_first_keeps_its_source_and_is_not_greeted_again() {
    let mut n = node(true);
    let mut out = Vec::new();
    let t = Instant::now();
    let msg = Message {
        name: Some("bob".into()),
        claimed_ip: None,
        port: Some(6000),
        body: Body::ConnectAck,
        dialect: Dialect::Standard,
    };
    n.on_message("127.0.0.7".parse().expect("ip"), msg, t, &mut out);
    n.on_datagram(addr("127.0.0.7:5077"), &hello("bob", 6000), t, &mut out);
    assert_eq!(
        n.peers().get(addr("127.0.0.7:6000")).map(|p| p.source),
        Some(Source::Heard)
    );
    assert!(sends(&mut n).is_empty());
}

#[test]
fn bye_forgets_a_discovered_peer_but_not_one_known_otherwise() {
    let mut n = node(true);
    let mut out = Vec::new();
    let t = Instant::now();
    let src = addr("127.0.0.7:5077");
    n.on_datagram(src, &hello("bob", 6000), t, &mut out);
    n.execute(
        crate::node::commands::Command::Send {
            dest: addr("127.0.0.7:7000"),
            text: "hi".into(),
        },
        t,
        &mut out,
    );
    assert_eq!(n.peers().len(), 2);
    out.clear();
    n.on_datagram(src, b"peerchat1 bye 6000", t, &mut out);
    n.on_datagram(src, b"peerchat1 bye 7000", t, &mut out);
    assert_eq!(n.peers().len(), 1, "the peer we typed to stays");
    assert!(n.peers().get(addr("127.0.0.7:7000")).is_some());
    assert!(matches!(
        out.as_slice(),
        [Effect::Show(Event::PeerLeft { addr: a, .. })] if *a == addr("127.0.0.7:6000")
    ));
}

/// Puts active peers in the table: each said `connect_ack` over TCP.
fn with_active_peers(n: &mut Node, count: u16, t: Instant) {
    let mut out = Vec::new();
    for i in 0..count {
        let msg = Message {
            name: Some(format!("p{i}")),
            claimed_ip: None,
            port: Some(6000 + i),
            body: Body::ConnectAck,
            dialect: Dialect::Colon,
        };
        let ip = IpAddr::from([127, 0, 1, (i % 250) as u8 + 1]);
        n.on_message(ip, msg, t, &mut out);
    }
}

#[test]
fn a_query_is_answered_to_its_source_within_its_size() {
    let mut n = node(true);
    let t = Instant::now();
    with_active_peers(&mut n, 100, t);
    let src = addr("127.0.0.7:5077");
    let mut out = Vec::new();
    n.on_datagram(src, &padded_query(0xabc), t, &mut out);
    let got = datagrams(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, src);
    assert!(got[0].1.len() <= MAX_DATAGRAM);
    let Some(Datagram::Peers { nonce, list }) = Datagram::parse(&got[0].1) else {
        panic!("not an answer")
    };
    assert_eq!(nonce, Some(0xabc));
    assert!(list.len() >= 10, "{}", list.len());
    assert!(list.iter().all(|p| p.dialect == Some(Dialect::Colon)));
    // A bare query: an answer no longer than it.
    out.clear();
    let bare = Datagram::Query { nonce: None }.encode();
    n.on_datagram(addr("127.0.0.8:5077"), &bare, t, &mut out);
    let got = datagrams(&out);
    assert!(got[0].1.len() <= bare.len());
}

#[test]
fn a_spoofed_query_flood_draws_a_bounded_number_of_answers() {
    let mut n = node(true);
    let t = Instant::now();
    with_active_peers(&mut n, 40, t);
    let mut out = Vec::new();
    let mut bytes_in = 0usize;
    for i in 0..20_000u32 {
        let from = SocketAddr::new(IpAddr::from((0x7f02_0000 + i).to_be_bytes()), 5077);
        let q = padded_query(i);
        bytes_in += q.len();
        n.on_datagram(from, &q, t + Duration::from_millis(u64::from(i)), &mut out);
    }
    let answers = datagrams(&out);
    // 20 s of flood: one window.
    assert_eq!(answers.len(), ANSWERS_PER_WINDOW as usize);
    let bytes_out: usize = answers.iter().map(|(_, b)| b.len()).sum();
    assert!(
        bytes_out * 100 < bytes_in,
        "{bytes_out} out for {bytes_in} in"
    );
}

#[test]
fn an_answer_to_our_query_files_its_peers_as_exchanged_and_greets_each_in_its_dialect() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    let src = addr("127.0.0.7:5077");
    // Our greeting reaches bob's TCP side: only then is bob asked.
    let query = asked_in_full(&mut n, src, t);
    let listed = |ip: &str, age, dialect| Listed {
        addr: addr(ip),
        age: Duration::from_secs(age),
        dialect,
        name: Some("carol".into()),
    };
    let answer = encode_peers(
        &[
            listed("127.0.0.9:7000", 5, Some(Dialect::Spaced)),
            listed("127.0.0.2:5000", 5, None),     // us
            listed("127.0.0.7:6000", 5, None),     // bob, known
            listed("127.0.0.10:7000", 5000, None), // stale
        ],
        MAX_DATAGRAM,
        Some(nonce_of(&query)),
    );
    // From someone we did not ask: nothing.
    n.on_datagram(addr("127.0.0.8:5077"), &answer, t, &mut out);
    assert_eq!(n.peers().len(), 1);
    n.on_datagram(src, &answer, t, &mut out);
    assert_eq!(n.peers().len(), 2);
    let carol = n.peers().get(addr("127.0.0.9:7000")).expect("filed");
    assert_eq!(carol.source, Source::Exchanged);
    assert_eq!(
        sends(&mut n),
        vec![(addr("127.0.0.9:7000"), "connect".into(), Dialect::Spaced)]
    );
    // The same answer again: not asked for any more.
    n.on_datagram(src, &answer, t, &mut out);
    assert!(sends(&mut n).is_empty());
}

#[test]
fn discovered_peers_obey_the_table_bounds() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    let src = addr("127.0.0.7:5077");
    for port in 1..=200u16 {
        n.on_datagram(src, &hello("x", port), t, &mut out);
    }
    assert_eq!(n.peers().len(), crate::node::peers::MAX_PEERS_PER_IP);
}

#[test]
fn a_spoofed_hello_flood_greets_a_bounded_number_of_new_peers() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    for i in 0..10_000u32 {
        let from = SocketAddr::new(IpAddr::from((0x7f03_0000 + i).to_be_bytes()), 5077);
        n.on_datagram(from, &hello("x", 6000), t, &mut out);
    }
    assert_eq!(n.peers().len(), NEW_PEERS_PER_WINDOW as usize);
    let stats = n.discovery_stats().expect("on");
    assert_eq!(stats.admitted, 10_000);
}

#[test]
fn hellos_that_greet_nobody_leave_nothing_awaiting_a_greeting() {
    // Only a hello whose sender we greet waits for that greeting (to be asked once it is
    // delivered); those beyond the new-peer rate are not greeted, and must not fill the
    // bounded map with entries nothing would ever take back.
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    for i in 0..2_000u32 {
        let from = SocketAddr::new(IpAddr::from((0x7f03_0000 + i).to_be_bytes()), 5077);
        n.on_datagram(from, &hello("x", 6000), t, &mut out);
    }
    assert_eq!(n.awaiting_greeting.len(), NEW_PEERS_PER_WINDOW as usize);
    // Every greeting fails: nothing is left waiting.
    loop {
        let failed = sends(&mut n);
        if failed.is_empty() {
            break;
        }
        for (dest, ..) in failed {
            n.on_send_failed(dest, "refused".into(), &mut out);
        }
    }
    assert!(
        n.awaiting_greeting.is_empty(),
        "{} left",
        n.awaiting_greeting.len()
    );
}

#[test]
fn the_node_announces_at_every_interval() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    let mut times = Vec::new();
    for _ in 0..4 {
        let at = n.poll_timeout().expect("a deadline");
        out.clear();
        n.on_timeout(at, &mut out);
        if !datagrams(&out).is_empty() {
            times.push(at.saturating_duration_since(t).as_secs());
        }
    }
    assert_eq!(times, vec![5, 605, 1205, 1805]);
}

#[test]
fn listed_addresses_in_mapped_form_are_checked_like_plain_ones() {
    // `[::ffff:0.0.0.0]` is 0.0.0.0 (a TCP connect to it reaches this very host) and
    // `[::ffff:224.0.0.1]` is multicast: the table files them in canonical form, so the
    // parser has to refuse them as it refuses the plain forms. Broadcast is no peer either.
    for bad in [
        "[::ffff:0.0.0.0]:5000",
        "[::ffff:224.0.0.1]:5000",
        "[::]:5000",
        "255.255.255.255:5000",
        "[::ffff:255.255.255.255]:5000",
    ] {
        let answer = format!("peerchat1 peers\n{bad} 1 - -\n");
        assert_eq!(
            Datagram::parse(answer.as_bytes()),
            Some(Datagram::Peers {
                nonce: None,
                list: vec![]
            }),
            "{bad}"
        );
    }
    // And the node does not greet them when an asked peerchat lists them.
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    let src = addr("127.0.0.7:5077");
    let query = asked_in_full(&mut n, src, t);
    let lines = "\n[::ffff:0.0.0.0]:22 1 - -\n[::ffff:224.0.0.1]:22 1 - -\n127.0.0.9:22 1 - -";
    n.on_datagram(src, &answer(&query, lines), t, &mut out);
    let greeted: Vec<SocketAddr> = sends(&mut n).into_iter().map(|s| s.0).collect();
    assert_eq!(greeted, vec![addr("127.0.0.9:22")], "only the peer address");
    assert_eq!(n.peers().len(), 2, "bob and 127.0.0.9:22");
}

#[test]
fn a_hello_draws_nothing_larger_than_itself_towards_its_source() {
    // Amplification: the hello is 25 bytes; the query it draws is padded to 1200, sent to
    // the hello's source, which anyone on the LAN can forge. Every peerchat hearing the
    // (multicast) hello sends one, so one forged hello draws N x 1200 bytes at a victim.
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    let victim = addr("127.0.0.7:9");
    let bytes = hello("bob", 6000);
    n.on_datagram(victim, &bytes, t, &mut out);
    n.on_timeout(t, &mut out);
    let sent: usize = datagrams(&out)
        .iter()
        .filter(|(to, _)| *to == victim)
        .map(|(_, b)| b.len())
        .sum();
    assert!(
        sent <= bytes.len(),
        "{} bytes in, {sent} bytes out to the source",
        bytes.len()
    );
    // Once our greeting reaches its TCP side, something accepts connections there (an
    // sshd would): asked then, but with a bare query, about as long as the hello. Only
    // an answer carrying its nonce earns the padded query.
    assert_eq!(sends(&mut n).len(), 1, "greeted with connect");
    n.on_sent(addr("127.0.0.7:6000"), None, t, &mut out);
    out.clear();
    n.on_timeout(t, &mut out);
    let bare = query_to(&out, victim).expect("asked now");
    assert!(bare.len() <= bytes.len() + 8, "{} bytes", bare.len());
    // An answer forged without the nonce (or with a guess) draws nothing more; more
    // hellos forged from the victim's other ports each draw a bare query at most, and
    // never a padded one, over ten minutes.
    let mut drawn = 0;
    for s in 0..600u64 {
        let now = t + Duration::from_secs(s);
        out.clear();
        if s < 20 {
            let from = addr(&format!("127.0.0.7:{}", 100 + s));
            n.on_datagram(from, &bytes, now, &mut out);
        }
        for forged in [None, Some(nonce_of(&bare).wrapping_add(1))] {
            let lines = "\n127.0.0.9:22 1 - -";
            let mut b = encode_peers(&[], MAX_DATAGRAM, forged);
            b.extend_from_slice(lines.as_bytes());
            n.on_datagram(victim, &b, now, &mut out);
        }
        n.on_timeout(now, &mut out);
        for (to, b) in datagrams(&out) {
            if to.ip() == victim.ip() {
                assert!(b.len() < 30, "{} bytes to {to}", b.len());
                drawn += 1;
            }
        }
    }
    assert!(drawn > 0, "the other ports were asked, bare");
    assert!(
        n.peers().get(addr("127.0.0.9:22")).is_none(),
        "forged list taken"
    );
}

#[test]
fn a_listed_loopback_alias_of_ourselves_is_not_greeted() {
    // Bound to every address (as the driver sets own_ips then: interfaces, 127.0.0.1 and
    // 0.0.0.0), a peer listing 127.0.0.9:OURPORT names us: the connect would reach our
    // own listener.
    let mut n = node(true);
    n.me.own_ips = ["127.0.0.1", "0.0.0.0"]
        .map(|ip| ip.parse().expect("ip"))
        .to_vec();
    let t = Instant::now();
    let mut out = Vec::new();
    let src = addr("127.0.0.7:5077");
    let query = asked_in_full(&mut n, src, t);
    let lines = "\n127.0.0.9:5000 1 - me\n127.0.0.9:5001 1 - other\n";
    n.on_datagram(src, &answer(&query, lines), t, &mut out);
    let greeted: Vec<SocketAddr> = sends(&mut n).into_iter().map(|s| s.0).collect();
    assert_eq!(greeted, vec![addr("127.0.0.9:5001")], "greeted ourselves");
}

/// Drives `n` for `secs` seconds, one second at a time, handing every datagram sent to
/// `victim` to `reflect` (which may return a datagram `victim` sends back); returns the
/// sizes of the datagrams that reached `victim`.
fn drive_with_victim(
    n: &mut Node,
    victim: SocketAddr,
    t: Instant,
    secs: u64,
    mut reflect: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    for s in 0..secs {
        let now = t + Duration::from_secs(s);
        let mut out = Vec::new();
        n.on_timeout(now, &mut out);
        // Deliver, and let the victim reflect; several rounds within the same second.
        for _ in 0..4 {
            for b in pending.drain(..) {
                n.on_datagram(victim, &b, now, &mut out);
            }
            for (to, b) in datagrams(&out) {
                if to == victim {
                    sizes.push(b.len());
                    if let Some(back) = reflect(&b) {
                        pending.push(back);
                    }
                }
            }
            out.clear();
            n.on_timeout(now, &mut out);
        }
        let _ = sends(n);
    }
    sizes
}

/// A started node with `peers` active peers that heard a hello forged from `victim`,
/// naming TCP port 6000 at its IP, and greeted that port successfully.
fn forged_and_greeted(victim: SocketAddr, peers: u16, t: Instant) -> Node {
    let mut n = node(true);
    with_active_peers(&mut n, peers, t);
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    n.on_datagram(victim, &hello("bob", 6000), t, &mut out);
    let _ = sends(&mut n);
    n.on_sent(SocketAddr::new(victim.ip(), 6000), None, t, &mut out);
    n
}

/// A forged hello from VICTIM:7 (a UDP echo service) naming a TCP port that accepts
/// connections. Nothing at VICTIM:7 is a peerchat, but the echo hands our bare query
/// back; answered (echoing its nonce, as an answer must), the echo would hand that
/// answer back with the nonce of the query we sent to VICTIM:7, taken as proof, and
/// VICTIM:7 would get padded 1200-byte queries and answers. Our own query coming back
/// is not answered.
#[test]
fn an_echo_service_cannot_earn_the_padded_query() {
    let (t, victim) = (Instant::now(), addr("127.0.0.7:7"));
    let mut n = forged_and_greeted(victim, 40, t);
    let sizes = drive_with_victim(&mut n, victim, t, 3600, |b| Some(b.to_vec()));
    let big = sizes.iter().filter(|s| **s > 30).count();
    assert_eq!(
        big, 0,
        "an echo at the forged source drew {big} datagrams over 30 bytes: {sizes:?}"
    );
}

/// A single forged hello (its greeting got through) puts its source among the peerchats
/// asked again in turn; silent, it is skipped until it announces itself again, so it
/// draws one bare query, not one every interval for as long as we run.
#[test]
fn one_forged_hello_draws_one_bare_query_not_one_per_interval() {
    let (t, victim) = (Instant::now(), addr("127.0.0.7:9"));
    let mut n = forged_and_greeted(victim, 0, t);
    // Six hours, the default interval: the victim never answers.
    let sizes = drive_with_victim(&mut n, victim, t, 6 * 3600, |_| None);
    assert!(sizes.iter().all(|s| *s <= 24), "{sizes:?}");
    assert!(
        sizes.len() <= 1,
        "one forged hello drew {} bare queries in 6 hours",
        sizes.len()
    );
}

/// A port a hello named that accepted our greeting but never said a word back (no
/// `connect_ack`, nothing in any dialect) is not a peerchat: at its first liveness check
/// it is dropped, not checked, so a forged hello naming a web server's port costs one
/// greeting, not a check every interval for as long as the server runs. A peerchat that
/// answered is checked as any peer.
#[test]
fn an_announced_port_that_never_answers_its_greeting_is_dropped_not_checked() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    let (web, bob) = (addr("127.0.0.7:80"), addr("127.0.0.8:6000"));
    n.on_datagram(addr("127.0.0.7:9"), &hello("www", 80), t, &mut out);
    n.on_datagram(addr("127.0.0.8:5077"), &hello("bob", 6000), t, &mut out);
    let mut greeted: Vec<SocketAddr> = sends(&mut n).into_iter().map(|s| s.0).collect();
    greeted.sort();
    assert_eq!(greeted, vec![web, bob]);
    n.on_sent(web, None, t, &mut out);
    n.on_sent(bob, None, t, &mut out);
    // Bob, a peerchat, answers our connect.
    let ack = connect_ack("bob", 6000);
    n.on_message(bob.ip(), ack, t, &mut out);
    out.clear();
    let mut checked = Vec::new();
    let mut now = t;
    while now < t + Duration::from_secs(120) {
        now = n.poll_timeout().expect("checks and announcements");
        n.on_timeout(now, &mut out);
        for e in out.drain(..) {
            match e {
                Effect::Check(a) => {
                    checked.push(a);
                    n.on_check(a, true, now, &mut Vec::new());
                }
                Effect::Show(Event::PeerLeft { addr, reason, .. }) => {
                    assert_eq!((addr, reason), (web, super::LeaveReason::Silent));
                    assert!(n.peers().get(web).is_none(), "dropped");
                }
                _ => {}
            }
        }
    }
    assert!(n.peers().get(web).is_none(), "the silent port was dropped");
    assert!(!checked.contains(&web), "the silent port was checked");
    assert!(checked.contains(&bob), "bob was not checked: {checked:?}");
}

/// Drives `n` from `from` to `until`, answering every check; returns who was checked and
/// who was dropped as silent.
fn run_answering(
    n: &mut Node,
    from: Instant,
    until: Instant,
    mut each: impl FnMut(&mut Node, Instant),
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let (mut checked, mut silent) = (Vec::new(), Vec::new());
    let mut now = from;
    let mut out = Vec::new();
    while let Some(at) = n.poll_timeout() {
        if at > until {
            break;
        }
        now = now.max(at);
        n.on_timeout(now, &mut out);
        each(n, now);
        let _ = sends(n);
        for e in std::mem::take(&mut out) {
            match e {
                Effect::Check(a) => {
                    checked.push(a);
                    n.on_check(a, true, now, &mut Vec::new());
                }
                Effect::Show(Event::PeerLeft {
                    addr,
                    reason: super::LeaveReason::Silent,
                    ..
                }) => silent.push(addr),
                _ => {}
            }
        }
    }
    (checked, silent)
}

/// A forged hello names a web server's port (W): every peerchat that heard it drops W as
/// silent at its first check. But until then W is an active row, heard (announced) within
/// the hour, and is listed to any peerchat that asks: one that dropped W already (its
/// check came first) learns it again, now as `exchanged`, which is never dropped as
/// silent, and checks it for as long as the server accepts connections.
#[test]
fn a_port_that_never_said_a_word_is_not_passed_on_by_peer_exchange() {
    let t = Instant::now();
    let victim = addr("127.0.0.7:9");
    let web = addr("127.0.0.7:80");
    let (a_side, a_tcp) = (addr("127.0.0.5:5077"), addr("127.0.0.5:6000"));
    let b_side = addr("127.0.0.3:5077");
    let mut out = Vec::new();
    // B hears the forged hello first, A 20 s later; both greet W, which accepts.
    let mut b = node(true);
    b.start(addr("127.0.0.2:5000"), t, &mut out);
    b.on_datagram(victim, &hello("www", 80), t, &mut out);
    let _ = sends(&mut b);
    b.on_sent(web, None, t, &mut out);
    let mut a = node(true);
    let ta = t + Duration::from_secs(20);
    a.start(addr("127.0.0.2:5000"), ta, &mut out);
    a.on_datagram(victim, &hello("www", 80), ta, &mut out);
    let _ = sends(&mut a);
    a.on_sent(web, None, ta, &mut out);
    // B drops W at its first check (30 s, jittered).
    let tb = t + Duration::from_secs(40);
    let (_, silent) = run_answering(&mut b, t, tb, |_, _| {});
    assert_eq!(silent, vec![web]);
    assert!(b.peers().get(web).is_none());
    // B hears A (a peerchat that answers its greeting) and asks it in full.
    let query = asked_in_full(&mut b, a_side, tb);
    b.on_message(a_tcp.ip(), connect_ack("bob", a_tcp.port()), tb, &mut out);
    // A, whose check of W has not come yet, answers.
    out.clear();
    a.on_datagram(b_side, &query, tb, &mut out);
    let (to, answer) = datagrams(&out).pop().expect("an answer");
    assert_eq!(to, b_side);
    // Not listed at all (B's memory of silenced ports would hide it from B alone: a
    // peerchat that never dropped W would learn it as `exchanged`, never dropped).
    let Some(Datagram::Peers { list, .. }) = Datagram::parse(&answer) else {
        panic!("not an answer")
    };
    assert!(!list.iter().any(|p| p.addr == web), "W listed: {list:?}");
    b.on_datagram(a_side, &answer, tb, &mut out);
    let _ = sends(&mut b);
    b.on_sent(web, None, tb, &mut out);
    // Two hours on: W never said a word to anyone.
    let (checked, _) = run_answering(&mut b, tb, tb + Duration::from_secs(7200), |_, _| {});
    let at_web = checked.iter().filter(|c| **c == web).count();
    assert!(
        b.peers().get(web).is_none() && at_web == 0,
        "a silent port came back through peer exchange ({:?}) and was checked {at_web} times",
        b.peers().get(web).map(|p| p.source)
    );
}

/// A journal (`--state`) that remembers a port a hello named before it said a word brings
/// it back, at the next start, as `remembered`: checked for as long as it accepts, never
/// dropped as silent. A discovered row is worth remembering once it spoke.
#[test]
fn a_port_that_never_said_a_word_is_not_remembered() {
    use crate::node::history::Record;
    let me = Settings {
        persist: true,
        discovery: Some(discovery::Plan {
            group: addr(GROUP),
            interval: discovery::ANNOUNCE_INTERVAL,
        }),
        ..Settings::for_tests()
    };
    let mut n = Node::new(
        me,
        Liveness::new(Duration::from_secs(30), 3),
        (Instant::now(), 0),
    );
    let t = Instant::now();
    let mut out = Vec::new();
    let web = addr("127.0.0.7:80");
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    n.on_datagram(addr("127.0.0.7:9"), &hello("www", 80), t, &mut out);
    let _ = sends(&mut n);
    n.on_sent(web, None, t, &mut out);
    // (The user quits before its first check.)
    let journalled = |r: &Record| matches!(r, Record::Peer { addr, .. } if *addr == web);
    let in_journal = out
        .iter()
        .any(|e| matches!(e, Effect::Persist(r) if journalled(r)));
    let in_snapshot = n.snapshot().iter().any(journalled);
    assert!(
        !in_journal && !in_snapshot,
        "remembered: journal {in_journal}, snapshot {in_snapshot}"
    );
    // A peerchat that answers is remembered, with its dialect.
    let bob = addr("127.0.0.8:6000");
    n.on_datagram(addr("127.0.0.8:5077"), &hello("bob", 6000), t, &mut out);
    let _ = sends(&mut n);
    n.on_sent(bob, None, t, &mut out);
    out.clear();
    let ack = connect_ack("bob", 6000);
    n.on_message(bob.ip(), ack, t, &mut out);
    let bob_record = |r: &Record| match r {
        Record::Peer { addr, dialect, .. } => *addr == bob && *dialect == Some(Dialect::Standard),
        _ => false,
    };
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::Persist(r) if bob_record(r))));
    assert!(n.snapshot().iter().any(bob_record));
}

/// A peerchat on a host with two addresses on the LAN (wired and wireless, or a
/// secondary address) announces from each: two rows. Its `connect_ack`s leave from the
/// address its route picks, so the other row never hears a word, and is dropped as
/// silent. Learned again at the next hello, it was dropped again, every interval: a
/// peerchat that never left was told as leaving six times an hour. Now the dropped
/// address is not learned from the side channel again: told once.
#[test]
fn a_peerchat_announcing_from_two_addresses_is_told_as_silent_once() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    let (wired, wireless) = (addr("127.0.0.8:5077"), addr("127.0.0.9:5077"));
    let wireless_tcp = SocketAddr::new(wireless.ip(), 6000);
    let ack = || connect_ack("bob", 6000);
    // Bob announces from both every interval; each greeting reaches him, and he answers
    // each from his wired address.
    let announce = |n: &mut Node, now: Instant| {
        let mut out = Vec::new();
        for src in [wired, wireless] {
            n.on_datagram(src, &hello("bob", 6000), now, &mut out);
        }
        for (dest, text, _) in sends(n) {
            n.on_sent(dest, None, now, &mut out);
            if text == "connect" {
                n.on_message(wired.ip(), ack(), now, &mut out);
            }
        }
    };
    announce(&mut n, t);
    let mut last = t;
    let (_, silent) = run_answering(&mut n, t, t + Duration::from_secs(3600), |n, now| {
        if now.saturating_duration_since(last) >= discovery::ANNOUNCE_INTERVAL {
            last = now;
            announce(n, now);
        }
    });
    // Its second address is dropped once and not learned again; the first stays.
    assert_eq!(silent, vec![wireless_tcp], "{silent:?}");
    assert!(n.peers().get(wireless_tcp).is_none());
    assert!(n.peers().get(SocketAddr::new(wired.ip(), 6000)).is_some());
}

/// A forged hello names a web server's port; the user chats with `/all` every 20 s. Each
/// `/all` reaches the port (it accepts). Counted as reaching a peer for the liveness
/// schedule, that put its first check off for good: never dropped as silent, it got every
/// `/all` (180 in the hour) for as long as the user chatted. Only a word from it counts.
#[test]
fn a_silent_port_is_dropped_even_while_the_user_chats() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    let web = addr("127.0.0.7:80");
    n.on_datagram(addr("127.0.0.7:9"), &hello("www", 80), t, &mut out);
    for (dest, _, _) in sends(&mut n) {
        n.on_sent(dest, None, t, &mut out);
    }
    let mut chats_to_web = 0;
    let mut now = t;
    let mut next_chat = t + Duration::from_secs(20);
    let end = t + Duration::from_secs(3600);
    while now < end {
        let at = n.poll_timeout().map_or(next_chat, |at| at.min(next_chat));
        now = at;
        out.clear();
        n.on_timeout(now, &mut out);
        if now >= next_chat {
            n.on_line("/all hello everyone", now, &mut out);
            next_chat = now + Duration::from_secs(20);
        }
        for e in std::mem::take(&mut out) {
            if let Effect::Check(a) = e {
                n.on_check(a, true, now, &mut Vec::new());
            }
        }
        for (dest, text, _) in sends(&mut n) {
            if dest == web && text != "connect" {
                chats_to_web += 1;
            }
            n.on_sent(dest, None, now, &mut out);
        }
    }
    assert!(
        n.peers().get(web).is_none(),
        "never dropped as silent; it got {chats_to_web} of the user's /all messages in an hour"
    );
}

/// A discovered port that refused our greeting is not silent: it takes the usual way
/// (checked, unreachable, removed after the grace period), as the README says.
#[test]
fn a_refused_greeting_is_checked_not_dropped_as_silent() {
    let mut n = node(true);
    let t = Instant::now();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), t, &mut out);
    let closed = addr("127.0.0.7:81");
    n.on_datagram(addr("127.0.0.7:9"), &hello("www", 81), t, &mut out);
    let _ = sends(&mut n);
    n.on_send_failed(closed, "refused".into(), &mut out);
    let (checked, silent) = run_answering(&mut n, t, t + Duration::from_secs(60), |_, _| {});
    assert!(silent.is_empty(), "{silent:?}");
    assert!(checked.contains(&closed), "{checked:?}");
}

/// A peerchat whose table holds its bound of peers from our IP (`--max-peers-per-ip`)
/// shows our `connect` but does not answer it: over TCP, a port that took our greeting
/// and never said a word. It does answer our query on the side channel, with the nonce,
/// which only a peerchat does: not dropped as silent (it was, found by a review).
#[test]
fn a_peerchat_with_a_full_table_is_not_dropped_as_silent() {
    let t = Instant::now();
    let mut out = Vec::new();
    // N already keeps one peer from 127.0.0.2 (its bound here is 1).
    let mut full = Node::new(
        Settings {
            max_peers_per_ip: 1,
            discovery: Some(discovery::Plan {
                group: addr(GROUP),
                interval: discovery::ANNOUNCE_INTERVAL,
            }),
            ..Settings::for_tests()
        },
        Liveness::new(Duration::from_secs(30), 3),
        (t, 0),
    );
    full.start(addr("127.0.0.8:6000"), t, &mut out);
    full.on_message(
        "127.0.0.2".parse().expect("ip"),
        connect_ack("other", 5999),
        t,
        &mut out,
    );
    // We (127.0.0.2:5000) hear N's hello and greet it; N does not answer.
    let mut me = node(true);
    me.start(addr("127.0.0.2:5000"), t, &mut out);
    me.on_datagram(addr("127.0.0.8:5077"), &hello("n", 6000), t, &mut out);
    let n_addr = addr("127.0.0.8:6000");
    let _ = sends(&mut me);
    me.on_sent(n_addr, None, t, &mut out);
    out.clear();
    full.on_message(
        "127.0.0.2".parse().expect("ip"),
        Message {
            body: Body::Connect,
            ..connect_ack("me", 5000)
        },
        t,
        &mut out,
    );
    let answered = out.iter().any(|e| {
        matches!(
            e,
            Effect::Show(Event::ConnectFrom {
                answering: true,
                ..
            })
        )
    });
    assert!(!answered);
    assert!(sends(&mut full).is_empty(), "N answered");
    // Our bare query reaches N's side channel; N answers it (the padded one follows).
    let n_side = addr("127.0.0.8:5077");
    for _ in 0..2 {
        out.clear();
        me.on_timeout(t, &mut out);
        let query = query_to(&out, n_side).expect("N asked");
        out.clear();
        full.on_datagram(addr("127.0.0.2:40000"), &query, t, &mut out);
        let answer = datagrams(&out).pop().expect("N answered the query").1;
        me.on_datagram(n_side, &answer, t, &mut out);
    }
    let (_, silent) = run_answering(&mut me, t, t + Duration::from_secs(60), |_, _| {});
    assert!(
        silent.is_empty(),
        "a peerchat dropped as silent: {silent:?}"
    );
}
