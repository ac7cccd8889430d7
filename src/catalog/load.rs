//! Reading `catalog.yaml`: the only module that touches the YAML crate.

use std::path::Path;

use serde_json::Value;

use super::Catalog;
use crate::backends::BackendRegistry;

/// Everything wrong with a catalog, each problem with its path.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("catalog {path} is not valid YAML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message (line and column).
        message: String,
    },
    /// The catalog breaks one or more rules.
    #[error("catalog {path} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: String,
        /// One line per problem: `services[1].plans[0].id: ...`.
        problems: Vec<String>,
    },
}

/// Loads and validates the catalog at `path` against the backends in `registry`.
/// Plans whose backend kind is known but not configured are left out (with a warning).
pub fn load_catalog(path: &Path, registry: &BackendRegistry) -> Result<Catalog, CatalogError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: display.clone(),
        source,
    })?;
    parse_catalog(&text, &display, registry)
}

/// Parses and validates catalog text; `origin` names it in messages.
pub fn parse_catalog(
    text: &str,
    origin: &str,
    registry: &BackendRegistry,
) -> Result<Catalog, CatalogError> {
    let document: Value = serde_yaml::from_str(text).map_err(|e| CatalogError::Syntax {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    super::validate::build(&document, registry).map_err(|problems| CatalogError::Invalid {
        path: origin.to_owned(),
        problems,
    })
}
