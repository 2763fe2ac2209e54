//! `ehac lookup`: a case investigator finds one traveller's declarations by NIK or passport.
//!
//! The identifier is turned into the traveller key here, with the pepper, and only the key goes
//! into SQL: any ClickHouse user can read running queries in `system.processes` (and the query
//! log, where it is on), so a NIK typed into a query would be seen by analysts too. Runs as the
//! `investigator` user, the one that may read the identity database.
//!
//! Every lookup is accounted for: it names the investigator and the case, and writes a row to
//! `ehac_pii.identity_reads` (who, case, traveller key, how many declarations came back) before
//! it returns anything; if that row cannot be written, nothing is shown.

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
    /// The investigator's own name, kept in the audit of identity reads.
    #[arg(long, env = "EHAC_INVESTIGATOR")]
    pub investigator: String,
    /// The case the lookup is for (e.g. the contact-tracing case number), kept in the audit.
    #[arg(long = "case", env = "EHAC_CASE_REFERENCE")]
    pub case_reference: String,
}

/// One read of identity, as `ehac_pii.identity_reads` keeps it.
#[derive(Debug, Row, Serialize)]
struct IdentityRead<'a> {
    investigator: &'a str,
    case_reference: &'a str,
    clickhouse_user: &'a str,
    traveller_key: &'a str,
    pepper_version: u32,
    declarations_returned: u32,
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

/// The traveller's declarations under the given pepper version, oldest arrival first, once the
/// read is in the audit. Refused without an investigator's name and a case reference.
pub async fn lookup(args: &LookupArgs) -> anyhow::Result<Vec<TravellerDeclaration>> {
    let (investigator, case_reference) = (args.investigator.trim(), args.case_reference.trim());
    anyhow::ensure!(
        !investigator.is_empty() && !case_reference.is_empty(),
        "a lookup needs the investigator's name (--investigator) and a case reference (--case): every read of identity is audited"
    );
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
    let found: Vec<TravellerDeclaration> =
        client.query(sql).bind(&key).bind(pepper.version()).bind(&key).fetch_all().await.context("looking the traveller up")?;
    let read = IdentityRead {
        investigator,
        case_reference,
        clickhouse_user: &args.clickhouse.clickhouse_user,
        traveller_key: &key,
        pepper_version: pepper.version(),
        declarations_returned: found.len() as u32,
    };
    let table = ehac_stream::warehouse::write_table(args.clickhouse.clickhouse_cluster.as_deref(), "identity_reads");
    // Synchronous: the row is stored when the insert answers.
    let features = ehac_stream::warehouse::ServerFeatures::detect(&client).await.context("auditing the lookup")?;
    let client = client.with_database(ehac_stream::warehouse::PII_DATABASE);
    let client = if features.async_insert { client.with_setting("async_insert", "0") } else { client };
    let mut insert = client.insert::<IdentityRead>(&table).await.context("auditing the lookup")?;
    insert.write(&read).await.context("auditing the lookup")?;
    insert.end().await.context("auditing the lookup: nothing is shown without its audit row")?;
    Ok(found)
}
