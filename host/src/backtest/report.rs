//! The backtest report: its JSON shape, the terminal table, and the chart.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use super::run::{Backtest, OracleReport, Run, RunReport};

/// The whole report, as written by `--json` (schema in `docs/backtests.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    /// The trace file as given.
    pub trace: String,
    /// The model's parameters.
    pub model: ModelReport,
    /// The oracle's numbers.
    pub oracle: OracleReport,
    /// Each policy and baseline, in the order given.
    pub policies: Vec<RunReport>,
}

/// The model's parameters as used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    /// Seconds between ticks.
    pub tick_secs: f64,
    /// Seconds from scale-up to Ready.
    pub startup_delay_secs: f64,
    /// Requests per minute one replica serves.
    pub capacity_per_replica: f64,
    /// First minute replayed.
    pub from_minute: usize,
    /// End minute (exclusive).
    pub to_minute: usize,
    /// Minutes replayed.
    pub minutes: usize,
    /// Fewest replicas a policy may run.
    pub min_replicas: u32,
    /// Most replicas a policy may run.
    pub max_replicas: u32,
}

impl BacktestReport {
    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} minutes, tick {}s, startup delay {}s, {:.2} requests/min per replica\n\n",
            self.model.minutes,
            self.model.tick_secs,
            self.model.startup_delay_secs,
            self.model.capacity_per_replica
        );
        out.push_str(&format!(
            "{:<24} {:>10} {:>9} {:>13} {:>8} {:>9} {:>8} {:>7}\n",
            "policy", "SLO-miss", "dropped", "replica-h", "/oracle", "actions", "max", "failed"
        ));
        for p in &self.policies {
            out.push_str(&format!(
                "{:<24} {:>10} {:>8.3}% {:>13.1} {:>8.3} {:>9} {:>8} {:>7}\n",
                p.name,
                p.violation_minutes,
                p.dropped_share * 100.0,
                p.replica_hours,
                p.cost_vs_oracle,
                p.scale_actions,
                p.max_replicas,
                p.failed_ticks
            ));
        }
        out.push_str(&format!(
            "{:<24} {:>10} {:>8.3}% {:>13.1} {:>8.3} {:>9} {:>8} {:>7}\n",
            "oracle", 0, 0.0, self.oracle.replica_hours, 1.0, "-", self.oracle.max_replicas, "-"
        ));
        out
    }
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Neither `.svg` nor `.png`.
    #[error("chart {0}: the file name must end in .svg or .png")]
    Format(PathBuf),
    /// The zoom window is empty or outside the replayed minutes.
    #[error(
        "--chart-window {from}:{to} must be a non-empty range inside the replayed minutes {first}:{end}"
    )]
    Window {
        /// First minute asked for.
        from: usize,
        /// End minute asked for.
        to: usize,
        /// First minute replayed.
        first: usize,
        /// End of the replayed minutes.
        end: usize,
    },
    /// Drawing or writing failed.
    #[error("chart {path}: {message}")]
    Draw {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Points drawn per line at most: longer runs are averaged into buckets of whole minutes.
const MAX_POINTS: usize = 2000;

/// Minutes `from..to` of the trace (numbered as `--from`/`--to`), to zoom a chart into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartWindow {
    /// First minute drawn.
    pub from: usize,
    /// End minute (exclusive).
    pub to: usize,
}

impl std::str::FromStr for ChartWindow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (from, to) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected FROM:TO in minutes, e.g. 20160:21600"))?;
        let minute = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?}: {v:?} is not a minute number"))
        };
        Ok(ChartWindow {
            from: minute(from)?,
            to: minute(to)?,
        })
    }
}

impl ChartWindow {
    /// The window as indices into the replayed minutes; refused if empty or outside them.
    pub fn within(&self, backtest: &Backtest) -> Result<std::ops::Range<usize>, ChartError> {
        let first = backtest.from_minute();
        let end = first + backtest.requests().len();
        if self.from >= self.to || self.from < first || self.to > end {
            return Err(ChartError::Window {
                from: self.from,
                to: self.to,
                first,
                end,
            });
        }
        Ok(self.from - first..self.to - first)
    }
}

/// Refuses a chart file name that is neither `.svg` nor `.png`, before anything runs.
pub fn check_chart_path(path: &Path) -> Result<(), ChartError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg" | "png") => Ok(()),
        _ => Err(ChartError::Format(path.to_owned())),
    }
}

/// Draws demand (replica units) and each run's Ready replicas to SVG or PNG: over the whole
/// replay (downsampled to at most 2000 points per line), or over `window` only.
pub fn chart(
    path: &Path,
    backtest: &Backtest,
    runs: &[Run],
    window: Option<ChartWindow>,
) -> Result<(), ChartError> {
    let range = match window {
        Some(w) => w.within(backtest)?,
        None => 0..backtest.requests().len(),
    };
    register_font();
    let draw_error = |e: &dyn std::fmt::Display| ChartError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
            draw(&root, backtest, runs, range.clone()).map_err(|e| draw_error(&e))?;
            root.present().map_err(|e| draw_error(&e))
        }
        Some("png") => {
            let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
            draw(&root, backtest, runs, range.clone()).map_err(|e| draw_error(&e))?;
            root.present().map_err(|e| draw_error(&e))
        }
        _ => Err(ChartError::Format(path.to_owned())),
    }
}

/// Plotters draws text with a registered font: the bundled DejaVu Sans, so charts need no
/// system fonts.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_err()
        {
            tracing::warn!("cannot register the chart font; text may be missing");
        }
    });
}

/// Averages `values` into `buckets` of `size` consecutive entries.
fn downsample(values: impl Iterator<Item = f64>, size: usize) -> Vec<f64> {
    let values: Vec<f64> = values.collect();
    values
        .chunks(size.max(1))
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    backtest: &Backtest,
    runs: &[Run],
    range: std::ops::Range<usize>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let minutes = range.len();
    let bucket = minutes.div_ceil(MAX_POINTS);
    let hours_per_point = bucket as f64 / 60.0;
    // Hours are counted from the trace's first minute, so a zoomed chart keeps its place.
    let start_hour = (backtest.from_minute() + range.start) as f64 / 60.0;
    let demand = downsample(
        backtest.requests()[range.clone()]
            .iter()
            .map(|r| r / backtest.capacity_per_replica()),
        bucket,
    );
    let lines: Vec<(String, Vec<f64>)> = runs
        .iter()
        .map(|run| {
            let ready = run.ready_by_minute.get(range.clone()).unwrap_or_default();
            (
                run.report.name.clone(),
                downsample(ready.iter().map(|&r| f64::from(r)), bucket),
            )
        })
        .collect();
    let top = lines
        .iter()
        .flat_map(|(_, l)| l.iter())
        .chain(demand.iter())
        .copied()
        .fold(1.0, f64::max)
        * 1.1;
    let span = start_hour..start_hour + minutes as f64 / 60.0;
    let caption = if bucket > 1 {
        format!("demand vs ready replicas ({bucket}-minute means)")
    } else {
        "demand vs ready replicas".to_owned()
    };
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(span, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("hours since the trace's first minute")
        .y_desc("replicas")
        .draw()?;
    let series = |values: &[f64]| -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (start_hour + i as f64 * hours_per_point, *v))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(series(&demand), BLACK.stroke_width(2)))?
        .label("demand")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (i, (name, values)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(series(values), color.stroke_width(1)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
