//! The one test configuration every test starts from, and per-test overrides
//! merged over it, so that a test states only what it is about.

/// A gatehouse with an SQLite store and a local issuer in the test's temp dir
/// (`{dir}`, replaced by `Server::start`), admins with the role `admin`, and
/// one factor for everything.
pub const BASE_CONFIG: &str = r#"
[server]
public_url = "https://auth.example.com"
[store]
url = "sqlite://{dir}/g.db"
[local_issuer]
signing_key_file = "{dir}/key.pem"
[admin]
roles = ["admin"]
[access]
default_policy = "one_factor"
"#;

/// [`BASE_CONFIG`] with `overrides` (a TOML fragment) merged over it: tables
/// merge key by key; any other value, arrays of rules included, replaces the
/// base's. A key set to the string `"<unset>"` is removed.
pub fn config_with(overrides: &str) -> String {
    config_with_all(&[overrides])
}

/// [`BASE_CONFIG`] with each fragment merged over it in turn.
pub fn config_with_all(fragments: &[&str]) -> String {
    let mut base: toml::Table = BASE_CONFIG.parse().expect("base config");
    for f in fragments {
        let over: toml::Table = f
            .parse()
            .unwrap_or_else(|e| panic!("test config override is not TOML: {e}\n{f}"));
        merge(&mut base, over);
    }
    toml::to_string(&base).expect("serialises")
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (_, toml::Value::String(s)) if s == "<unset>" => {
                base.remove(&k);
            }
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[test]
fn overrides_merge_into_the_base() {
    let c: toml::Table = config_with(
        "[access]\ndefault_policy = \"deny\"\n[[access.rules]]\npolicy = \"bypass\"\n\
         [local_issuer]\nsigning_key_file = \"<unset>\"\naudience = \"x\"\n[store]\nurl = \"<unset>\"",
    )
    .parse()
    .unwrap();
    assert_eq!(c["access"]["default_policy"].as_str(), Some("deny"));
    assert_eq!(c["access"]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(c["local_issuer"]["audience"].as_str(), Some("x"));
    assert!(c["local_issuer"].get("signing_key_file").is_none());
    assert!(c["store"].get("url").is_none());
    assert_eq!(c["admin"]["roles"][0].as_str(), Some("admin"));
}
