//! A document of titled sections (paragraphs, tables, bullet lists, plots), written as
//! markdown and as one self-contained HTML page: what `tbctl report` and `tbctl compare` print.

mod html;
mod markdown;

use std::path::Path;

use crate::plot::Drawn;

/// A table: header and rows of text.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One piece of a section.
pub enum Block {
    Para(String),
    Table(Table),
    Bullets(Vec<String>),
    Plot(Drawn),
}

/// A titled section of the report.
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

/// The report as sections, rendered as markdown and HTML alike.
pub struct Document {
    pub title: String,
    pub sections: Vec<Section>,
}

/// A figure in a table: one decimal from 100 up, three below.
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Document {
    /// Writes `<dir>/<stem>.md` and `<dir>/<stem>.html` (plots are read from `dir` and inlined).
    pub fn write(&self, dir: &Path, stem: &str) -> std::io::Result<()> {
        std::fs::write(dir.join(format!("{stem}.md")), markdown::render(self))?;
        std::fs::write(dir.join(format!("{stem}.html")), html::render(self, dir))
    }
}
