//! The status page as HTML: one self-contained document (inline CSS and SVG, no script, no
//! font or file from elsewhere) that reloads itself every 15 s and reads well from a
//! phone to a wide screen.

use std::fmt::Write as _;

use serde_json::Value;

use super::svg::{chart, escape, Series};

/// The page's style: cards in a grid that folds to one column on a phone.
const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#f6f7f9;--card:#fff;--muted:#5b6470;--line:#d6dae0;\
--a:#1f77b4;--b:#e07b00;--c:#2ca02c;--d:#d62728}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--bg:#111418;--card:#1b1f24;--muted:#9aa3ad;--line:#333a42}}\
*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}\
header{padding:12px 16px;display:flex;flex-wrap:wrap;gap:8px 16px;align-items:baseline}\
h1{font-size:20px;margin:0}h2{font-size:16px;margin:20px 16px 8px}.muted{color:var(--muted)}\
.grid{display:grid;gap:12px;padding:0 16px;grid-template-columns:repeat(auto-fill,minmax(min(100%,320px),1fr))}\
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;margin:0;min-width:0}\
.figure{font-size:24px;font-weight:600}.small{font-size:13px}\
figcaption{font-weight:600;margin-bottom:4px}.chart{width:100%;height:110px;display:block}\
.chart polyline{fill:none;stroke-width:1.6;vector-effect:non-scaling-stroke}.axis{stroke:var(--line)}\
.label{font-size:9px;fill:var(--muted)}.end{text-anchor:end}\
.a polyline{stroke:var(--a)}.b polyline{stroke:var(--b)}.c polyline{stroke:var(--c)}.d polyline{stroke:var(--d)}\
.a circle{fill:var(--a)}.b circle{fill:var(--b)}.c circle{fill:var(--c)}.d circle{fill:var(--d)}\
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:13px}.key::before{content:'';display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle;background:currentColor}\
.key.a{color:var(--a)}.key.b{color:var(--b)}.key.c{color:var(--c)}.key.d{color:var(--d)}\
.table{overflow-x:auto;margin:0 16px}table{border-collapse:collapse;width:100%;background:var(--card);font-size:14px}\
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}td.wrap{white-space:normal;word-break:break-all}\
.bar{height:8px;background:var(--line);border-radius:4px;min-width:80px}.bar>span{display:block;height:8px;border-radius:4px;background:var(--a)}\
.open{color:var(--d);font-weight:600}.closed{color:var(--c)}footer{padding:16px;font-size:13px}\
a{color:var(--a)}";

/// Bytes as B, KiB, MiB, GiB or TiB.
fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()),
    }
}

fn series_of(status: &Value, key: &str) -> Vec<Option<f64>> {
    status["history"][key]
        .as_array()
        .map(|a| a.iter().map(num).collect())
        .unwrap_or_default()
}

/// The summary cards: storage against its limit, hit ratio, downloads.
fn cards(status: &Value) -> String {
    let stored = num(&status["stored_bytes"]).unwrap_or(0.0);
    let limit = match num(&status["max_bytes"]) {
        Some(max) => {
            let high = num(&status["high_watermark_bytes"])
                .map_or_else(String::new, |h| format!(", evicting above {}", bytes(h)));
            #[allow(clippy::cast_possible_truncation)] // a percentage
            let pct = if max > 0.0 {
                (stored / max * 100.0).round() as i64
            } else {
                0
            };
            format!(
                "of {} ({pct} %{high})<div class=\"bar\"><span style=\"width:{}%\"></span></div>",
                bytes(max),
                pct.clamp(0, 100)
            )
        }
        None => "no size limit".to_owned(),
    };
    let ratio =
        num(&status["hit_ratio"]).map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0));
    format!(
        "<section class=\"grid\">\
         <div class=\"card\" id=\"stored\"><div class=\"muted small\">Stored</div>\
         <div class=\"figure\" data-bytes=\"{stored_raw}\">{stored_h}</div>\
         <div class=\"small\">{objects} blobs, {limit}</div></div>\
         <div class=\"card\" id=\"hits\"><div class=\"muted small\">Blob hit ratio</div>\
         <div class=\"figure\">{ratio}</div><div class=\"small\">{hits} hits, {misses} misses; \
         {from_cache} sent from the cache, {from_upstream} fetched</div></div>\
         <div class=\"card\" id=\"downloads\"><div class=\"muted small\">Downloads running</div>\
         <div class=\"figure\">{fills}</div><div class=\"small\">{over} served without storing \
         (limit), {evicted} blobs evicted</div></div></section>",
        stored_raw = text(&status["stored_bytes"]),
        stored_h = bytes(stored),
        objects = text(&status["stored_objects"]),
        hits = text(&status["blob_hits"]),
        misses = text(&status["blob_misses"]),
        from_cache = bytes(num(&status["bytes_from_cache"]).unwrap_or(0.0)),
        from_upstream = bytes(num(&status["bytes_from_upstream"]).unwrap_or(0.0)),
        fills = text(&status["fills_in_flight"]),
        over = text(&status["fills_over_limit"]),
        evicted = text(&status["evicted_blobs"]),
    )
}

