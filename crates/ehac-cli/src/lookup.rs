//! `ehac lookup`: a case investigator finds one traveller's declarations by NIK or passport.
//!
//! The identifier is turned into the traveller key here, with the pepper, and only the key goes
//! into SQL: any ClickHouse user can read running queries in `system.processes` (and the query
//! log, where it is on), so a NIK typed into a query would be seen by analysts too. Runs as the
//! `investigator` user, the one that may read the identity database.

use anyhow::Context;
use clickhouse::Row;
use ehac_domain::country::normalise_nationality;
use ehac_domain::TravellerIdentity;
use ehac_stream::config::{ClickHouseArgs, PepperArgs};
use serde::{Deserialize, Serialize};

/// Finds a traveller's declarations, identity and contact.
#[derive(clap::Args, Debug, Clone)]
pub struct LookupArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// The pepper (and its version) the keys to search were computed with.
    #[command(flatten)]
    pub pepper: PepperArgs,
    /// A citizen's NIK.
    #[arg(long, required_unless_present = "passport", conflicts_with = "passport")]
    pub nik: Option<String>,
    /// A foreigner's passport number (with --nationality).
    #[arg(long, requires = "nationality")]
    pub passport: Option<String>,
    /// ISO 3166-1 alpha-3 nationality of the passport.
    #[arg(long)]
    pub nationality: Option<String>,
}

/// One declaration of the traveller, as an investigator sees it.
#[derive(Debug, Clone, Row, Deserialize, Serialize, PartialEq, Eq)]
pub struct TravellerDeclaration {
    pub declaration_id: String,
    pub traveller_key: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub phone: String,
    pub email: String,
    pub seat: String,
    pub destination_street: String,
    pub arrival_port: String,
    pub flight_number: String,
    pub arrival_at: String,
    pub triage: String,
}

impl LookupArgs {
    fn identity(&self) -> TravellerIdentity {
        match (&self.nik, &self.passport, &self.nationality) {
            (Some(nik), _, _) => TravellerIdentity::citizen(nik),
            (None, Some(passport), Some(nationality)) => {
                TravellerIdentity::foreigner(normalise_nationality(&nationality.trim().to_ascii_uppercase()), passport)
            }
            _ => unreachable!("clap requires --nik or --passport with --nationality"),
        }
    }
}

/// The traveller's declarations under the given pepper version, oldest arrival first.
pub async fn lookup(args: &LookupArgs) -> anyhow::Result<Vec<TravellerDeclaration>> {
    let pepper = args.pepper.pepper()?;
    let key = pepper.traveller_key(&args.identity());
    let sql = "SELECT declaration_id, traveller_key, full_name, date_of_birth, phone, ifNull(email, '') AS email, ifNull(seat, '') AS seat,
                      destination_street, arrival_port, flight_number, toString(arrival_at) AS arrival_at, toString(triage) AS triage
               FROM (SELECT declaration_id, traveller_key, full_name, date_of_birth, phone, email, seat, destination_street
                     FROM ehac_pii.identities WHERE traveller_key = ? AND pepper_version = ?) AS identity
               ANY LEFT JOIN (SELECT declaration_id, arrival_port, flight_number, arrival_at, triage FROM ehac.declarations WHERE traveller_key = ?) AS trip
               USING (declaration_id)
               ORDER BY arrival_at, declaration_id";
    let client = ehac_stream::warehouse::client(&args.clickhouse);
    client.query(sql).bind(&key).bind(pepper.version()).bind(&key).fetch_all().await.context("looking the traveller up")
}
