//! `database`: database engines running on the node (see [`super::services`]).
use census_proto::v1::{Database, record::Body};

use super::services::{Role, Service, detect};
use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct DatabaseCollector;

impl Collector for DatabaseCollector {
    fn kind(&self) -> &'static str {
        "database"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        Ok(detect(ctx, Role::Database)?
            .iter()
            .map(|service| {
                let body = Database {
                    engine: service.signature.name.to_string(),
                    version: version(ctx, service),
                    pid: service.main.pid,
                    process: service.main.comm.clone(),
                    exe: service.main.exe.clone(),
                    listen: service.listen.clone(),
                    data_dir: data_dir(service),
                    user: ctx.user_name(service.main.uid).to_string(),
                    container_id: service
                        .main
                        .container
                        .as_ref()
                        .map(|c| c.id.clone())
                        .unwrap_or_default(),
                };
                Observation::new(service.key(), Body::Database(body))
            })
            .collect())
    }
}

/// The data directory, from the engine's usual flags.
fn data_dir(service: &Service) -> String {
    let flags: &[&str] = match service.signature.name {
        "postgresql" => &["-D"],
        "mysql" | "mariadb" => &["--datadir"],
        "mongodb" => &["--dbpath"],
        "elasticsearch" | "opensearch" => &["-Epath.data"],
        _ => &[],
    };
    flags
        .iter()
        .find_map(|flag| service.option(flag))
        .unwrap_or_default()
}

/// PostgreSQL writes its major version into the data directory: a better source
/// than the package for clusters of another major version.
fn version(ctx: &Context, service: &Service) -> String {
    if service.signature.name == "postgresql" && service.version.is_empty() {
        let data = data_dir(service);
        if !data.is_empty()
            && let Some(major) = ctx.read_optional(format!("{data}/PG_VERSION"))
        {
            return major.trim().to_string();
        }
    }
    service.version.clone()
}
