//! tbd's command line.

use std::process::ExitCode;

use clap::Parser;

/// TrafficBench daemon: times inference traffic at the socket with eBPF.
#[derive(Parser, Debug)]
#[command(name = "tbd", version = None, disable_version_flag = true)]
pub struct Args {
    /// Print the version and the size of the embedded eBPF object.
    #[arg(short = 'V', long)]
    pub version: bool,
}

/// Entry point of the `tbd` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("{}", crate::version_line());
        return ExitCode::SUCCESS;
    }
    ExitCode::SUCCESS
}
