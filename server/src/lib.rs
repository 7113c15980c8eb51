//! census-collector: receives agents' census.v1 streams, tags every record with its
//! DPSA category and retention deadlines, stores it and serves it over HTTP.
pub mod alarms;
pub mod api;
pub mod auth;
pub mod calendar;
pub mod console;
pub mod ingest;
pub mod policy;
pub mod purge;
pub mod serve;
pub mod store;
pub mod tls;
