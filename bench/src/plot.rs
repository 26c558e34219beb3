//! PNG plots of the forwarding benchmark: one panel per route scale, the
//! delivered rate per round for each mode.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context as _, Result, bail};
use plotters::prelude::*;

/// Where Debian's `fonts-dejavu-core` (installed by `cargo xtask setup`)
/// puts the font; plotters' `ab_glyph` backend has no font of its own.
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_PACKAGE: &str = "fonts-dejavu-core";

const MODES: [(&str, RGBColor); 3] = [
    ("(a) kernel", RGBColor(200, 40, 40)),
    ("(b) fast path", RGBColor(30, 90, 200)),
    ("(c) ceiling", RGBColor(40, 150, 60)),
];
const PANEL: (u32, u32) = (640, 480);
const TITLE_HEIGHT: u32 = 40;
const MAX_PANELS: usize = 8;

/// One route scale's results for the plot.
pub struct ScaleSeries {
    /// Shown in the panel caption, e.g. "10,000 prefixes x 8-way ECMP".
    pub label: String,
    /// Delivered packets per second, per round, for the three modes in this
    /// order: [kernel, fast path, ceiling].
    pub rounds: Vec<[f64; 3]>,
    pub b_over_a: f64,
    pub b_over_c: f64,
}

/// Write a PNG to `path`: `title` on top, one panel per scale side by side,
/// x = round number, y = Mpps, one line per mode. Non-finite rates (a failed
/// round) are left out of their line rather than failing the whole plot.
pub fn write_png(path: &Path, title: &str, scales: &[ScaleSeries]) -> Result<()> {
    // Side by side reads well for the few scales the benchmark runs; the
    // bound keeps a bad call from allocating a huge bitmap.
    let n = scales.len();
    if n == 0 || n > MAX_PANELS {
        bail!("need 1 to {MAX_PANELS} scales to plot, got {n}");
    }
    for s in scales {
        if s.rounds.is_empty() {
            bail!("scale '{}' has no rounds", s.label);
        }
        if !s.rounds.iter().flatten().any(|v| v.is_finite()) {
            bail!("scale '{}' has no finite rate", s.label);
        }
    }
    register_font()?;

    let width = PANEL.0 * u32::try_from(n)?;
    let root = BitMapBackend::new(path, (width, PANEL.1 + TITLE_HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26))?;
    for (area, scale) in root.split_evenly((1, n)).iter().zip(scales) {
        draw_panel(area, scale)?;
    }
    // Dropping the backend would also write the file but swallow errors.
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    s: &ScaleSeries,
) -> Result<()> {
    let mpps = |v: f64| v.is_finite().then_some(v / 1e6);
    let (lo, hi) = (s.rounds.iter().flatten().filter_map(|&v| mpps(v)))
        .fold((0.0, 0.0), |(lo, hi), v| (f64::min(lo, v), f64::max(hi, v)));
    // Headroom above the highest line keeps the legend (upper right) off
    // the data; a flat-zero series still needs a non-empty y range.
    let hi = if hi > 0.0 { hi * 1.4 } else { 1.0 };
    let rounds = u32::try_from(s.rounds.len()).context("too many rounds")?;

    let (ba, bc) = (ratio(s.b_over_a, 1, "x"), ratio(s.b_over_c, 2, ""));
    let caption = format!("{}: b/a {ba}, b/c {bc}", s.label);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        // Rounds are 1-based; a margin of one round either side keeps the
        // first and last points off the axes.
        .build_cartesian_2d(0..rounds.saturating_add(1), lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("Mpps")
        .x_labels(s.rounds.len().saturating_add(2).min(12))
        .label_style(("sans-serif", 14))
        .draw()?;

    for (mode, &(name, color)) in MODES.iter().enumerate() {
        let style = color.stroke_width(2);
        let points: Vec<(u32, f64)> = (1..)
            .zip(&s.rounds)
            .filter_map(|(x, r)| Some((x, mpps(r[mode])?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// A ratio for the caption; "n/a" when a mode measured nothing.
fn ratio(v: f64, digits: usize, unit: &str) -> String {
    let text = v.is_finite().then(|| format!("{v:.digits$}{unit}"));
    text.unwrap_or_else(|| "n/a".to_owned())
}

/// Register DejaVu Sans as "sans-serif" once per process. plotters wants
/// `'static` bytes, so the file is read and leaked once (under a mutex so
/// that racing callers do not leak twice); a failure is not remembered, so
/// installing the font and calling again works.
fn register_font() -> Result<()> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let bytes = std::fs::read(FONT_PATH).with_context(|| {
        format!("reading font {FONT_PATH}: install Debian's {FONT_PACKAGE} (`cargo xtask setup`)")
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
        bail!("{FONT_PATH} is not a usable TrueType font (package {FONT_PACKAGE})");
    }
    *done = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(label: &str, base: f64) -> ScaleSeries {
        ScaleSeries {
            label: label.to_owned(),
            rounds: (0..5)
                .map(|i| {
                    let j = f64::from(i) * 0.02e6;
                    [base + j, 7.5 * base + j, 8.2 * base + j]
                })
                .collect(),
            b_over_a: 7.5,
            b_over_c: 0.91,
        }
    }

    #[test]
    fn plot_writes_png() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let nanos = now.unwrap_or_default().as_nanos();
        let name = format!("kubermesh-plot-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("forwarding.png");
        let mut scales = vec![scale("1,000 x 1", 1.2e6), scale("10,000 x 8", 1.0e6)];
        scales[1].rounds[2][0] = f64::NAN; // a failed round is skipped
        let result = write_png(&path, "forwarding: delivered rate per round", &scales);
        // Extremes must not panic inside plotters.
        let mut wild = scale("wild", 1e6);
        wild.rounds = vec![[f64::MAX, -f64::MAX, 0.0], [1e-300, 5e-324, 1.0]];
        let wild_result = write_png(&dir.join("wild.png"), "wild", &[wild]);
        let bytes = std::fs::read(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        result.unwrap();
        wild_result.unwrap();
        let bytes = bytes.unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 1024, "only {} bytes", bytes.len());
    }

    #[test]
    fn plot_rejects_empty_input() {
        let path = Path::new("/nonexistent/never-written.png");
        assert!(write_png(path, "t", &[]).is_err());
        let mut s = scale("empty", 1e6);
        s.rounds.clear();
        assert!(write_png(path, "t", &[s]).is_err());
        let mut s = scale("all nan", 1e6);
        s.rounds = vec![[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]];
        assert!(write_png(path, "t", &[s]).is_err());
        let many: Vec<_> = (0..=MAX_PANELS).map(|_| scale("x", 1e6)).collect();
        assert!(write_png(path, "t", &many).is_err());
    }
}
