//! The report as one self-contained HTML page: the Markdown summary turned into HTML (only the
//! subset [`super::markdown`] writes: headings, quotes, lists, tables, inline code, images) with
//! each chart's SVG put inline where the Markdown links it, so the file opens anywhere offline.

use super::{Report, markdown};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}blockquote{border-left:4px solid #ccc;margin:0;padding-left:1em}\
.verdict-Pass{color:#17702b}.verdict-Fail,.verdict-Aborted,.verdict-Error{color:#b01818}.verdict-Inconclusive{color:#8a6100}\
figure{margin:1em 0}svg{max-width:100%;height:auto}";

/// Renders `report` with `charts` (file name, SVG) inline.
pub fn render(report: &Report, charts: &[(&str, String)]) -> String {
    let names: Vec<&str> = charts.iter().map(|(name, _)| *name).collect();
    let md = markdown::render(report, &names);
    let mut body = String::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut list = false;
    for line in md.lines() {
        if !line.starts_with('|') && !table.is_empty() {
            body.push_str(&table_html(&std::mem::take(&mut table)));
        }
        if !line.starts_with("- ") && list {
            body.push_str("</ul>\n");
            list = false;
        }
        if let Some(title) = line.strip_prefix("# ") {
            body.push_str(&format!("<h1 class=\"verdict-{}\">{}</h1>\n", report.verdict_word(), inline(title)));
        } else if let Some(title) = line.strip_prefix("## ") {
            body.push_str(&format!("<h2>{}</h2>\n", inline(title)));
        } else if let Some(quote) = line.strip_prefix("> ") {
            body.push_str(&format!("<blockquote>{}</blockquote>\n", inline(quote)));
        } else if let Some(item) = line.strip_prefix("- ") {
            if !list {
                body.push_str("<ul>\n");
                list = true;
            }
            body.push_str(&format!("<li>{}</li>\n", inline(item)));
        } else if line.starts_with('|') {
            table.push(split_row(line));
        } else if let Some(image) = line.strip_prefix("![") {
            let file = image.split_once("](").map(|(_, rest)| rest.trim_end_matches(')')).unwrap_or_default();
            if let Some((_, svg)) = charts.iter().find(|(name, _)| *name == file) {
                body.push_str(&format!("<figure>{}</figure>\n", strip_prolog(svg)));
            }
        } else if !line.trim().is_empty() {
            body.push_str(&format!("<p>{}</p>\n", inline(line)));
        }
    }
    if !table.is_empty() {
        body.push_str(&table_html(&table));
    }
    if list {
        body.push_str("</ul>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} {}: {}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(&report.kind),
        escape(&report.name),
        report.verdict_word()
    )
}

/// The cells of a Markdown table row, unescaping `\|`.
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let mut current = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                current.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(c),
        }
    }
    cells.push(current.trim().to_owned());
    cells
}

fn table_html(rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table>\n");
    for (i, row) in rows.iter().enumerate() {
        if row.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue; // the separator row
        }
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<{tag}>{}</{tag}>", inline(cell)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

/// Escapes text and turns `code` spans into `<code>`.
fn inline(text: &str) -> String {
    let mut html = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            html.push_str(&format!("<code>{}</code>", escape(part)));
        } else {
            html.push_str(&escape(part));
        }
    }
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG document without its XML declaration, to sit inside HTML.
fn strip_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(at) => &svg[at..],
        None => svg,
    }
}
