//! The README's configuration reference matches the configuration types: every key it
//! lists exists, every field of every section is listed, its example file parses, and so do
//! the configurations under `deploy/`.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use oci_cache_server::config::{
    AuthSection, Config, GcSection, LimitsSection, TlsSection, TokenEntry, UpstreamEntry,
};
use serde::de::{self, DeserializeOwned, Visitor};

/// A deserializer that records the field names a derived `Deserialize` asks for.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn fields_of<T: DeserializeOwned>(prefix: &str) -> Vec<String> {
    let mut fields = None;
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
        .expect("a derived struct")
        .iter()
        .map(|f| format!("{prefix}{f}"))
        .collect()
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The text between `<!-- NAME:start -->` and `<!-- NAME:end -->`.
fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let from = text
        .find(&start)
        .unwrap_or_else(|| panic!("README lacks {start}"))
        + start.len();
    let to = text[from..]
        .find(&end)
        .unwrap_or_else(|| panic!("README lacks {end}"))
        + from;
    &text[from..to]
}

#[test]
fn reference_table_lists_exactly_the_configuration_keys() {
    let text = readme();
    let listed: BTreeSet<String> = section(&text, "config-reference")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let mut keys: BTreeSet<String> = BTreeSet::new();
    keys.extend(fields_of::<Config>("").into_iter().filter(|k| {
        // Sections are listed by their keys.
        !matches!(k.as_str(), "gc" | "limits" | "auth" | "tls" | "upstreams")
    }));
    keys.extend(fields_of::<GcSection>("gc."));
    keys.extend(fields_of::<LimitsSection>("limits."));
    keys.extend(fields_of::<TlsSection>("tls."));
    keys.extend(
        fields_of::<AuthSection>("auth.")
            .into_iter()
            .filter(|k| k != "auth.tokens"),
    );
    keys.extend(fields_of::<TokenEntry>("auth.tokens."));
    keys.extend(fields_of::<UpstreamEntry>("upstreams."));
    assert!(keys.len() > 30, "the types were read: {keys:?}");
    let missing: Vec<_> = keys.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&keys).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README config reference: missing {missing:?}, not in the code {unknown:?}"
    );
}

#[test]
fn example_configuration_parses() {
    let text = readme();
    let example = section(&text, "config-example");
    let toml_text = example
        .split("```toml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the config example");
    let config: Config = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.upstreams.len() >= 2);
    assert!(config.gc.max_bytes.is_some());
    assert_eq!(config.limits.header_timeout_secs, 20);
}

/// The `config.toml` embedded in a Kubernetes ConfigMap (the block under `config.toml: |`).
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("config.toml: |"));
    lines.next().expect("a config.toml: | block");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn deployment_configurations_parse() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let systemd = std::path::PathBuf::from(format!("{root}/deploy/systemd/config.toml"));
    Config::from_file(&systemd).unwrap_or_else(|e| panic!("{e}"));
    for dir in ["single", "s3"] {
        let yaml =
            std::fs::read_to_string(format!("{root}/deploy/kubernetes/{dir}/configmap.yaml"))
                .unwrap();
        let text = configmap_toml(&yaml);
        let config: Config =
            toml::from_str(&text).unwrap_or_else(|e| panic!("deploy/kubernetes/{dir}: {e}"));
        assert!(!config.upstreams.is_empty(), "{dir}");
        assert_eq!(
            config.data_dir,
            std::path::Path::new("/var/lib/oci-cache"),
            "{dir}"
        );
    }
}
