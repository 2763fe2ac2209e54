//! The machine-readable zone of a passport (ICAO Doc 9303 part 4, "TD3": two lines of 44
//! characters), as a kiosk's document reader returns it.
//!
//! Check digits use weights 7, 3, 1 over digit values (0-9), letters (A=10 .. Z=35) and the
//! filler `<` (0). Line 2 carries a check digit for the document number, the date of birth, the
//! date of expiry and the optional data, and a composite check digit over all of them, so a
//! misread character anywhere in line 2 is caught.

/// The fields of a TD3 MRZ this pipeline uses, fillers removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassportMrz {
    pub issuing_state: String,
    /// Surname and given names as printed, `<` turned into spaces.
    pub name: String,
    pub document_number: String,
    /// ICAO nationality code: ISO 3166-1 alpha-3, or one of ICAO's own (D, XXA, ...).
    pub nationality: String,
    /// YYMMDD.
    pub birth_date: String,
    /// `M`, `F` or `X`/`<` (unspecified).
    pub sex: char,
    /// YYMMDD.
    pub expiry_date: String,
}

/// Why an MRZ could not be read, or which check digit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrzError {
    #[error("must be two lines of 44 characters (ICAO 9303 TD3), got {0}")]
    Shape(String),
    #[error("may only contain A-Z, 0-9 and '<'")]
    Characters,
    #[error("line 1 must start with P (a passport)")]
    NotPassport,
    #[error("{field} must be six digits YYMMDD")]
    Date { field: &'static str },
    #[error("check digit of the {field} is {found}, expected {expected}: a character was misread or altered")]
    CheckDigit { field: &'static str, expected: char, found: char },
}

/// The ICAO 9303 check digit of `field`; `None` if it holds a character outside A-Z, 0-9, `<`.
pub fn check_digit(field: &str) -> Option<char> {
    let mut sum = 0u32;
    for (i, b) in field.bytes().enumerate() {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'<' => 0,
            _ => return None,
        };
        sum += value * [7, 3, 1][i % 3];
    }
    char::from_digit(sum % 10, 10)
}

/// Reads a TD3 MRZ: two lines separated by a line break, or the 88 characters run together.
/// Every check digit is verified; the first failure is returned.
pub fn parse(mrz: &str) -> Result<PassportMrz, MrzError> {
    let text = mrz.trim();
    let (line1, line2) = match text.split_once('\n') {
        Some((a, b)) => (a.trim_end_matches('\r'), b.trim()),
        None if text.len() == 88 && text.is_ascii() => text.split_at(44),
        None => return Err(MrzError::Shape(format!("one line of {} characters", text.chars().count()))),
    };
    if line1.len() != 44 || line2.len() != 44 {
        return Err(MrzError::Shape(format!("lines of {} and {} characters", line1.chars().count(), line2.chars().count())));
    }
    if !(line1.bytes().chain(line2.bytes())).all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'<') {
        return Err(MrzError::Characters);
    }
    if !line1.starts_with('P') {
        return Err(MrzError::NotPassport);
    }

    let check = |field: &'static str, data: &str, digit_at: usize, filler_allowed: bool| -> Result<(), MrzError> {
        let found = line2.as_bytes()[digit_at] as char;
        // An unused optional-data field may carry a filler instead of a check digit.
        if filler_allowed && found == '<' && data.bytes().all(|b| b == b'<') {
            return Ok(());
        }
        let expected = check_digit(data).expect("characters checked above");
        if found == expected {
            Ok(())
        } else {
            Err(MrzError::CheckDigit { field, expected, found })
        }
    };
    check("document number", &line2[0..9], 9, false)?;
    for (field, range) in [("date of birth", 13..19), ("date of expiry", 21..27)] {
        if !line2[range.clone()].bytes().all(|b| b.is_ascii_digit()) {
            return Err(MrzError::Date { field });
        }
    }
    check("date of birth", &line2[13..19], 19, false)?;
    check("date of expiry", &line2[21..27], 27, false)?;
    check("optional data", &line2[28..42], 42, true)?;
    let composite = [&line2[0..10], &line2[13..20], &line2[21..43]].concat();
    check("whole line 2 (composite)", &composite, 43, false)?;

    let unfill = |s: &str| s.trim_end_matches('<').to_owned();
    Ok(PassportMrz {
        issuing_state: unfill(&line1[2..5]),
        name: line1[5..].trim_end_matches('<').replace("<<", ", ").replace('<', " "),
        document_number: unfill(&line2[0..9]),
        nationality: unfill(&line2[10..13]),
        birth_date: line2[13..19].to_owned(),
        sex: line2.as_bytes()[20] as char,
        expiry_date: line2[21..27].to_owned(),
    })
}

