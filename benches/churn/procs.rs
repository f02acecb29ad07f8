//! Contender processes and what the bench reads about them: starting a contender with stdout
//! to a file, reading the lines it has printed so far, stopping it, and the figures the kernel
//! keeps in `/proc` (resident memory, CPU time, context switches, open descriptors).

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Which program a contender runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Peerchat,
    /// peerchat with `--state DIR`: what the journal costs (churn only).
    PeerchatState,
    Floor,
    Threads,
    /// A tokio accept-spawn server (churn and stream only).
    Tokio,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Peerchat => "peerchat",
            Kind::PeerchatState => "peerchat --state",
            Kind::Floor => "floor",
            Kind::Threads => "threads",
            Kind::Tokio => "tokio",
        }
    }
}

/// How to start a contender.
pub struct Launch<'a> {
    pub kind: Kind,
    pub peerchat: &'a Path,
    /// The bench binary itself, re-executed for the floor and threads roles.
    pub bench_exe: &'a Path,
    pub dir: &'a Path,
    /// A label unique within the run, used for the output file names.
    pub label: String,
    /// `None`: serve (peerchat `--headless`). `Some(targets)`: fan-out; stdin is piped (for
    /// peerchat the targets are learnt from `connect` messages instead).
    pub fan_out: Option<&'a [SocketAddr]>,
    /// peerchat with its default limits, as a user runs it (the hostile scenario), rather
    /// than with `--max-per-ip` raised for the load generator's few source addresses.
    pub default_limits: bool,
    /// The address to listen on (port chosen by the system).
    pub bind: Ipv4Addr,
    /// Run under `valgrind --tool=callgrind`, its counts written to this file (peerchat also
    /// gets `--probe-interval 0` and `RUST_LOG=error`, as the figures were taken).
    pub callgrind: Option<&'a Path>,
}

/// A running contender.
pub struct Running {
    pub kind: Kind,
    child: Child,
    pub stdin: Option<ChildStdin>,
    /// The listening address from its first line (`0.0.0.0:0` for the fan-out roles).
    pub addr: SocketAddr,
    pub out: Output,
    stderr_path: PathBuf,
}

