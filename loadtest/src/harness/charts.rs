//! SVG charts of a report with plotters: progress over time (applications Synced and Healthy,
//! syncs per controller replica) and the distribution of per-application sync times.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::report::Report;

#[derive(Debug, thiserror::Error)]
#[error("drawing {chart}: {message}")]
pub struct ChartError {
    chart: String,
    message: String,
}

pub(super) fn err<E: std::fmt::Debug>(chart: &str) -> impl Fn(E) -> ChartError + '_ {
    move |e| ChartError {
        chart: chart.to_string(),
        message: format!("{e:?}"),
    }
}

pub(super) const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub(super) type Axes<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The frame every chart shares: caption, margins, axes from 0 with their descriptions.
pub(super) fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: String,
    (x_max, x_desc): (f64, &str),
    (y_max, y_desc): (f64, &str),
    file: &str,
) -> Result<Axes<'a, 'b>, ChartError> {
    let e = err(file);
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(&e)?;
    Ok(chart)
}

/// `progress.svg`: applications Synced and Healthy vs time, and each replica's syncs.
pub fn progress(report: &Report, path: &Path) -> Result<(), ChartError> {
    let e = err("progress.svg");
    let tl = &report.timeline;
    let t_max = tl.last().map_or(1.0, |s| s.t).max(1.0);
    let y_max = tl
        .iter()
        .flat_map(|s| {
            std::iter::once(s.synced_healthy as f64).chain(s.syncs_by_replica.values().copied())
        })
        .fold(report.scenario.applications as f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = axes(
        &root,
        format!("{}: applications over time", report.scenario.name),
        (t_max, "seconds since the first Application was created"),
        (y_max, "applications"),
        "progress.svg",
    )?;
    chart
        .draw_series(LineSeries::new(
            tl.iter().map(|s| (s.t, s.synced_healthy as f64)),
            BLACK.stroke_width(2),
        ))
        .map_err(&e)?
        .label("Synced and Healthy (all)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    let replicas: Vec<String> = tl
        .iter()
        .flat_map(|s| s.syncs_by_replica.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (i, r) in replicas.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                tl.iter()
                    .filter_map(|s| Some((s.t, *s.syncs_by_replica.get(r)?))),
                color,
            ))
            .map_err(&e)?
            .label(format!("syncs by {r}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// `latency.svg`: histogram of creation → Synced and Healthy, per application.
pub fn latency(report: &Report, path: &Path) -> Result<(), ChartError> {
    let e = err("latency.svg");
    let v = &report.per_app_seconds;
    let max = v.iter().copied().fold(0.0, f64::max).max(0.001);
    const BUCKETS: usize = 40;
    let width = max / BUCKETS as f64;
    let mut counts = [0u32; BUCKETS];
    for x in v {
        let b = ((x / width) as usize).min(BUCKETS - 1);
        counts[b] += 1;
    }
    let y_max = f64::from(counts.iter().copied().max().unwrap_or(1)) * 1.1;
    let root = SVGBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = axes(
        &root,
        format!(
            "{}: created → Synced and Healthy (p50 {:.1} s, p99 {:.1} s)",
            report.scenario.name, report.convergence.per_app.p50, report.convergence.per_app.p99
        ),
        (max, "seconds"),
        (y_max, "applications"),
        "latency.svg",
    )?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, f64::from(*c))], COLORS[0].filled())
        }))
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::report::Sample;
    use super::*;

    #[test]
    fn charts_are_svg_with_one_line_per_replica() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut r = Report::default();
        r.scenario.name = "t".into();
        r.scenario.applications = 10;
        for t in 0..5 {
            let mut s = Sample {
                t: f64::from(t),
                synced_healthy: t as usize * 2,
                ..Default::default()
            };
            s.syncs_by_replica
                .insert("controller-0".into(), f64::from(t));
            s.syncs_by_replica
                .insert("controller-1".into(), f64::from(t) * 1.5);
            r.timeline.push(s);
        }
        r.per_app_seconds = vec![0.5, 1.0, 1.2, 3.0];
        progress(&r, &dir.path().join("p.svg")).expect("progress");
        latency(&r, &dir.path().join("l.svg")).expect("latency");
        let p = std::fs::read_to_string(dir.path().join("p.svg")).expect("read");
        assert!(p.starts_with("<svg"));
        assert!(p.contains("syncs by controller-0") && p.contains("syncs by controller-1"));
        let l = std::fs::read_to_string(dir.path().join("l.svg")).expect("read");
        assert!(l.contains("<rect"), "histogram bars");
    }
}
