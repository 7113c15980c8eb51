//! `environment_variable`: every process's environment from /proc/PID/environ, secret
//! values replaced on the node.
use census_proto::v1::{EnvironmentVariable, record::Body};

use super::{CollectError, Collector, Context, Observation};

/// The kernel caps the environment area (ARG_MAX); anything above is not an environment.
const ENVIRON_LIMIT: u64 = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct EnvironmentVariableCollector;

impl Collector for EnvironmentVariableCollector {
    fn kind(&self) -> &'static str {
        "environment_variable"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut observations = Vec::new();
        for process in ctx.processes()? {
            let path = process.proc_path(ctx, "environ");
            let bytes = match crate::root::read_limited(&path, ENVIRON_LIMIT) {
                Ok(bytes) => bytes,
                // Exited, or another user's process read without privileges.
                Err(error) if error.is_not_found() => continue,
                Err(error) => {
                    tracing::debug!(%error, "cannot read environment");
                    continue;
                }
            };
            let process_key = process.key();
            let container_id = process
                .container
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            for (name, value) in parse_environ(&bytes) {
                let (value, rule) = ctx.redactor.env(&name, &value);
                let body = EnvironmentVariable {
                    pid: process.pid,
                    process: process.comm.clone(),
                    name: name.clone(),
                    value,
                    redacted_by: rule.unwrap_or_default().to_string(),
                    container_id: container_id.clone(),
                };
                observations.push(Observation::new(
                    format!("{process_key}/{name}"),
                    Body::EnvironmentVariable(body),
                ));
            }
        }
        Ok(observations)
    }
}

/// `NAME=value` entries separated by NUL bytes; entries without `=` or with an empty
/// name are not variables. A name set twice keeps its first value, as getenv(3) does.
pub fn parse_environ(bytes: &[u8]) -> Vec<(String, String)> {
    let mut variables: Vec<(String, String)> = Vec::new();
    for entry in bytes.split(|b| *b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((name, value)) = entry.split_once('=') else {
            continue;
        };
        if name.is_empty() || variables.iter().any(|(seen, _)| seen == name) {
            continue;
        }
        variables.push((name.to_string(), value.to_string()));
    }
    variables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_environ_entries() {
        let raw =
            b"PATH=/usr/bin:/bin\0EMPTY=\0=noname\0garbage\0A=1=2\0PATH=/second\0\xffX=\xfe\0";
        let vars = parse_environ(raw);
        assert_eq!(
            vars,
            [
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("EMPTY".into(), "".into()),
                ("A".into(), "1=2".into()),
                ("\u{fffd}X".into(), "\u{fffd}".into()),
            ]
        );
    }
}
