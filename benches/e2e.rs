//! The end-to-end benchmark: what a user pays for one cluster, measured at realistic scale,
//! next to what a dump-everything-and-upload script pays in the same run.
//!
//! ```text
//! cargo bench --bench e2e                                   # 10,000 objects, 1 % churn
//! cargo bench --bench e2e -- --large                        # 100,000 objects
//! cargo bench --bench e2e -- --objects 50000 --churn 0.05 --seed 3 --json out.json
//! cargo bench --bench e2e -- --large --s3-latency-ms 25     # S3 over a network
//! cargo bench --bench e2e -- --s3-latency-ms 25 --s3-jitter-ms 10 --s3-throttle 0.05
//! cargo bench --bench e2e -- --large --export-concurrency 64
//! cargo bench --bench e2e -- --large --hour 240             # the daemon through an hour
//! ```
//!
//! One run starts, in this process, the simulated API server with N objects and an S3 server
//! on loopback behind a counting HTTP proxy (requests and bytes are counted where S3 sees
//! them, not by our client; the S3 server keeps its data in memory where `/dev/shm` exists).
//! What the API server served (objects in full, metadata only, one by one) is counted too.
//! It then takes snapshot 1 with the release binary as a child process, churns a fraction
//! of the cluster, takes snapshot 2, and after each snapshot runs the baseline: every file of
//! the plain layout uploaded again, as a dump-and-sync script does. It prints a table,
//! checks the targets, and writes the figures as JSON.
//!
//! The S3 server on loopback answers in well under a millisecond; a real S3 takes tens of
//! milliseconds a request and now and then asks the client to slow down. The proxy models
//! both: `--s3-latency-ms N` holds every request N ms (plus `--s3-jitter-ms J`, a uniform
//! 0..=J ms) before passing it on, and `--s3-throttle R` answers a fraction R of requests
//! `503 SlowDown` without passing them on, both drawn from a generator seeded by `--seed`.
//! A connection carries one request at a time, as HTTP/1.1 does, and the hold is taken
//! before the connection's upstream sender is locked, so requests in flight wait out their
//! latency together: with latency, wall time goes as requests x latency / requests in
//! flight, and the table shows the mean in flight (time requests spent at the proxy over
//! wall time). Throttled requests are counted apart (`throttled`, `throttled_bytes`), not
//! as PUTs, GETs, ...: those count what S3 served.
//!
//! The targets (each printed PASS or MISS; the ones that do not apply to the run's size
//! and latency are not printed):
//!
//! - below 1,000,000 objects: snapshot 1 within 15 s and 300 MiB (defined at 100,000
//!   objects and no latency; noted at another size or latency);
//! - every run: snapshot 2 uploads at most 1.1 x (its changed plain-layout files, the PUT
//!   bytes under `backup/`, plus what it added under `store/`); it adds to `store/` at most
//!   3 % of what snapshot 1 stored there; its CPU is at most 50 % of snapshot 1's (defined
//!   at 1 % churn; noted at another);
//! - from 1,000,000 objects (`--huge`): snapshot 1 within 60 s of CPU and 512 MiB, snapshot
//!   2 within 30 s of CPU and 512 MiB (wall time alongside, for information);
//! - below 1,000,000 objects with a latency: snapshot 1 within 20 s and snapshot 2 within
//!   12 s of wall time (defined at 100,000 objects and 25 ms; noted elsewhere).
//!
//! Each snapshot runs as its own process so that its peak RSS is its own. A child spawned
//! directly from this (large) process inherits this process's RSS high-water mark at `exec`,
//! so the snapshot is started through a small re-exec of this binary (`--measure`) that
//! spawns it and reads its peak RSS with `wait4`.
//!
//! This file must never change what it measures: no tuning flags are passed to the
//! snapshot, which runs exactly as `kube-autosave snapshot` runs for a user, except
//! `--export-concurrency N` when the harness is given it. (`--wrap` runs it under a
//! profiler for a look at the hot spots; its figures then include the profiler.)

#[path = "e2e/hour.rs"]
mod hour;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use kube_autosave::repo::Manifest;
use kube_autosave::repo::manifest::ManifestHead;
use kube_autosave::store::{LocalBackend, Store, StoreConfig};
use kube_sim::{SimConfig, SimServer};
use serde::Serialize;
use serde_json::json;

use test_support::s3_server::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

/// The cluster's folder in the bucket.
const CLUSTER: &str = "bench";
/// Where the baseline's uploads go, next to (not inside) the cluster's folder.
const BASELINE_PREFIX: &str = "baseline";
/// Uploads in flight for the baseline (what `aws s3 sync` uses by default).
const BASELINE_CONCURRENCY: usize = 10;
const MIB: f64 = 1024.0 * 1024.0;

struct Args {
    objects: usize,
    churn: f64,
    seed: u64,
    json: PathBuf,
    /// A command prefix for each snapshot (a profiler), `{name}` replaced by the snapshot's.
    wrap: Option<String>,
    /// Snapshots in all (with churn before each after the first); above 2, the history is
    /// then forgotten and pruned and the retention figures reported.
    days: u32,
    /// Encrypt Secrets to a recipient made for the run.
    encrypt: bool,
    /// How the counting proxy makes the S3 server answer like S3 over a network.
    s3: S3Model,
    /// The snapshot's `--export-concurrency`, passed only when given.
    export_concurrency: Option<usize>,
    /// `--hour SECONDS`: the daemon through a simulated hour instead of two snapshots.
    hour: Option<u64>,
}

/// What the counting proxy adds to every request it passes on.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct S3Model {
    /// Held before the request is passed on: the round trip to S3.
    latency_ms: u64,
    /// A uniform random 0..=jitter_ms on top of the latency.
    jitter_ms: u64,
    /// The fraction of requests answered `503 SlowDown` instead of being passed on.
    throttle: f64,
}

impl S3Model {
    fn has_latency(&self) -> bool {
        self.latency_ms > 0 || self.jitter_ms > 0
    }

