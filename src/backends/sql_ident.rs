//! SQL identifiers and literals for the PostgreSQL backend: the one place where a name
//! or a value becomes SQL text, and where the names bindery derives from platform ids
//! are made.
//!
//! DDL (`CREATE ROLE`, `CREATE DATABASE`, ...) cannot take bind parameters, so names
//! must be pasted into statements. Every name pasted goes through [`Ident`], which only
//! accepts what bindery itself generates (`[a-z0-9_]`, at most 63 bytes) and always
//! double-quotes; platform ids never reach SQL, only hashes of them do.

use std::fmt;

pub use super::common::{BINDING_HASH_LEN, ID_HASH_LEN, MAX_PREFIX_LEN, id_hash, is_valid_prefix};

/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1); a longer name
/// would silently collide with another one, so it is refused instead.
pub const MAX_IDENT_LEN: usize = 63;

/// Why a string was refused as an identifier or literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The identifier is empty.
    #[error("an SQL identifier must not be empty")]
    Empty,
    /// The identifier is longer than PostgreSQL keeps.
    #[error("the SQL identifier is {0} bytes long; at most 63 are allowed")]
    TooLong(usize),
    /// The identifier contains something else than `a-z`, `0-9` and `_`.
    #[error("an SQL identifier may only contain a-z, 0-9 and _")]
    BadCharacter,
    /// A literal contains a character that is never needed in what bindery sends.
    #[error("the SQL literal contains a control character or a backslash")]
    BadLiteral,
}

