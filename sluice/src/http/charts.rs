//! What the admin page draws: numbers in units people read (KiB / MiB / GiB, µs / ms / s /
//! min, "3 min ago" with the moment on hover) and the charts over time, as SVG drawn here
//! (no script library, nothing fetched: the page works offline and costs the browser
//! nothing to run). Each series is a `<g class="series" data-series=… data-points=…>` of
//! polylines (broken where there is no data); scaling events are vertical marks with the
//! reason on hover.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway::series::Bucket;

/// Text made safe for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes in the largest binary unit that keeps the number at or above 1.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration as a person says it: `850 µs`, `4.2 ms`, `1.3 s`, `2 min 5 s`, `3 h 2 min`.
pub fn duration(d: Duration) -> String {
    let us = d.as_micros() as f64;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else if us < 60e6 {
        format!("{:.1} s", us / 1e6)
    } else {
        let s = d.as_secs();
        if s < 3600 {
            format!("{} min {} s", s / 60, s % 60)
        } else if s < 86_400 {
            format!("{} h {} min", s / 3600, s % 3600 / 60)
        } else {
            format!("{} d {} h", s / 86_400, s % 86_400 / 3600)
        }
    }
}

/// Microseconds as a duration.
pub fn micros(us: u64) -> String {
    duration(Duration::from_micros(us))
}

/// A count with thousands separated: `1 234 567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A moment (µs since the epoch) as `3 min ago`, the date and time on hover.
pub fn ago_us(us: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    let absolute = chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let iso = chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let relative = match SystemTime::now().duration_since(at) {
        Ok(d) if d.as_secs() < 5 => "just now".to_string(),
        Ok(d) => format!("{} ago", coarse(d)),
        Err(e) => format!("in {}", coarse(e.duration())),
    };
    format!("<time datetime=\"{iso}\" title=\"{absolute}\">{relative}</time>")
}

/// A moment as `3 min ago`, the date and time on hover.
pub fn ago(t: SystemTime) -> String {
    ago_us(gateway::metadata::micros(t))
}

