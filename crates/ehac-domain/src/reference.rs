//! Reference data compiled into the binary, so a service never waits on a registry to start.
//!
//! - `data/airports-iata.csv` (airportsdata, MIT), patched by `data/airport-corrections.csv`
//!   for errors we know of upstream (KNO is Kualanamu, not Polonia).
//! - `data/id-region-codes.csv` (Kemendagri codes 2016-2025, MIT). A NIK keeps the district
//!   code of where it was issued, so a code counts if it existed in any list.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono_tz::Tz;
use serde::Deserialize;

const AIRPORTS_CSV: &str = include_str!("../data/airports-iata.csv");
const AIRPORT_CORRECTIONS_CSV: &str = include_str!("../data/airport-corrections.csv");
const REGIONS_CSV: &str = include_str!("../data/id-region-codes.csv");

#[derive(Debug, Clone)]
pub struct Airport {
    pub iata: String,
    pub name: String,
    pub city: String,
    pub subdivision: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub tz: Tz,
}

/// A Kemendagri region: province (2 digits), regency or city (4), district (6).
#[derive(Debug, Clone, Deserialize)]
pub struct Region {
    pub code: String,
    pub level: u8,
    pub name: String,
    pub first_seen: u16,
    pub last_seen: u16,
}

#[derive(Debug)]
pub struct ReferenceData {
    airports: HashMap<String, Airport>,
    regions: HashMap<String, Region>,
    /// Year of the newest region list in the data.
    latest_region_list: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reading {file}: {source}")]
    Csv { file: &'static str, source: csv::Error },
    #[error("{file}: airport {iata} has unknown time zone {tz:?}")]
    TimeZone { file: &'static str, iata: String, tz: String },
    #[error("{file}: correction for unknown airport {iata} or field {field}")]
    Correction { file: &'static str, iata: String, field: String },
}

#[derive(Deserialize)]
struct AirportRow {
    iata: String,
    name: String,
    city: String,
    subdivision: String,
    country: String,
    tz: String,
}

#[derive(Deserialize)]
struct CorrectionRow {
    iata: String,
    field: String,
    value: String,
}

static EMBEDDED: LazyLock<ReferenceData> = LazyLock::new(|| {
    ReferenceData::parse(AIRPORTS_CSV, AIRPORT_CORRECTIONS_CSV, REGIONS_CSV).expect("embedded reference data is valid (checked by tests)")
});

impl ReferenceData {
    /// The data compiled into this binary. Parsed once, on first use.
    pub fn embedded() -> &'static ReferenceData {
        &EMBEDDED
    }

    pub fn parse(airports_csv: &str, corrections_csv: &str, regions_csv: &str) -> Result<Self, ReferenceError> {
        let mut airports = HashMap::new();
        for row in csv::Reader::from_reader(airports_csv.as_bytes()).deserialize::<AirportRow>() {
            let row = row.map_err(|source| ReferenceError::Csv { file: "airports-iata.csv", source })?;
            let tz = row.tz.parse::<Tz>().map_err(|_| ReferenceError::TimeZone {
                file: "airports-iata.csv",
                iata: row.iata.clone(),
                tz: row.tz.clone(),
            })?;
            let airport =
                Airport { iata: row.iata.clone(), name: row.name, city: row.city, subdivision: row.subdivision, country: row.country, tz };
            airports.insert(row.iata, airport);
        }
        for row in csv::Reader::from_reader(corrections_csv.as_bytes()).deserialize::<CorrectionRow>() {
            let row = row.map_err(|source| ReferenceError::Csv { file: "airport-corrections.csv", source })?;
            let bad = || ReferenceError::Correction { file: "airport-corrections.csv", iata: row.iata.clone(), field: row.field.clone() };
            let airport = airports.get_mut(&row.iata).ok_or_else(bad)?;
            match row.field.as_str() {
                "name" => airport.name = row.value.clone(),
                "city" => airport.city = row.value.clone(),
                "subdivision" => airport.subdivision = row.value.clone(),
                _ => return Err(bad()),
            }
        }
        let mut regions = HashMap::new();
        for row in csv::Reader::from_reader(regions_csv.as_bytes()).deserialize::<Region>() {
            let row = row.map_err(|source| ReferenceError::Csv { file: "id-region-codes.csv", source })?;
            regions.insert(row.code.clone(), row);
        }
        let latest_region_list = regions.values().map(|r: &Region| r.last_seen).max().unwrap_or(0);
        Ok(ReferenceData { airports, regions, latest_region_list })
    }

    pub fn airport(&self, iata: &str) -> Option<&Airport> {
        self.airports.get(iata)
    }

    /// A district (level 3) by its six-digit code.
    pub fn district(&self, code: &str) -> Option<&Region> {
        self.regions.get(code).filter(|r| r.level == 3)
    }

    /// Year of the newest Kemendagri list: a district whose `last_seen` is older was retired.
    pub fn latest_region_list(&self) -> u16 {
        self.latest_region_list
    }

    /// The province and regency/city a district belongs to.
    pub fn parents(&self, district: &Region) -> (Option<&Region>, Option<&Region>) {
        (self.regions.get(&district.code[..2]), self.regions.get(&district.code[..4]))
    }

    /// Every district code, for generating sample NIKs.
    pub fn districts(&self) -> impl Iterator<Item = &Region> {
        self.regions.values().filter(|r| r.level == 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_loads_with_corrections_applied() {
        let reference = ReferenceData::embedded();
        let kno = reference.airport("KNO").unwrap();
        assert_eq!(kno.name, "Kualanamu International Airport");
        assert_eq!(reference.airport("CGK").unwrap().tz, chrono_tz::Asia::Jakarta);
        assert_eq!(reference.airport("DPS").unwrap().tz, chrono_tz::Asia::Makassar);
        assert!(reference.airport("QQQ").is_none());
        let district = reference.district("110101").unwrap();
        assert_eq!(district.name, "Bakongan");
        let (province, regency) = reference.parents(district);
        assert_eq!(province.unwrap().name, "Aceh");
        assert_eq!(regency.unwrap().name, "Kabupaten Aceh Selatan");
        assert!(reference.district("1101").is_none(), "a regency code is not a district");
        assert!(reference.districts().count() > 7000);
    }

    #[test]
    fn a_correction_for_an_unknown_airport_is_an_error() {
        let airports = "iata,icao,name,city,subdivision,country,lat,lon,tz\nCGK,WIII,Soekarno-Hatta,Jakarta,Jakarta,ID,0,0,Asia/Jakarta\n";
        let corrections = "iata,field,value,reason\nXXX,name,Nowhere,test\n";
        let err = ReferenceData::parse(airports, corrections, "code,level,name,first_seen,last_seen\n").unwrap_err();
        assert!(err.to_string().contains("XXX"), "{err}");
    }
}