/// Starts a contender and waits for its `listening on IP:PORT as NAME` line.
pub fn start(launch: &Launch) -> Result<Running, String> {
    let out_path = launch.dir.join(format!("{}.out", launch.label));
    let stderr_path = launch.dir.join(format!("{}.err", launch.label));
    let stdout =
        File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let stderr =
        File::create(&stderr_path).map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
    let bind = launch.bind.to_string();
    let program = match launch.kind {
        Kind::Peerchat | Kind::PeerchatState => launch.peerchat,
        _ => launch.bench_exe,
    };
    let mut cmd = match launch.callgrind {
        Some(out) => {
            let mut cmd = Command::new("valgrind");
            cmd.args(["--tool=callgrind", "--quiet"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(program);
            cmd
        }
        None => Command::new(program),
    };
    match launch.kind {
        Kind::Peerchat | Kind::PeerchatState => {
            cmd.args(["--name", "bench", "--port", "0", "--bind", &bind]);
            // The load generator's few source addresses stand for many senders: 10,000
            // held connections from 8 addresses are far over the per-address default.
            if !launch.default_limits {
                cmd.args(["--max-per-ip", "16384"]);
            }
            if launch.kind == Kind::PeerchatState {
                cmd.arg("--state")
                    .arg(launch.dir.join(format!("state-{}", launch.label)));
            }
            if launch.fan_out.is_none() {
                cmd.arg("--headless");
            }
            if launch.callgrind.is_some() {
                cmd.args(["--probe-interval", "0"]).env("RUST_LOG", "error");
            }
        }
        Kind::Floor | Kind::Threads | Kind::Tokio => {
            let role = match (launch.kind, launch.fan_out.is_some()) {
                (Kind::Floor, false) => "floor",
                (Kind::Floor, true) => "floor-fanout",
                (Kind::Threads, false) => "threads",
                (Kind::Threads, true) => "threads-fanout",
                (_, false) => "tokio",
                (_, true) => return Err("tokio has no fan-out role".to_owned()),
            };
            cmd.env(crate::ROLE_VAR, role)
                .env("PEERCHAT_BENCH_BIND", format!("{bind}:0"));
            if let Some(targets) = launch.fan_out {
                let list: Vec<String> = targets.iter().map(|a| a.to_string()).collect();
                cmd.env("PEERCHAT_BENCH_TARGETS", list.join(","));
            }
        }
    }
    cmd.stdout(stdout).stderr(stderr);
    cmd.stdin(if launch.fan_out.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", launch.kind.name()))?;
    let stdin = child.stdin.take();
    let out = Output::open(&out_path).map_err(|e| format!("open {}: {e}", out_path.display()))?;
    let mut running = Running {
        kind: launch.kind,
        child,
        stdin,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        out,
        stderr_path,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = None;
    loop {
        running.out.poll(|line| {
            if first.is_none() {
                first = Some(String::from_utf8_lossy(line).into_owned());
            }
        });
        if let Some(line) = first.take() {
            let addr = line
                .strip_prefix("listening on ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok());
            return match addr {
                Some(addr) => {
                    running.addr = addr;
                    Ok(running)
                }
                None => {
                    let _ = running.stop();
                    Err(format!(
                        "{}: unexpected first line {line:?}",
                        launch.kind.name()
                    ))
                }
            };
        }
        running
            .alive()
            .map_err(|e| format!("{e} before printing its listening line"))?;
        if Instant::now() > deadline {
            let _ = running.stop();
            return Err(format!(
                "{}: no listening line within 10 s",
                launch.kind.name()
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` describing the exit (and the end of its stderr) if the process is gone.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); stderr: {}",
                self.kind.name(),
                self.stderr_tail()
            )),
            Err(e) => Err(format!("{}: wait failed: {e}", self.kind.name())),
        }
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let tail: String = text
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{:?}", tail.trim())
    }

    /// Sends SIGTERM and waits up to 5 s; `Err` if it had died earlier or needed SIGKILL.
    pub fn stop(mut self) -> Result<(), String> {
        self.alive()?;
        drop(self.stdin.take());
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!(
            "{} did not exit within 5 s of SIGTERM (killed)",
            self.kind.name()
        ))
    }
}

impl Running {
    /// Like [`Running::stop`], and returns the process's whole CPU time (user + system, all
    /// its threads, start-up included) from `wait4`'s resource usage, to the microsecond.
    pub fn stop_cpu(mut self) -> Result<Duration, String> {
        self.alive()?;
        drop(self.stdin.take());
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value to be overwritten.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own unreaped child with valid pointers. Once it has reaped
            // the child, std's `Child` finds no child (ECHILD) and leaves it alone.
            let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if rc == pid {
                let tv = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
                };
                return Ok(tv(usage.ru_utime) + tv(usage.ru_stime));
            }
            if rc < 0 {
                return Err(format!(
                    "{}: wait4 failed: {}",
                    self.kind.name(),
                    io::Error::last_os_error()
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!(
            "{} did not exit within 5 s of SIGTERM (killed)",
            self.kind.name()
        ))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a contender's stdout file as it grows, line by line.
pub struct Output {
    file: File,
    partial: Vec<u8>,
    buf: Vec<u8>,
}

impl Output {
    fn open(path: &Path) -> io::Result<Output> {
        Ok(Output {
            file: File::open(path)?,
            partial: Vec::new(),
            buf: vec![0; 1 << 16],
        })
    }

    /// Calls `f` for every complete line printed since the last call (without the newline).
    pub fn poll(&mut self, mut f: impl FnMut(&[u8])) {
        loop {
            let n = match self.file.read(&mut self.buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut chunk = &self.buf[..n];
            while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                if self.partial.is_empty() {
                    f(&chunk[..end]);
                } else {
                    self.partial.extend_from_slice(&chunk[..end]);
                    f(&self.partial);
                    self.partial.clear();
                }
                chunk = &chunk[end + 1..];
            }
            self.partial.extend_from_slice(chunk);
        }
    }
}

/// Resident memory in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Peak resident memory in KiB (`VmHWM`).
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmHWM:")
}

fn status_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// User plus system CPU time of the whole process.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// The CPU time (user and system) of the calling thread so far.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Wake-ups: voluntary plus involuntary context switches summed over all threads.
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("status");
        let path = path.to_str()?;
        total += status_field(path, "voluntary_ctxt_switches:").unwrap_or(0);
        total += status_field(path, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    Some(total)
}

/// Number of open descriptors.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (old soft, new soft, hard).
pub fn raise_fd_limit() -> (libc::rlim_t, libc::rlim_t, libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on a properly initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0, 0);
        }
        let old = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        let new = if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            lim.rlim_max
        } else {
            old
        };
        (old, new, lim.rlim_max)
    }
}
