//! How SQLite keeps each kind of value the rows hold: text and integers where
//! PostgreSQL has a type. JSON is its text, a uuid its lowercase hyphenated text (a
//! lease token its 32 hex digits), a time its microseconds since the Unix epoch. The
//! shared row reading ([`Column`]) decodes through here.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Encode, Sqlite, Type};
use uuid::Uuid;

use crate::store::row::Column;

/// A type as a SQLite column keeps it.
pub(crate) trait Stored: Sized {
    /// What the column holds.
    type Raw: for<'r> Decode<'r, Sqlite> + for<'q> Encode<'q, Sqlite> + Type<Sqlite> + 'static;

    /// The value a column holds.
    fn from_raw(raw: Self::Raw) -> Result<Self, sqlx::Error>;

    /// What a column holds for this value.
    fn to_raw(&self) -> Self::Raw;
}

impl<T: Stored> Column<T> for SqliteRow {
    fn column(&self, name: &str) -> Result<T, sqlx::Error> {
        T::from_raw(sqlx::Row::try_get(self, name)?)
    }
}

/// Types SQLite has: kept as they are.
macro_rules! stored_as_itself {
    ($($t:ty),+) => {$(
        impl Stored for $t {
            type Raw = $t;
            fn from_raw(raw: $t) -> Result<Self, sqlx::Error> {
                Ok(raw)
            }
            fn to_raw(&self) -> $t {
                self.clone()
            }
        }
    )+};
}

stored_as_itself!(String, i32, i64, Vec<u8>);

impl Stored for Value {
    type Raw = String;
    fn from_raw(raw: String) -> Result<Self, sqlx::Error> {
        serde_json::from_str(&raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
    fn to_raw(&self) -> String {
        self.to_string()
    }
}

/// Reads both the hyphenated form and a lease token's 32 digits.
impl Stored for Uuid {
    type Raw = String;
    fn from_raw(raw: String) -> Result<Self, sqlx::Error> {
        Uuid::parse_str(&raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
    fn to_raw(&self) -> String {
        self.hyphenated().to_string()
    }
}

impl Stored for DateTime<Utc> {
    type Raw = i64;
    fn from_raw(micros: i64) -> Result<Self, sqlx::Error> {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| {
            sqlx::Error::Decode(format!("timestamp {micros} is out of range").into())
        })
    }
    fn to_raw(&self) -> i64 {
        self.timestamp_micros()
    }
}

/// Null as SQL null.
impl<T: Stored> Stored for Option<T> {
    type Raw = Option<T::Raw>;
    fn from_raw(raw: Option<T::Raw>) -> Result<Self, sqlx::Error> {
        raw.map(T::from_raw).transpose()
    }
    fn to_raw(&self) -> Option<T::Raw> {
        self.as_ref().map(T::to_raw)
    }
}