    /// "25 ms", "25 ms + 0..=10 ms".
    fn latency(&self) -> String {
        match self.jitter_ms {
            0 => format!("{} ms", self.latency_ms),
            jitter => format!("{} ms + 0..={jitter} ms", self.latency_ms),
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench e2e -- [--objects N | --large | --huge] [--churn F] \
         [--seed S] [--json PATH] [--wrap CMD] [--days N] [--encrypt] [--s3-latency-ms N] \
         [--s3-jitter-ms J] [--s3-throttle R] [--export-concurrency N] [--hour SECONDS]\n\
         \x20 --objects N   objects in the simulated cluster (default 10000)\n\
         \x20 --large       100,000 objects\n\
         \x20 --huge        1,000,000 objects\n\
         \x20 --churn F     fraction of objects changed between the snapshots (default 0.01)\n\
         \x20 --seed S      seed of the generated cluster and of the churn (default 1)\n\
         \x20 --json PATH   where the figures go (default target/e2e-results.json)\n\
         \x20 --wrap CMD    run each snapshot under CMD, e.g. \"perf record -g -o {{name}}.perf\"\n\
         \x20               ({{name}} = snapshot-1, snapshot-2; its time and memory count too)\n\
         \x20 --days N      snapshots in all, a churn before each; above 2, then forget and prune\n\
         \x20 --encrypt     encrypt Secrets to an age recipient made for the run\n\
         \x20 --s3-latency-ms N       hold every S3 request N ms before passing it on (default 0)\n\
         \x20 --s3-jitter-ms J        and a random 0..=J ms more (default 0)\n\
         \x20 --s3-throttle R         answer a fraction R (0 <= R < 1) of S3 requests\n\
         \x20                         503 SlowDown instead (default 0)\n\
         \x20 --export-concurrency N  passed on to the snapshot (default: the snapshot's own)\n\
         \x20 --hour SECONDS         instead of two snapshots: the daemon through a simulated\n\
         \x20                         hour of churn (checkpoints) played in SECONDS"
    );
    std::process::exit(2)
}

fn parse_args(args: &[String]) -> Args {
    let mut parsed = Args {
        objects: 10_000,
        churn: 0.01,
        seed: 1,
        json: PathBuf::from("target/e2e-results.json"),
        wrap: None,
        days: 2,
        encrypt: false,
        s3: S3Model::default(),
        export_concurrency: None,
        hour: None,
    };
    let mut it = args.iter();
    fn value<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> T {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{flag} needs a valid value");
            usage()
        })
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // cargo passes `--bench` to every bench target.
            "--bench" => {}
            "--objects" => parsed.objects = value(arg, it.next()),
            "--large" => parsed.objects = 100_000,
            "--huge" => parsed.objects = 1_000_000,
            "--churn" => parsed.churn = value(arg, it.next()),
            "--seed" => parsed.seed = value(arg, it.next()),
            "--json" => parsed.json = value(arg, it.next()),
            "--wrap" => parsed.wrap = Some(value(arg, it.next())),
            "--days" => parsed.days = value(arg, it.next()),
            "--encrypt" => parsed.encrypt = true,
            "--s3-latency-ms" => parsed.s3.latency_ms = value(arg, it.next()),
            "--s3-jitter-ms" => parsed.s3.jitter_ms = value(arg, it.next()),
            "--s3-throttle" => parsed.s3.throttle = value(arg, it.next()),
            "--export-concurrency" => parsed.export_concurrency = Some(value(arg, it.next())),
            "--hour" => parsed.hour = Some(value(arg, it.next())),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    if !(0.0..=1.0).contains(&parsed.churn) {
        eprintln!("--churn is a fraction between 0 and 1");
        usage()
    }
    if !(0.0..1.0).contains(&parsed.s3.throttle) {
        eprintln!("--s3-throttle is a fraction from 0 up to (not including) 1");
        usage()
    }
    if parsed.export_concurrency == Some(0) {
        eprintln!("--export-concurrency is at least 1");
        usage()
    }
    parsed
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(MEASURE_FLAG) {
        measure_main(&args[1..]);
    }
    let args = parse_args(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

// ---------------------------------------------------------------------------------------
// Measuring a child process: wall time and its own peak RSS.
// ---------------------------------------------------------------------------------------

const MEASURE_FLAG: &str = "--measure";

/// What [`measure_main`] reports about the command it ran.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
struct Measured {
    wall_seconds: f64,
    /// CPU time of the program (user + system).
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    exit_code: i32,
}

/// `e2e --measure <result file> <program> <args...>`: runs the program with this process's
/// stdio and environment, waits for it with `wait4`, writes its wall time, peak RSS and exit
/// code to the result file. This process is small and freshly exec'd, so the RSS high-water
/// mark the program inherits at its `exec` is a few MiB, not the benchmark's.
fn measure_main(args: &[String]) -> ! {
    let [result, program, rest @ ..] = args else {
        eprintln!("{MEASURE_FLAG} needs a result file and a command");
        std::process::exit(2)
    };
    let started = Instant::now();
    let child = match Command::new(program).args(rest).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start {program}: {e}");
            std::process::exit(1)
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value; `wait4` only writes through the two
    // pointers, which point at live locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_seconds = started.elapsed().as_secs_f64();
    if waited != pid {
        eprintln!("wait4: {}", std::io::Error::last_os_error());
        std::process::exit(1)
    }
    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let measured = Measured {
        wall_seconds,
        cpu_seconds: cpu_seconds(&usage),
        // Linux reports kibibytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        exit_code,
    };
    let written = serde_json::to_vec(&measured)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(result, json));
    if let Err(e) = written {
        eprintln!("cannot write {result}: {e}");
        std::process::exit(1)
    }
    std::process::exit(exit_code)
}

fn cpu_seconds(usage: &libc::rusage) -> f64 {
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A temporary folder in memory where there is one (`/dev/shm`), else on disk. The S3
/// server keeps its data there: a real S3 does not write to this machine's disk, and the
/// page-cache writeback of a few hundred MiB per run made the servers' CPU, on the same two
/// cores as the snapshot, vary several-fold from one run to the next.
fn memory_backed_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("e2e-s3-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary folder")
}

/// CPU time of this process so far: the simulated API server, the S3 server and the proxy.
fn own_cpu_seconds() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value; `getrusage` writes through the pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    cpu_seconds(&usage)
}

