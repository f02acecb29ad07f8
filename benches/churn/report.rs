//! The one table the bench prints: for every metric and contender, the median of the runs, the
//! min–max, the ratio to the floor and the target beside it.
//!
//! The ratio is taken run by run, then its median: each run of a contender is divided by
//! the floor's run of the same round (the contenders of a round run one after the other,
//! minutes apart from the next round's), so a machine that drifts over minutes moves both
//! sides of each ratio alike. A ratio of medians would pair a contender's run with a floor
//! run from another round.

use crate::procs::Kind;
use std::fmt::Write as _;

/// What one row measures.
pub struct Metric {
    pub scenario: &'static str,
    pub name: &'static str,
    /// Shown beside the figure; empty when there is none.
    pub target: &'static str,
    /// Decimal places to print.
    pub decimals: usize,
}

/// One row's values, each with the round it was measured in.
type Values = Vec<(usize, f64)>;

/// Values collected per (metric, contender), in insertion order.
#[derive(Default)]
pub struct Table {
    rows: Vec<(&'static Metric, Kind, Values)>,
    /// The round values added now belong to (see [`Table::set_round`]).
    round: usize,
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Table {
    /// Values added from now on belong to round `round` (each contender runs once a round).
    pub fn set_round(&mut self, round: usize) {
        self.round = round;
    }

    pub fn add(&mut self, metric: &'static Metric, kind: Kind, value: f64) {
        let round = self.round;
        match self
            .rows
            .iter_mut()
            .find(|(m, k, _)| std::ptr::eq(*m, metric) && *k == kind)
        {
            Some((_, _, values)) => values.push((round, value)),
            None => self.rows.push((metric, kind, vec![(round, value)])),
        }
    }

    fn values(&self, metric: &'static Metric, kind: Kind) -> Option<&[(usize, f64)]> {
        self.rows
            .iter()
            .find(|(m, k, _)| std::ptr::eq(*m, metric) && *k == kind)
            .map(|(_, _, values)| values.as_slice())
    }

    /// Median of a metric for a contender, if measured.
    pub fn median(&self, metric: &'static Metric, kind: Kind) -> Option<f64> {
        let values: Vec<f64> = self.values(metric, kind)?.iter().map(|v| v.1).collect();
        Some(median(&values))
    }

    /// The median, over the rounds where both were measured, of a contender's value
    /// divided by the floor's in the same round; `None` without such a round.
    pub fn ratio(&self, metric: &'static Metric, kind: Kind) -> Option<f64> {
        let floor = self.values(metric, Kind::Floor)?;
        let ratios: Vec<f64> = self
            .values(metric, kind)?
            .iter()
            .filter_map(|&(round, value)| {
                let (_, f) = floor.iter().find(|(r, _)| *r == round)?;
                (*f != 0.0 && f.is_finite()).then(|| value / f)
            })
            .collect();
        (!ratios.is_empty()).then(|| median(&ratios))
    }

    /// Renders the table, rows grouped by metric in first-seen order, contenders in `order`.
    pub fn render(&self, order: &[Kind]) -> String {
        let mut metrics: Vec<&'static Metric> = Vec::new();
        for (m, _, _) in &self.rows {
            if !metrics.iter().any(|x| std::ptr::eq(*x, *m)) {
                metrics.push(m);
            }
        }
        let header = [
            "scenario",
            "metric",
            "contender",
            "median",
            "min–max",
            "runs",
            "÷ floor",
            "target",
        ];
        let mut lines: Vec<[String; 8]> = Vec::new();
        for metric in metrics {
            for &kind in order {
                let Some((_, _, values)) = self
                    .rows
                    .iter()
                    .find(|(m, k, _)| std::ptr::eq(*m, metric) && *k == kind)
                else {
                    continue;
                };
                let d = metric.decimals;
                let values: Vec<f64> = values.iter().map(|v| v.1).collect();
                let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let med = median(&values);
                let ratio = self
                    .ratio(metric, kind)
                    .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
                lines.push([
                    metric.scenario.to_owned(),
                    metric.name.to_owned(),
                    kind.name().to_owned(),
                    format!("{med:.d$}"),
                    format!("{min:.d$}–{max:.d$}"),
                    values.len().to_string(),
                    ratio,
                    metric.target.to_owned(),
                ]);
            }
        }
        let mut widths = header.map(|h| h.chars().count());
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let row = |out: &mut String, cells: &[&str]| {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                // Numbers right-aligned, text left-aligned.
                if (3..=6).contains(&i) {
                    let _ = write!(out, "{}{} ", " ".repeat(pad), cell);
                } else {
                    let _ = write!(out, "{}{} ", cell, " ".repeat(pad));
                }
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        };
        row(&mut out, &header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        row(
            &mut out,
            &rule.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut last = "";
        for line in &lines {
            let cells: Vec<&str> = line.iter().map(String::as_str).collect();
            if !last.is_empty() && last != cells[0] {
                out.push('\n');
            }
            last = line[0].as_str();
            row(&mut out, &cells);
        }
        out
    }
}