/// How long, to the largest whole unit: `12 s`, `3 min`, `5 h`, `2 d`.
fn coarse(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// What a chart's values are.
#[derive(Clone, Copy)]
pub enum Unit {
    PerSecond,
    Millis,
    Count,
    Percent,
    BytesPerSecond,
}

impl Unit {
    fn show(self, v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        match self {
            Unit::PerSecond => format!("{}/s", short(v)),
            Unit::Millis => duration(Duration::from_secs_f64((v / 1e3).max(0.0))),
            Unit::Count => short(v),
            Unit::Percent => format!("{v:.0} %"),
            Unit::BytesPerSecond => format!("{}/s", bytes(v.max(0.0) as u64)),
        }
    }
}

/// A number in few characters: `0.25`, `12`, `3.4 k`, `1.2 M`.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of a chart.
pub struct Line {
    pub name: &'static str,
    pub color: &'static str,
    /// Dashed (a limit, not a measurement).
    pub dashed: bool,
    /// A value per bucket (None: nothing measured then).
    pub values: Vec<Option<f64>>,
}

/// A vertical mark: when, what, and whether workers started (else stopped).
pub struct Mark {
    pub at: i64,
    pub label: String,
    pub up: bool,
}

const W: f64 = 560.0;
const H: f64 = 170.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// A chart of lines over the buckets starting at `starts` (each `resolution` seconds wide),
/// drawn over `[from, to]`.
#[allow(clippy::too_many_arguments)]
pub fn chart(
    id: &str,
    title: &str,
    unit: Unit,
    starts: &[i64],
    resolution: u32,
    (from, to): (i64, i64),
    lines: &[Line],
    marks: &[Mark],
) -> String {
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |m, v| m.max(*v));
    let top = nice_ceiling(max);
    let span = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart\" id=\"{id}\"><figcaption>{}</figcaption>\
         <svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    // Grid and axes: 0, half, top; time ticks.
    for frac in [0.0, 0.5, 1.0] {
        let v = top * frac;
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y(v) + 4.0,
            esc(&unit.show(v)),
            y = y(v),
        );
    }
    for i in 0..=4 {
        let t = from + (to - from) * i / 4;
        let label = chrono::DateTime::from_timestamp(t, 0)
            .map(|d| {
                if to - from > 2 * 86_400 {
                    d.format("%b %d %H:%M").to_string()
                } else {
                    d.format("%H:%M").to_string()
                }
            })
            .unwrap_or_default();
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{label}</text>",
            x(t),
            H - 6.0
        );
    }
    for mark in marks {
        let mx = x(mark.at + resolution as i64 / 2);
        let class = if mark.up { "up" } else { "down" };
        let _ = write!(
            svg,
            "<line class=\"scale-event {class}\" x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{TOP}\" y2=\"{}\">\
             <title>{}</title></line>",
            H - BOTTOM,
            esc(&mark.label)
        );
    }
    for line in lines {
        let mut runs: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut points = 0;
        let mut last: Option<i64> = None;
        for (start, value) in starts.iter().zip(&line.values) {
            let gap = last.is_some_and(|l| start - l > resolution as i64 * 3 / 2);
            match value {
                Some(v) => {
                    // A bucket missing in between (the gateway was down) breaks the line.
                    if gap {
                        runs.push(std::mem::take(&mut current));
                    }
                    let _ = write!(
                        current,
                        "{:.1},{:.1} ",
                        x(start + resolution as i64 / 2),
                        y(*v)
                    );
                    points += 1;
                }
                None => runs.push(std::mem::take(&mut current)),
            }
            last = value.map(|_| *start).or(last);
        }
        runs.push(current);
        let dash = if line.dashed {
            " stroke-dasharray=\"5 4\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<g class=\"series\" data-series=\"{}\" data-points=\"{points}\" stroke=\"{}\"{dash}>",
            line.name, line.color
        );
        for run in runs.iter().filter(|r| !r.is_empty()) {
            // A lone point is drawn as a dot.
            if run.trim().split(' ').count() == 1 {
                let (px, py) = run.trim().split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    svg,
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"2\" fill=\"{}\"/>",
                    line.color
                );
            } else {
                let _ = write!(svg, "<polyline points=\"{}\"/>", run.trim());
            }
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg><div class=\"legend\">");
    for line in lines {
        let latest = line.values.iter().rev().flatten().next();
        let _ = write!(
            svg,
            "<span><i style=\"background:{}\"></i>{} <b>{}</b></span>",
            line.color,
            line.name,
            latest
                .map(|v| esc(&unit.show(*v)))
                .unwrap_or_else(|| "–".into())
        );
    }
    if !marks.is_empty() {
        let (up, down) = marks.iter().fold(
            (0, 0),
            |(u, d), m| {
                if m.up {
                    (u + 1, d)
                } else {
                    (u, d + 1)
                }
            },
        );
        let _ = write!(
            svg,
            "<span class=\"marks\">scaling: {up} up, {down} down</span>"
        );
    }
    svg.push_str("</div></figure>");
    svg
}

