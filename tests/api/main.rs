//! Integration tests: the real `crosswalk` binary over real TLS, on SQLite and on
//! PostgreSQL. See `helpers` for how each test gets its own server and database.

mod helpers;

mod aggregates;
mod aggregates_settled;
mod audit;
mod audit_rows;
mod audit_witness;
mod auth;
mod bounds;
mod connections;
mod consents;
mod contract;
mod crash;
mod cycle;
mod demo;
mod endpoint_matrix;
mod exchange;
mod export_joins;
mod exports;
mod inference;
mod link_reviews;
mod linkage;
mod policy;
mod pseudonyms;
mod reads;
mod startup;
mod system;
mod tls;
