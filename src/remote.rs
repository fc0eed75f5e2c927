//! The mock remote service of the article: it accepts a credential when it is one of the
//! expected values (`--expected-secret`, a list during a rotation).

use crate::config::Exposure;

/// The remote service the credential is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    expected: Vec<String>,
}

impl Remote {
    /// A remote service accepting any of `expected`.
    pub(crate) fn new(expected: Vec<String>) -> Remote {
        Remote { expected }
    }

    /// Whether the remote service accepts `credential` ("connection ok").
    pub(crate) fn accepts(&self, credential: &str) -> bool {
        // Compare every candidate in full so the answer takes the same time whichever matches.
        self.expected.iter().fold(false, |found, e| {
            constant_time_eq(e.as_bytes(), credential.as_bytes()) | found
        })
    }

    /// The article's `Note:` line, with values masked unless exposed.
    pub(crate) fn note(&self, credential: &str, exposure: Exposure) -> String {
        match exposure {
            Exposure::Exposed => format!(
                "Note: mysecret value is {credential} while expected value is {}.",
                self.expected.join(",")
            ),
            Exposure::Masked => {
                "Note: mysecret value is **** while expected value is ****.".to_string()
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_expected_values() {
        let r = Remote::new(vec!["4321".into(), "5678".into()]);
        assert!(r.accepts("4321"));
        assert!(r.accepts("5678"));
        assert!(!r.accepts("1234"));
        assert!(!r.accepts("43210"));
        assert!(!r.accepts(""));
    }

    #[test]
    fn note_masks_unless_exposed() {
        let r = Remote::new(vec!["4321".into(), "5678".into()]);
        assert_eq!(
            r.note("1234", Exposure::Masked),
            "Note: mysecret value is **** while expected value is ****."
        );
        assert_eq!(
            r.note("1234", Exposure::Exposed),
            "Note: mysecret value is 1234 while expected value is 4321,5678."
        );
        let single = Remote::new(vec!["4321".into()]);
        assert_eq!(
            single.note("1234", Exposure::Exposed),
            "Note: mysecret value is 1234 while expected value is 4321."
        );
    }
}
