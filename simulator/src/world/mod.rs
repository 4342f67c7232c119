//! The simulated world: a pure function of the configuration, computed lazily per hour.
//!
//! Nothing is stored: every hour's blobs and every blob's records are derived again from
//! (seed, tenant, content type, hour, blob index), so a tenant with millions of records costs
//! no memory and two runs with the same seed see identical data.

pub(crate) mod generate;
pub(crate) mod records;
pub(crate) mod rng;

use std::sync::Arc;

use crate::config::M365Config;
use rng::{Rng, hash_str, mix};

pub(crate) use generate::ContentIdError;

/// The world derived from one configuration.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) cfg: Arc<M365Config>,
    pub(crate) tenants: Vec<TenantProfile>,
}

/// A simulated person in a tenant.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) upn: String,
    pub(crate) display: String,
    pub(crate) object_id: String,
    pub(crate) puid: String,
    pub(crate) mailbox_guid: String,
    pub(crate) sid: String,
    pub(crate) ip: String,
    pub(crate) device: String,
}

/// Stable facts about one tenant: its domain, people and data-centre region.
#[derive(Debug, Clone)]
pub(crate) struct TenantProfile {
    pub(crate) id: String,
    pub(crate) tag: u64,
    pub(crate) company: String,
    pub(crate) domain: String,
    pub(crate) users: Vec<User>,
    pub(crate) region: &'static str,
    pub(crate) region_no: u32,
}

const COMPANIES: [&str; 10] = [
    "contoso",
    "fabrikam",
    "northwind",
    "adatum",
    "tailspin",
    "woodgrove",
    "litware",
    "proseware",
    "wingtip",
    "alpineski",
];
const FIRST: [&str; 24] = [
    "alex",
    "megan",
    "diego",
    "adele",
    "lidia",
    "isaiah",
    "nestor",
    "pradeep",
    "joni",
    "lynne",
    "miriam",
    "grady",
    "henrietta",
    "johanna",
    "lee",
    "patti",
    "christie",
    "debra",
    "irvin",
    "allan",
    "emily",
    "brian",
    "sofia",
    "kenji",
];
const LAST: [&str; 16] = [
    "wilber",
    "bowen",
    "siciliani",
    "vance",
    "holloway",
    "langer",
    "wilke",
    "gupta",
    "sherman",
    "robbins",
    "caldwell",
    "archie",
    "mueller",
    "lehmann",
    "gu",
    "fernandez",
];
const REGIONS: [&str; 5] = ["na", "emea", "apac", "gbr", "can"];

impl World {
    /// Derives the tenant profiles; cheap, no records are generated here.
    pub(crate) fn new(cfg: Arc<M365Config>) -> Self {
        let tenants = cfg
            .tenant_ids()
            .into_iter()
            .enumerate()
            .map(|(i, id)| TenantProfile::new(cfg.seed, i, id))
            .collect();
        Self { cfg, tenants }
    }

    /// The profile of a tenant named by id or by its domain, as Entra accepts both in token URLs.
    pub(crate) fn tenant_by_id_or_domain(&self, name: &str) -> Option<&TenantProfile> {
        self.tenants
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(name) || t.domain.eq_ignore_ascii_case(name))
    }
}

impl TenantProfile {
    fn new(seed: u64, index: usize, id: String) -> Self {
        let tag = mix(seed ^ hash_str(&id));
        let mut rng = Rng::new(mix(tag ^ 0x7e_4a_47));
        let company = COMPANIES[(tag as usize + index) % COMPANIES.len()].to_string();
        let domain = format!("{company}.onmicrosoft.com");
        let mut users = Vec::with_capacity(40);
        for n in 0..40 {
            let first = FIRST[rng.below(FIRST.len() as u64) as usize];
            let last = LAST[rng.below(LAST.len() as u64) as usize];
            let upn = if n < FIRST.len() {
                format!("{first}.{last}@{domain}")
            } else {
                format!("{first}.{last}{n}@{domain}")
            };
            let display = format!("{} {}", capitalise(first), capitalise(last));
            users.push(User {
                upn,
                display,
                object_id: rng.guid(),
                puid: format!(
                    "{:016X}",
                    rng.next_u64() & 0x1003_FFFF_FFFF_FFFF | 0x1003_0000_0000_0000
                ),
                mailbox_guid: rng.guid(),
                sid: format!(
                    "S-1-5-21-{}-{}-{}-{}",
                    1_000_000_000 + rng.below(3_000_000_000),
                    1_000_000_000 + rng.below(3_000_000_000),
                    1_000_000_000 + rng.below(3_000_000_000),
                    1_000 + rng.below(90_000)
                ),
                ip: rng.public_ipv4(),
                device: format!("{}-{}", company.to_uppercase(), 1000 + rng.below(9000)),
            });
        }
        Self {
            id,
            tag,
            company,
            domain,
            users,
            region: REGIONS[(tag >> 8) as usize % REGIONS.len()],
            region_no: ((tag >> 16) % 100) as u32 + 1,
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
