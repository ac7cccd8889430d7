//! Platform-chosen ids (instance and binding ids): opaque strings with a length bound.
//!
//! The spec sets no limit, but both stores index these ids, and a PostgreSQL btree
//! entry cannot exceed about 2.7 kB: a longer id failed the insert (a 500) and the
//! audit batch that carried it, while SQLite kept it and `migrate-store` to PostgreSQL
//! then failed on that row. Platforms use UUIDs (36 bytes); 255 bytes leaves room for
//! any naming scheme and stays far below every index limit.

/// Longest instance or binding id accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 255;

/// Checks one id; the error names the field and the limit.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_ID_BYTES {
        return Err(format!(
            "{field} is {} bytes long; the broker accepts ids of at most {MAX_ID_BYTES} bytes",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_bytes_and_names_the_field() {
        assert!(check_id("instance_id", &"a".repeat(MAX_ID_BYTES)).is_ok());
        let err = check_id("binding_id", &"é".repeat(128)).unwrap_err();
        assert!(
            err.contains("binding_id") && err.contains("256 bytes"),
            "{err}"
        );
    }
}