// ---------------------------------------------------------------------------------------
// Counting what S3 sees: a small HTTP proxy in front of the S3 server.
// ---------------------------------------------------------------------------------------

/// Requests and bytes as the S3 server receives them.
#[derive(Debug, Default)]
struct S3Counters {
    puts: AtomicU64,
    put_bytes: AtomicU64,
    /// PUT body bytes by what they hold: `store/packs/` (objects, and the manifests'
    /// listings), `store/index/`, `store/snapshots/` and `store/exports/` (manifests and
    /// export records), `backup/` (plain-layout files, ours and the baseline's), and the
    /// rest (leases, locks, `store/cluster.json`).
    put_bytes_packs: AtomicU64,
    put_bytes_index: AtomicU64,
    put_bytes_manifests: AtomicU64,
    put_bytes_layout: AtomicU64,
    put_bytes_other: AtomicU64,
    copies: AtomicU64,
    gets: AtomicU64,
    get_bytes: AtomicU64,
    lists: AtomicU64,
    heads: AtomicU64,
    deletes: AtomicU64,
    other: AtomicU64,
    /// Every request body byte (PUT bodies, multi-object deletes, ...).
    bytes_sent: AtomicU64,
    /// Every response body byte.
    bytes_received: AtomicU64,
    /// Requests answered `503 SlowDown` by the proxy (not counted above), and their body
    /// bytes.
    throttled: AtomicU64,
    throttled_bytes: AtomicU64,
    /// Connections the client opened to the proxy.
    connections: AtomicU64,
    /// Time requests spent at the proxy, from their head to their response, latency
    /// included: over the wall time, the mean number of requests in flight.
    request_micros: AtomicU64,
}

/// A point-in-time copy of [`S3Counters`], or the difference of two.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct S3Requests {
    puts: u64,
    put_bytes: u64,
    put_bytes_packs: u64,
    put_bytes_index: u64,
    put_bytes_manifests: u64,
    put_bytes_layout: u64,
    put_bytes_other: u64,
    copies: u64,
    gets: u64,
    get_bytes: u64,
    lists: u64,
    heads: u64,
    deletes: u64,
    other: u64,
    requests: u64,
    bytes_sent: u64,
    bytes_received: u64,
    throttled: u64,
    throttled_bytes: u64,
    connections: u64,
    request_micros: u64,
}

impl S3Counters {
    /// Counts a request; returns whether it is a listing.
    fn record_request(&self, method: &Method, uri: &hyper::Uri, is_copy: bool, body: u64) -> bool {
        let query = uri.query().unwrap_or("");
        // Path style: `/<bucket>` or `/<bucket>/` is the bucket itself (a listing).
        let on_bucket = uri.path().trim_matches('/').split('/').nth(1).is_none();
        let counter = match *method {
            Method::PUT if is_copy => &self.copies,
            Method::PUT => {
                add(&self.put_bytes, body);
                let path = uri.path();
                let area = if path.contains("/backup/") {
                    &self.put_bytes_layout
                } else if path.contains("/store/packs/") {
                    &self.put_bytes_packs
                } else if path.contains("/store/index/") {
                    &self.put_bytes_index
                } else if path.contains("/store/snapshots/") || path.contains("/store/exports/") {
                    &self.put_bytes_manifests
                } else {
                    &self.put_bytes_other
                };
                add(area, body);
                &self.puts
            }
            Method::GET if query.contains("list-type=2") || on_bucket => &self.lists,
            Method::GET => &self.gets,
            Method::HEAD => &self.heads,
            Method::DELETE => &self.deletes,
            _ => &self.other,
        };
        add(counter, 1);
        add(&self.bytes_sent, body);
        std::ptr::eq(counter, &self.lists)
    }

    fn record_response(&self, method: &Method, is_list: bool, body: u64) {
        if *method == Method::GET && !is_list {
            add(&self.get_bytes, body);
        }
        add(&self.bytes_received, body);
    }

    fn record_throttled(&self, body: u64) {
        add(&self.throttled, 1);
        add(&self.throttled_bytes, body);
    }

    fn snapshot(&self) -> S3Requests {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = S3Requests {
            puts: get(&self.puts),
            put_bytes: get(&self.put_bytes),
            put_bytes_packs: get(&self.put_bytes_packs),
            put_bytes_index: get(&self.put_bytes_index),
            put_bytes_manifests: get(&self.put_bytes_manifests),
            put_bytes_layout: get(&self.put_bytes_layout),
            put_bytes_other: get(&self.put_bytes_other),
            copies: get(&self.copies),
            gets: get(&self.gets),
            get_bytes: get(&self.get_bytes),
            lists: get(&self.lists),
            heads: get(&self.heads),
            deletes: get(&self.deletes),
            other: get(&self.other),
            requests: 0,
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            throttled: get(&self.throttled),
            throttled_bytes: get(&self.throttled_bytes),
            connections: get(&self.connections),
            request_micros: get(&self.request_micros),
        };
        s.requests = s.puts + s.copies + s.gets + s.lists + s.heads + s.deletes + s.other;
        s
    }
}

impl S3Requests {
    fn since(&self, earlier: &S3Requests) -> S3Requests {
        S3Requests {
            puts: self.puts - earlier.puts,
            put_bytes: self.put_bytes - earlier.put_bytes,
            put_bytes_packs: self.put_bytes_packs - earlier.put_bytes_packs,
            put_bytes_index: self.put_bytes_index - earlier.put_bytes_index,
            put_bytes_manifests: self.put_bytes_manifests - earlier.put_bytes_manifests,
            put_bytes_layout: self.put_bytes_layout - earlier.put_bytes_layout,
            put_bytes_other: self.put_bytes_other - earlier.put_bytes_other,
            copies: self.copies - earlier.copies,
            gets: self.gets - earlier.gets,
            get_bytes: self.get_bytes - earlier.get_bytes,
            lists: self.lists - earlier.lists,
            heads: self.heads - earlier.heads,
            deletes: self.deletes - earlier.deletes,
            other: self.other - earlier.other,
            requests: self.requests - earlier.requests,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            throttled: self.throttled - earlier.throttled,
            throttled_bytes: self.throttled_bytes - earlier.throttled_bytes,
            connections: self.connections - earlier.connections,
            request_micros: self.request_micros - earlier.request_micros,
        }
    }

