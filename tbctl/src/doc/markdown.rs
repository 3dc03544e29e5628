//! A document as markdown.

use super::{Block, Document, Table};

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(t: &Table, out: &mut String) {
    let row = |cells: &[String]| {
        format!(
            "| {} |\n",
            cells
                .iter()
                .map(|c| cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    out.push_str(&row(&t.header));
    out.push_str(&format!("|{}\n", " --- |".repeat(t.header.len())));
    for r in &t.rows {
        out.push_str(&row(r));
    }
    out.push('\n');
}

/// The markdown text.
pub fn render(doc: &Document) -> String {
    let mut out = format!("# {}\n\n", doc.title);
    for s in &doc.sections {
        out.push_str(&format!("## {}\n\n", s.title));
        for b in &s.blocks {
            match b {
                Block::Para(p) => out.push_str(&format!("{p}\n\n")),
                Block::Table(t) => table(t, &mut out),
                Block::Bullets(items) => {
                    for i in items {
                        out.push_str(&format!("- {i}\n"));
                    }
                    out.push('\n');
                }
                Block::Plot(p) => out.push_str(&format!(
                    "### {}\n\n![{}]({})\n\n[SVG]({})\n\n",
                    p.title, p.title, p.png, p.svg
                )),
            }
        }
    }
    out
}