/// The last hour's charts.
fn charts(status: &Value) -> String {
    let count = |v: f64| format!("{v:.0}");
    let per_min = |v: f64| format!("{}/min", bytes(v));
    let mut out = String::from("<section class=\"grid\">");
    out.push_str(&chart(
        "requests",
        "Requests per minute",
        &[
            Series {
                name: "from cache",
                class: "a",
                values: series_of(status, "requests_from_cache"),
            },
            Series {
                name: "from upstream",
                class: "b",
                values: series_of(status, "requests_from_upstream"),
            },
        ],
        count,
    ));
    out.push_str(&chart(
        "bytes",
        "Bytes per minute",
        &[
            Series {
                name: "from cache",
                class: "a",
                values: series_of(status, "bytes_from_cache"),
            },
            Series {
                name: "from upstream",
                class: "b",
                values: series_of(status, "bytes_from_upstream"),
            },
        ],
        per_min,
    ));
    out.push_str(&chart(
        "hit_ratio",
        "Hit ratio, blobs and manifests",
        &[Series {
            name: "hits",
            class: "c",
            values: series_of(status, "hit_ratio")
                .into_iter()
                .map(|v| v.map(|r| r * 100.0))
                .collect(),
        }],
        |v| format!("{v:.0} %"),
    ));
    out.push_str(&chart(
        "upstream",
        "Upstream errors and latency",
        &[
            Series {
                name: "errors per minute",
                class: "d",
                values: series_of(status, "upstream_errors"),
            },
            Series {
                name: "mean latency, ms",
                class: "b",
                values: series_of(status, "upstream_latency_ms"),
            },
        ],
        |v| format!("{v:.0}"),
    ));
    out.push_str("</section>");
    out
}

/// Running downloads, upstreams and the most pulled images.
fn tables(status: &Value) -> String {
    let mut running = String::new();
    for f in status["running"].as_array().into_iter().flatten() {
        let received = num(&f["received"]).unwrap_or(0.0);
        let (progress, pct) = match num(&f["size"]) {
            Some(size) if size > 0.0 => {
                #[allow(clippy::cast_possible_truncation)] // a percentage
                let pct = (received / size * 100.0).round() as i64;
                (format!("{} of {}", bytes(received), bytes(size)), pct)
            }
            _ => (bytes(received), 0),
        };
        let _ = write!(
            running,
            "<tr><td>{}</td><td class=\"wrap\">{}@{}</td><td>{progress}\
             <div class=\"bar\"><span style=\"width:{}%\"></span></div></td><td>{}</td></tr>",
            text(&f["upstream"]),
            text(&f["repository"]),
            text(&f["digest"]),
            pct.clamp(0, 100),
            text(&f["clients"]),
        );
    }
    if running.is_empty() {
        running.push_str("<tr><td colspan=\"4\" class=\"muted\">none</td></tr>");
    }
    let mut upstreams = String::new();
    for u in status["upstreams"].as_array().into_iter().flatten() {
        let circuits: Vec<String> = u["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let state = text(&e["circuit"]);
                format!("{} <span class=\"{state}\">{state}</span>", text(&e["url"]))
            })
            .collect();
        let _ = write!(
            upstreams,
            "<tr><td>{}</td><td class=\"wrap\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&u["name"]),
            circuits.join("<br>"),
            text(&u["ratelimit_remaining"]),
            text(&u["requests"]),
            text(&u["errors"]),
        );
    }
    let mut pulled = String::new();
    for p in status["most_pulled"].as_array().into_iter().flatten() {
        let _ = write!(
            pulled,
            "<tr><td class=\"wrap\">{}</td><td>{}</td></tr>",
            text(&p["image"]),
            text(&p["pulls"])
        );
    }
    if pulled.is_empty() {
        pulled.push_str("<tr><td colspan=\"2\" class=\"muted\">none yet</td></tr>");
    }
    format!(
        "<h2>Downloads running</h2><div class=\"table\"><table id=\"running\"><tr><th>upstream</th>\
         <th>blob</th><th>progress</th><th>clients waiting</th></tr>{running}</table></div>\
         <h2>Upstreams</h2><div class=\"table\"><table id=\"upstreams\"><tr><th>name</th>\
         <th>endpoints (circuit)</th><th>rate limit left</th><th>requests</th><th>errors</th></tr>\
         {upstreams}</table></div>\
         <h2>Most pulled</h2><div class=\"table\"><table id=\"most-pulled\"><tr><th>image</th>\
         <th>pulls</th></tr>{pulled}</table></div>"
    )
}

/// The whole page.
pub(crate) fn status_html(status: &Value) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>oci-cache</title>\
         <link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body>\
         <header><h1>oci-cache</h1><span class=\"muted small\">refreshes every 15 s · \
         the last hour, minute by minute</span></header>{}<h2>Last hour</h2>{}{}\
         <footer><a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a></footer>\
         </body></html>",
        cards(status),
        charts(status),
        tables(status),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(52_428_800.0), "50.0 MiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0), "3.0 TiB");
    }

    #[test]
    fn names_are_escaped_and_the_page_needs_nothing_from_elsewhere() {
        let status = serde_json::json!({
            "stored_bytes": 1024, "stored_objects": 1, "max_bytes": 4096,
            "high_watermark_bytes": 3686,
            "most_pulled": [{"image": "docker.io/<script>:1", "pulls": 2}],
            "history": {"requests_from_cache": [1, 2]},
            "upstreams": [], "running": [],
        });
        let page = status_html(&status);
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
        assert!(page.contains("of 4.0 KiB (25 %"), "{page}");
    }
}
