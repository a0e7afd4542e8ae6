//! `GATEHOUSE_SECTION__KEY=value` environment overrides, applied to the
//! parsed TOML before validation (so they are checked like the file).

use super::{ConfigError, RESERVED_ENV};

/// Applies `GATEHOUSE_SECTION__KEY=value` overrides; `__` separates levels and a
/// numeric level indexes an array (`GATEHOUSE_ISSUERS__0__CLIENT_SECRET`).
pub(super) fn apply_env(
    root: &mut toml::Value,
    env: &[(String, String)],
    errors: &mut Vec<ConfigError>,
) {
    let mut vars: Vec<&(String, String)> = env.iter().collect();
    vars.sort();
    for (name, raw_value) in vars {
        if RESERVED_ENV.contains(&name.as_str()) {
            continue;
        }
        let Some(rest) = name.strip_prefix("GATEHOUSE_") else {
            continue;
        };
        if !rest.contains("__") {
            tracing::warn!(variable = %name, "ignoring GATEHOUSE_ variable that is not a config override (use GATEHOUSE_SECTION__KEY)");
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            errors.push(ConfigError {
                key: name.clone(),
                message: "empty path segment; use GATEHOUSE_SECTION__KEY".into(),
            });
            continue;
        }
        if let Err(msg) = set_path(root, &parts, raw_value) {
            errors.push(ConfigError {
                key: name.clone(),
                message: msg,
            });
        }
    }
}

fn env_value(existing: Option<&toml::Value>, raw: &str) -> toml::Value {
    // A string stays a string; otherwise try TOML syntax (true, 42, ["a","b"]).
    if let Some(toml::Value::String(_)) = existing {
        return toml::Value::String(raw.to_string());
    }
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut toml::Value, parts: &[String], raw: &str) -> Result<(), String> {
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if let Ok(idx) = part.parse::<usize>() {
            let arr = cur
                .as_array_mut()
                .ok_or_else(|| format!("segment {part} indexes something that is not a list"))?;
            if idx > arr.len() {
                return Err(format!(
                    "index {idx} skips entries; the list has {} entries",
                    arr.len()
                ));
            }
            if idx == arr.len() {
                arr.push(toml::Value::Table(toml::Table::new()));
            }
            if last {
                let v = env_value(Some(&arr[idx]), raw);
                arr[idx] = v;
                return Ok(());
            }
            cur = &mut arr[idx];
        } else {
            let table = cur
                .as_table_mut()
                .ok_or_else(|| format!("segment {part} is inside something that is not a table"))?;
            if last {
                let v = env_value(table.get(part.as_str()), raw);
                table.insert(part.clone(), v);
                return Ok(());
            }
            let next_is_index = parts[i + 1].parse::<usize>().is_ok();
            cur = table.entry(part.clone()).or_insert_with(|| {
                if next_is_index {
                    toml::Value::Array(Vec::new())
                } else {
                    toml::Value::Table(toml::Table::new())
                }
            });
        }
    }
    Ok(())
}
