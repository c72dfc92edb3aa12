//! Line charts of the chaos and soak phases: the chaos commit's rollout with its faults marked
//! (`rollout.svg`), the controllers' memory and CPU over the soak (`soak-*.svg`).

use std::collections::BTreeSet;
use std::path::Path;

use plotters::prelude::*;

use super::charts::{COLORS, ChartError, axes, err};
use super::phases_report::{ChaosReport, SoakReport, SoakSample};

/// One line.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
}

/// What one chart shows.
struct Chart<'a> {
    file: &'a str,
    caption: String,
    x_desc: &'a str,
    y_desc: &'a str,
    series: Vec<Series>,
    /// Vertical lines with a label (faults, restarts).
    markers: Vec<(f64, String)>,
    /// Shaded x ranges (the soak's windows).
    bands: Vec<(f64, f64)>,
}

fn draw(c: &Chart<'_>, path: &Path) -> Result<(), ChartError> {
    let e = err(c.file);
    let points = || c.series.iter().flat_map(|s| s.points.iter());
    let x_max = points()
        .map(|p| p.0)
        .chain(c.markers.iter().map(|m| m.0))
        .fold(1.0, f64::max);
    let y_max = points().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = axes(
        &root,
        c.caption.clone(),
        (x_max, c.x_desc),
        (y_max, c.y_desc),
        c.file,
    )?;
    chart
        .draw_series(
            c.bands.iter().map(|(a, b)| {
                Rectangle::new([(*a, 0.0), (*b, y_max)], COLORS[2].mix(0.12).filled())
            }),
        )
        .map_err(&e)?;
    for (k, (x, label)) in c.markers.iter().enumerate() {
        // Staggered, so labels of faults close in time stay readable.
        let y = y_max * (0.97 - 0.05 * (k % 4) as f64);
        chart
            .draw_series(LineSeries::new(
                vec![(*x, 0.0), (*x, y_max)],
                RGBColor(150, 150, 150),
            ))
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x, y),
                ("sans-serif", 11),
            )))
            .map_err(&e)?;
    }
    for s in &c.series {
        let style = s.color.stroke_width(s.width);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(&e)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
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

/// `rollout.svg`: applications at the chaos commit over time, each fault marked.
pub fn rollout(scenario: &str, c: &ChaosReport, path: &Path) -> Result<(), ChartError> {
    draw(
        &Chart {
            file: "rollout.svg",
            caption: format!("{scenario}: the chaos commit rolling out"),
            x_desc: "seconds since the push",
            y_desc: "applications at the commit",
            series: vec![Series {
                label: "Synced and Healthy at the commit".into(),
                points: c.rollout.iter().map(|(t, n)| (*t, *n as f64)).collect(),
                color: BLACK,
                width: 2,
            }],
            markers: c
                .faults
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let kind = f.fault.split([' ', '{']).next().unwrap_or_default();
                    (f.at_seconds, format!("{} {kind}", i + 1))
                })
                .collect(),
            bands: Vec::new(),
        },
        path,
    )
}

/// Per replica and in total, one value of every sample.
fn per_replica(
    samples: &[SoakSample],
    each: fn(&SoakSample) -> &std::collections::BTreeMap<String, f64>,
    total: fn(&SoakSample) -> f64,
    total_label: &str,
) -> Vec<Series> {
    let names: BTreeSet<&String> = samples.iter().flat_map(|s| each(s).keys()).collect();
    let mut v = vec![Series {
        label: total_label.into(),
        points: samples
            .iter()
            .filter(|s| !each(s).is_empty())
            .map(|s| (s.t, total(s)))
            .collect(),
        color: BLACK,
        width: 2,
    }];
    v.extend(names.into_iter().enumerate().map(|(i, name)| {
        Series {
            label: name.clone(),
            points: samples
                .iter()
                .filter_map(|s| Some((s.t, *each(s).get(name)?)))
                .collect(),
            color: COLORS[i % COLORS.len()],
            width: 1,
        }
    }));
    v
}

fn soak_chart<'a>(
    scenario: &str,
    k: &SoakReport,
    file: &'a str,
    what: &str,
    y_desc: &'a str,
    series: Vec<Series>,
) -> Chart<'a> {
    Chart {
        file,
        caption: format!("{scenario}: controllers' {what} (windows compared shaded)"),
        x_desc: "seconds since the soak began (vertical lines: restarts)",
        y_desc,
        series,
        markers: k
            .restarts
            .iter()
            .map(|r| (r.at_seconds, r.how.clone()))
            .collect(),
        bands: vec![k.memory.baseline_window, k.memory.final_window],
    }
}

/// `soak-memory.svg`: every replica's RSS and their total over the soak.
pub fn soak_memory(scenario: &str, k: &SoakReport, path: &Path) -> Result<(), ChartError> {
    let series = per_replica(&k.samples, |s| &s.rss_mib, |s| s.total_rss_mib, "total");
    draw(
        &soak_chart(
            scenario,
            k,
            "soak-memory.svg",
            "memory",
            "RSS (MiB)",
            series,
        ),
        path,
    )
}

/// `soak-cpu.svg`: every replica's CPU and their total over the soak.
pub fn soak_cpu(scenario: &str, k: &SoakReport, path: &Path) -> Result<(), ChartError> {
    let series = per_replica(
        &k.samples,
        |s| &s.cpu_percent,
        |s| s.total_cpu_percent,
        "total",
    );
    draw(
        &soak_chart(scenario, k, "soak-cpu.svg", "CPU", "% of one core", series),
        path,
    )
}

#[cfg(test)]
mod tests {
    use super::super::phases_report::{ChaosFaultResult, Restart};
    use super::*;

    #[test]
    fn chaos_and_soak_charts_are_svg() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = ChaosReport {
            rollout: vec![(0.0, 0), (1.0, 5), (2.0, 10)],
            faults: vec![ChaosFaultResult {
                at_seconds: 0.5,
                ..Default::default()
            }],
            ..Default::default()
        };
        rollout("t", &c, &dir.path().join("r.svg")).expect("rollout");
        let mut k = SoakReport::default();
        for t in 0..10 {
            let mut s = SoakSample {
                t: f64::from(t),
                ..Default::default()
            };
            s.rss_mib.insert("controller-0".into(), 50.0);
            s.rss_mib.insert("controller-1".into(), 60.0);
            s.cpu_percent.insert("controller-0".into(), 3.0);
            s.total_rss_mib = 110.0;
            s.total_cpu_percent = 3.0;
            k.samples.push(s);
        }
        k.restarts.push(Restart {
            at_seconds: 4.0,
            how: "kill -9".into(),
            ..Default::default()
        });
        soak_memory("t", &k, &dir.path().join("m.svg")).expect("memory");
        soak_cpu("t", &k, &dir.path().join("c.svg")).expect("cpu");
        let m = std::fs::read_to_string(dir.path().join("m.svg")).expect("read");
        assert!(m.starts_with("<svg") && m.contains("controller-1") && m.contains("kill -9"));
        let r = std::fs::read_to_string(dir.path().join("r.svg")).expect("read");
        assert!(r.contains("at the commit"));
    }
}
