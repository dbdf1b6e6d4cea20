//! Small line charts as inline SVG: no script, no font or file from elsewhere, so the
//! status page works offline. Each line carries its values (`data-values`), so a test can
//! check what is drawn against `/status.json`.

use std::fmt::Write as _;

/// One line of a chart.
pub(crate) struct Series<'a> {
    /// Its name in the legend, and its `data-series` attribute.
    pub(crate) name: &'a str,
    /// Its CSS class (the colour).
    pub(crate) class: &'a str,
    /// One value per minute; `None` leaves a gap.
    pub(crate) values: Vec<Option<f64>>,
}

const W: f64 = 300.0;
const H: f64 = 90.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 14.0;

/// A chart of `series` (all of the same length, one point per minute, the last one now),
/// titled `title`, its values shown with `format`.
pub(crate) fn chart(
    id: &str,
    title: &str,
    series: &[Series<'_>],
    format: impl Fn(f64) -> String,
) -> String {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let top = if max > 0.0 { max } else { 1.0 };
    #[allow(clippy::cast_precision_loss)] // at most 60 points
    let x = |i: usize| {
        if n <= 1 {
            W
        } else {
            i as f64 * W / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{id}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{title}\" preserveAspectRatio=\"none\">\
         <line class=\"axis\" x1=\"0\" y1=\"{base}\" x2=\"{W}\" y2=\"{base}\"/>\
         <text class=\"label\" x=\"2\" y=\"10\">{max_label}</text>\
         <text class=\"label\" x=\"2\" y=\"{label_y}\">{minutes} min ago</text>\
         <text class=\"label end\" x=\"{W}\" y=\"{label_y}\">now</text>",
        base = H - BOTTOM,
        label_y = H - 2.0,
        max_label = escape(&format(max)),
        minutes = n.saturating_sub(1),
    );
    for s in series {
        let values: Vec<String> = s
            .values
            .iter()
            .map(|v| v.map_or_else(|| "null".to_owned(), |v| format!("{v}")))
            .collect();
        let mut runs: Vec<String> = Vec::new();
        let mut run = String::new();
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(run, "{:.1},{:.1} ", x(i), y(*v));
                }
                None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                None => {}
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        let _ = write!(
            svg,
            "<g class=\"{}\" data-series=\"{}\" data-values=\"{}\">",
            s.class,
            escape(s.name),
            values.join(",")
        );
        for points in runs {
            let _ = write!(svg, "<polyline points=\"{}\"/>", points.trim_end());
        }
        // The latest value as a dot: visible even when it is the only point.
        if let Some((i, v)) = s
            .values
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, v)| v.map(|v| (i, v)))
        {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"/>",
                x(i).min(W - 3.0),
                y(v)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    let mut legend = String::new();
    for s in series {
        let last = s.values.last().copied().flatten();
        let _ = write!(
            legend,
            "<span class=\"key {}\">{}: {}</span>",
            s.class,
            escape(s.name),
            escape(&last.map_or_else(|| "-".to_owned(), &format))
        );
    }
    format!(
        "<figure class=\"card\"><figcaption>{}</figcaption>{svg}<div class=\"legend\">{legend}</div></figure>",
        escape(title)
    )
}

/// Escapes text for HTML and SVG.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_their_values_and_gaps_split_them() {
        let svg = chart(
            "c",
            "Requests <per minute>",
            &[Series {
                name: "from cache",
                class: "a",
                values: vec![Some(1.0), None, Some(3.0), Some(2.0)],
            }],
            |v| format!("{v:.0}"),
        );
        assert!(svg.contains("data-values=\"1,null,3,2\""), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("Requests &lt;per minute&gt;"));
        assert!(svg.contains("from cache: 2"), "{svg}");
        assert!(!svg.contains("<script"));
    }
}
