//! Nationality codes: ISO 3166-1 alpha-3 (from the `rust_iso3166` crate's tables), plus the
//! codes ICAO Doc 9303 part 3 adds for travel documents, which a kiosk copying the MRZ will
//! send as they are.

/// ICAO codes that are not ISO 3166-1 alpha-3, with the ISO code analysts should count them
/// under where there is one.
const ICAO_ONLY: &[(&str, Option<&str>)] = &[
    ("D", Some("DEU")),   // Germany, written D<< in an MRZ
    ("GBD", Some("GBR")), // British Overseas Territories citizen
    ("GBN", Some("GBR")), // British National (Overseas)
    ("GBO", Some("GBR")), // British Overseas citizen
    ("GBP", Some("GBR")), // British protected person
    ("GBS", Some("GBR")), // British subject
    ("RKS", None),        // Kosovo
    ("EUE", None),        // European Union
    ("UNO", None),        // United Nations official
    ("UNA", None),        // United Nations specialised agency
    ("UNK", None),        // UN interim administration in Kosovo
    ("XBA", None),        // African Development Bank
    ("XIM", None),        // African Export-Import Bank
    ("XCC", None),        // Caribbean Community
    ("XCE", None),        // Council of Europe
    ("XCO", None),        // Common Market for Eastern and Southern Africa
    ("XEC", None),        // Economic Community of West African States
    ("XPO", None),        // Interpol
    ("XES", None),        // Organisation of Eastern Caribbean States
    ("XMP", None),        // Parliamentary Assembly of the Mediterranean
    ("XOM", None),        // Sovereign Military Order of Malta
    ("XDC", None),        // Southern African Development Community
    ("XXA", None),        // stateless person (1954 Convention)
    ("XXB", None),        // refugee (1951 Convention)
    ("XXC", None),        // refugee (other)
    ("XXX", None),        // unspecified nationality
];

/// Whether `code` is a nationality a travel document can carry.
pub fn is_nationality(code: &str) -> bool {
    rust_iso3166::from_alpha3(code).is_some() || ICAO_ONLY.iter().any(|(c, _)| *c == code)
}

/// The code analysts count a nationality under: the ISO code where ICAO's differs (D -> DEU).
pub fn normalise_nationality(code: &str) -> &str {
    ICAO_ONLY.iter().find(|(c, _)| *c == code).and_then(|(_, iso)| *iso).unwrap_or(code)
}

/// ISO 3166-1 alpha-3 for an alpha-2 code (airports carry alpha-2).
pub fn alpha3_of(alpha2: &str) -> Option<&'static str> {
    rust_iso3166::from_alpha2(alpha2).map(|c| c.alpha3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_icao_codes() {
        for code in ["IDN", "SGP", "DEU", "AUS", "D", "XXA", "GBN", "UNO"] {
            assert!(is_nationality(code), "{code}");
        }
        for code in ["UTO", "XYZ", "ID", "idn", "", "DEUX"] {
            assert!(!is_nationality(code), "{code}");
        }
        assert_eq!(normalise_nationality("D"), "DEU");
        assert_eq!(normalise_nationality("XXA"), "XXA");
        assert_eq!(normalise_nationality("SGP"), "SGP");
        assert_eq!(alpha3_of("ID"), Some("IDN"));
    }
}