    /// The mean number of requests in flight over `wall_seconds`.
    fn in_flight(&self, wall_seconds: f64) -> f64 {
        self.request_micros as f64 / 1e6 / wall_seconds
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A counting HTTP/1.1 proxy on loopback in front of `upstream`: one upstream connection per
/// client connection, bodies passed on whole (so they are counted exactly), headers
/// untouched (so SigV4 signatures stay valid), and the [`S3Model`] applied to each request.
struct CountingProxy {
    addr: SocketAddr,
    counters: Arc<S3Counters>,
}

/// What every connection of the proxy shares.
struct ProxyState {
    counters: Arc<S3Counters>,
    model: S3Model,
    draws: Draws,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr, model: S3Model, seed: u64) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the counting proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counters = Arc::new(S3Counters::default());
        let state = Arc::new(ProxyState {
            counters: counters.clone(),
            model,
            draws: Draws::new(seed),
        });
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                add(&state.counters.connections, 1);
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = proxy_connection(socket, upstream, state).await {
                        eprintln!("counting proxy: {e}");
                    }
                });
            }
        });
        CountingProxy { addr, counters }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl ProxyState {
    /// How long the request is held: the latency and a draw of the jitter.
    fn delay(&self) -> std::time::Duration {
        let jitter = match self.model.jitter_ms {
            0 => 0,
            jitter => self.draws.next() % (jitter + 1),
        };
        std::time::Duration::from_millis(self.model.latency_ms + jitter)
    }

    /// Whether this request is answered `503 SlowDown`.
    fn throttles(&self) -> bool {
        self.model.throttle > 0.0 && self.draws.unit() < self.model.throttle
    }
}

/// Random numbers for the S3 model: SplitMix64 over a shared counter, so that requests on
/// every connection draw without a lock and a run's numbers depend on the seed alone (which
/// request draws which depends on their order).
struct Draws {
    seed: u64,
    drawn: AtomicU64,
}

impl Draws {
    fn new(seed: u64) -> Draws {
        Draws {
            seed,
            drawn: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        let n = self.drawn.fetch_add(1, Ordering::Relaxed) + 1;
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

type ProxyError = Box<dyn std::error::Error + Send + Sync>;

async fn proxy_connection(
    socket: tokio::net::TcpStream,
    upstream: SocketAddr,
    state: Arc<ProxyState>,
) -> Result<(), ProxyError> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        forward(request, sender.clone(), state.clone())
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), service)
        .await?;
    Ok(())
}

type Upstream = Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>;