/// Builds a valid TD3 MRZ (two lines joined by `\n`): what a document reader would return
/// for these details. Used by the sample generator and tests.
// One argument per TD3 field, in the order ICAO 9303 lays them out: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn compose(
    issuing_state: &str,
    surname: &str,
    given_names: &str,
    document_number: &str,
    nationality: &str,
    birth_yymmdd: &str,
    sex: char,
    expiry_yymmdd: &str,
) -> String {
    let field = |s: &str| s.to_ascii_uppercase().replace([' ', '-', '\''], "<");
    let pad = |s: String, n: usize| format!("{s:<<n$}")[..n].to_owned();
    let line1 = pad(format!("P<{}{}<<{}", pad(field(issuing_state), 3), field(surname), field(given_names)), 44);
    let number = pad(field(document_number), 9);
    let optional = "<".repeat(14);
    let mut line2 = format!(
        "{number}{}{}{birth_yymmdd}{}{sex}{expiry_yymmdd}{}{optional}<",
        check_digit(&number).unwrap_or('0'),
        pad(field(nationality), 3),
        check_digit(birth_yymmdd).unwrap_or('0'),
        check_digit(expiry_yymmdd).unwrap_or('0'),
    );
    let composite = [&line2[0..10], &line2[13..20], &line2[21..43]].concat();
    line2.push(check_digit(&composite).unwrap_or('0'));
    format!("{line1}\n{line2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specimen passport of ICAO Doc 9303 part 4, appendix A: an independent oracle for the
    /// check digits.
    const SPECIMEN: &str = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10";

    #[test]
    fn reads_the_icao_specimen() {
        let mrz = parse(SPECIMEN).unwrap();
        assert_eq!(mrz.document_number, "L898902C3");
        assert_eq!(mrz.nationality, "UTO");
        assert_eq!(mrz.birth_date, "740812");
        assert_eq!(mrz.sex, 'F');
        assert_eq!(mrz.expiry_date, "120415");
        assert_eq!(mrz.name, "ERIKSSON, ANNA MARIA");
        assert_eq!(parse(&SPECIMEN.replace('\n', "")).unwrap(), mrz);
    }

    #[test]
    fn check_digits_of_the_specimen_fields() {
        assert_eq!(check_digit("L898902C3"), Some('6'));
        assert_eq!(check_digit("740812"), Some('2'));
        assert_eq!(check_digit("120415"), Some('9'));
        assert_eq!(check_digit("ZE184226B<<<<<"), Some('1'));
        assert_eq!(check_digit("a"), None);
    }

    #[test]
    fn every_altered_field_fails_its_check_digit() {
        // Each edit changes one character of line 2 (offset 45 + position in line 2).
        for (position, replacement, field) in [
            (2, '7', "document number"),
            (15, '9', "date of birth"),
            (23, '8', "date of expiry"),
            (30, '9', "optional data"),
            (43, '5', "whole line 2 (composite)"),
        ] {
            let mut altered: Vec<char> = SPECIMEN.chars().collect();
            altered[45 + position] = replacement;
            let altered: String = altered.into_iter().collect();
            match parse(&altered) {
                Err(MrzError::CheckDigit { field: f, .. }) => assert_eq!(f, field, "position {position}"),
                other => panic!("position {position}: {other:?}"),
            }
        }
    }

    #[test]
    fn compose_round_trips_through_parse() {
        let text = compose("IDN", "Lestari", "Siti", "C1234567", "IDN", "901205", 'F', "300101");
        let mrz = parse(&text).unwrap();
        assert_eq!((mrz.document_number.as_str(), mrz.nationality.as_str(), mrz.sex), ("C1234567", "IDN", 'F'));
        assert_eq!(compose("D", "Muller", "Jan", "C01X00T47", "D", "640812", 'M', "271031").lines().nth(1).unwrap().len(), 44);
        assert_eq!(parse(&compose("D", "Muller", "Jan", "C01X00T47", "D", "640812", 'M', "271031")).unwrap().nationality, "D");
    }

    #[test]
    fn shape_and_characters_are_reported() {
        assert!(matches!(parse("P<UTO"), Err(MrzError::Shape(_))));
        assert!(matches!(parse(&SPECIMEN.replace("ANNA", "anna")), Err(MrzError::Characters)));
        assert!(matches!(parse(&SPECIMEN.replacen('P', "V", 1)), Err(MrzError::NotPassport)));
    }
}
