//! The `portcullis` binary: parse flags, run the app; a configuration error exits with 64.

use clap::Parser;
use portcullis::cli::{Cli, Command};
use portcullis::telemetry::init_logging;

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
        Command::Echo(_) => portcullis::telemetry::LogFormat::Text,
    };
    init_logging(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        }
    });
    if let Err(e) = result {
        eprintln!("portcullis: {e}");
        std::process::exit(e.exit_code());
    }
}
