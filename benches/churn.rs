//! `cargo bench --bench churn [-- --quick] [-- --no-peerchat] [-- --hostile-only]
//! [-- --stream-only] [-- --callgrind-only] [-- --churn-only]`: peerchat
//! against three baselines measured in the same run, under connection churn (at three
//! concurrencies), one persistent stream of lines, many held connections, fan-out and idle,
//! plus the instructions per message under callgrind where valgrind is on PATH; then peerchat
//! alone under attack (`hostile`).
//!
//! Contenders, each its own process, all driven by the same load generator:
//! - `peerchat`: the release binary (built here with `cargo build --release`), stdout to a file;
//!   under churn also `peerchat --state`, to show what the journal costs;
//! - `floor`: the smallest correct single-threaded mio server (`churn/floor.rs`);
//! - `threads`: a std-only thread-per-connection server (`churn/threads.rs`);
//! - `tokio`: a tokio accept-spawn server on the multi-thread runtime, under churn and stream
//!   only (`churn/tokio_server.rs`; tokio is a dev-dependency).
//!
//! `stream` (`churn/stream.rs`): one connection sends 100 B, 1 KiB or 64 KiB lines; MB/s, lines
//! shown of lines sent (a lost line is an error, in `--quick` too) and CPU per line.
//! `callgrind` (`churn/callgrind.rs`): peerchat and the floor under `valgrind --tool=callgrind`
//! with 3,000 one-message connections, sent in bursts to a stopped contender and one at a
//! time, three runs each (burst gives the same count every run; paced varies with how many
//! connections are accepted before their bytes arrive), alternating (300 once in
//! `--quick`); Ir per message.
//!
//! The baselines are this same bench binary re-executed with `PEERCHAT_BENCH_ROLE` set. Every
//! scenario runs several times with the contenders alternating; one table reports the median,
//! min–max and ratio to the floor (the median of the runs' ratios, each run against the
//! floor's run of the same round), with the targets beside them. The exit status is non-zero
//! only when something is broken (a message or line peerchat lost, a line a stream baseline
//! lost, a process that fails to start or dies), never because of a speed figure; a churn
//! message a baseline has not shown 10 s after the last send (the thread-per-connection
//! server's overflowing backlog at C = 256) is counted in the table and noted instead. `--no-peerchat` (or `PEERCHAT_BENCH_NO_PEERCHAT=1`) runs
//! only the baselines; `PEERCHAT_BENCH_KEEP=1` keeps every contender's stdout and stderr in the
//! scratch directory (it is always kept when something broke).
//!
//! `hostile` (`churn/hostile.rs`, attackers in `churn/attacks.rs`) runs the release peerchat
//! with its default limits under each attack of `tests/hostile.rs`, scaled up (64 streams of
//! 1 MiB, one endless stream, 1,000 held slots, 65,535 claimed ports with 60 KB names, a
//! 65,534-line `CONNECT` flood, 200,000 join/leave cycles), a fresh peer for each, then all
//! at once. A legitimate sender's 100 one-message connections meanwhile give p50/p99/max
//! delivery; the peer's peak RSS and its RSS before and after (once settled) are reported
//! in a second table, printed after the first. `--quick` runs the streams, held slots and
//! connect flood at a quarter of the size with 20 legitimate messages; `--hostile-only`
//! runs only this scenario, `--stream-only` only the streams, `--callgrind-only` only the
//! instructions per message, `--churn-only` only the churn (at the concurrencies of
//! `PEERCHAT_BENCH_CHURN_C`, a comma-separated list, when it is set).

#[path = "churn/attacks.rs"]
mod attacks;
#[path = "churn/callgrind.rs"]
mod callgrind;
#[path = "churn/floor.rs"]
mod floor;
#[path = "churn/hostile.rs"]
mod hostile;
#[path = "churn/load.rs"]
mod load;
#[path = "churn/procs.rs"]
mod procs;
#[path = "churn/report.rs"]
mod report;
#[path = "churn/scenarios.rs"]
mod scenarios;
#[path = "churn/sinks.rs"]
mod sinks;
#[path = "churn/stream.rs"]
mod stream;
#[path = "churn/threads.rs"]
mod threads;
#[path = "churn/tokio_server.rs"]
mod tokio_server;

