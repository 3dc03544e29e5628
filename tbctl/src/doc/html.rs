//! A document as one self-contained HTML page (inline CSS and SVG, no network), readable offline.
//! A small inline script counts the plots the browser rendered, so a headless browser can
//! check the page (body data-plots-rendered / data-plots-expected).

use std::path::Path;

use super::{Block, Document, Table};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text and turns `**bold**` pairs into <strong>.
fn text(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split("**").enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<strong>{part}</strong>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

fn table(t: &Table, out: &mut String) {
    out.push_str("<table>");
    if t.header.iter().any(|h| !h.is_empty()) {
        out.push_str("<thead><tr>");
        for h in &t.header {
            out.push_str(&format!("<th>{}</th>", esc(h)));
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>");
    for r in &t.rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let cls = match c.as_str() {
                "PASS" => " class=\"pass\"",
                "WARN" => " class=\"warn\"",
                "FAIL" => " class=\"fail\"",
                _ if i > 0 && c.parse::<f64>().is_ok() => " class=\"num\"",
                _ => "",
            };
            out.push_str(&format!("<td{cls}>{}</td>", esc(c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;\
padding:.3em .6em;text-align:left;vertical-align:top}td.num{text-align:right;\
font-variant-numeric:tabular-nums}td.pass{background:#d9f2d9}td.warn{background:#fff1c2}\
td.fail{background:#f8d0d0}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;\
border:1px solid #eee}figcaption{color:#555;font-size:.9em}";

const SCRIPT: &str = "window.addEventListener('load',function(){var n=0;\
document.querySelectorAll('figure.plot svg').forEach(function(s){var b=s.getBBox();\
if(b.width>0&&b.height>0){n++;}});document.body.dataset.plotsRendered=String(n);});";

/// The HTML page; plots are read from `dir` and inlined.
pub fn render(doc: &Document, dir: &Path) -> String {
    let plots = doc
        .sections
        .iter()
        .flat_map(|s| &s.blocks)
        .filter(|b| matches!(b, Block::Plot(_)))
        .count();
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{STYLE}</style></head>\n\
         <body data-plots-expected=\"{plots}\" data-plots-rendered=\"0\">\n<h1>{}</h1>\n",
        esc(&doc.title),
        esc(&doc.title)
    );
    for s in &doc.sections {
        out.push_str(&format!("<h2>{}</h2>\n", esc(&s.title)));
        for b in &s.blocks {
            match b {
                Block::Para(p) => out.push_str(&format!("<p>{}</p>\n", text(p))),
                Block::Table(t) => table(t, &mut out),
                Block::Bullets(items) => {
                    out.push_str("<ul>");
                    for i in items {
                        out.push_str(&format!("<li>{}</li>", text(i)));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Plot(p) => {
                    let svg = std::fs::read_to_string(dir.join(&p.svg)).unwrap_or_else(|e| {
                        format!(
                            "<p>{} could not be read: {}</p>",
                            esc(&p.svg),
                            esc(&e.to_string())
                        )
                    });
                    out.push_str(&format!(
                        "<figure class=\"plot\" id=\"{}\">{svg}<figcaption>{} \
                         (<code>{}</code>, <code>{}</code>)</figcaption></figure>\n",
                        esc(p.kind),
                        esc(p.title),
                        esc(&p.png),
                        esc(&p.svg)
                    ));
                }
            }
        }
    }
    out.push_str(&format!("<script>{SCRIPT}</script>\n</body></html>\n"));
    out
}
