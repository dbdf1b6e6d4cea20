//! Results of the side-by-side benchmark: values per cache, metric and round; medians,
//! ratios, a Markdown table and a TSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::subject::Kind;

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Higher is better.
    Higher,
    /// Lower is better.
    Lower,
}

/// How the rounds of a metric are summarized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The median (mean of the two middle values for an even count).
    Median,
    /// The maximum.
    Max,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Key the values are recorded under.
    pub key: &'static str,
    /// Row label, with its unit.
    pub label: &'static str,
    /// Which way is better.
    pub better: Better,
    /// How rounds are summarized.
    pub summary: Summary,
}

/// Values recorded per (cache, metric key), one per round.
#[derive(Debug, Default)]
pub struct Results {
    values: BTreeMap<(&'static str, String), Vec<f64>>,
}

impl Results {
    /// Records one round's `value` of `key` for `kind`.
    pub fn add(&mut self, kind: Kind, key: impl Into<String>, value: f64) {
        self.values
            .entry((kind.name(), key.into()))
            .or_default()
            .push(value);
    }

    /// The recorded values of `key` for `kind`.
    pub fn values(&self, kind: Kind, key: &str) -> &[f64] {
        self.values
            .get(&(kind.name(), key.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// The summary of `metric` for `kind` (`None` if nothing was recorded).
    pub fn summary(&self, kind: Kind, metric: &Metric) -> Option<f64> {
        let mut v: Vec<f64> = self
            .values(kind, metric.key)
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(match metric.summary {
            Summary::Max => v[n - 1],
            Summary::Median if n % 2 == 1 => v[n / 2],
            Summary::Median => f64::midpoint(v[n / 2 - 1], v[n / 2]),
        })
    }

    /// oci-cache / distribution of the summaries of `metric`.
    pub fn ratio(&self, metric: &Metric) -> Option<f64> {
        let a = self.summary(Kind::OciCache, metric)?;
        let b = self.summary(Kind::Distribution, metric)?;
        if b == 0.0 {
            return (a == 0.0).then_some(1.0);
        }
        Some(a / b)
    }

    /// The Markdown table of `metrics` (a title line, then the table).
    pub fn markdown(&self, title: &str, metrics: &[Metric]) -> String {
        let mut out = format!("{title}\n\n");
        out.push_str(
            "| metric | better | oci-cache | distribution | oci-cache / distribution |\n\
             |---|---|---:|---:|---:|\n",
        );
        for m in metrics {
            let better = match m.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            };
            let label = match m.summary {
                Summary::Median => m.label.to_owned(),
                Summary::Max => format!("{} (max over rounds)", m.label),
            };
            let _ = writeln!(
                out,
                "| {label} | {better} | {} | {} | {} |",
                fmt(self.summary(Kind::OciCache, m)),
                fmt(self.summary(Kind::Distribution, m)),
                self.ratio(m)
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            );
        }
        out
    }

    /// A TSV of `metrics`: key, label, summaries, ratio, then each cache's rounds.
    pub fn tsv(&self, metrics: &[Metric]) -> String {
        let mut out = String::from(
            "key\tmetric\toci-cache\tdistribution\tratio\toci-cache rounds\tdistribution rounds\n",
        );
        for m in metrics {
            let rounds = |kind| {
                self.values(kind, m.key)
                    .iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let num = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.6}"));
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                m.key,
                m.label,
                num(self.summary(Kind::OciCache, m)),
                num(self.summary(Kind::Distribution, m)),
                num(self.ratio(m)),
                rounds(Kind::OciCache),
                rounds(Kind::Distribution),
            );
        }
        out
    }
}

/// A number with a precision that suits its size; `-` for none.
fn fmt(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "-".to_owned();
    };
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        let m = Metric {
            key: "x",
            label: "x",
            better: Better::Lower,
            summary: Summary::Median,
        };
        let mut r = Results::default();
        for v in [3.0, 1.0, 2.0] {
            r.add(Kind::OciCache, "x", v);
        }
        for v in [4.0, 8.0] {
            r.add(Kind::Distribution, "x", v);
        }
        assert_eq!(r.summary(Kind::OciCache, &m), Some(2.0));
        assert_eq!(r.summary(Kind::Distribution, &m), Some(6.0));
        assert!((r.ratio(&m).unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert!(r
            .markdown("t", &[m])
            .contains("| x | lower | 2.00 | 6.00 | 0.33 |"));
    }
}
