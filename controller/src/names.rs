//! Kubernetes object names derived from OSB ids, the way Service Catalog derived them, so a
//! class is named after its service id and a plan after its plan id.

use md5::{Digest, Md5};

/// The longest name a label-compatible Kubernetes name may have.
const MAX_NAME: usize = 63;

/// `a`–`y`, digits, `-` and `.` are kept; anything else (upper case, `_`, `z` itself) becomes
/// `z<hex>z`; a result longer than 63 characters becomes its first 30 characters, `-` and the
/// md5 of the id.
pub fn from_osb_id(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            'a'..='y' | '0'..='9' | '-' | '.' => name.push(c),
            other => {
                let mut buf = [0u8; 4];
                name.push('z');
                for b in other.encode_utf8(&mut buf).bytes() {
                    name.push_str(&format!("{b:x}"));
                }
                name.push('z');
            }
        }
    }
    if name.len() > MAX_NAME {
        let digest = Md5::digest(id.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        name = format!("{}-{hex}", &name[..30]);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_uuids_are_kept() {
        assert_eq!(
            from_osb_id("6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60"),
            "6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60"
        );
    }

    #[test]
    fn other_characters_are_escaped_and_long_names_hashed() {
        assert_eq!(from_osb_id("a_Z"), "az5fzz5az");
        // The example observed with Service Catalog itself.
        assert_eq!(
            from_osb_id("acb56d7c-XXXX-XXXX-XXXX-feb140a59a66"),
            "acb56d7c-z58zz58zz58zz58z-z58z-812d736e7fdd2df182438b345d77340a"
        );
    }
}