/// Passes one request on to the S3 server after the model's latency, counting it and its
/// response; or answers it `503 SlowDown` as S3 does when it throttles.
async fn forward(
    request: Request<Incoming>,
    sender: Upstream,
    state: Arc<ProxyState>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    // Held before the upstream sender is locked, never under the lock: requests on other
    // connections wait out their latency at the same time, as they do on a network, and a
    // client that wants more requests in flight opens more connections.
    let delay = state.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = if state.throttles() {
        state.counters.record_throttled(body.len() as u64);
        slow_down(state.draws.next())
    } else {
        let is_copy = parts.headers.contains_key("x-amz-copy-source");
        let method = parts.method.clone();
        let is_list =
            state
                .counters
                .record_request(&method, &parts.uri, is_copy, body.len() as u64);
        let response = {
            let mut sender = sender.lock().await;
            sender.ready().await?;
            sender
                .send_request(Request::from_parts(parts, Full::new(body)))
                .await?
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        state
            .counters
            .record_response(&method, is_list, body.len() as u64);
        Response::from_parts(parts, Full::new(body))
    };
    add(
        &state.counters.request_micros,
        arrived.elapsed().as_micros() as u64,
    );
    Ok(response)
}

/// S3's answer to a client it throttles: `503 Service Unavailable` with a `SlowDown` error,
/// which the AWS SDKs retry after a backoff.
fn slow_down(request_id: u64) -> Response<Full<Bytes>> {
    let request_id = format!("{request_id:016X}");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
         <Message>Please reduce your request rate.</Message><RequestId>{request_id}</RequestId>\
         </Error>"
    );
    Response::builder()
        .status(hyper::StatusCode::SERVICE_UNAVAILABLE)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", request_id)
        .body(Full::new(Bytes::from(body)))
        .expect("a response from constant parts")
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

/// The figures of one snapshot.
#[derive(Debug, Clone, Serialize)]
struct SnapshotFigures {
    name: String,
    snapshot: String,
    /// Objects in the simulated cluster when the snapshot started.
    cluster_objects: usize,
    /// Objects the snapshot kept (after the rules).
    objects: u64,
    new_objects: u64,
    wall_seconds: f64,
    /// Of the wall time: reading the cluster into the store (manifest included), and
    /// writing the plain layout.
    read_seconds: f64,
    export_seconds: f64,
    /// CPU time of the snapshot process.
    cpu_seconds: f64,
    /// CPU time of the servers it talked to (simulator, S3 server, proxy) meanwhile.
    servers_cpu_seconds: f64,
    objects_per_second: f64,
    peak_rss_bytes: u64,
    s3: S3Requests,
    api: ApiServed,
    /// Bytes under `store/` (packs, index files, manifests) after the snapshot.
    stored_bytes_total: u64,
    /// Bytes the snapshot added under `store/`.
    stored_bytes_added: u64,
    /// Bytes of the snapshot's plain-layout files (the raw JSON a user sees).
    raw_json_bytes: u64,
    plain_layout_files: u64,
    files_uploaded: u64,
    files_copied: u64,
}

/// What the simulated API server served to one snapshot.
#[derive(Debug, Clone, Serialize)]
struct ApiServed {
    requests: u64,
    /// Objects sent in full, as list items.
    list_items_full: u64,
    /// Objects sent as their metadata only, as list items.
    list_items_metadata: u64,
    /// Objects read one by one.
    gets: u64,
}

/// The figures of the baseline after one snapshot.
#[derive(Debug, Clone, Serialize)]
struct BaselineFigures {
    name: String,
    /// Upload time only (the dump itself, reading the cluster, is not included).
    upload_wall_seconds: f64,
    files: u64,
    s3: S3Requests,
}

#[derive(Debug, Clone, Serialize)]
struct Ratios {
    name: String,
    /// Our PUT body bytes over the baseline's.
    put_bytes: f64,
    /// All our request body bytes over the baseline's.
    bytes_sent: f64,
    /// All our requests over the baseline's.
    requests: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Target {
    what: String,
    value: f64,
    limit: f64,
    unit: &'static str,
    pass: bool,
    /// When the run's size is not the one the target is defined at.
    note: Option<String>,
}

struct Bench {
    args: Args,
    s3: S3Server,
    proxy: CountingProxy,
    sim: SimServer,
    /// The S3 server's data.
    _s3_data: tempfile::TempDir,
    work: tempfile::TempDir,
    kubeconfig: PathBuf,
    client: aws_sdk_s3::Client,
    /// The age recipient Secrets are encrypted to (`--encrypt`).
    recipient: Option<String>,
}

async fn run(args: Args) {
    println!(
        "e2e: {} objects, churn {}, seed {}{}",
        args.objects,
        args.churn,
        args.seed,
        if args.encrypt {
            ", Secrets encrypted"
        } else {
            ""
        }
    );
    println!(
        "S3: {} a request, {} % of requests throttled; export concurrency: {}",
        args.s3.latency(),
        100.0 * args.s3.throttle,
        args.export_concurrency
            .map_or("the snapshot's default".to_string(), |n| n.to_string())
    );
    let started = Instant::now();
    let sim = SimServer::start(SimConfig {
        objects: args.objects,
        seed: args.seed,
        ..SimConfig::default()
    })
    .await
    .expect("simulated API server");
    println!(
        "simulated API server: {} objects at {} (generated in {:.1} s)",
        sim.objects().len(),
        sim.url(),
        started.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir().expect("temp dir");
    let kubeconfig = work.path().join("kubeconfig.yaml");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let s3_data = memory_backed_dir();
    let s3 = S3Server::start_in(s3_data.path(), "127.0.0.1:0".parse().expect("address"));
    let upstream: SocketAddr = s3
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("S3 server address");
    let proxy = CountingProxy::start(upstream, args.s3, args.seed).await;
    let client = s3_client(&proxy.endpoint());
    let recipient = args
        .encrypt
        .then(|| age::x25519::Identity::generate().to_public().to_string());
    let bench = Bench {
        recipient,
        args,
        s3,
        proxy,
        sim,
        _s3_data: s3_data,
        work,
        kubeconfig,
        client,
    };

    if let Some(seconds) = bench.args.hour {
        let figures = hour::run(&bench, seconds).await;
        let report = json!({
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "objects": bench.args.objects,
            "churn_per_hour": bench.args.churn,
            "seed": bench.args.seed,
            "s3_model": bench.args.s3,
            "hour": figures,
        });
        write_report(&bench.args.json, &report);
        return;
    }

    let first = bench.snapshot("snapshot 1", 0).await;
    let base_first = bench.baseline("baseline 1", &first.snapshot).await;

    let churn = bench.sim.churn(bench.args.churn, bench.args.seed);
    println!(
        "churn {}: {} modified, {} added, {} deleted",
        bench.args.churn,
        churn.modified.len(),
        churn.added.len(),
        churn.deleted.len()
    );
    let second = bench.snapshot("snapshot 2", first.stored_bytes_total).await;
    let base_second = bench.baseline("baseline 2", &second.snapshot).await;

    let snapshots = [first, second];
    let baselines = [base_first, base_second];
    let ratios: Vec<Ratios> = snapshots
        .iter()
        .zip(&baselines)
        .map(|(ours, base)| Ratios {
            name: ours.name.clone(),
            put_bytes: ratio(ours.s3.put_bytes, base.s3.put_bytes),
            bytes_sent: ratio(ours.s3.bytes_sent, base.s3.bytes_sent),
            requests: ratio(ours.s3.requests, base.s3.requests),
        })
        .collect();
    let targets = targets(&bench.args, &snapshots);

    print_table(&snapshots, &baselines, &ratios, &targets);
    let retention = bench.retention(snapshots[1].stored_bytes_total).await;
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "objects": bench.args.objects,
        "churn": bench.args.churn,
        "seed": bench.args.seed,
        "s3_model": bench.args.s3,
        "export_concurrency": bench.args.export_concurrency,
        "churned": {
            "modified": churn.modified.len(),
            "added": churn.added.len(),
            "deleted": churn.deleted.len(),
        },
        "snapshots": snapshots,
        "baseline": baselines,
        "ratios": ratios,
        "targets": targets,
        "retention": retention,
    });
    write_report(&bench.args.json, &report);
}

fn write_report(path: &Path, report: &serde_json::Value) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let json = serde_json::to_vec_pretty(report).expect("JSON of the report");
    match std::fs::write(path, json) {
        Ok(()) => println!("\nfigures written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

fn ratio(ours: u64, theirs: u64) -> f64 {
    if theirs == 0 {
        f64::NAN
    } else {
        ours as f64 / theirs as f64
    }
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let credentials =
        aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bench");
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        // The baseline's uploads meet the same throttling as the snapshot; a sync script
        // retries them (the AWS CLI up to 5 times) rather than give up the run.
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(10))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl Bench {
    fn cluster_dir(&self) -> PathBuf {
        self.s3.bucket_dir().join(CLUSTER)
    }

    /// Runs `kube-autosave snapshot` as a user would, against the counting proxy.
    async fn snapshot(&self, name: &str, stored_before: u64) -> SnapshotFigures {
        let cluster_objects = self.sim.objects().len();
        let work = self.work.path();
        let result = work.join(format!("{}.measured.json", name.replace(' ', "-")));
        let stdout_path = work.join(format!("{}.stdout", name.replace(' ', "-")));
        let stderr_path = work.join(format!("{}.stderr", name.replace(' ', "-")));
        let mut measuring = Command::new(std::env::current_exe().expect("this benchmark's path"));
        measuring
            .arg(MEASURE_FLAG)
            .arg(&result)
            .args(self.args.wrap.iter().flat_map(|wrap| {
                wrap.split_whitespace()
                    .map(|word| word.replace("{name}", &name.replace(' ', "-")))
            }))
            .arg(env!("CARGO_BIN_EXE_kube-autosave"));
        let mut command = self.user_command(measuring, &["snapshot"]);
        command.args(["--kubeconfig", &self.kubeconfig.display().to_string()]);
        if let Some(concurrency) = self.args.export_concurrency {
            command.args(["--export-concurrency", &concurrency.to_string()]);
        }
        command
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        if let Some(log) = std::env::var_os("RUST_LOG") {
            command.env("RUST_LOG", log);
        }
        println!("\n{name}: running kube-autosave snapshot ...");
        let before = self.proxy.counters.snapshot();
        let (api_before, api_requests_before) = (self.sim.served(), self.sim.request_count());
        let servers_cpu_before = own_cpu_seconds();
        let status = tokio::task::spawn_blocking(move || command.status())
            .await
            .expect("waiting for the snapshot")
            .expect("start the measuring process");
        let s3 = self.proxy.counters.snapshot().since(&before);
        let served = self.sim.served() - api_before;
        let api = ApiServed {
            requests: self.sim.request_count() - api_requests_before,
            list_items_full: served.full_list_items,
            list_items_metadata: served.metadata_list_items,
            // Objects read one by one: lists narrowed to one name (and any GET).
            gets: served.gets + served.named_lists,
        };
        let servers_cpu_seconds = own_cpu_seconds() - servers_cpu_before;
        let measured: Option<Measured> = std::fs::read(&result)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok());
        let Some(measured) = measured.filter(|m| m.exit_code == 0 && status.success()) else {
            eprintln!("{name} failed ({status}); its output:");
            eprintln!(
                "{}",
                std::fs::read_to_string(&stdout_path).unwrap_or_default()
            );
            eprintln!(
                "{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            std::process::exit(1)
        };
        print!(
            "{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default()
        );

        let manifest = self.newest_manifest().await;
        let export = manifest.export.clone().unwrap_or_default();
        let snapshot = manifest.time.to_string();
        let (raw_json_bytes, plain_layout_files) =
            dir_size(&self.cluster_dir().join("backup").join(&snapshot));
        let (stored_bytes_total, _) = dir_size(&self.cluster_dir().join("store"));
        SnapshotFigures {
            name: name.to_string(),
            snapshot,
            cluster_objects,
            objects: manifest.stats.objects,
            new_objects: manifest.stats.store.new_objects,
            wall_seconds: measured.wall_seconds,
            read_seconds: manifest.stats.duration_ms as f64 / 1000.0,
            export_seconds: export.duration_ms as f64 / 1000.0,
            cpu_seconds: measured.cpu_seconds,
            servers_cpu_seconds,
            objects_per_second: manifest.stats.objects as f64 / measured.wall_seconds,
            peak_rss_bytes: measured.peak_rss_bytes,
            s3,
            api,
            stored_bytes_total,
            stored_bytes_added: stored_bytes_total.saturating_sub(stored_before),
            raw_json_bytes,
            plain_layout_files,
            files_uploaded: export.files_uploaded,
            files_copied: export.files_copied,
        }
    }

    /// The newest snapshot manifest's figures, read from the S3 server's folder.
    async fn newest_manifest(&self) -> ManifestHead {
        let backend =
            Arc::new(LocalBackend::new(self.cluster_dir()).expect("the S3 server's folder"));
        let cache = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(backend, cache.path(), StoreConfig::default())
            .await
            .expect("the store in the S3 server's folder");
        let newest = Manifest::list(&store)
            .await
            .expect("the snapshot manifests")
            .pop()
            .expect("a snapshot manifest");
        Manifest::head(&store, &newest)
            .await
            .expect("a readable manifest")
    }

    /// With `--days N` above 2: the rest of the history (a churn and a snapshot a day), then
    /// what a prune costs and reclaims: `forget --prune --keep-last 9` (every kept snapshot
    /// keeps its plain layout), then again with `--keep-layout 3`.
    async fn retention(&self, mut stored: u64) -> Vec<serde_json::Value> {
        if self.args.days <= 2 {
            return Vec::new();
        }
        for day in 3..=self.args.days {
            self.sim
                .churn(self.args.churn, self.args.seed + u64::from(day));
            stored = self
                .snapshot(&format!("snapshot {day}"), stored)
                .await
                .stored_bytes_total;
        }
        let days = u64::from(self.args.days);
        let (history, files) = dir_size(&self.cluster_dir());
        println!(
            "\n{days} snapshots: {} at the destination ({files} files), {} a day",
            mib(history),
            mib(history / days)
        );
        let mut out =
            vec![json!({"step": "history", "days": days, "bytes": history, "files": files})];
        for (step, extra) in [
            ("keep-last 9", vec!["--keep-last", "9"]),
            (
                "keep-last 9, keep-layout 3",
                vec!["--keep-last", "9", "--keep-layout", "3"],
            ),
        ] {
            let mut args = vec!["forget", "--prune"];
            args.extend(extra);
            let before = self.proxy.counters.snapshot();
            let started = Instant::now();
            let output = self
                .command(&args)
                .output()
                .expect("run kube-autosave forget");
            let wall_seconds = started.elapsed().as_secs_f64();
            let s3 = self.proxy.counters.snapshot().since(&before);
            if !output.status.success() {
                eprintln!("{}", String::from_utf8_lossy(&output.stderr));
                std::process::exit(1);
            }
            print!("{}", String::from_utf8_lossy(&output.stdout));
            let (bytes, files) = dir_size(&self.cluster_dir());
            println!(
                "forget --prune --{step}: {wall_seconds:.1} s, {} requests ({} LIST, {} GET, {} PUT, {} DELETE); \
                 {} left at the destination ({files} files)",
                s3.requests,
                s3.lists,
                s3.gets,
                s3.puts,
                s3.deletes,
                mib(bytes)
            );
            out.push(json!({
                "step": step,
                "wall_seconds": wall_seconds,
                "requests": s3,
                "bytes": bytes,
                "files": files,
            }));
        }
        out
    }

    /// `kube-autosave <args>` against the counting proxy, as a user would run it.
    fn command(&self, args: &[&str]) -> Command {
        self.user_command(Command::new(env!("CARGO_BIN_EXE_kube-autosave")), args)
    }

    /// `command` (the binary, or the measuring re-exec of this harness that runs it) with
    /// `args` and what a user gives it: the destination behind the counting proxy, the
    /// credentials, the local state, and nothing of this machine's AWS set-up.
    fn user_command(&self, mut command: Command, args: &[&str]) -> Command {
        let work = self.work.path();
        let nowhere = work.join("no-aws-config");
        command
            .args(args)
            .args(["--to", &format!("s3://{BUCKET}")])
            .args(["--s3-endpoint", &self.proxy.endpoint(), "--path-style"])
            .args(["--region", "us-east-1", "--cluster-name", CLUSTER])
            .arg("--cache-dir")
            .arg(work.join("cache"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", work)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .stdin(Stdio::null());
        if let Some(recipient) = &self.recipient {
            command.env("KUBE_AUTOSAVE_RECIPIENTS", recipient);
        }
        command
    }

    /// What a dump-and-sync script does after each dump: upload every plain-layout file.
    async fn baseline(&self, name: &str, snapshot: &str) -> BaselineFigures {
        let root = self.cluster_dir().join("backup").join(snapshot);
        let files = files_under(&root);
        let before = self.proxy.counters.snapshot();
        let started = Instant::now();
        let uploads = futures::stream::iter(files.iter().map(|(relative, path)| {
            let key = format!("{BASELINE_PREFIX}/backup/{snapshot}/{relative}");
            async move {
                let body = tokio::fs::read(path).await.expect("a plain-layout file");
                self.client
                    .put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("baseline upload of {key}: {e:?}"));
            }
        }))
        .buffer_unordered(BASELINE_CONCURRENCY)
        .collect::<Vec<()>>();
        uploads.await;
        let upload_wall_seconds = started.elapsed().as_secs_f64();
        let s3 = self.proxy.counters.snapshot().since(&before);
        BaselineFigures {
            name: name.to_string(),
            upload_wall_seconds,
            files: files.len() as u64,
            s3,
        }
    }
}

/// Total size and number of the files under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    files_under(dir)
        .values()
        .filter_map(|p| std::fs::metadata(p).ok())
        .fold((0, 0), |(bytes, n), m| (bytes + m.len(), n + 1))
}

/// Every file under `dir`, by its path relative to `dir` with `/` separators.
fn files_under(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(key, path);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Targets and output.
// ---------------------------------------------------------------------------------------

/// The targets that apply to the run's size and latency (see the module's documentation),
/// each with a note where the run is not where the target is defined.
fn targets(args: &Args, s: &[SnapshotFigures; 2]) -> Vec<Target> {
    let huge = args.objects >= 1_000_000;
    // "defined at 100,000 objects, 0 ms; this run: 20,000 objects, 25 ms".
    let defined_at = |objects: usize, latency_ms: u64| {
        let here = (args.objects, args.s3.latency_ms, args.s3.jitter_ms);
        (here != (objects, latency_ms, 0)).then(|| {
            format!(
                "defined at {} objects, {latency_ms} ms; this run: {} objects, {}",
                thousands(objects),
                thousands(args.objects),
                args.s3.latency()
            )
        })
    };
    let at_churn = (args.churn != 0.01).then(|| {
        format!(
            "defined at 1 % churn; this run has {} %",
            100.0 * args.churn
        )
    });
    let notes = |notes: &[Option<String>]| {
        let notes: Vec<&str> = notes.iter().flatten().map(String::as_str).collect();
        (!notes.is_empty()).then(|| notes.join("; "))
    };
    let at_most = |what: &str, value: f64, limit: f64, unit, note: Option<String>| Target {
        what: what.to_string(),
        value,
        limit,
        unit,
        pass: value <= limit,
        note,
    };
    let rss = |s: &SnapshotFigures| s.peak_rss_bytes as f64 / MIB;
    let wall = |s: &SnapshotFigures| Some(format!("wall {:.1} s, for information", s.wall_seconds));
    let mut out = Vec::new();

    if !huge {
        let note = defined_at(100_000, 0);
        out.push(at_most(
            "snapshot 1 wall time",
            s[0].wall_seconds,
            15.0,
            "s",
            note.clone(),
        ));
        out.push(at_most(
            "snapshot 1 peak RSS",
            rss(&s[0]),
            300.0,
            "MiB",
            note,
        ));
    }

    // The least any tool that publishes the plain layout uploads: the files that hold a
    // changed object, each whole, and what the store needs to keep the new objects.
    let changed_files = s[1].s3.put_bytes_layout;
    let store_added = s[1].stored_bytes_added;
    out.push(at_most(
        "snapshot 2 uploaded bytes / (changed plain-layout files + new store bytes)",
        ratio(s[1].s3.put_bytes, changed_files + store_added),
        1.1,
        "x",
        notes(&[
            Some(format!(
                "{} uploaded; {} of changed files, {} added to the store",
                mib(s[1].s3.put_bytes),
                mib(changed_files),
                mib(store_added)
            )),
            at_churn.clone(),
        ]),
    ));
    out.push(at_most(
        "snapshot 2 new store bytes / snapshot 1's store bytes",
        100.0 * ratio(store_added, s[0].stored_bytes_total),
        3.0,
        "%",
        at_churn.clone(),
    ));
    out.push(at_most(
        "snapshot 2 CPU / snapshot 1's",
        100.0 * s[1].cpu_seconds / s[0].cpu_seconds,
        50.0,
        "%",
        notes(&[
            Some(format!(
                "wall {:.1} %",
                100.0 * s[1].wall_seconds / s[0].wall_seconds
            )),
            at_churn,
        ]),
    ));

    if huge {
        let at = defined_at(1_000_000, 0);
        for (i, cpu_limit) in [(0, 60.0), (1, 30.0)] {
            let name = &s[i].name;
            out.push(at_most(
                &format!("{name} CPU"),
                s[i].cpu_seconds,
                cpu_limit,
                "s",
                notes(&[wall(&s[i]), at.clone()]),
            ));
            out.push(at_most(
                &format!("{name} peak RSS"),
                rss(&s[i]),
                512.0,
                "MiB",
                at.clone(),
            ));
        }
    }

    if !huge && args.s3.has_latency() {
        let note = defined_at(100_000, 25);
        for (i, limit) in [(0, 20.0), (1, 12.0)] {
            out.push(at_most(
                &format!("{} wall time with latency", s[i].name),
                s[i].wall_seconds,
                limit,
                "s",
                note.clone(),
            ));
        }
    }
    out
}

/// 100000 as "100,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / MIB)
}

fn print_table(
    snapshots: &[SnapshotFigures; 2],
    baselines: &[BaselineFigures; 2],
    ratios: &[Ratios],
    targets: &[Target],
) {
    let rows: Vec<Row<SnapshotFigures>> = vec![
        (
            "cluster objects",
            Box::new(|s| s.cluster_objects.to_string()),
        ),
        ("objects kept", Box::new(|s| s.objects.to_string())),
        ("new objects", Box::new(|s| s.new_objects.to_string())),
        ("wall", Box::new(|s| format!("{:.2} s", s.wall_seconds))),
        (
            "  read / export",
            Box::new(|s| format!("{:.2} / {:.2} s", s.read_seconds, s.export_seconds)),
        ),
        ("CPU", Box::new(|s| format!("{:.2} s", s.cpu_seconds))),
        (
            "servers' CPU",
            Box::new(|s| format!("{:.2} s", s.servers_cpu_seconds)),
        ),
        (
            "objects/s",
            Box::new(|s| format!("{:.0}", s.objects_per_second)),
        ),
        ("peak RSS", Box::new(|s| mib(s.peak_rss_bytes))),
        ("API requests", Box::new(|s| s.api.requests.to_string())),
        (
            "  objects in full",
            Box::new(|s| s.api.list_items_full.to_string()),
        ),
        (
            "  metadata only",
            Box::new(|s| s.api.list_items_metadata.to_string()),
        ),
        ("  one by one", Box::new(|s| s.api.gets.to_string())),
        ("PUT bytes", Box::new(|s| mib(s.s3.put_bytes))),
        ("  packs", Box::new(|s| mib(s.s3.put_bytes_packs))),
        ("  index files", Box::new(|s| mib(s.s3.put_bytes_index))),
        ("  manifests", Box::new(|s| mib(s.s3.put_bytes_manifests))),
        ("  plain layout", Box::new(|s| mib(s.s3.put_bytes_layout))),
        ("  other", Box::new(|s| mib(s.s3.put_bytes_other))),
        ("PUT", Box::new(|s| s.s3.puts.to_string())),
        ("COPY", Box::new(|s| s.s3.copies.to_string())),
        ("GET", Box::new(|s| s.s3.gets.to_string())),
        ("LIST", Box::new(|s| s.s3.lists.to_string())),
        (
            "HEAD/DELETE/other",
            Box::new(|s| format!("{}/{}/{}", s.s3.heads, s.s3.deletes, s.s3.other)),
        ),
        ("requests", Box::new(|s| s.s3.requests.to_string())),
        ("throttled (503)", Box::new(|s| s.s3.throttled.to_string())),
        ("connections", Box::new(|s| s.s3.connections.to_string())),
        (
            "in flight (mean)",
            Box::new(|s| format!("{:.1}", s.s3.in_flight(s.wall_seconds))),
        ),
        ("GET bytes", Box::new(|s| mib(s.s3.get_bytes))),
        ("stored added", Box::new(|s| mib(s.stored_bytes_added))),
        ("stored total", Box::new(|s| mib(s.stored_bytes_total))),
        ("raw JSON (layout)", Box::new(|s| mib(s.raw_json_bytes))),
        (
            "files up/copied",
            Box::new(|s| format!("{}/{}", s.files_uploaded, s.files_copied)),
        ),
    ];
    println!();
    println!(
        "{:<22}{:>18}{:>18}",
        "", snapshots[0].name, snapshots[1].name
    );
    for (label, cell) in &rows {
        println!(
            "{label:<22}{:>18}{:>18}",
            cell(&snapshots[0]),
            cell(&snapshots[1])
        );
    }
    println!("baseline (every plain-layout file uploaded again):");
    let base_rows: Vec<Row<BaselineFigures>> = vec![
        ("files", Box::new(|b| b.files.to_string())),
        (
            "upload wall",
            Box::new(|b| format!("{:.2} s", b.upload_wall_seconds)),
        ),
        ("PUT bytes", Box::new(|b| mib(b.s3.put_bytes))),
        ("requests", Box::new(|b| b.s3.requests.to_string())),
        ("throttled (503)", Box::new(|b| b.s3.throttled.to_string())),
    ];
    for (label, cell) in &base_rows {
        println!(
            "{label:<22}{:>18}{:>18}",
            cell(&baselines[0]),
            cell(&baselines[1])
        );
    }
    println!("ours / baseline:");
    let ratio_rows: Vec<Row<Ratios>> = vec![
        ("PUT bytes", Box::new(|r| format!("{:.4}", r.put_bytes))),
        ("bytes sent", Box::new(|r| format!("{:.4}", r.bytes_sent))),
        ("requests", Box::new(|r| format!("{:.4}", r.requests))),
    ];
    for (label, cell) in &ratio_rows {
        println!(
            "{label:<22}{:>18}{:>18}",
            cell(&ratios[0]),
            cell(&ratios[1])
        );
    }
    println!();
    for t in targets {
        let verdict = if t.pass { "PASS" } else { "MISS" };
        let note = t
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        println!(
            "{verdict} {}: {:.2} {} <= {} {}{note}",
            t.what, t.value, t.unit, t.limit, t.unit
        );
    }
}

/// A table row: its label and how to print the value from the figures.
type Row<T> = (&'static str, Box<dyn Fn(&T) -> String>);
