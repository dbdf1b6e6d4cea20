//! Quantiles of a Prometheus histogram between two scrapes of a text exposition, the way
//! `histogram_quantile` computes them: for the cache's own view of request durations
//! (`oci_cache_http_request_duration_seconds`), beside what the clients measured.

/// The cumulative buckets `(le, count)` of histogram `name` for the series whose labels
/// include `label="value"`, in the order of the text.
pub fn buckets(text: &str, name: &str, label: &str, value: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    let wanted = format!("{label}=\"{value}\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, sample) = rest.split_once("} ")?;
            let mut le = None;
            let mut matches = false;
            for pair in labels.split(',') {
                if pair == wanted {
                    matches = true;
                } else if let Some(bound) = pair.strip_prefix("le=") {
                    le = match bound.trim_matches('"') {
                        "+Inf" => Some(f64::INFINITY),
                        b => b.parse().ok(),
                    };
                }
            }
            let count = sample.split_whitespace().next()?.parse().ok()?;
            matches.then_some((le?, count))
        })
        .collect()
}

/// The `q` quantile (0 to 1) of the observations made between two scrapes' cumulative
/// `before` and `after` buckets, interpolated linearly inside its bucket; the highest
/// finite bound when it falls in the `+Inf` bucket (as Prometheus answers); `None`
/// without observations.
pub fn quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let count_at = |buckets: &[(f64, u64)], le: f64| {
        buckets
            .iter()
            .find(|(b, _)| b.to_bits() == le.to_bits())
            .map_or(0, |(_, c)| *c)
    };
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, c)| (le, c.saturating_sub(count_at(before, le))))
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "request counts are far below 2^52"
    )]
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, cumulative) in &delta {
        #[allow(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        if cumulative as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = (cumulative - lower.1) as f64;
            let into = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * into);
        }
        lower = (le, cumulative);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE d histogram
d_bucket{le=\"0.001\",route=\"manifest\"} 10
d_bucket{le=\"0.01\",route=\"manifest\"} 90
d_bucket{le=\"0.1\",route=\"manifest\"} 100
d_bucket{le=\"+Inf\",route=\"manifest\"} 100
d_bucket{le=\"0.001\",route=\"blob\"} 5
d_bucket{le=\"+Inf\",route=\"blob\"} 7
d_count{route=\"manifest\"} 100
";

    #[test]
    fn buckets_of_one_series_are_read_in_order() {
        let b = buckets(TEXT, "d", "route", "manifest");
        assert_eq!(
            b,
            vec![(0.001, 10), (0.01, 90), (0.1, 100), (f64::INFINITY, 100)]
        );
        assert_eq!(
            buckets(TEXT, "d", "route", "blob"),
            vec![(0.001, 5), (f64::INFINITY, 7)]
        );
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_of_the_differences() {
        let after = buckets(TEXT, "d", "route", "manifest");
        let before = vec![(0.001, 0), (0.01, 0), (0.1, 0), (f64::INFINITY, 0)];
        // Rank 50 of 100: 40 of the 80 between 1 and 10 ms.
        let p50 = quantile(&before, &after, 0.5).unwrap();
        assert!((p50 - 0.0055).abs() < 1e-9, "{p50}");
        // Rank 99: 9 of the 10 between 10 and 100 ms.
        let p99 = quantile(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        // Only what came between the scrapes counts.
        let p50 = quantile(&after, &after, 0.5);
        assert_eq!(p50, None);
        let earlier = vec![(0.001, 10), (0.01, 90), (0.1, 90), (f64::INFINITY, 90)];
        let p50 = quantile(&earlier, &after, 0.5).unwrap();
        assert!((p50 - 0.055).abs() < 1e-9, "{p50}");
        // Past the last finite bound: that bound.
        let slow = vec![(0.001, 0), (0.01, 1), (0.1, 1), (f64::INFINITY, 10)];
        assert_eq!(quantile(&before, &slow, 0.99), Some(0.1));
    }
}
