//! Where in a config file an error is: line, column and the key there (`section.key`), so
//! that a type error names what to fix even when the parser's message does not.

/// Line and column (from 1) of byte `offset` of `text`, and the key defined on that line
/// (prefixed with the table it is in), if the line defines one.
pub(crate) fn place_of(text: &str, offset: usize) -> (usize, usize, Option<String>) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let line_end = line_start + line.len();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
    let table = table_at(&text[..line_end]);
    let key = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    };
    (line_no, column, key)
}

/// The table the end of `text` is in: the last `[table]` header, or the last `[[array]]`
/// header with its entry's index (`upstreams[1]`), comments left out.
fn table_at(text: &str) -> Option<String> {
    let header = |l: &str| {
        let l = l.split('#').next().unwrap_or("").trim();
        l.starts_with('[').then(|| l.to_owned())
    };
    let last = text.lines().rev().find_map(header)?;
    if let Some(name) = last.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        let name = name.trim();
        let entries = text
            .lines()
            .filter_map(header)
            .filter(|h| {
                h.strip_prefix("[[")
                    .and_then(|l| l.strip_suffix("]]"))
                    .map(str::trim)
                    == Some(name)
            })
            .count();
        return Some(format!("{name}[{}]", entries.saturating_sub(1)));
    }
    Some(
        last.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned(),
    )
}

/// `, line L column C (key K)` for an error message; empty when the place is unknown.
pub(crate) fn describe_place(
    line: Option<usize>,
    column: Option<usize>,
    key: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let (Some(l), Some(c)) = (line, column) {
        let _ = write!(out, ", line {l} column {c}");
    }
    if let Some(k) = key {
        let _ = write!(out, " (key `{k}`)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_line_column_and_the_key_in_its_table() {
        let text = "listen = \"0.0.0.0:5000\"\n\n[gc]\n# a comment\nmax_bytes = \"ten\"\n";
        let at = text.find("\"ten\"").unwrap();
        assert_eq!(place_of(text, at), (5, 13, Some("gc.max_bytes".into())));
        let top = text.find("\"0.0").unwrap();
        assert_eq!(place_of(text, top), (1, 10, Some("listen".into())));
        assert_eq!(
            describe_place(Some(5), Some(13), Some("gc.max_bytes")),
            ", line 5 column 13 (key `gc.max_bytes`)"
        );
        assert_eq!(describe_place(None, None, None), "");
    }

    #[test]
    fn names_the_entry_of_an_array_of_tables_and_ignores_comments() {
        let text = "[[upstreams]]   # the first is the default\nname = \"a\"\n\n\
                    [[upstreams]] # another\nname = \"b\"\nurl = 5\n";
        let at = text.find('5').unwrap();
        assert_eq!(place_of(text, at).2, Some("upstreams[1].url".into()));
        let header = text.find("[[upstreams]] # another").unwrap();
        assert_eq!(place_of(text, header).2, Some("upstreams[1]".into()));
    }
}