use procs::Kind;
use scenarios::{ChurnMetrics, Config, Env};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Environment variable that turns the bench binary into one of the baseline servers.
pub const ROLE_VAR: &str = "PEERCHAT_BENCH_ROLE";

fn main() -> ExitCode {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        return run_role(&role);
    }
    let mut quick = false;
    let mut with_peerchat = std::env::var_os("PEERCHAT_BENCH_NO_PEERCHAT").is_none();
    let mut hostile_only = false;
    let mut stream_only = false;
    let mut callgrind_only = false;
    let mut churn_only = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--no-peerchat" => with_peerchat = false,
            "--hostile-only" => hostile_only = true,
            "--stream-only" => stream_only = true,
            "--callgrind-only" => callgrind_only = true,
            "--churn-only" => churn_only = true,
            "--bench" => {} // added by `cargo bench`
            other => eprintln!("churn bench: ignoring argument {other:?}"),
        }
    }
    if hostile_only && !with_peerchat {
        eprintln!("churn bench: --hostile-only needs peerchat; nothing to run");
        return ExitCode::FAILURE;
    }
    let only = Only {
        hostile: hostile_only,
        stream: stream_only,
        callgrind: callgrind_only,
        churn: churn_only,
    };
    match bench(quick, with_peerchat, only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("churn bench: FAILED: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a baseline server (or fan-out sender) in this process; never returns on success for the
/// servers, which run until a signal ends them.
fn run_role(role: &str) -> ExitCode {
    let bind: SocketAddr = std::env::var("PEERCHAT_BENCH_BIND")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let targets: Vec<SocketAddr> = std::env::var("PEERCHAT_BENCH_TARGETS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|t| t.parse().ok())
        .collect();
    let result = match role {
        "floor" => floor::serve(bind),
        "floor-fanout" => floor::fan_out(&targets),
        "threads" => threads::serve(bind),
        "threads-fanout" => threads::fan_out(&targets),
        "tokio" => tokio_server::serve(bind),
        other => Err(std::io::Error::other(format!(
            "unknown {ROLE_VAR} {other:?}"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{role}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds peerchat in release mode and returns the binary's path.
fn build_peerchat(manifest_dir: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building: {cargo} build --release --bin peerchat");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "peerchat"])
        .current_dir(manifest_dir)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release --bin peerchat failed ({status})"
        ));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_relative() {
                PathBuf::from(manifest_dir).join(d)
            } else {
                d
            }
        })
        .unwrap_or_else(|| PathBuf::from(manifest_dir).join("target"));
    let bin = target_dir.join("release").join("peerchat");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("built peerchat not found at {}", bin.display()))
    }
}

/// The one scenario to run alone, if any (several flags run those scenarios).
#[derive(Clone, Copy)]
struct Only {
    hostile: bool,
    stream: bool,
    callgrind: bool,
    churn: bool,
}

impl Only {
    fn any(self) -> bool {
        self.hostile || self.stream || self.callgrind || self.churn
    }
}

fn bench(quick: bool, with_peerchat: bool, only: Only) -> Result<(), String> {
    let began = Instant::now();
    let (old_soft, soft, hard) = procs::raise_fd_limit();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut cfg = if quick {
        Config {
            churn_runs: 2,
            churn_n: 5_000,
            churn_cs: vec![32],
            churn_budget: Duration::from_secs(2),
            sources: (2..=9).map(|x| Ipv4Addr::new(127, 0, 0, x)).collect(),
            held_runs: 1,
            held_k: 10_000,
            hold_for: Duration::from_secs(1),
            fanout_runs: 1,
            fanout_p: 500,
            idle_runs: 1,
            idle_peers: 50,
            idle_for: Duration::from_secs(2),
            stream_runs: 1,
            stream_bytes: [16 << 20, 64 << 20, 128 << 20],
            callgrind_n: 300,
            callgrind_runs: 1,
        }
    } else {
        Config {
            churn_runs: 3,
            churn_n: 20_000,
            churn_cs: vec![8, 64, 256],
            churn_budget: Duration::from_secs(5),
            sources: (2..=9).map(|x| Ipv4Addr::new(127, 0, 0, x)).collect(),
            held_runs: 3,
            held_k: 10_000,
            hold_for: Duration::from_secs(5),
            fanout_runs: 5,
            fanout_p: 500,
            idle_runs: 3,
            idle_peers: 50,
            idle_for: Duration::from_secs(10),
            stream_runs: 5,
            stream_bytes: [512 << 20, 512 << 20, 512 << 20],
            callgrind_n: 3_000,
            callgrind_runs: 3,
        }
    };
    // The churn's concurrencies, when given (`PEERCHAT_BENCH_CHURN_C=256` or `8,64`).
    if let Ok(list) = std::env::var("PEERCHAT_BENCH_CHURN_C") {
        let cs: Vec<usize> = list
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .filter(|&c| c > 0)
            .collect();
        if cs.is_empty() {
            return Err(format!(
                "PEERCHAT_BENCH_CHURN_C={list:?}: expected concurrencies such as 8,64,256"
            ));
        }
        cfg.churn_cs = cs;
    }
    // One scenario alone: the others do not run.
    if only.any() {
        if !only.churn {
            cfg.churn_runs = 0;
        }
        cfg.held_runs = 0;
        cfg.fanout_runs = 0;
        cfg.idle_runs = 0;
        if !only.stream {
            cfg.stream_runs = 0;
        }
        if !only.callgrind {
            cfg.callgrind_n = 0;
        }
    }
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let peerchat = if with_peerchat {
        build_peerchat(manifest_dir)?
    } else {
        PathBuf::new()
    };
    let bench_exe = std::env::current_exe()
        .expect("the bench binary must know its own path to re-execute itself");
    let dir = std::env::temp_dir().join(format!("peerchat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create the bench's scratch directory");
    let env = Env {
        peerchat: &peerchat,
        bench_exe: &bench_exe,
        dir: &dir,
    };
    let mut kinds = vec![Kind::Floor, Kind::Threads];
    if with_peerchat {
        kinds.insert(0, Kind::Peerchat);
    }
    eprintln!(
        "churn bench{}: {cores} cores, RLIMIT_NOFILE soft {old_soft} raised to {soft} (hard {hard}); scratch {}",
        if quick { " --quick" } else { "" },
        dir.display()
    );
    let mut table = report::Table::default();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    // Contender order rotates from run to run so no one always goes first on a warm machine.
    let rotated = |run: usize| -> Vec<Kind> {
        (0..kinds.len())
            .map(|i| kinds[(i + run) % kinds.len()])
            .collect()
    };
    // The journal's cost is measured under churn only, where it would show.
    let mut churn_kinds = kinds.clone();
    if with_peerchat {
        churn_kinds.insert(1, Kind::PeerchatState);
    }
    churn_kinds.push(Kind::Tokio);
    let mut stream_kinds = kinds.clone();
    stream_kinds.push(Kind::Tokio);
    let churn_rows: Vec<ChurnMetrics> =
        cfg.churn_cs.iter().map(|&c| ChurnMetrics::new(c)).collect();
    // One unmeasured run first: the first contender measured would otherwise pay for a
    // cold machine (page cache, TCP state left by whatever ran before, CPU frequency);
    // in quick mode, with two runs, that alone moved peerchat's median by 15%.
    let mut warm_up = report::Table::default();
    if let (true, Some(rows)) = (cfg.churn_runs > 0, churn_rows.first()) {
        if let Err(e) = scenarios::churn(
            &cfg,
            &env,
            Kind::Floor,
            99,
            rows,
            &mut warm_up,
            &mut Vec::new(),
        ) {
            problems.push(format!("warm-up: {e}"));
        }
    }
    for rows in &churn_rows {
        for run in 0..cfg.churn_runs {
            table.set_round(run);
            let rotated_churn: Vec<Kind> = (0..churn_kinds.len())
                .map(|i| churn_kinds[(i + run) % churn_kinds.len()])
                .collect();
            for kind in rotated_churn {
                if let Err(e) =
                    scenarios::churn(&cfg, &env, kind, run, rows, &mut table, &mut notes)
                {
                    problems.push(e);
                }
            }
        }
    }
    for (i, &bytes) in cfg.stream_bytes.iter().enumerate() {
        for run in 0..cfg.stream_runs {
            table.set_round(run);
            for j in 0..stream_kinds.len() {
                let kind = stream_kinds[(j + run) % stream_kinds.len()];
                if let Err(e) = stream::run(&env, kind, i, bytes, run, &mut table) {
                    problems.push(e);
                }
            }
        }
    }
    for run in 0..cfg.held_runs {
        table.set_round(run);
        for kind in rotated(run) {
            if let Err(e) = scenarios::held(&cfg, &env, kind, run, &mut table, &mut notes) {
                problems.push(e);
            }
        }
    }
    for run in 0..cfg.fanout_runs {
        table.set_round(run);
        for kind in rotated(run) {
            if let Err(e) = scenarios::fan_out(&cfg, &env, kind, run, &mut table, &mut notes) {
                problems.push(e);
            }
        }
    }
    for run in 0..cfg.idle_runs {
        table.set_round(run);
        for kind in rotated(run) {
            if let Err(e) = scenarios::idle(&cfg, &env, kind, run, &mut table, &mut notes) {
                problems.push(e);
            }
        }
    }
    if cfg.callgrind_n > 0 {
        if callgrind::available() {
            let mut cg_kinds = vec![Kind::Floor];
            if with_peerchat {
                cg_kinds.insert(0, Kind::Peerchat);
            }
            if let Err(e) = callgrind::run(
                &env,
                &cg_kinds,
                (cfg.callgrind_n, cfg.callgrind_runs),
                &mut table,
            ) {
                problems.push(e);
            }
        } else {
            notes
                .push("callgrind: valgrind is not on PATH; Ir per message not measured".to_owned());
        }
    }
    // Peerchat alone, with its default limits, under attack.
    let hostile = (with_peerchat && (only.hostile || !only.any())).then(|| {
        let sizes = if quick {
            hostile::Sizes::quick()
        } else {
            hostile::Sizes::full()
        };
        hostile::run(&sizes, &env, &mut problems)
    });

    println!();
    println!(
        "peerchat churn bench{}: {cores} cores (available_parallelism), RLIMIT_NOFILE soft {old_soft} → {soft} (hard {hard}), {:.0} s",
        if quick { " --quick" } else { "" },
        began.elapsed().as_secs_f64()
    );
    if !only.hostile {
        let cs: Vec<String> = cfg.churn_cs.iter().map(usize::to_string).collect();
        println!(
            "churn: N={} one-message connections (no new one after {:.0} s), concurrency {}, sources 127.0.0.2–{}; held: K={} for {:.0} s; \
             fan-out: P={}; idle: {} peers over {:.0} s (per-10 s figures scaled)",
            cfg.churn_n,
            cfg.churn_budget.as_secs_f64(),
            cs.join(", "),
            cfg.sources.last().map_or_else(String::new, |a| a.to_string()),
            cfg.held_k,
            cfg.hold_for.as_secs_f64(),
            cfg.fanout_p,
            cfg.idle_peers,
            cfg.idle_for.as_secs_f64()
        );
        let mb: Vec<String> = cfg
            .stream_bytes
            .iter()
            .map(|b| format!("{} MiB", b >> 20))
            .collect();
        println!(
            "stream: one connection from {} sending {} of 100 B, 1 KiB, 64 KiB lines, {} run(s); callgrind: {} \
             one-message connections from {} to {} in bursts and paced, {} run(s) each (Ir per message: the run's total ÷ messages, and less a run with none)",
            stream::SENDER,
            mb.join(", "),
            cfg.stream_runs,
            cfg.callgrind_n,
            callgrind::SENDER,
            callgrind::PEER,
            cfg.callgrind_runs
        );
        println!();
        print!("{}", table.render(&churn_kinds));
    }
    check_targets(&table, &churn_rows, with_peerchat, &mut notes);
    if !notes.is_empty() {
        println!();
        for note in &notes {
            println!("note: {note}");
        }
    }
    if let Some(hostile) = &hostile {
        println!();
        print!("{}", hostile.render());
        let missed = hostile.target_notes();
        if !missed.is_empty() {
            println!();
            for note in &missed {
                println!("note: {note}");
            }
        }
    }
    if problems.is_empty() {
        if std::env::var_os("PEERCHAT_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    } else {
        println!();
        for p in &problems {
            println!("BROKEN: {p}");
        }
        Err(format!(
            "{} problem(s); contender output kept in {}",
            problems.len(),
            dir.display()
        ))
    }
}

/// Adds a note for every target peerchat misses (never an error).
fn check_targets(
    table: &report::Table,
    churn_rows: &[ChurnMetrics],
    with_peerchat: bool,
    notes: &mut Vec<String>,
) {
    use scenarios::*;
    if !with_peerchat {
        return;
    }
    let get = |m: &'static report::Metric, k: Kind| table.median(m, k);
    let ratio = |m: &'static report::Metric| table.ratio(m, Kind::Peerchat);
    for rows in churn_rows {
        let cc = rows.concurrency;
        if let (Some(p), Some(r)) = (get(rows.rate, Kind::Peerchat), ratio(rows.rate)) {
            if r < 1.0 {
                notes.push(format!(
                    "target missed: churn C={cc} {p:.0} msg/s, {r:.3}× the floor (median of the runs' ratios; target ≥ 1.0×)"
                ));
            }
        }
        if let (Some(p), Some(t)) = (
            get(rows.rate, Kind::Peerchat),
            get(rows.rate, Kind::Threads),
        ) {
            if p <= t {
                notes.push(format!(
                    "target missed: churn C={cc} {p:.0} msg/s is not above thread-per-connection ({t:.0})"
                ));
            }
        }
        if let (Some(p), Some(f)) = (
            get(rows.overflows, Kind::Peerchat),
            get(rows.overflows, Kind::Floor),
        ) {
            if p > 0.0 && f == 0.0 {
                notes.push(format!(
                    "target missed: churn C={cc} {p:.0} listen overflows per run where the floor has 0"
                ));
            }
        }
    }
    for (i, size) in stream::SIZES.iter().enumerate() {
        if let (Some(p), Some(r)) = (
            get(&stream::MBPS[i], Kind::Peerchat),
            ratio(&stream::MBPS[i]),
        ) {
            if r < 0.8 {
                notes.push(format!(
                    "target missed: stream of {size} B lines {p:.1} MB/s, {r:.3}× the floor (median of the runs' ratios; target ≥ 0.8×)"
                ));
            }
        }
    }
    for regime in [callgrind::Regime::Burst, callgrind::Regime::Paced] {
        // Checked less a 0-message run: start-up and shutdown are no connection's.
        let (_, net) = regime.metrics();
        if let Some(ir) = get(net, Kind::Peerchat).filter(|&ir| ir > 2500.0) {
            notes.push(format!(
                "target missed: callgrind, {}: {ir:.0} instructions (target ≤ 2,500 a connection)",
                net.name
            ));
        }
    }
    if let Some(b) = get(&HELD_PER_CONN, Kind::Peerchat).filter(|&b| b > 256.0) {
        notes.push(format!(
            "target missed: {b:.0} B resident per held connection (target ≤ 256 B)"
        ));
    }
    if let Some(b) = get(&HELD_MARGINAL, Kind::Peerchat).filter(|&b| b > 64.0) {
        notes.push(format!(
            "target missed: {b:.0} B resident per held connection from K/2 to K (target ≤ 64 B)"
        ));
    }
    if let Some(kib) = get(&HELD_IDLE_RSS, Kind::Peerchat).filter(|&k| k >= 4096.0) {
        notes.push(format!(
            "target missed: idle peerchat resident {kib:.0} KiB (target < 4096 KiB)"
        ));
    }
    if let Some(ms) = get(&FANOUT, Kind::Peerchat).filter(|&ms| ms >= 100.0) {
        notes.push(format!(
            "target missed: fan-out took {ms:.1} ms (target < 100 ms)"
        ));
    }
}
