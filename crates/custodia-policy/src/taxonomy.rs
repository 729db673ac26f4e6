//! The fideslang reference taxonomy (data categories and data uses), embedded at build time so
//! the checker can tell a known key from a typo and insist that new keys extend a known parent.

const DATA_CATEGORIES: &str = include_str!("../taxonomy/data_categories.csv");
const DATA_USES: &str = include_str!("../taxonomy/data_uses.csv");

fn keys(csv: &'static str) -> impl Iterator<Item = &'static str> {
    // The key is the first column; fideslang keys never contain commas or quotes.
    csv.lines()
        .skip(1)
        .filter_map(|line| line.split(',').next())
        .filter(|key| !key.is_empty())
}

/// Whether `key` is a fideslang data category (`user.contact.phone_number`).
pub fn is_data_category(key: &str) -> bool {
    keys(DATA_CATEGORIES).any(|known| known == key)
}

/// Whether `key` is a fideslang data use (`train_ai_system`, `essential.service.security`).
pub fn is_data_use(key: &str) -> bool {
    keys(DATA_USES).any(|known| known == key)
}

/// The nearest fideslang category that `key` extends: the longest dotted prefix of it that is a
/// known category. `None` when no prefix is known.
pub fn nearest_known_parent(key: &str) -> Option<&'static str> {
    let mut candidate = key;
    while let Some((parent, _)) = candidate.rsplit_once('.') {
        if let Some(known) = keys(DATA_CATEGORIES).find(|known| *known == parent) {
            return Some(known);
        }
        candidate = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_fideslang_keys() {
        assert!(is_data_category("user.contact.phone_number"));
        assert!(is_data_category("system.operations"));
        assert!(!is_data_category("user.content.audio_recording"));
        assert!(is_data_use("train_ai_system"));
        assert!(!is_data_use("user.contact"));
    }

    #[test]
    fn finds_the_nearest_parent() {
        assert_eq!(
            nearest_known_parent("user.content.audio_recording"),
            Some("user.content")
        );
        assert_eq!(
            nearest_known_parent("user.biometric.face_geometry.landmarks"),
            Some("user.biometric")
        );
        assert_eq!(nearest_known_parent("nothing.here"), None);
    }
}
