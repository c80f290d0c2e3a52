//! A PNG line chart of per-round figures (the peer benchmark's tokens per second of each server).
//!
//! plotters' bitmap backend draws the chart; its text goes through ab_glyph with a TrueType font read from a
//! file at run time, so no system font library is needed, only a font file (DejaVu Sans or Liberation Sans
//! where the distribution ships them, or `--font`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Where distributions put a sans-serif TrueType font.
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Its legend entry.
    pub name: &'a str,
    /// One value per round.
    pub values: &'a [f64],
}

/// What the chart shows.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Above the plot.
    pub title: &'a str,
    /// The x axis' name (its ticks are the rounds, from 1).
    pub x_label: &'a str,
    /// The y axis' name.
    pub y_label: &'a str,
    /// The lines.
    pub series: &'a [Series<'a>],
}

/// The font file to draw text with: `explicit`, or the first of the usual places that exists.
pub fn find_font(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no TrueType font found (looked for {}); pass --font FILE",
                FONT_CANDIDATES.join(", ")
            )
        })
}

/// Line colours, told apart without colour vision too (different lightness).
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `chart` into the PNG file `out` (900 × 500), text in the font of `font`.
pub fn draw(chart: &Chart<'_>, out: &Path, font: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(font).with_context(|| format!("read {}", font.display()))?;
    // plotters keeps registered fonts for the life of the process, so it wants them 'static; one font per
    // chart drawn is a few hundred kilobytes, once per benchmark run.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", font.display()))?;

    let rounds = chart
        .series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0);
    if rounds == 0 {
        bail!("nothing to plot");
    }
    let highest = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    // Room above the highest point for the legend.
    let y_max = (highest * 1.25).max(1.0);

    let root = BitMapBackend::new(out, (900, 500)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", out.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.75f64..(rounds as f64 + 0.25), 0.0f64..y_max)
        .map_err(|e| fail(&e))?;
    plot.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_labels(rounds)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| fail(&e))?;
    for (index, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<(f64, f64)> = series
            .values
            .iter()
            .enumerate()
            .map(|(round, v)| (round as f64 + 1.0, *v))
            .collect();
        plot.draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))
            .map_err(|e| fail(&e))?
            .label(series.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
        plot.draw_series(points.iter().map(|p| Circle::new(*p, 5, colour.filled())))
            .map_err(|e| fail(&e))?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws a small chart when a font is installed (the chart needs one for its text); says so otherwise.
    #[test]
    fn draws_a_png() -> anyhow::Result<()> {
        let Ok(font) = find_font(None) else {
            eprintln!("skipped: no TrueType font installed");
            return Ok(());
        };
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("chart.png");
        draw(
            &Chart {
                title: "tokens per second",
                x_label: "round",
                y_label: "tokens/s",
                series: &[
                    Series {
                        name: "a",
                        values: &[3.0, 4.0, 3.5],
                    },
                    Series {
                        name: "b",
                        values: &[1.0, 1.2, 0.9],
                    },
                ],
            },
            &out,
            &font,
        )?;
        let bytes = std::fs::read(&out)?;
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        Ok(())
    }
}
