//! Seeded synthetic facilities (`ward gen facilities`, tests, the benchmark): the same seed
//! gives the same file on every machine.

use std::io::Write;

use serde_json::{Value, json};

use crate::facility::{Accreditation, Facility, Lab};

const PLACES: [(&str, &str); 16] = [
    ("Austin", "TX"),
    ("Dallas", "TX"),
    ("Houston", "TX"),
    ("Sacramento", "CA"),
    ("San Diego", "CA"),
    ("Fresno", "CA"),
    ("Albany", "NY"),
    ("Buffalo", "NY"),
    ("Miami", "FL"),
    ("Tampa", "FL"),
    ("Chicago", "IL"),
    ("Denver", "CO"),
    ("Seattle", "WA"),
    ("Phoenix", "AZ"),
    ("Boston", "MA"),
    ("San Juan", "PR"),
];
const KINDS: [&str; 6] = [
    "General Hospital",
    "Medical Center",
    "Family Clinic",
    "Surgical Center",
    "Children's Hospital",
    "Rehabilitation Center",
];
const SERVICES: [&str; 10] = [
    "Emergency Care",
    "Surgery",
    "Radiology",
    "Pediatrics",
    "Cardiology",
    "Oncology",
    "Primary Care",
    "Physical Therapy",
    "Maternity",
    "Telehealth",
];
const CERTIFICATIONS: [&str; 5] = ["CLIA", "CAP", "ACR", "AABB", "COLA"];
const BODIES: [&str; 4] = ["Joint Commission", "DNV", "NCQA", "CARF"];

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Facility number `n` of the set with this seed.
pub fn facility(rng: &mut Rng, n: u64) -> Facility {
    let (city, state) = PLACES[rng.below(PLACES.len() as u64) as usize];
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let services = (0..1 + rng.below(5))
        .map(|i| SERVICES[((n + i * 3) % SERVICES.len() as u64) as usize].to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let labs = (0..rng.below(4))
        .map(|i| Lab {
            lab_name: format!("{city} Lab {}", i + 1),
            certifications: (0..rng.below(3))
                .map(|c| CERTIFICATIONS[((i + c) % 5) as usize].to_owned())
                .collect(),
        })
        .collect();
    // 2024-01-01 (19723) .. 2028-12-31.
    let accreditations = (0..rng.below(4))
        .map(|i| Accreditation {
            accreditation_body: BODIES[rng.below(BODIES.len() as u64) as usize].to_owned(),
            accreditation_id: format!("ACC-{n}-{i}"),
            valid_until: 19_723 + rng.below(1_826) as i32,
        })
        .collect();
    Facility {
        facility_id: format!("FAC{n:07}"),
        facility_name: Some(format!("{city} {kind} {n}")),
        address: Some(format!("{} Main St", 100 + rng.below(9_900))),
        city: Some(city.to_owned()),
        state: state.to_owned(),
        zip: Some(format!("{:05}", 10_000 + rng.below(89_999))),
        employee_count: 5 + rng.below(4_995) as i64,
        services,
        labs,
        accreditations,
    }
}

/// `count` facilities from `seed`.
pub fn facilities(count: u64, seed: u64) -> impl Iterator<Item = Facility> {
    let mut rng = Rng::new(seed);
    (1..=count).map(move |n| facility(&mut rng, n))
}

/// A facility as the JSON a provider would send.
pub fn to_json(facility: &Facility) -> Value {
    json!({
        "facility_id": facility.facility_id,
        "facility_name": facility.facility_name,
        "location": {
            "address": facility.address,
            "city": facility.city,
            "state": facility.state,
            "zip": facility.zip,
        },
        "employee_count": facility.employee_count,
        "services": facility.services,
        "labs": facility.labs.iter().map(|lab| json!({
            "lab_name": lab.lab_name,
            "certifications": lab.certifications,
        })).collect::<Vec<_>>(),
        "accreditations": facility.accreditations.iter().map(|a| json!({
            "accreditation_body": a.accreditation_body,
            "accreditation_id": a.accreditation_id,
            "valid_until": date_text(a.valid_until),
        })).collect::<Vec<_>>(),
    })
}

/// Writes `count` facilities as JSON lines.
pub fn write_json_lines(out: &mut impl Write, count: u64, seed: u64) -> std::io::Result<()> {
    for facility in facilities(count, seed) {
        serde_json::to_writer(&mut *out, &to_json(&facility))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Days since 1970-01-01 -> `YYYY-MM-DD` (Howard Hinnant's civil_from_days).
pub fn date_text(days: i32) -> String {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::parse_date;

    #[test]
    fn date_text_inverts_parse_date() {
        for days in [-1, 0, 11_017, 19_782, 19_723, 21_548, 40_000] {
            assert_eq!(parse_date(&date_text(days)), Some(days), "{days}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_facilities() {
        let a: Vec<_> = facilities(50, 7).collect();
        let b: Vec<_> = facilities(50, 7).collect();
        let c: Vec<_> = facilities(50, 8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
