//! `tbctl analyze RUN --analysis A`: analyses of a run directory, each one file with a name,
//! a line saying what it does, and `run`; [`KINDS`] registers it in one line.

mod energy;
mod network;
mod regression;
mod steady_state;

use serde::Serialize;

use crate::{plot::Drawn, rundir::RunData};

/// What an analysis found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub analysis: &'static str,
    /// Lines for the terminal, each a finding with its figures.
    pub lines: Vec<String>,
    /// The figures, for analysis/<name>.json.
    pub data: serde_json::Value,
    pub plots: Vec<Drawn>,
}

/// One registered analysis.
pub struct Analysis {
    pub name: &'static str,
    pub about: &'static str,
    /// Err: why this run cannot have it (one line).
    pub run: fn(&RunData) -> Result<Outcome, String>,
}

/// Every analysis.
pub const KINDS: &[Analysis] = &[
    Analysis {
        name: regression::NAME,
        about: regression::ABOUT,
        run: regression::run,
    },
    Analysis {
        name: steady_state::NAME,
        about: steady_state::ABOUT,
        run: steady_state::run,
    },
    Analysis {
        name: network::NAME,
        about: network::ABOUT,
        run: network::run,
    },
    Analysis {
        name: energy::NAME,
        about: energy::ABOUT,
        run: energy::run,
    },
];

/// The analysis named `name`, or one line listing the known ones.
pub fn kind(name: &str) -> Result<&'static Analysis, String> {
    KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        format!(
            "unknown analysis '{name}': known analyses are {}",
            KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        )
    })
}

/// Runs `a` on `run` and writes `<run>/analysis/<name>.json`.
pub fn run_and_write(a: &Analysis, run: &RunData) -> Result<Outcome, String> {
    let out = (a.run)(run)?;
    let dir = run.dir.join("analysis");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    crate::rundir::write_json(&dir, &format!("{}.json", a.name), &out)
        .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    Ok(out)
}
