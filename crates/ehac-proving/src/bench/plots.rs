//! The surge's PNG plots, beside its JSON: offered vs accepted declarations per second, ack
//! latency p50/p99 per second, lag per consumer group in messages and in seconds, rows per
//! second into ClickHouse, and CPU per process. Text is drawn with a TTF file read at run time
//! (DejaVu Sans from Debian's fonts-dejavu-core, which deploy/local/install.sh installs), so
//! no fontconfig or freetype is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::surge::Series;

const FONT_FILES: [&str; 2] = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];
const SIZE: (u32, u32) = (1000, 480);
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Registers the font once (plotters keeps `'static` bytes); an error names what to install.
fn font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = std::env::var("EHAC_PLOT_FONT").ok().into_iter().chain(FONT_FILES.map(str::to_owned)).find(|p| Path::new(p).is_file());
        let path = path.ok_or("no DejaVuSans.ttf (apt-get install fonts-dejavu-core, or set EHAC_PLOT_FONT to a TTF file)")?;
        let bytes: &'static [u8] = Box::leak(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{path} is not a font plotters reads"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// One line of a chart: its name and (x, y) points.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

fn line(name: &str, points: impl IntoIterator<Item = (f64, f64)>) -> Line {
    Line { name: name.to_owned(), points: points.into_iter().filter(|(x, y)| x.is_finite() && y.is_finite()).collect() }
}

/// Draws `lines` on `area` with seconds on x; a log y axis when `log_y` (values under
/// `floor` are drawn at it).
fn chart(area: &DrawingArea<BitMapBackend, Shift>, title: &str, y_label: &str, lines: &[Line], log_y: bool) -> anyhow::Result<()> {
    let all = lines.iter().flat_map(|l| &l.points);
    let (x_min, x_max) = all.clone().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| (lo.min(*x), hi.max(*x)));
    let (x_min, x_max) = if x_min <= x_max { (x_min.min(0.0), x_max.max(x_min + 1.0)) } else { (0.0, 1.0) };
    let y_max = all.map(|(_, y)| *y).fold(0.0, f64::max).max(1e-3) * 1.1;
    let draw_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {title}: {e}");
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, ("sans-serif", 20)).margin(10).x_label_area_size(40).y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr, $map:expr) => {{
            let mut chart = $chart;
            chart.configure_mesh().x_desc("seconds from the load's start").y_desc(y_label).draw().map_err(|e| draw_err(&e))?;
            for (i, l) in lines.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(l.points.iter().map($map), color.stroke_width(2)))
                    .map_err(|e| draw_err(&e))?
                    .label(l.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| draw_err(&e))?;
        }};
    }
    if log_y {
        let floor = 0.1;
        let chart = builder.build_cartesian_2d(x_min..x_max, (floor..y_max.max(floor * 10.0)).log_scale()).map_err(|e| draw_err(&e))?;
        draw!(chart, |&(x, y): &(f64, f64)| (x, y.max(floor)));
    } else {
        let chart = builder.build_cartesian_2d(x_min..x_max, 0.0..y_max).map_err(|e| draw_err(&e))?;
        draw!(chart, |&(x, y): &(f64, f64)| (x, y));
    }
    Ok(())
}

