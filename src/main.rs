//! The `chaoslab` binary: one image, one binary, a subcommand per role.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chaoslab",
    version,
    about = "A Kubernetes resilience lab: load, faults and verdicts chaoslab measures itself"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of every chaoslab kind as YAML.
    Crd {
        /// Write one file per CRD into this directory instead of printing them all.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir),
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = chaoslab::api::crds();
    match out_dir {
        None => {
            for crd in &crds {
                print!("---\n{}", chaoslab::api::crd_yaml(crd)?);
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(chaoslab::api::crd_file_name(crd));
                std::fs::write(&path, chaoslab::api::crd_yaml(crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
