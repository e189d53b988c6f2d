//! The hand-written SVG bar chart of `target/bench/chart.svg` (no dependencies).

use std::fmt::Write as _;

use super::cases::Kind;
use super::measure::Sample;
use super::stats::{Row, rams, row};

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel of the chart: horizontal bars scaled to the panel's largest value.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Panel {
    pub(super) title: String,
    pub(super) unit: String,
    pub(super) bars: Vec<(String, f64)>,
}

pub(super) fn bar_colour(label: &str) -> &'static str {
    if label.starts_with("rkdump") {
        "#1f77b4"
    } else if label.starts_with("raw dd") {
        "#7f7f7f"
    } else {
        "#d95f02"
    }
}

/// A hand-written SVG bar chart (no dependencies).
pub(super) fn render_svg(title: &str, panels: &[Panel]) -> String {
    pub(super) const W: f64 = 760.0;
    pub(super) const LABEL: f64 = 250.0;
    pub(super) const BAR_AREA: f64 = 400.0;
    pub(super) const BAR_H: f64 = 20.0;
    pub(super) const GAP: f64 = 6.0;
    pub(super) const PANEL_HEAD: f64 = 30.0;
    let height: f64 = 40.0
        + panels
            .iter()
            .map(|p| PANEL_HEAD + p.bars.len() as f64 * (BAR_H + GAP) + 14.0)
            .sum::<f64>();
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height:.0}\" viewBox=\"0 0 {W} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        xml_escape(title)
    );
    let mut y = 40.0;
    for p in panels {
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{} ({})</text>",
            y + 18.0,
            xml_escape(&p.title),
            xml_escape(&p.unit)
        );
        y += PANEL_HEAD;
        let max = p.bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        for (label, v) in &p.bars {
            let w = if max > 0.0 {
                (v / max * BAR_AREA).max(1.0)
            } else {
                1.0
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n\
                 <rect x=\"{:.0}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.0}\">{}</text>",
                LABEL,
                y + 14.0,
                xml_escape(label),
                LABEL + 8.0,
                bar_colour(label),
                LABEL + 12.0 + w,
                y + 14.0,
                if *v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            );
            y += BAR_H + GAP;
        }
        y += 14.0;
    }
    s.push_str("</svg>\n");
    s
}

/// The chart's panels from the rows.
pub(super) fn chart_panels(rows: &[Row]) -> Vec<Panel> {
    let mut panels = Vec::new();
    for ram in rams(rows) {
        let bars = |kinds: &[Kind], f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(String, f64)> {
            kinds
                .iter()
                .filter_map(|k| {
                    let r = row(rows, ram, *k)?;
                    Some((r.label(), f(r)?))
                })
                .collect()
        };
        let peers = [
            Kind::Rkdump,
            Kind::RkdumpL31Lzo,
            Kind::PeerRaw,
            Kind::PeerMkdf,
        ];
        let durable = bars(
            &[
                Kind::Rkdump,
                Kind::RkdumpVirtio,
                Kind::PeerRaw,
                Kind::PeerMkdf,
                Kind::PeerMkdfLzo,
                Kind::GuestElf,
                Kind::RkdumpL31Lzo,
                Kind::RkdumpL31Zlib,
                Kind::RkdumpL0Lzo,
            ],
            &|r| r.med(|s| s.durable),
        );
        if !durable.is_empty() {
            panels.push(Panel {
                title: format!(
                    "{ram} GiB: sysrq -> dump durable (QEMU's dump: command -> durable), median"
                ),
                unit: "s, host clock; shorter is better".into(),
                bars: durable,
            });
        }
        let rate = bars(
            &[
                Kind::Rkdump,
                Kind::RkdumpVirtio,
                Kind::PeerRaw,
                Kind::RawDd,
                Kind::RawDdVirtio,
                Kind::GuestElf,
                Kind::HostLimit,
            ],
            &|r| r.med(Sample::rate),
        );
        if !rate.is_empty() {
            panels.push(Panel {
                title: format!("{ram} GiB: write rate, median"),
                unit: "MiB/s; longer is better".into(),
                bars: rate,
            });
        }
        let ck = bars(&peers, &|r| r.search.as_ref()?.smallest.map(f64::from));
        if !ck.is_empty() {
            panels.push(Panel {
                title: format!("{ram} GiB: smallest working crashkernel="),
                unit: "MiB; shorter is better".into(),
                bars: ck,
            });
        }
    }
    panels.extend(super::slope::panels(rows));
    panels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::testdata::rows;

    #[test]
    fn svg_renders() {
        let panels = chart_panels(&rows());
        assert_eq!(panels.len(), 3);
        let svg = render_svg("a < b & c", &panels);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b &amp; c"));
        // one background rect + one per bar
        let bars: usize = panels.iter().map(|p| p.bars.len()).sum();
        assert_eq!(svg.matches("<rect").count(), 1 + bars);
        assert_eq!(svg.matches("<text").count(), 1 + panels.len() + 2 * bars);
        assert!(!svg.contains("NaN"));
    }
}
