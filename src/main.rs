//! The `portcullis` binary: parse flags, run the app; a configuration error exits with 64.

use clap::Parser;
use portcullis::cli::{Cli, Command};
use portcullis::telemetry::init_logging;

/// mimalloc instead of glibc malloc: fewer instructions per allocation on the request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let _ = e.print();
            std::process::exit(64);
        }
    };
    let log_format = match &cli.command {
        Command::Serve(a) => a.log_format,
        Command::Demo(a) => a.log_format,
        Command::Echo(_) | Command::Crds(_) => portcullis::telemetry::LogFormat::Text,
    };
    init_logging(log_format);
    let (workers, spin) = match &cli.command {
        Command::Serve(a) => (a.worker_threads, a.idle_spin),
        _ => (0, std::time::Duration::ZERO),
    };
    if let Command::Crds(a) = &cli.command {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&a.out)?;
            for (name, yaml) in portcullis::api::crd_files() {
                std::fs::write(a.out.join(name), yaml)?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            eprintln!("portcullis: cannot write CRDs to {}: {e}", a.out.display());
            std::process::exit(1);
        }
        return;
    }
    let runtime = match runtime(workers, spin) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => portcullis::app::serve(*a).await,
            Command::Demo(a) => portcullis::app::demo(a).await,
            Command::Echo(a) => portcullis::app::echo(a).await,
            Command::Crds(_) => Ok(()),
        }
    });
    if let Err(e) = result {
        eprintln!("portcullis: {e}");
        std::process::exit(e.exit_code());
    }
}

/// The async runtime: `current_thread` for one worker (no cross-thread wake-ups), else
/// `multi_thread` with `workers` threads (0 = one per core); `spin` as in [`portcullis::idle`].
fn runtime(workers: usize, spin: std::time::Duration) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if workers > 1 {
        b.worker_threads(workers);
    }
    portcullis::idle::install(&mut b, spin);
    b.enable_all().build()
}
