//! The one table: each figure beside its budget, printed, and written as JSON and
//! Markdown under `bench/results/`; docs/benchmarks.md gets the
//! Markdown between its markers.

use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: String,
    pub figure: String,
    pub value: String,
    pub budget: String,
    /// `met`, `MISSED`, or empty where there is no budget.
    pub verdict: String,
    pub note: String,
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    section: String,
}

impl Table {
    pub fn section(&mut self, name: &str) {
        self.section = name.to_owned();
    }

    pub fn info(&mut self, figure: impl Into<String>, value: impl Into<String>, note: impl Into<String>) {
        self.push(figure, value, "", None, note);
    }

    /// A figure with a budget: `ok` says whether it is met (None: could not be measured).
    pub fn budget(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        budget: impl Into<String>,
        ok: Option<bool>,
        note: impl Into<String>,
    ) {
        self.push(figure, value, budget, Some(ok), note);
    }

    fn push(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        budget: impl Into<String>,
        ok: Option<Option<bool>>,
        note: impl Into<String>,
    ) {
        let verdict = match ok {
            None => String::new(),
            Some(Some(true)) => "met".into(),
            Some(Some(false)) => "MISSED".into(),
            Some(None) => "not measured".into(),
        };
        self.rows.push(Row {
            section: self.section.clone(),
            figure: figure.into(),
            value: value.into(),
            budget: budget.into(),
            verdict,
            note: note.into(),
        });
    }

    pub fn text(&self) -> String {
        let w = |f: fn(&Row) -> &str| self.rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
        let (wf, wv, wb) = (w(|r| &r.figure).max(6), w(|r| &r.value).max(5), w(|r| &r.budget).max(6));
        let mut out = String::new();
        let mut section = "";
        for r in &self.rows {
            if r.section != section {
                section = &r.section;
                let _ = writeln!(out, "\n{section}");
                let _ = writeln!(out, "  {:<wf$}  {:>wv$}  {:<wb$}  verdict", "figure", "value", "budget");
            }
            let _ = writeln!(out, "  {:<wf$}  {:>wv$}  {:<wb$}  {}", r.figure, r.value, r.budget, r.verdict);
            if !r.note.is_empty() {
                let _ = writeln!(out, "      {}", r.note);
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for r in &self.rows {
            if r.section != section {
                section = &r.section;
                let _ = writeln!(out, "\n**{section}**\n");
                let _ = writeln!(out, "| figure | value | budget | verdict | note |");
                let _ = writeln!(out, "|---|---:|---|---|---|");
            }
            let esc = |s: &str| s.replace('|', "\\|");
            let verdict = if r.verdict == "MISSED" { "**MISSED**".to_owned() } else { r.verdict.clone() };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                esc(&r.figure),
                esc(&r.value),
                esc(&r.budget),
                verdict,
                esc(&r.note)
            );
        }
        out
    }
}

pub const TABLE_START: &str = "<!-- bench:start -->";
pub const TABLE_END: &str = "<!-- bench:end -->";

pub const BROADCAST_START: &str = "<!-- bench:broadcast:start -->";
pub const BROADCAST_END: &str = "<!-- bench:broadcast:end -->";

/// Replaces the block between the markers in docs/benchmarks.md, if the markers are there.
pub fn update_table(doc: &Path, block: &str) -> anyhow::Result<bool> {
    update_block(doc, TABLE_START, TABLE_END, block)
}

/// Replaces the block between `start` and `end` in a file, if the markers are there.
pub fn update_block(path: &Path, start: &str, end: &str, block: &str) -> anyhow::Result<bool> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(false) };
    let (Some(a), Some(b)) = (text.find(start), text.find(end)) else { return Ok(false) };
    if b < a {
        return Ok(false);
    }
    let updated = format!("{}{start}\n{block}\n{}", &text[..a], &text[b..]);
    std::fs::write(path, updated)?;
    Ok(true)
}

/// Fixed-precision formatting that keeps small per-notification figures readable.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
