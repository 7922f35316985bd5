//! The `kube-sim` binary: starts a simulated API server, writes its kubeconfig and serves
//! until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use kube_sim::{SimConfig, SimServer};

#[derive(Parser, Debug)]
#[command(
    name = "kube-sim",
    about = "A simulated Kubernetes API server with a generated cluster"
)]
struct Args {
    /// Approximate number of objects in the generated cluster.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Seed of the generated cluster.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of generated namespaces (default: objects/100, at least 3).
    #[arg(long)]
    namespaces: Option<usize>,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve HTTPS with a fresh self-signed CA (written into the kubeconfig).
    #[arg(long)]
    tls: bool,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "kube-sim.kubeconfig")]
    kubeconfig: PathBuf,
    /// Bearer token clients must send.
    #[arg(long, default_value = "kube-sim-token")]
    token: String,
    /// Start with an empty cluster (only the system namespaces), as a restore target.
    #[arg(long)]
    empty: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = SimConfig {
        objects: args.objects,
        seed: args.seed,
        namespaces: args.namespaces,
        tls: args.tls,
        token: args.token,
        empty: args.empty,
        garbage_collector: None,
    };
    let started = std::time::Instant::now();
    let server = SimServer::start_on(config, SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    server.write_kubeconfig(&args.kubeconfig)?;
    println!(
        "kube-sim serving {} objects at {} (generated in {:.1?})",
        server.objects().len(),
        server.url(),
        started.elapsed()
    );
    println!("kubeconfig: {}", args.kubeconfig.display());
    println!(
        "try: kubectl --kubeconfig {} get pods -A",
        args.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    server.shutdown();
    Ok(())
}