/// A validated PostgreSQL identifier. Its `Display` form is the *quoted* identifier,
/// so the only way to put an `Ident` into SQL text is the safe one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Accepts `name` if it is 1..=63 bytes of `[a-z0-9_]`.
    ///
    /// The character set is deliberately narrower than what PostgreSQL allows: with no
    /// quote, no upper case and no multi-byte character, quoting cannot go wrong and
    /// the quoted and unquoted spellings name the same object.
    pub fn new(name: &str) -> Result<Self, IdentError> {
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.len() > MAX_IDENT_LEN {
            return Err(IdentError::TooLong(name.len()));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(IdentError::BadCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    /// The bare name, for bind parameters (`WHERE rolname = $1`) and log lines.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted for SQL text (same as `Display`).
    pub fn quoted(&self) -> String {
        quote_ident(&self.0).expect("an Ident is always valid")
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Validation guarantees there is no `"` to double.
        write!(f, "\"{}\"", self.0)
    }
}

/// Validates `name` like [`Ident::new`] and returns it double-quoted.
pub fn quote_ident(name: &str) -> Result<String, IdentError> {
    Ident::new(name).map(|ident| format!("\"{}\"", ident.0))
}

/// Quotes `value` as a standard SQL string literal (`'...'` with `'` doubled).
///
/// Backslashes and control characters are refused rather than escaped: bindery only
/// sends its own values (SCRAM verifiers, role names), which never contain them, and
/// refusing keeps the result independent of `standard_conforming_strings`.
pub fn quote_literal(value: &str) -> Result<String, IdentError> {
    if value.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(IdentError::BadLiteral);
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// Whether `name` is an extension name bindery accepts: `^[a-z_][a-z0-9_]{0,62}$`.
pub fn is_valid_extension_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_IDENT_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// Every name of one service instance, derived from the prefix and the instance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceNames {
    /// `<prefix>_<h(instance)>_`: the start of every role of the instance.
    pub role_prefix: String,
    /// The database `<prefix>_<h(instance)>`.
    pub database: Ident,
    /// The NOLOGIN group role `<prefix>_<h(instance)>_owner` that owns the database
    /// and everything read-write bindings create in it.
    pub owner: Ident,
    /// The NOLOGIN group role `<prefix>_<h(instance)>_reader` of read-only bindings.
    pub reader: Ident,
}

impl InstanceNames {
    /// The names of instance `instance_id`. `prefix` must satisfy [`is_valid_prefix`].
    pub fn new(prefix: &str, instance_id: &str) -> Result<Self, IdentError> {
        if !is_valid_prefix(prefix) {
            return Err(IdentError::BadCharacter);
        }
        let base = format!("{prefix}_{}", id_hash(instance_id, ID_HASH_LEN));
        Ok(Self {
            role_prefix: format!("{base}_"),
            database: Ident::new(&base)?,
            owner: Ident::new(&format!("{base}_owner"))?,
            reader: Ident::new(&format!("{base}_reader"))?,
        })
    }

    /// The login role of binding `binding_id`: `<prefix>_<h(instance)>_b<h(binding)[..12]>`.
    pub fn binding_role(&self, binding_id: &str) -> Ident {
        let name = format!(
            "{}b{}",
            self.role_prefix,
            id_hash(binding_id, BINDING_HASH_LEN)
        );
        // prefix (<=16) + 1 + 20 + 2 + 12 = 51 bytes of [a-z0-9_]: always valid.
        Ident::new(&name).expect("generated binding role names are valid identifiers")
    }

    /// Whether `role` is one of the two group roles (dropped after the binding roles).
    pub fn is_group_role(&self, role: &str) -> bool {
        role == self.owner.as_str() || role == self.reader.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn quotes_valid_identifiers() {
        assert_eq!(quote_ident("bindery_abc").unwrap(), "\"bindery_abc\"");
        assert_eq!(Ident::new("a").unwrap().to_string(), "\"a\"");
        assert_eq!(Ident::new("x_1").unwrap().quoted(), "\"x_1\"");
        assert_eq!(Ident::new("x_1").unwrap().as_str(), "x_1");
        let longest = "a".repeat(63);
        assert_eq!(quote_ident(&longest).unwrap(), format!("\"{longest}\""));
    }

    #[test]
    fn refuses_anything_else() {
        assert_eq!(quote_ident(""), Err(IdentError::Empty));
        assert_eq!(quote_ident(&"a".repeat(64)), Err(IdentError::TooLong(64)));
        for bad in [
            "A",
            "a b",
            "a\"b",
            "a'b",
            "a;drop role postgres",
            "é",
            "a-b",
            "a\0",
            "a.b",
            "\"a\"",
            "a$1",
        ] {
            assert_eq!(quote_ident(bad), Err(IdentError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote_literal("abc").unwrap(), "'abc'");
        assert_eq!(quote_literal("a'b").unwrap(), "'a''b'");
        assert_eq!(quote_literal("''").unwrap(), "''''''");
        assert_eq!(
            quote_literal("SCRAM-SHA-256$4096:a+/=$b:c").unwrap(),
            "'SCRAM-SHA-256$4096:a+/=$b:c'"
        );
        assert_eq!(quote_literal("a\\'"), Err(IdentError::BadLiteral));
        assert_eq!(quote_literal("a\nb"), Err(IdentError::BadLiteral));
        assert_eq!(quote_literal("a\0b"), Err(IdentError::BadLiteral));
    }

    #[test]
    fn prefixes_and_extension_names() {
        for ok in ["bindery", "a", "bd_test1", "abcdefghijklmnop"] {
            assert!(is_valid_prefix(ok), "{ok}");
        }
        for bad in ["", "1a", "_a", "Bindery", "a-b", "abcdefghijklmnopq", "a b"] {
            assert!(!is_valid_prefix(bad), "{bad}");
        }
        for ok in ["citext", "pgcrypto", "_x", "pg_trgm", &"a".repeat(63)] {
            assert!(is_valid_extension_name(ok), "{ok}");
        }
        for bad in ["", "uuid-ossp", "1x", "Citext", "a;b", &"a".repeat(64)] {
            assert!(!is_valid_extension_name(bad), "{bad}");
        }
    }

    #[test]
    fn hashes_are_sha256_prefixes() {
        // sha256("") = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
        assert_eq!(id_hash("", 20), "e3b0c44298fc1c149afb");
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(id_hash("abc", 12), "ba7816bf8f01");
    }

    #[test]
    fn names_follow_the_documented_scheme() {
        let names = InstanceNames::new("bindery", "abc").unwrap();
        assert_eq!(names.database.as_str(), "bindery_ba7816bf8f01cfea4141");
        assert_eq!(names.owner.as_str(), "bindery_ba7816bf8f01cfea4141_owner");
        assert_eq!(names.reader.as_str(), "bindery_ba7816bf8f01cfea4141_reader");
        assert_eq!(names.role_prefix, "bindery_ba7816bf8f01cfea4141_");
        assert_eq!(
            names.binding_role("").as_str(),
            "bindery_ba7816bf8f01cfea4141_be3b0c44298fc"
        );
        assert!(names.is_group_role("bindery_ba7816bf8f01cfea4141_owner"));
        assert!(!names.is_group_role("bindery_ba7816bf8f01cfea4141_be3b0c44298fc"));
        assert!(InstanceNames::new("Bad", "abc").is_err());
    }

    /// A small xorshift generator seeded from the OS, so the loop below sees new ids on
    /// every run without a `rand` dependency.
    struct Rng(u64);

    impl Rng {
        fn new() -> Self {
            let mut seed = [0u8; 8];
            getrandom::fill(&mut seed).expect("OS random numbers");
            Self(u64::from_le_bytes(seed) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// An arbitrary string: any Unicode scalar value, including quotes, NUL,
        /// backslashes and SQL, of length 0..64.
        fn id(&mut self) -> String {
            let len = (self.next() % 64) as usize;
            (0..len)
                .map(|_| match self.next() % 4 {
                    0 => char::from(b"'\"\\;$ -\0"[(self.next() % 8) as usize]),
                    1 => char::from((self.next() % 128) as u8),
                    _ => loop {
                        if let Some(c) = char::from_u32((self.next() % 0x11_0000) as u32) {
                            break c;
                        }
                    },
                })
                .collect()
        }
    }

    #[test]
    fn generated_names_are_always_safe_deterministic_and_distinct() {
        let mut rng = Rng::new();
        let mut databases = HashSet::new();
        let prefixes = ["bindery", "a", "abcdefghijklmnop", "bd_test"];
        for round in 0..5_000 {
            let prefix = prefixes[round % prefixes.len()];
            let instance_id = rng.id();
            let binding_id = rng.id();
            let names = InstanceNames::new(prefix, &instance_id).unwrap();
            // Deterministic: a rerun after a crash finds the same objects.
            assert_eq!(names, InstanceNames::new(prefix, &instance_id).unwrap());
            let role = names.binding_role(&binding_id);
            assert_eq!(role, names.binding_role(&binding_id));

            for ident in [&names.database, &names.owner, &names.reader, &role] {
                let name = ident.as_str();
                assert!(name.len() <= MAX_IDENT_LEN, "{name}");
                assert!(name.starts_with(prefix));
                assert_eq!(quote_ident(name).unwrap(), format!("\"{name}\""));
                assert_eq!(ident.to_string(), format!("\"{name}\""));
                // Nothing of the raw id survives into the name.
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                );
            }
            for role in [&names.owner, &names.reader, &role] {
                assert!(role.as_str().starts_with(&names.role_prefix));
            }
            assert!(!role.as_str().starts_with(names.owner.as_str()));
            assert!(!names.is_group_role(role.as_str()));
            // The database name is not a role-prefix match of another instance.
            assert!(!names.database.as_str().starts_with(&names.role_prefix));
            if instance_id.is_empty() || prefix != "bindery" {
                continue;
            }
            databases.insert((instance_id, names.database.as_str().to_owned()));
        }
        // Distinct ids give distinct names (80-bit hashes; a collision would be news).
        let ids: HashSet<_> = databases.iter().map(|(id, _)| id).collect();
        let dbs: HashSet<_> = databases.iter().map(|(_, db)| db).collect();
        assert_eq!(ids.len(), dbs.len());
    }

    #[test]
    fn quoting_random_strings_never_lets_a_quote_through() {
        let mut rng = Rng::new();
        for _ in 0..5_000 {
            let s = rng.id();
            if let Ok(quoted) = quote_ident(&s) {
                assert_eq!(quoted.matches('"').count(), 2, "{s:?}");
            }
            if let Ok(literal) = quote_literal(&s) {
                let inner = &literal[1..literal.len() - 1];
                // Every quote inside is doubled: removing the pairs leaves none.
                assert!(!inner.replace("''", "").contains('\''), "{s:?}");
                assert!(!inner.contains('\\'));
            }
        }
    }
}