/// One PNG of one or more charts stacked.
fn png(path: &Path, charts: &[(&str, &str, Vec<Line>, bool)]) -> anyhow::Result<()> {
    let height = SIZE.1 * charts.len() as u32;
    let root = BitMapBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (area, (title, y_label, lines, log_y)) in root.split_evenly((charts.len(), 1)).iter().zip(charts) {
        chart(area, title, y_label, lines, *log_y)?;
    }
    root.present().map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Writes a load's own plots, offered vs accepted per second and ack latency p50/p99 per
/// second, as `<stem>-rate.png` and `<stem>-latency.png` in `dir`; the files written.
pub fn load(dir: &Path, stem: &str, load: &[crate::loadgen::LoadSecond]) -> anyhow::Result<Vec<PathBuf>> {
    font()?;
    let seconds = |f: fn(&crate::loadgen::LoadSecond) -> f64| load.iter().map(move |s| (f64::from(s.second), f(s)));
    let rate = dir.join(format!("{stem}-rate.png"));
    png(
        &rate,
        &[(
            "Declarations per second: offered (scheduled) and accepted (answered 202)",
            "declarations/s",
            vec![line("offered", seconds(|s| s.offered as f64)), line("accepted", seconds(|s| s.accepted as f64))],
            false,
        )],
    )?;
    let latency = dir.join(format!("{stem}-latency.png"));
    png(
        &latency,
        &[(
            "Gateway ack latency from the scheduled send time, by second sent",
            "ms (log)",
            vec![line("p50", seconds(|s| s.p50_ms)), line("p99", seconds(|s| s.p99_ms))],
            true,
        )],
    )?;
    Ok(vec![rate, latency])
}

/// Writes the surge's plots as `<stem>-<what>.png` in `dir` (the load's two, then lag, rows
/// per second and CPU per process); the files written.
pub fn surge(dir: &Path, stem: &str, series: &Series) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = load(dir, stem, &series.load)?;
    let file = |what: &str| dir.join(format!("{stem}-{what}.png"));
    let back = &series.back_office;

    let path = file("lag");
    png(
        &path,
        &[
            (
                "Consumer lag, messages (summed over partitions)",
                "messages",
                vec![
                    line("enricher (raw)", back.iter().map(|s| (s.t, s.enricher_lag as f64))),
                    line("sink (enriched + rejected)", back.iter().map(|s| (s.t, s.sink_lag as f64))),
                ],
                false,
            ),
            (
                "Consumer lag, seconds (age of the oldest message owed)",
                "seconds",
                vec![
                    line("enricher (raw)", back.iter().map(|s| (s.t, s.enricher_lag_seconds))),
                    line("sink (enriched + rejected)", back.iter().map(|s| (s.t, s.sink_lag_seconds))),
                ],
                false,
            ),
        ],
    )?;
    written.push(path);

    let path = file("rows");
    let rows_per_s =
        series.rows.windows(2).map(|w| (w[1].0, (w[1].1.saturating_sub(w[0].1)) as f64 / (w[1].0 - w[0].0).max(1e-3))).collect::<Vec<_>>();
    png(&path, &[("Rows per second into ClickHouse (declarations + rejections)", "rows/s", vec![line("stored", rows_per_s)], false)])?;
    written.push(path);

    let path = file("cpu");
    let lines = series
        .processes
        .iter()
        .enumerate()
        .map(|(i, name)| line(name, back.iter().map(|s| (s.t, s.cores.get(i).copied().unwrap_or(f64::NAN)))))
        .collect();
    png(&path, &[("CPU per process", "cores", lines, false)])?;
    written.push(path);
    Ok(written)
}

/// `ehac bench analysts`: p95 per query as horizontal bars, the analyst's read beside the same
/// question of the raw rows.
pub fn query_times(path: &Path, rows: &[super::analysts::QueryRow]) -> anyhow::Result<()> {
    font()?;
    let height = 60 + 34 * rows.len() as u32;
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    let draw_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let max = rows.iter().flat_map(|r| [Some(r.analyst.p95_ms), r.raw.as_ref().map(|t| t.p95_ms)]).flatten().fold(1.0, f64::max) * 1.1;
    let names: Vec<String> = rows.iter().map(|r| r.name.chars().take(48).collect()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("p95 per query, ms: the analyst's read (blue) and the raw rows (orange)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(360)
        .build_cartesian_2d(0.0..max, -0.5..rows.len() as f64 - 0.5)
        .map_err(|e| draw_err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        // A name between its two bars.
        .y_label_formatter(&|y| {
            let i = y.round() as usize;
            if (y - y.round()).abs() < 0.01 && i < rows.len() {
                names[rows.len() - i - 1].clone()
            } else {
                String::new()
            }
        })
        .x_desc("ms")
        .draw()
        .map_err(|e| draw_err(&e))?;
    for (i, row) in rows.iter().enumerate() {
        let y = (rows.len() - i - 1) as f64;
        chart.draw_series([Rectangle::new([(0.0, y), (row.analyst.p95_ms, y + 0.38)], COLORS[0].filled())]).map_err(|e| draw_err(&e))?;
        if let Some(raw) = &row.raw {
            chart.draw_series([Rectangle::new([(0.0, y - 0.38), (raw.p95_ms, y)], COLORS[1].filled())]).map_err(|e| draw_err(&e))?;
        }
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::LoadSecond;

    #[test]
    fn draws_a_load_as_png_files() {
        if font().is_err() {
            eprintln!("no DejaVuSans.ttf here: skipped (deploy/local/install.sh installs fonts-dejavu-core)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let seconds: Vec<LoadSecond> = (0..20)
            .map(|s| LoadSecond { second: s, offered: 100 * u64::from(s % 7), accepted: 90, p50_ms: 1.0 + f64::from(s), p99_ms: 50.0 })
            .collect();
        let written = load(dir.path(), "t", &seconds).unwrap();
        assert_eq!(written, [dir.path().join("t-rate.png"), dir.path().join("t-latency.png")]);
        for file in written {
            let png = std::fs::read(file).unwrap();
            assert!(png.len() > 1_000 && png.starts_with(b"\x89PNG\r\n\x1a\n"));
        }
    }
}
