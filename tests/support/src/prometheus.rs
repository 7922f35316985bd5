//! A strict reader of the OpenMetrics text format (what Prometheus scrapes from
//! `/metrics`), for tests that check what the daemon exposes.
//!
//! Strict on purpose: a lenient parser would accept an exposition Prometheus rejects. It
//! refuses a sample before its family's `# TYPE`, a family declared twice or interleaved
//! with another, a sample whose name its type does not allow, a missing `# EOF`, bad label
//! syntax or escapes, a negative counter, and a histogram whose buckets are not cumulative
//! or lack `+Inf`, or whose `_count` differs from its `+Inf` bucket.

use std::collections::{BTreeMap, BTreeSet};

/// One scrape, family by family in the order served.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `info`, `stateset`, `summary`, `gaugehistogram` or
    /// `unknown`.
    pub kind: String,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|s| s.value)
    }

    /// Every name a query can use: the samples served, and for each family the names its
    /// type implies even when it has no sample yet (a labelled family before its first
    /// event).
    pub fn exported_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .families
            .iter()
            .flat_map(|f| f.samples.iter().map(|s| s.name.clone()))
            .collect();
        for family in &self.families {
            for suffix in allowed_suffixes(&family.kind) {
                if *suffix != "_created" {
                    names.insert(format!("{}{suffix}", family.name));
                }
            }
        }
        names
    }
}

fn allowed_suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram" => &["_gbucket", "_gsum", "_gcount"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

/// Parses a whole OpenMetrics text exposition; the error names the line and what is wrong.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let Some(body) = text.strip_suffix("# EOF\n") else {
        return Err("the exposition does not end with `# EOF` and a newline".into());
    };
    let mut out = Exposition::default();
    let mut seen = BTreeSet::new();
    for (index, line) in body.lines().enumerate() {
        let at = |what: String| format!("line {}: {what}: {line:?}", index + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            let value = parts.next().unwrap_or_default();
            check_name(name).map_err(at)?;
            let current = match out.families.last_mut() {
                Some(f) if f.name == name => f,
                _ => {
                    if !seen.insert(name.to_string()) {
                        return Err(at(format!("family {name} declared twice")));
                    }
                    out.families.push(Family {
                        name: name.to_string(),
                        kind: "unknown".into(),
                        help: None,
                        unit: None,
                        samples: Vec::new(),
                    });
                    out.families.last_mut().expect("just pushed")
                }
            };
            if !current.samples.is_empty() {
                return Err(at("metadata after the family's samples".into()));
            }
            match keyword {
                "TYPE" => {
                    const KINDS: [&str; 8] = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ];
                    if !KINDS.contains(&value) {
                        return Err(at(format!("unknown type {value:?}")));
                    }
                    current.kind = value.to_string();
                }
                "HELP" => current.help = Some(unescape(value).map_err(at)?),
                "UNIT" => {
                    if !value.is_empty() && !name.ends_with(&format!("_{value}")) {
                        return Err(at(format!("the name does not end with its unit {value}")));
                    }
                    current.unit = Some(value.to_string());
                }
                other => return Err(at(format!("unknown keyword {other:?}"))),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("a comment that is not HELP, TYPE, UNIT or EOF".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = out
            .families
            .last_mut()
            .filter(|f| {
                allowed_suffixes(&f.kind)
                    .iter()
                    .any(|suffix| sample.name == format!("{}{suffix}", f.name))
            })
            .ok_or_else(|| {
                at(format!(
                    "sample {} does not belong to the family declared before it",
                    sample.name
                ))
            })?;
        if family.kind == "counter" && sample.value < 0.0 {
            return Err(at("a negative counter".into()));
        }
        family.samples.push(sample);
    }
    for family in &out.families {
        if family.kind == "histogram" {
            check_histogram(family)?;
        }
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "a sample without a value".to_string())?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let close = loop {
            // A label: name="value", then `,` or `}`.
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated labels".into());
            };
            if c == '}' {
                break start;
            }
            let eq = after[start..]
                .find('=')
                .ok_or_else(|| "a label without `=`".to_string())?
                + start;
            let label = &after[start..eq];
            let valid = label
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid label name {label:?}"));
            }
            if !after[eq + 1..].starts_with('"') {
                return Err(format!("label {label} is not quoted"));
            }
            // Find the closing quote, skipping escapes.
            let value_start = eq + 2;
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after[value_start..].char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(value_start + i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("label {label}'s value is not closed"))?;
            let value = unescape(&after[value_start..end])?;
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} given twice"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= end) {
                chars.next();
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => break i,
                _ => return Err("labels not separated by `,`".into()),
            }
        };
        rest = &after[close + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_string())?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().unwrap_or_default())?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<f64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text.is_empty()
            || text.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            Err(format!("bad value {text:?}"))
        }
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// Buckets are cumulative, end in `+Inf`, and `_count` equals the `+Inf` bucket, for each
/// label set of the family.
fn check_histogram(family: &Family) -> Result<(), String> {
    // By label set (without `le`): the buckets as (le, count), and `_count`.
    type Series = (Vec<(f64, f64)>, Option<f64>);
    let mut series: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    let name = &family.name;
    for sample in &family.samples {
        let mut key: Vec<(String, String)> = sample
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        key.sort();
        let entry = series.entry(key).or_default();
        if sample.name == format!("{name}_bucket") {
            let le = sample
                .labels
                .get("le")
                .ok_or_else(|| format!("{name}: a bucket without `le`"))?;
            entry.0.push((parse_value(le)?, sample.value));
        } else if sample.name == format!("{name}_count") {
            entry.1 = Some(sample.value);
        }
    }
    if series.is_empty() {
        return Err(format!("histogram {name} has no samples"));
    }
    for (labels, (buckets, count)) in series {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(le, value) in &buckets {
            if le <= last.0 || value < last.1 {
                return Err(format!(
                    "histogram {name}{labels:?}: buckets not increasing or not cumulative"
                ));
            }
            last = (le, value);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("histogram {name}{labels:?}: no +Inf bucket"));
        }
        if count != Some(last.1) {
            return Err(format!(
                "histogram {name}{labels:?}: _count {count:?} is not the +Inf bucket {}",
                last.1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_seconds How long.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\na_seconds_sum 1.5\na_seconds_count 2\na_seconds_bucket{le=\"1.0\"} 1\na_seconds_bucket{le=\"+Inf\"} 2\n# HELP b Things.\n# TYPE b counter\nb_total{step=\"push\",reason=\"a \\\"b\\\"\"} 3\n# EOF\n";

    #[test]
    fn reads_a_valid_exposition() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.families.len(), 2);
        assert_eq!(e.value("b_total", &[("reason", "a \"b\"")]), Some(3.0));
        assert!(e.exported_names().contains("a_seconds_bucket"));
        assert!(e.exported_names().contains("b_total"));
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        let bad = [
            GOOD.replace("# EOF\n", ""),
            GOOD.replace("b_total{", "c_total{"),
            GOOD.replace("a_seconds_count 2", "a_seconds_count 3"),
            GOOD.replace("le=\"+Inf\"", "le=\"2.0\""),
            GOOD.replace("reason=\"a", "reason=a"),
            GOOD.replace("} 3", "} -3"),
            GOOD.replace("# TYPE b counter", "# TYPE b countr"),
            GOOD.replace(
                "# HELP b Things.\n# TYPE b counter\n",
                "# TYPE a_seconds histogram\n",
            ),
        ];
        for text in bad {
            assert!(parse(&text).is_err(), "accepted:\n{text}");
        }
    }
}
