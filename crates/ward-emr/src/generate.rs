//! Realistic demo data (`ward gen emr`).
