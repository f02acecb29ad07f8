//! `Ir per message`, where `valgrind` is on PATH: a contender listening on `127.0.0.70` runs
//! under `valgrind --tool=callgrind` (peerchat with `--headless --probe-interval 0` and
//! `RUST_LOG=error`) while `127.0.0.71` sends it one-message connections (connect, send
//! `127.0.0.71:9 cg m00001`, close), no more than [`IN_FLIGHT`] of them unshown at once (the
//! stdout file is watched), so that the count is of steady work, not of queues. Then SIGTERM,
//! and the `summary:` (or `totals:`) line of the callgrind file, divided by the number of
//! messages, start-up and shutdown included ([`IR`]). A second run with no message at all
//! gives the cost of start-up and shutdown alone; [`IR_NET`] is the difference per message.

use crate::load;
use crate::procs::{self, Kind, Launch};
use crate::report::{Metric, Table};
use crate::scenarios::Env;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where the contender listens.
pub const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 70);
/// Where the messages come from (claiming port 9, where nothing listens).
pub const SENDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 71);
/// Most messages sent but not yet shown.
pub const IN_FLIGHT: u32 = 50;
/// How long the whole run may take under valgrind.
const DEADLINE: Duration = Duration::from_secs(120);

pub static IR: Metric = Metric {
    scenario: "callgrind",
    name: "Ir per message (user space)",
    target: "peerchat ≤ 2,500",
    decimals: 0,
};

pub static IR_NET: Metric = Metric {
    scenario: "callgrind",
    name: "Ir per message, less a 0-message run",
    target: "peerchat ≤ 2,500",
    decimals: 0,
};

/// Whether `valgrind` can be run.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a printed line is one of ours: it ends with `m` and five digits (peerchat shows
/// `[cg 127.0.0.71:9] m00001`, the floor the message as sent).
fn is_ours(line: &[u8]) -> bool {
    line.len() >= 6
        && line[line.len() - 6] == b'm'
        && line[line.len() - 5..].iter().all(u8::is_ascii_digit)
}

/// Runs each contender under callgrind with no message, then `runs` times with `n`
/// messages, the contenders alternating; adds each run's Ir per message to `table` (which
/// reports their median and range).
pub fn run(
    env: &Env,
    kinds: &[Kind],
    (n, runs): (u32, usize),
    table: &mut Table,
) -> Result<(), String> {
    let mut idle = Vec::new();
    for &kind in kinds {
        idle.push(count(env, kind, 0, 0)?);
    }
    for run in 0..runs {
        table.set_round(run);
        for i in 0..kinds.len() {
            let at = (i + run) % kinds.len();
            let kind = kinds[at];
            let total = count(env, kind, n, run)?;
            let per = total as f64 / f64::from(n);
            table.add(&IR, kind, per);
            let net = total.saturating_sub(idle[at]) as f64 / f64::from(n);
            table.add(&IR_NET, kind, net);
            eprintln!(
                "  callgrind {:<8} {n} messages: {total} Ir in all, {per:.0} per message; {} Ir with none, so {net:.0} per message",
                kind.name(),
                idle[at]
            );
        }
    }
    Ok(())
}

/// Runs one contender under callgrind with `n` messages; the Ir it executed in all.
fn count(env: &Env, kind: Kind, n: u32, run: usize) -> Result<u64, String> {
    let name = kind.name();
    let label = format!("callgrind-{n}-{}-{run}", name.replace(' ', ""));
    let counts = env.dir.join(format!("{label}.callgrind"));
    let mut c = procs::start(&Launch {
        kind,
        peerchat: env.peerchat,
        bench_exe: env.bench_exe,
        dir: env.dir,
        label,
        fan_out: None,
        default_limits: true,
        bind: PEER,
        callgrind: Some(&counts),
    })?;
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let result = (|| {
        let mut shown = 0u32;
        let poll = |c: &mut procs::Running, shown: &mut u32| -> Result<(), String> {
            c.out.poll(|l| *shown += u32::from(is_ours(l)));
            c.alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} under callgrind: {shown} of {n} messages shown within {} s",
                    DEADLINE.as_secs()
                ));
            }
            Ok(())
        };
        for i in 1..=n {
            while (i - 1).saturating_sub(shown) >= IN_FLIGHT {
                poll(&mut c, &mut shown)?;
                thread::sleep(Duration::from_millis(1));
            }
            let msg = format!("{SENDER}:9 cg m{i:05}");
            load::send_one(SocketAddr::new(SENDER.into(), 0), c.addr, &msg)
                .map_err(|e| format!("{name} under callgrind: sending message {i}: {e}"))?;
        }
        while shown < n {
            poll(&mut c, &mut shown)?;
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })();
    let took = started.elapsed();
    // SIGTERM; callgrind writes its counts as the process ends.
    result.and(c.stop())?;
    let text = std::fs::read_to_string(&counts)
        .map_err(|e| format!("{name}: reading {}: {e}", counts.display()))?;
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{name}: no summary/totals line in {}", counts.display()))?;
    eprintln!(
        "  callgrind {name:<8} {n} messages sent in {:.1} s",
        took.as_secs_f64()
    );
    Ok(total)
}