/// A round number at or above `v` for the top of an axis.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// The page's charts of one warehouse's buckets.
pub fn warehouse_charts(resolution: u32, buckets: &[(i64, Bucket)], span: (i64, i64)) -> String {
    let starts: Vec<i64> = buckets.iter().map(|(s, _)| *s).collect();
    let res = resolution as f64;
    let per = |f: &dyn Fn(&Bucket) -> u64| -> Vec<Option<f64>> {
        buckets
            .iter()
            .map(|(_, b)| Some(f(b) as f64 / res))
            .collect()
    };
    let latency = |q: f64| -> Vec<Option<f64>> {
        buckets
            .iter()
            .map(|(_, b)| b.latency_us(q).map(|us| us / 1e3))
            .collect()
    };
    let sampled = |f: &dyn Fn(&Bucket) -> f64| -> Vec<Option<f64>> {
        buckets
            .iter()
            .map(|(_, b)| (b.samples > 0).then(|| f(b)))
            .collect()
    };
    let waits = |f: &dyn Fn(&Bucket) -> f64| -> Vec<Option<f64>> {
        buckets
            .iter()
            .map(|(_, b)| (b.statements() > 0).then(|| f(b)))
            .collect()
    };
    // A mark for the workers a bucket started, and one for those it stopped.
    let mut marks: Vec<Mark> = Vec::new();
    for (start, b) in buckets {
        let when = chrono::DateTime::from_timestamp(*start, 0)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        for up in [true, false] {
            let reasons: Vec<String> = b
                .scale_events
                .iter()
                .filter(|(k, _)| gateway::series::starts_workers(k) == up)
                .map(|(k, v)| format!("{k} × {v}"))
                .collect();
            if !reasons.is_empty() {
                marks.push(Mark {
                    at: *start,
                    label: format!(
                        "{when}: workers {} ({})",
                        if up { "started" } else { "stopped" },
                        reasons.join(", ")
                    ),
                    up,
                });
            }
        }
    }
    let line = |name, color, values| Line {
        name,
        color,
        dashed: false,
        values,
    };
    let mut out = String::from("<div class=\"charts\">");
    out.push_str(&chart(
        "chart-statements",
        "Statements per second",
        Unit::PerSecond,
        &starts,
        resolution,
        span,
        &[
            line("finished", "#1a7f37", per(&|b| b.finished)),
            line("failed", "#cf222e", per(&|b| b.failed)),
            line("canceled", "#bf8700", per(&|b| b.canceled)),
        ],
        &[],
    ));
    out.push_str(&chart(
        "chart-latency",
        "Latency",
        Unit::Millis,
        &starts,
        resolution,
        span,
        &[
            line("p50", "#0969da", latency(0.5)),
            line("p95", "#8250df", latency(0.95)),
            line("p99", "#cf222e", latency(0.99)),
        ],
        &[],
    ));
    out.push_str(&chart(
        "chart-queue",
        "Statements queued",
        Unit::Count,
        &starts,
        resolution,
        span,
        &[
            line(
                "average",
                "#0969da",
                sampled(&|b| b.queued_sum as f64 / b.samples as f64),
            ),
            line("most", "#cf222e", sampled(&|b| b.queued_max as f64)),
        ],
        &[],
    ));
    out.push_str(&chart(
        "chart-wait",
        "Queue wait",
        Unit::Millis,
        &starts,
        resolution,
        span,
        &[
            line(
                "mean",
                "#0969da",
                waits(&|b| b.wait_us as f64 / b.waited.max(1) as f64 / 1e3),
            ),
            line("longest", "#cf222e", waits(&|b| b.wait_max_us as f64 / 1e3)),
        ],
        &[],
    ));
    out.push_str(&chart(
        "chart-workers",
        "Workers running",
        Unit::Count,
        &starts,
        resolution,
        span,
        &[
            line("running", "#1a7f37", sampled(&|b| b.workers_max as f64)),
            Line {
                name: "min",
                color: "#6e7781",
                dashed: true,
                values: sampled(&|b| b.min_workers as f64),
            },
            Line {
                name: "max",
                color: "#cf222e",
                dashed: true,
                values: sampled(&|b| b.max_workers as f64),
            },
        ],
        &marks,
    ));
    out.push_str(&chart(
        "chart-cache",
        "Result cache hit rate",
        Unit::Percent,
        &starts,
        resolution,
        span,
        &[line(
            "hit rate",
            "#8250df",
            buckets
                .iter()
                .map(|(_, b)| {
                    let looked = b.cache_hits + b.cache_misses;
                    (looked > 0).then(|| 100.0 * b.cache_hits as f64 / looked as f64)
                })
                .collect(),
        )],
        &[],
    ));
    out.push_str(&chart(
        "chart-rows",
        "Rows served",
        Unit::PerSecond,
        &starts,
        resolution,
        span,
        &[line("rows", "#0969da", per(&|b| b.rows))],
        &[],
    ));
    out.push_str(&chart(
        "chart-bytes",
        "Bytes served",
        Unit::BytesPerSecond,
        &starts,
        resolution,
        span,
        &[line("bytes", "#1a7f37", per(&|b| b.bytes))],
        &[],
    ));
    out.push_str("</div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_as_people_say_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1073741824), "1.0 GiB");
        assert_eq!(bytes(300 << 20), "300 MiB");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(4200)), "4.2 ms");
        assert_eq!(duration(Duration::from_millis(350)), "350 ms");
        assert_eq!(duration(Duration::from_millis(1300)), "1.3 s");
        assert_eq!(duration(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(count(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(12), "12");
        assert_eq!(coarse(Duration::from_secs(200)), "3 min");
        assert!(ago(SystemTime::now() - Duration::from_secs(600)).contains(">10 min ago<"));
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
    }

    #[test]
    fn a_chart_has_its_series_and_breaks_at_gaps() {
        let starts = [0, 10, 20, 60, 70];
        let svg = chart(
            "c",
            "T",
            Unit::Count,
            &starts,
            10,
            (0, 80),
            &[Line {
                name: "a",
                color: "#000",
                dashed: false,
                values: vec![Some(1.0), Some(2.0), None, Some(3.0), Some(4.0)],
            }],
            &[Mark {
                at: 60,
                label: "queue × 1".into(),
                up: true,
            }],
        );
        assert!(svg.contains("data-series=\"a\" data-points=\"4\""), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("class=\"scale-event up\""));
    }
}
