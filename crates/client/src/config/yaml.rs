//! Reading a config file into its keys, each with the line it is on.
//!
//! The file is shared with the Python SDKs, which read many keys this client does not, so nothing is declared
//! up front: the document is read as a tree, flattened into dotted keys (`admin.pkceConfig.timeout`), and each
//! setting then converts the one key it needs. That way an unknown key is never an error, and a known key of
//! the wrong type is reported with its name and line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::ConfigError;

/// The sections this client reads inside; each must be a mapping when present.
const SECTIONS: [&str; 4] = [
    "admin",
    "task",
    "admin.pkceConfig",
    "admin.deviceFlowConfig",
];

/// One key's value.
#[derive(Debug, Clone)]
pub(super) enum Leaf {
    /// A string, number or boolean, as text.
    Scalar(String),
    /// A sequence; `None` for an item that is not a scalar.
    List(Vec<Option<String>>),
    /// A mapping (only meaningful for a section).
    Map,
    /// Something else (binary data).
    Other(&'static str),
}

impl Leaf {
    /// What the value is, for messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Scalar(_) => "a single value",
            Self::List(_) => "a list",
            Self::Map => "a mapping",
            Self::Other(kind) => kind,
        }
    }
}

/// A key's value and its line (1-based; 0 when unknown).
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub leaf: Leaf,
    pub line: u64,
}

/// The keys of one file.
#[derive(Debug)]
pub(super) struct FileValues {
    pub path: PathBuf,
    keys: HashMap<String, Node>,
}

impl FileValues {
    /// The value of a dotted key; a `null` value counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&Node> {
        self.keys.get(key)
    }

    /// An error about `key` of this file, naming the file, the key and its line.
    pub(super) fn error(&self, key: &str, line: u64, message: impl fmt::Display) -> ConfigError {
        let at = if line > 0 {
            format!("{key} (line {line})")
        } else {
            key.to_owned()
        };
        ConfigError::Invalid {
            path: self.path.clone(),
            message: format!("{at}: {message}"),
        }
    }
}

/// Reads and flattens `path`.
pub(super) fn load(path: &Path) -> Result<FileValues, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse(path, &text)
}

/// Flattens `text`, read from `path`.
pub(super) fn parse(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = serde_saphyr::options! {
        // PyYAML keeps the last of repeated keys without complaint; so do we.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    let root: Spanned<Tree> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: one_line(&e),
        })?;
    let mut values = FileValues {
        path: path.to_path_buf(),
        keys: HashMap::new(),
    };
    match root.value {
        Tree::Null => {}
        Tree::Map(entries) => flatten("", entries, &mut values.keys),
        other => {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "the file must be a YAML mapping of sections (admin:, task:, …), found {} (line {})",
                    other.kind(),
                    root.referenced.line()
                ),
            });
        }
    }
    for section in SECTIONS {
        if let Some(node) = values.keys.get(section)
            && !matches!(node.leaf, Leaf::Map)
        {
            return Err(values.error(
                section,
                node.line,
                format!("expected a mapping of keys, found {}", node.leaf.kind()),
            ));
        }
    }
    Ok(values)
}

fn one_line(error: &serde_saphyr::Error) -> String {
    let rendered = error.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    if rendered.contains("multiple YAML documents") {
        return "not valid YAML: the file holds more than one YAML document (---); keep one".into();
    }
    let words: Vec<&str> = rendered.split_whitespace().collect();
    format!("not valid YAML: {}", words.join(" "))
}

fn flatten(
    prefix: &str,
    entries: Vec<(Option<String>, Spanned<Tree>)>,
    keys: &mut HashMap<String, Node>,
) {
    for (key, value) in entries {
        // A key that is not a scalar (`? [a, b]`) cannot name a setting.
        let Some(key) = key else { continue };
        let path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let line = value.referenced.line();
        let leaf = match value.value {
            // A later null (`endpoint:` with nothing) removes an earlier value, as PyYAML's last-wins does.
            Tree::Null => {
                keys.remove(&path);
                continue;
            }
            Tree::Scalar(text) => Leaf::Scalar(text),
            Tree::Seq(items) => Leaf::List(
                items
                    .into_iter()
                    .map(|item| match item {
                        Tree::Scalar(text) => Some(text),
                        _ => None,
                    })
                    .collect(),
            ),
            Tree::Map(children) => {
                // Last wins for repeated sections too: forget what an earlier one said.
                let nested = format!("{path}.");
                keys.retain(|k, _| !k.starts_with(&nested));
                flatten(&path, children, keys);
                Leaf::Map
            }
            Tree::Other(kind) => Leaf::Other(kind),
        };
        keys.insert(path, Node { leaf, line });
    }
}

/// A YAML node, read without knowing its type.
enum Tree {
    Null,
    Scalar(String),
    Seq(Vec<Tree>),
    Map(Vec<(Option<String>, Spanned<Tree>)>),
    /// Something that is none of the above (bytes).
    Other(&'static str),
}

impl Tree {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "nothing",
            Self::Scalar(_) => "a single value",
            Self::Seq(_) => "a list",
            Self::Map(_) => "a mapping",
            Self::Other(kind) => kind,
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Scalar(v.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Tree, E> {
        Ok(Tree::Other("binary data"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        Tree::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Tree>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Tree>()? {
            let value = map.next_value::<Spanned<Tree>>()?;
            let key = match key {
                Tree::Scalar(text) => Some(text),
                _ => None,
            };
            entries.push((key, value));
        }
        Ok(Tree::Map(entries))
    }
}
