//! SVG plots of a run: per-layer time by algorithm family, and the roofline.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::report::Report;

type PlotResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn err<E: std::fmt::Display>(e: E) -> Box<dyn std::error::Error + Send + Sync> {
    e.to_string().into()
}

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

/// A white SVG canvas of `size` pixels that will be written to `path`.
fn canvas(path: &Path, size: (u32, u32)) -> Result<Area<'_>, Box<dyn std::error::Error + Send + Sync>> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// The layout both plots share: `caption` on top, margins, and room for the axis labels.
fn frame<'a, 'b>(root: &'a Area<'b>, caption: String) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(caption, ("sans-serif", 20)).margin(12).x_label_area_size(50).y_label_area_size(70);
    builder
}

/// Draws the legend at `position` in the style both plots share, and writes the file.
fn finish<'a, 'b: 'a, CT: CoordTranslate>(
    mut chart: ChartContext<'a, SVGBackend<'b>, CT>,
    root: &Area<'b>,
    position: SeriesLabelPosition,
) -> PlotResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Per-layer median time (log scale) of each family's fastest flavour, layers in network order.
pub fn layer_times(path: &Path, report: &Report) -> PlotResult {
    let by_layer = report.by_layer();
    if by_layer.is_empty() {
        return Ok(());
    }
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, (_, results)) in by_layer.iter().enumerate() {
        let mut seen = Vec::new();
        for r in results {
            if !seen.contains(&r.family) {
                seen.push(r.family.clone());
                series.entry(r.family.clone()).or_default().push((i as f64, r.median_s * 1e6));
            }
        }
    }
    let (lo, hi) =
        series.values().flatten().fold((f64::MAX, 0.0f64), |(lo, hi), &(_, t)| (lo.min(t), hi.max(t)));
    let root = canvas(path, (1100, 560))?;
    let names: Vec<String> = by_layer.iter().map(|(n, _)| n.clone()).collect();
    let (arch, isa) = (report.provenance.arch, &report.provenance.isa);
    let mut chart = frame(&root, format!("MobileNetV1 per-layer time, 1 thread ({arch} {isa})"))
        .build_cartesian_2d(-0.5f64..(names.len() as f64 - 0.5), ((lo * 0.7)..(hi * 1.4)).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|x| names.get(x.round() as usize).cloned().unwrap_or_default())
        .y_desc("median time per layer (us, log scale)")
        .x_desc("layer")
        .draw()
        .map_err(err)?;
    for (k, (family, pts)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 4, color.filled())))
            .map_err(err)?
            .label(family.as_str())
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
    }
    finish(chart, &root, SeriesLabelPosition::UpperRight)
}

/// GFLOP/s against arithmetic intensity (FLOP per byte of input + output + weights) for the
/// fastest algorithm of every layer, under the measured compute and bandwidth roofs.
pub fn roofline(path: &Path, report: &Report) -> PlotResult {
    let (Some(peak), Some(bw)) = (report.roofs.peak_gflops, report.roofs.bandwidth_gbs) else {
        return Ok(());
    };
    let by_layer = report.by_layer();
    let root = canvas(path, (900, 620))?;
    let (arch, isa) = (report.provenance.arch, &report.provenance.isa);
    let mut chart = frame(&root, format!("Roofline, 1 thread ({arch} {isa}): best algorithm per layer"))
        .build_cartesian_2d((0.1f64..1000.0).log_scale(), (0.5f64..(peak * 2.0)).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (FLOP / byte)")
        .y_desc("GFLOP/s (log scale)")
        .draw()
        .map_err(err)?;
    let roof: Vec<(f64, f64)> = (0..=120)
        .map(|i| 10f64.powf(-1.0 + i as f64 * 4.0 / 120.0))
        .map(|ai| (ai, (bw * ai).min(peak)))
        .collect();
    chart
        .draw_series(LineSeries::new(roof, BLACK.stroke_width(2)))
        .map_err(err)?
        .label(format!("roof: min({peak:.0} GFLOP/s, {bw:.1} GB/s x AI)"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
    for (k, kind) in kernels::LayerKind::ALL.iter().enumerate() {
        let color = PALETTE[k];
        let pts: Vec<(f64, f64, String)> = by_layer
            .iter()
            .filter(|(_, r)| r[0].kind == *kind)
            .map(|(name, r)| (r[0].intensity(), r[0].gflops(), name.clone()))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(pts.iter().map(|(x, y, _)| Circle::new((*x, *y), 5, color.filled())))
            .map_err(err)?
            .label(kind.name())
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        chart
            .draw_series(pts.iter().map(|(x, y, name)| {
                Text::new(name.clone(), (*x * 1.08, *y), ("sans-serif", 11).into_font().color(&color))
            }))
            .map_err(err)?;
    }
    finish(chart, &root, SeriesLabelPosition::LowerRight)
}
